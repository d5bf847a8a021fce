/**
 * One aggregation round, end to end over loopback WebSockets, with synthetic sites and no training.
 *
 *   node bin/run-ts.js bench/round/round.bench.ts [--sites 10] [--params 1000000] [--reps 9] [--json]
 *
 * The aggregator (NestJS, in-memory PGlite) runs in this process. The sites run in child processes
 * (raw `ws` clients, so their masking and copying does not share the aggregator's event loop; one
 * per core by default, as real sites mask on machines of their own, in parallel): they
 * log in, check the aggregator's signature on every message, answer `stats.request` with unit
 * statistics, answer `round.train` at once with a pre-generated random update and `round.evaluate`
 * with fixed metrics. Under secure aggregation a site masks as the client node does (masks expanded
 * on one worker thread per site process as soon as the site has shared its keys, the update
 * quantized into them when the shares come back, the frame header written in front of them), and
 * its statistics and evaluation counts join secure sums as the client node's SiteSum runs them.
 * Each repetition is a run of one round; the first `--warmup` runs of each mode (which include the
 * one-off statistics phase, and in which V8 compiles the round's hot paths: the first rounds of a
 * fresh process run up to 1.5x slower) are not counted.
 *
 * With `--secure both` (the default) the two modes run on one aggregator, their rounds interleaved
 * (without, with, with, without, ...), each mode with its own federation and site processes: both
 * see the same process, heap, database and machine state. (Measured one mode after the other, the
 * mode that ran second found a warm process and came out 20-30% faster.)
 *
 * Besides wall time and phases it prints the CPU time per round of this process (aggregator, PGlite,
 * driver) and of all site processes together: on a machine with fewer cores than sites the sites'
 * masking competes with the aggregator for the same cores, which real sites, on machines of their
 * own, do not; the two CPU figures show how much of the ratio that is.
 */
import { fork, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { intOption, parseFlags, runBenchmark, UsageError } from '../support/cli';
import type { ModelSpec } from '@confide/ml/spec';
import { generateIdentity } from '@confide/protocol';
import {
  bufferUtilState,
  mergeSpans,
  ROLE_ENV,
  type FromSites,
  type Span,
  type Spans,
  type ToSites,
} from './sites';
import { fmt, printTable, summarise, type RoundFigures } from './report';

const MB = 1e6;

// ------------------------------------------------------------------------------------------------
// Options

interface Options {
  sites: number;
  params: number;
  reps: number;
  warmup: number;
  json: boolean;
  verbose: boolean;
  /** Rounds with secure aggregation, without, or both side by side (the ratio). */
  secure: 'on' | 'off' | 'both';
  /** Processes the synthetic sites are spread over (real sites run on machines of their own). */
  siteProcesses: number;
}

const USAGE = `Usage: node bin/run-ts.js bench/round/round.bench.ts [options]

Measures one FedAvg round (train, aggregate, evaluate, commit) with synthetic sites over loopback
WebSockets against an aggregator with in-memory PGlite. No training: sites answer at once. Under
secure aggregation the one-off feature statistics and every evaluation are secure sums too.

Options:
  --sites N    synthetic sites, all selected every round (1-200, default 10)
  --params M   model parameters, approximately: an MLP (or a logistic model under 1002)
               is sized to about M (2-50000000, default 1000000)
  --reps R     measured rounds of each mode (1-1000, default 9)
  --warmup W   rounds of each mode run first and not counted (0-100, default 5)
  --secure S   on | off | both (default both: rounds with and without secure aggregation
               interleaved on one aggregator, and the ratio of their medians,
               roundRatio = with / without)
  --site-processes P
               spread the synthetic sites over P processes (1-sites; default: the number of
               cores, at most --sites), as real sites mask on machines of their own
  --json       print one JSON object on stdout instead of the table
  --verbose    aggregator log lines on stderr
  --help       this text
`;

function parseOptions(argv: string[]): Options | 'help' {
  const values = parseFlags(argv, {
    sites: { type: 'string' },
    params: { type: 'string' },
    reps: { type: 'string' },
    warmup: { type: 'string' },
    json: { type: 'boolean', default: false },
    secure: { type: 'string', default: 'both' },
    'site-processes': { type: 'string' },
    verbose: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  });
  if (values.help) return 'help';
  const sites = intOption('sites', values.sites, 10, 1, 200);
  return {
    sites,
    siteProcesses: intOption(
      'site-processes',
      values['site-processes'],
      Math.min(sites, os.availableParallelism()),
      1,
      sites,
    ),
    params: intOption('params', values.params, 1_000_000, 2, 50_000_000),
    reps: intOption('reps', values.reps, 9, 1, 1000),
    warmup: intOption('warmup', values.warmup, 5, 0, 100),
    json: values.json,
    verbose: values.verbose,
    secure: ((): Options['secure'] => {
      if (values.secure === 'on' || values.secure === 'off' || values.secure === 'both')
        return values.secure;
      throw new UsageError(`--secure must be on, off or both, got "${String(values.secure)}"`);
    })(),
  };
}

/** A model spec with about `params` parameters and few input features (the stats phase is JSON). */
function specFor(params: number): ModelSpec {
  if (params <= 1001) return { kind: 'logistic', inputDim: params - 1 };
  const inputDim = 1000;
  // mlp inputDim -> h -> 1: inputDim*h + h + h + 1 parameters.
  const hidden = Math.max(1, Math.round((params - 1) / (inputDim + 2)));
  return { kind: 'mlp', inputDim, hidden: [hidden], output: 'binary' };
}
// ------------------------------------------------------------------------------------------------
// The driver (this process): aggregator, REST set-up, runs, figures

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
const PHASES = [
  ['scheduled', 'collecting', 'select+load+encode'],
  ['collecting', 'aggregated', 'updates+aggregate'],
  ['aggregated', 'evaluated', 'store+evaluate'],
  ['evaluated', 'committed', 'commit'],
] as const;
/** With secure aggregation the collection splits into its protocol rounds (advertise and share first). */
const SECURE_PHASES = [
  ['scheduled', 'advertising', 'select+load+encode'],
  ['advertising', 'sharing', 'train frame+advertise'],
  ['sharing', 'collecting', 'share keys'],
  ['collecting', 'unmasking', 'mask+upload'],
  ['unmasking', 'aggregated', 'unmask+aggregate'],
  ['aggregated', 'evaluated', 'store+evaluate'],
  ['evaluated', 'committed', 'commit'],
] as const;

async function runDriver(opts: Options): Promise<void> {
  const modes = opts.secure === 'both' ? [false, true] : [opts.secure === 'on'];
  const reports = await measure(opts, modes);
  const median = (r: (typeof reports)[number]): number => r.summary.wallMs.median;
  const roundRatio = reports.length === 2 ? median(reports[1]!) / median(reports[0]!) : null;
  if (opts.json) {
    process.stdout.write(
      `${JSON.stringify({ benchmark: 'round', modes: reports, roundRatio, roundRatioTarget: 1.5 })}\n`,
    );
    return;
  }
  for (const r of reports) {
    process.stdout.write(
      `\n=== ${r.secureAggregation ? 'WITH' : 'WITHOUT'} secure aggregation ===\n`,
    );
    printTable(r);
  }
  if (roundRatio !== null) {
    process.stdout.write(
      `\nroundRatio (median wall time with / without secure aggregation): ${roundRatio.toFixed(2)} (target <= 1.5)\n`,
    );
  }
}

/** A progress line on stderr (stdout carries the table or the --json object). */
function progress(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** One federation of synthetic sites, with or without secure aggregation, ready to run rounds. */
interface Mode {
  secureAggregation: boolean;
  siteBufferUtil: string;
  /** Runs one round (one run of one round) and returns its figures. */
  runRound(): Promise<RoundFigures>;
  close(): Promise<void>;
}

/**
 * Both modes on one aggregator, their rounds interleaved (without, with, with, without, ...): the two
 * see the same process, heap, database and machine state, so neither is measured colder or on a
 * quieter machine than the other. Each mode has its own federation and site processes (idle while
 * the other mode runs).
 */
async function measure(opts: Options, modes: boolean[]) {
  // Imported here, not at the top, so the site process does not load tfjs and NestJS.
  const { parameterCount } = await import('@confide/ml/spec');
  const { startAggregator } = await import('@confide/aggregator');
  const spec = specFor(opts.params);
  const parameters = parameterCount(spec);
  const { ApiClient } = await import('../../apps/cli/src/api-client');

  const agg = await startAggregator({ log: opts.verbose ? progress : undefined });
  const started: Mode[] = [];
  try {
    const api = new ApiClient(agg.url, agg.initialAdminToken!);
    for (const secure of modes) {
      started.push(await startMode(opts, agg, api, spec, parameters, secure));
    }
    const measured = new Map<Mode, RoundFigures[]>(started.map((m) => [m, []]));
    // The federation's first round, warm-up or not: the only one with the statistics.
    const firstRound = new Map<Mode, RoundFigures>();
    for (let rep = 0; rep < opts.warmup + opts.reps; rep++) {
      // Alternate which mode goes first, so neither always follows the other.
      const order = rep % 2 === 0 ? started : [...started].reverse();
      for (const mode of order) {
        const figures = await mode.runRound();
        const warm = rep < opts.warmup;
        if (!warm) measured.get(mode)!.push(figures);
        if (rep === 0) firstRound.set(mode, figures);
        progress(
          `${warm ? 'warm-up' : `rep ${rep - opts.warmup + 1}/${opts.reps}`} ` +
            `${mode.secureAggregation ? 'with' : 'without'} secure aggregation: round ` +
            `${figures.round} ${fmt(figures.wallMs)} ms wall, ${fmt(figures.aggregatorMs)} ms ` +
            `aggregator, ${fmt(figures.mbReceived)} MB in`,
        );
      }
    }
    return started.map((mode) => {
      const rounds = measured.get(mode)!;
      return {
        secureAggregation: mode.secureAggregation,
        benchmark: 'round',
        parameters: {
          sites: opts.sites,
          siteProcesses: opts.siteProcesses,
          parameters,
          modelSpec: spec,
          reps: opts.reps,
          warmup: opts.warmup,
          interleaved: started.length > 1,
          database: agg.db.description,
        },
        environment: {
          node: process.version,
          platform: `${process.platform} ${process.arch}`,
          cpus: os.cpus().length,
          cpuModel: os.cpus()[0]?.model ?? 'unknown',
          bufferutil: { aggregator: bufferUtilState(), sites: mode.siteBufferUtil },
        },
        rounds,
        summary: summarise(rounds),
        statisticsMs: firstRound.get(mode)?.statisticsMs ?? NaN,
      };
    });
  } finally {
    for (const mode of started) await mode.close();
    await agg.close();
  }
}

/** Creates the federation of one mode, enrolls its sites and starts their processes. */
async function startMode(
  opts: Options,
  agg: { url: string; wsUrl: string },
  api: {
    get<T>(path: string): Promise<T>;
    post<T>(path: string, body?: unknown): Promise<T>;
  },
  spec: ModelSpec,
  parameters: number,
  secureAggregation: boolean,
): Promise<Mode> {
  const fed = await api.post<{ id: string; parameters: number }>('/api/v1/federations', {
    name: `round-bench-${secureAggregation ? 'secure' : 'plain'}-${Date.now()}`,
    modelSpec: spec,
    minSites: opts.sites,
    roundTimeoutSeconds: 600,
    evaluationTimeoutSeconds: 120,
    seed: 1,
    secureAggregation: { enabled: secureAggregation },
  });
  const identities = Array.from({ length: opts.sites }, () => generateIdentity());
  for (const [k, identity] of identities.entries()) {
    const site = await api.post<{ id: string }>(`/api/v1/federations/${fed.id}/sites`, {
      name: `site-${String(k + 1).padStart(3, '0')}`,
      publicKey: identity.publicKey,
    });
    await api.post(`/api/v1/federations/${fed.id}/sites/${site.id}/approve`);
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
  const readies: Array<Promise<string>> = [];
  let siteBufferUtil: string;
  try {
    for (let p = 0; p < P; p++) {
      const first = Math.floor((p * opts.sites) / P);
      const last = Math.floor(((p + 1) * opts.sites) / P);
      const child = fork(launcher, [fileURLToPath(new URL('./sites.ts', import.meta.url))], {
        env: { ...process.env, [ROLE_ENV]: 'sites' },
        stdio: ['ignore', 2, 2, 'ipc'],
      });
      sites.push(child);
      child.on(
        'exit',
        (code) =>
          !closing && failure?.(new Error(`site process ${p + 1} exited with code ${code}`)),
      );
      readies.push(
        new Promise<string>((resolve) => {
          child.on('message', (m: FromSites) => {
            switch (m.type) {
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
    siteBufferUtil = [...new Set(await Promise.race([Promise.all(readies), failed]))].join(' | ');
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
    const phasesMs = Object.fromEntries(
      (secureAggregation ? SECURE_PHASES : PHASES).map(([from, to, name]) => [
        name,
        (at.get(to) ?? NaN) - (at.get(from) ?? NaN),
      ]),
    );
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
      statisticsMs: spanMs(ended.spans.statistics),
      evaluationMs: spanMs(ended.spans.evaluation),
    };
  };
  return { secureAggregation, siteBufferUtil, runRound, close };
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
// ------------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  await runBenchmark(USAGE, parseOptions, runDriver);
}

try {
  await main();
} catch (e) {
  process.stderr.write(`round benchmark failed: ${(e as Error).stack ?? String(e)}\n`);
  process.exitCode = 1;
}
