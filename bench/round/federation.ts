/**
 * A federation of synthetic sites against an in-process aggregator, ready to run rounds: shared by the
 * round benchmark (round.bench.ts) and the scale benchmark (bench/scale). The federation is created and
 * its sites enrolled over the REST API; the sites run in forked processes (sites.ts) and log in over
 * loopback WebSockets.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import type { ModelSpec } from '@confide/ml/spec';
import { generateIdentity } from '@confide/protocol';
import { mergeSpans, ROLE_ENV, type FromSites, type Span, type Spans, type ToSites } from './sites';
import type { RoundFigures } from './report';

const MB = 1e6;
/** A folder to write a V8 CPU profile of each site process into (when set). */
export const SITES_PROFILE_ENV = 'CONFIDE_BENCH_SITES_PROFILE';

/** A model spec with about `params` parameters and few input features (the stats phase is JSON). */
export function specFor(params: number): ModelSpec {
  if (params <= 1001) return { kind: 'logistic', inputDim: params - 1 };
  const inputDim = 1000;
  // mlp inputDim -> h -> 1: inputDim*h + h + h + 1 parameters.
  const hidden = Math.max(1, Math.round((params - 1) / (inputDim + 2)));
  return { kind: 'mlp', inputDim, hidden: [hidden], output: 'binary' };
}
interface RoundView {
  number: number;
  state: string;
  reason: string | null;
  durationMs: number | null;
  metrics: { bytesReceived: number } | null;
  events: Array<{ state: string; at: string }>;
}

/**
 * Round phases between recorded transitions. A transition's time is its transaction's start, so
 * storing the new model version (done in the 'aggregated' transaction) counts in 'store+evaluate'.
 */
export const PHASES = [
  ['scheduled', 'collecting', 'select+load+encode'],
  ['collecting', 'aggregated', 'updates+aggregate'],
  ['aggregated', 'evaluated', 'store+evaluate'],
  ['evaluated', 'committed', 'commit'],
] as const;
/** With secure aggregation the collection splits into its protocol rounds (advertise and share first). */
export const SECURE_PHASES = [
  ['scheduled', 'advertising', 'select+load+encode'],
  ['advertising', 'sharing', 'train frame+advertise'],
  ['sharing', 'collecting', 'share keys'],
  ['collecting', 'unmasking', 'mask+upload'],
  ['unmasking', 'aggregated', 'unmask+aggregate'],
  ['aggregated', 'evaluated', 'store+evaluate'],
  ['evaluated', 'committed', 'commit'],
] as const;

/** One federation of synthetic sites, with or without secure aggregation, ready to run rounds. */
export interface Mode {
  secureAggregation: boolean;
  siteBufferUtil: string;
  /** From telling the site processes to connect to every site having logged in. */
  connectMs: number;
  /** Runs one round (one run of one round) and returns its figures. */
  runRound(): Promise<RoundFigures>;
  close(): Promise<void>;
}

/** What a federation of synthetic sites is made of. */
export interface ModeOptions {
  sites: number;
  /** Processes the synthetic sites are spread over. */
  siteProcesses: number;
  /** Names the federation (`<name>-secure-<time>`). */
  name: string;
  /** Runs once every site process has its updates ready, just before the sites connect. */
  beforeConnect?: () => Promise<void>;
}

/** The REST calls a mode makes. */
export interface Api {
  get<T>(path: string): Promise<T>;
  post<T>(path: string, body?: unknown): Promise<T>;
}

/** Sites enrolled at once (each an enrol and an approve call). */
const ENROL_BATCH = 16;

/**
 * Creates the federation of one mode, enrolls its sites and starts their processes; resolves once
 * every site has logged in.
 */
export async function startMode(
  opts: ModeOptions,
  agg: { url: string; wsUrl: string },
  api: Api,
  spec: ModelSpec,
  parameters: number,
  secureAggregation: boolean,
): Promise<Mode> {
  const fed = await api.post<{ id: string; parameters: number }>('/api/v1/federations', {
    name: `${opts.name}-${secureAggregation ? 'secure' : 'plain'}-${Date.now()}`,
    modelSpec: spec,
    minSites: opts.sites,
    roundTimeoutSeconds: 600,
    evaluationTimeoutSeconds: 120,
    seed: 1,
    secureAggregation: { enabled: secureAggregation },
  });
  const identities = Array.from({ length: opts.sites }, () => generateIdentity());
  const width = Math.max(3, String(opts.sites).length);
  for (let from = 0; from < identities.length; from += ENROL_BATCH) {
    await Promise.all(
      identities.slice(from, from + ENROL_BATCH).map(async (identity, j) => {
        const site = await api.post<{ id: string }>(`/api/v1/federations/${fed.id}/sites`, {
          name: `site-${String(from + j + 1).padStart(width, '0')}`,
          publicKey: identity.publicKey,
        });
        await api.post(`/api/v1/federations/${fed.id}/sites/${site.id}/approve`);
      }),
    );
  }

  // Site processes: their stdout goes to our stderr so --json output stays one object.
  const launcher = fileURLToPath(new URL('../../bin/run-ts.js', import.meta.url));
  const P = opts.siteProcesses;
  const sites: ChildProcess[] = [];
  const ends: Array<(m: Extract<FromSites, { type: 'round.end' }>) => void> = [];
  // round -> what the processes that saw it end reported so far
  const partial = new Map<number, { count: number; bytes: number; cpuMs: number; spans: Spans }>();
  let failure: ((e: Error) => void) | null = null;
  const failed = new Promise<never>((_, reject) => (failure = reject));
  failed.catch(() => undefined);
  let closing = false;
  const close = async (): Promise<void> => {
    closing = true;
    await Promise.all(
      sites.map(async (child) => {
        if (child.exitCode === null && child.connected) {
          const exited = new Promise((r) => child.once('exit', r));
          child.send({ type: 'close' } satisfies ToSites);
          await Promise.race([exited, new Promise((r) => setTimeout(r, 2000))]);
        }
        child.kill();
      }),
    );
  };
  const prepared: Array<Promise<void>> = [];
  const readies: Array<Promise<string>> = [];
  let siteBufferUtil: string;
  let connectMs: number;
  try {
    for (let p = 0; p < P; p++) {
      const first = Math.floor((p * opts.sites) / P);
      const last = Math.floor(((p + 1) * opts.sites) / P);
      const child = fork(launcher, [fileURLToPath(new URL('./sites.ts', import.meta.url))], {
        env: { ...process.env, [ROLE_ENV]: 'sites' },
        // The driver's --cpu-prof profiles the aggregator; the sites' processes are profiled into
        // the folder SITES_PROFILE_ENV names (Node refuses --cpu-prof in NODE_OPTIONS).
        execArgv: [
          ...process.execArgv.filter((a) => !a.startsWith('--cpu-prof')),
          ...(process.env[SITES_PROFILE_ENV]
            ? ['--cpu-prof', `--cpu-prof-dir=${process.env[SITES_PROFILE_ENV]}`]
            : []),
        ],
        stdio: ['ignore', 2, 2, 'ipc'],
      });
      sites.push(child);
      child.on(
        'exit',
        (code) =>
          !closing && failure?.(new Error(`site process ${p + 1} exited with code ${code}`)),
      );
      let isPrepared: () => void = () => undefined;
      prepared.push(new Promise<void>((resolve) => (isPrepared = resolve)));
      readies.push(
        new Promise<string>((resolve) => {
          child.on('message', (m: FromSites) => {
            switch (m.type) {
              case 'prepared':
                isPrepared();
                break;
              case 'ready':
                resolve(m.bufferutil);
                break;
              case 'round.end': {
                const seen = partial.get(m.round) ?? { count: 0, bytes: 0, cpuMs: 0, spans: {} };
                seen.count++;
                seen.bytes += m.bytesToSites;
                seen.cpuMs += m.cpuMs;
                seen.spans = mergeSpans(seen.spans, m.spans);
                partial.set(m.round, seen);
                if (seen.count === P) {
                  partial.delete(m.round);
                  ends.shift()?.({
                    ...m,
                    bytesToSites: seen.bytes,
                    cpuMs: seen.cpuMs,
                    spans: seen.spans,
                  });
                }
                break;
              }
              case 'site.error':
                progress(`site ${m.site}: ${m.code}: ${m.message}`);
                if (m.fatal) failure?.(new Error(`site ${m.site} failed: ${m.code}: ${m.message}`));
                break;
            }
          });
        }),
      );
      child.send({
        type: 'setup',
        wsUrl: agg.wsUrl,
        federationId: fed.id,
        identities: identities.slice(first, last),
        first,
        parameters,
      } satisfies ToSites);
    }
    await Promise.race([Promise.all(prepared), failed]);
    await opts.beforeConnect?.();
    const t0 = performance.now();
    for (const child of sites) child.send({ type: 'connect' } satisfies ToSites);
    siteBufferUtil = [...new Set(await Promise.race([Promise.all(readies), failed]))].join(' | ');
    connectMs = performance.now() - t0;
  } catch (e) {
    // A process that would not start or set up: stop the ones that did.
    await close();
    throw e;
  }

  const runRound = async (): Promise<RoundFigures> => {
    const counterBefore = await bytesReceivedCounter(agg.url);
    const end = new Promise<Extract<FromSites, { type: 'round.end' }>>((resolve) =>
      ends.push(resolve),
    );
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    const run = await api.post<{ id: string }>(`/api/v1/federations/${fed.id}/runs`, {
      rounds: 1,
    });
    const ended = await Promise.race([end, failed, timeout(700_000, 'the round to end')]);
    const wallMs = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    if (ended.outcome !== 'committed')
      throw new Error(`round ${ended.round} ${ended.outcome}: ${ended.reason}`);
    await waitForRunEnd(api, fed.id, run.id);
    const counterAfter = await bytesReceivedCounter(agg.url);
    const round = await api.get<RoundView>(`/api/v1/federations/${fed.id}/rounds/${ended.round}`);
    const at = new Map(round.events.map((e) => [e.state, Date.parse(e.at)]));
    const phaseSpans = (secureAggregation ? SECURE_PHASES : PHASES).map(
      ([from, to, name]): [string, number, number] => [
        name,
        at.get(from) ?? NaN,
        at.get(to) ?? NaN,
      ],
    );
    const phasesMs = Object.fromEntries(phaseSpans.map(([name, s, e]) => [name, e - s]));
    const mbReceived = (round.metrics?.bytesReceived ?? NaN) / MB;
    return {
      round: round.number,
      wallMs,
      aggregatorMs: round.durationMs ?? NaN,
      mbReceived,
      mbReceivedCounter: (counterAfter - counterBefore) / MB,
      mbSent: ended.bytesToSites / MB,
      mbPerS: mbReceived / (wallMs / 1000),
      aggregatorCpuMs: (cpu.user + cpu.system) / 1000,
      sitesCpuMs: ended.cpuMs,
      phasesMs,
      phaseSpans,
      statisticsMs: spanMs(ended.spans.statistics),
      evaluationMs: spanMs(ended.spans.evaluation),
    };
  };
  return { secureAggregation, siteBufferUtil, connectMs, runRound, close };
}

/** A progress line on stderr (stdout carries the table or the --json object). */
export function progress(line: string): void {
  process.stderr.write(`${line}\n`);
}

function spanMs(span: Span | undefined): number {
  return span ? span.end - span.start : NaN;
}

async function bytesReceivedCounter(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = /^confide_bytes_received_total (\S+)$/m.exec(text);
  return m ? Number(m[1]) : NaN;
}

async function waitForRunEnd(
  api: { get<T>(path: string): Promise<T> },
  federationId: string,
  runId: string,
): Promise<void> {
  const end = Date.now() + 60_000;
  for (;;) {
    const runs = await api.get<Array<{ id: string; status: string; reason: string | null }>>(
      `/api/v1/federations/${federationId}/runs`,
    );
    const run = runs.find((r) => r.id === runId);
    if (run && run.status !== 'running') {
      if (run.status !== 'completed') throw new Error(`run ${runId} ${run.status}: ${run.reason}`);
      return;
    }
    if (Date.now() > end) throw new Error(`run ${runId} did not end within 60 s of its round`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function timeout(ms: number, what: string): Promise<never> {
  return new Promise((_, reject) =>
    setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms).unref(),
  );
}
