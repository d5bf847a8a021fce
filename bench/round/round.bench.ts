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
import {
  MaskWorkerPool,
  SecAggClient,
  fromBase64 as fromB64,
  type SecAggParams,
} from '@confide/secure-aggregation';
import type { RoundSecAgg } from '@confide/protocol';
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import os from 'node:os';
import { dirname, join, relative, sep } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { intOption, parseFlags, runBenchmark, UsageError } from '../support/cli';
import { evaluationVector, type EvaluationLayout, type ModelSpec } from '@confide/ml/spec';
import {
  challengeBytes,
  encodeFrame,
  encodeFrameInPlace,
  FRAME_HEADER_ROOM,
  generateIdentity,
  PROTOCOL_VERSION,
  signLogin,
  verifyServerBytes,
  verifyServerMessage,
  type IdentityKeyPair,
} from '@confide/protocol';
import { SiteSum } from '../../apps/client-node/src/site-sum';

const ROLE_ENV = 'CONFIDE_BENCH_ROLE';
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
// Messages between the driver and the site process

interface SiteSetup {
  type: 'setup';
  wsUrl: string;
  federationId: string;
  identities: IdentityKeyPair[];
  /** The index of identities[0] among all sites (site k trains on 100 + k records). */
  first: number;
  parameters: number;
}
/** The parts of a round the sites time themselves: the aggregator records no round state for them. */
type SitePhase = 'statistics' | 'evaluation';
/** Epoch ms from the first site receiving a part's request to the last site sending its last answer. */
interface Span {
  start: number;
  end: number;
}
type Spans = Partial<Record<SitePhase, Span>>;
type ToSites = SiteSetup | { type: 'close' };
type FromSites =
  | { type: 'ready'; bufferutil: string }
  | {
      type: 'round.end';
      round: number;
      outcome: string;
      reason: string | null;
      bytesToSites: number;
      /** CPU time of this site process (all its threads) since the previous round ended. */
      cpuMs: number;
      spans: Spans;
    }
  | { type: 'site.error'; site: number; code: string; message: string; fatal: boolean };

/** The spans of two site processes as one: the earlier start, the later end. */
function mergeSpans(a: Spans, b: Spans): Spans {
  const out: Spans = { ...a };
  for (const phase of ['statistics', 'evaluation'] as const) {
    const x = a[phase];
    const y = b[phase];
    if (x && y) out[phase] = { start: Math.min(x.start, y.start), end: Math.max(x.end, y.end) };
    else if (y) out[phase] = y;
  }
  return out;
}

// ------------------------------------------------------------------------------------------------
// The synthetic sites (child process)

/** A site's statistics vector [rows, sums, sums of squares]: 100 rows of mean 0, variance 1. */
function unitStatistics(features: number): Float64Array {
  const v = new Float64Array(1 + 2 * features);
  v[0] = 100;
  v.fill(100, 1 + features);
  return v;
}

/** A site's evaluation counts: 20 held-out rows, 16 of them predicted right. */
function fixedEvaluation(layout: EvaluationLayout): Float64Array {
  const rows = 20;
  const k = layout.classes;
  const scores = new Float64Array(rows * k);
  const labels = new Int32Array(rows);
  for (let i = 0; i < rows; i++) {
    const label = i % k;
    const predicted = i < 16 ? label : (label + 1) % k;
    labels[i] = label;
    for (let c = 0; c < k; c++) scores[i * k + c] = c === predicted ? 0.7 : 0.3 / (k - 1);
  }
  return evaluationVector(scores, labels, layout, { perSite: false });
}

/** A site's part in a statistics or evaluation sum, and what it sent and logged. */
interface SumPart {
  sum: SiteSum;
  tally: { answers: number; lastLog: string; inputSet: boolean };
}

async function runSites(): Promise<void> {
  const send = (m: FromSites): void => void process.send!(m);
  const setup = await new Promise<SiteSetup>((resolve) =>
    process.once('message', (m: ToSites) => m.type === 'setup' && resolve(m)),
  );
  const n = setup.identities.length;
  const first = setup.first;
  // Distinct random updates, small like real deltas; generated before any round starts.
  const updates = setup.identities.map(() => {
    const u = new Float32Array(setup.parameters);
    for (let i = 0; i < u.length; i++) u[i] = (Math.random() - 0.5) * 1e-3;
    return u;
  });
  const ended = new Map<number, number>();
  const spans = new Map<number, Spans>();
  const maskPool = new MaskWorkerPool(1);
  const siteIds: string[] = [];
  const serverKeys: string[] = [];
  const secure: Array<{ client: SecAggClient; weight: number } | undefined> = [];
  const sums = setup.identities.map(() => new Map<SitePhase, SumPart>());
  let bytesToSites = 0;
  let cpuMark = process.cpuUsage();
  const sockets: WebSocket[] = [];

  const now = (): number => performance.timeOrigin + performance.now();
  const began = (round: number, phase: SitePhase): void => {
    const s = spans.get(round) ?? {};
    spans.set(round, s);
    const t = now();
    s[phase] ??= { start: t, end: t };
  };
  const answered = (round: number, phase: SitePhase): void => {
    const span = spans.get(round)?.[phase];
    if (span) span.end = Math.max(span.end, now());
  };

  const headerOf = (data: Buffer): Record<string, unknown> => {
    // Only the header is needed; the payload (the global model) is not decoded.
    const len = data.readUInt32LE(4);
    return JSON.parse(data.toString('utf8', 8, 8 + len)) as Record<string, unknown>;
  };

  await Promise.all(
    setup.identities.map(
      (identity, local) =>
        new Promise<void>((resolve, reject) => {
          const k = first + local;
          const ws = new WebSocket(setup.wsUrl, {
            perMessageDeflate: false,
            maxPayload: 1024 * 1024 * 1024,
          });
          sockets.push(ws);
          const json = (m: Record<string, unknown>): void =>
            ws.send(JSON.stringify({ v: PROTOCOL_VERSION, id: randomUUID(), ...m }));
          const fail = (code: string, message: string): void =>
            send({ type: 'site.error', site: k, code, message, fatal: true });
          // As the client node does, every message after the challenge must carry the signature of
          // the key the challenge proved (frames: their header; the payload's hash is not checked,
          // as the payload is not decoded).
          const signed = (m: Record<string, unknown>): boolean => {
            if (verifyServerMessage(serverKeys[local] ?? '', m)) return true;
            fail('BAD_SERVER_SIGNATURE', `${String(m['type'])} is not signed by the aggregator`);
            return false;
          };
          // Statistics and evaluation sums run as the client node runs them (SiteSum).
          const joinSum = (
            phase: SitePhase,
            m: Record<string, unknown>,
            info: RoundSecAgg,
            modelHash: string,
            values: Float64Array | undefined,
          ): void => {
            const round = Number(m['round']);
            const tally = { answers: 0, lastLog: '', inputSet: values !== undefined };
            sums[local]!.get(phase)?.sum.destroy();
            try {
              const sum = new SiteSum(
                {
                  kind: phase,
                  siteId: siteIds[local]!,
                  identitySecretKey: identity.secretKey,
                  info,
                  runId: String(m['runId']),
                  round,
                  modelHash,
                  // The protocol's own floor; a real site's policy may ask for more survivors.
                  minSurvivors: (info.params as unknown as SecAggParams).threshold,
                  sendJson: (msg) => {
                    tally.answers++;
                    json(msg);
                    if (msg['type'] === 'secagg.unmasked') answered(round, phase);
                  },
                  sendBinary: (frame) => {
                    tally.answers++;
                    ws.send(frame, { binary: true });
                  },
                  release: () => Promise.resolve(undefined),
                  refuse: (step, e) => fail('SUM_REFUSED', `${step}: ${(e as Error).message}`),
                  log: (line) => (tally.lastLog = line),
                },
                values,
              );
              sums[local]!.set(phase, { sum, tally });
              sum.start();
            } catch (e) {
              fail('SUM_FAILED', `cannot join the ${phase} sum: ${(e as Error).message}`);
            }
          };
          const stepSum = (m: Record<string, unknown>): void => {
            const phase = m['sum'] as SitePhase;
            const part = sums[local]!.get(phase);
            if (!part) {
              fail('SUM_FAILED', `${String(m['type'])} for a ${phase} sum this site is not in`);
              return;
            }
            const before = part.tally.answers;
            // Key shares that come before the site's vector are answered once the vector is set.
            const deferred = m['type'] === 'secagg.deliver' && !part.tally.inputSet;
            part.sum.step(m as unknown as Parameters<SiteSum['step']>[0]).then(
              () => {
                // Every step is answered; one SiteSum refused (and logged) is not.
                if (part.tally.answers === before && !deferred) {
                  fail('SUM_REFUSED', part.tally.lastLog);
                } else if (m['type'] === 'secagg.unmask') sums[local]!.delete(phase);
              },
              (e: unknown) => fail('SUM_FAILED', String(e)),
            );
          };
          ws.on('error', reject);
          ws.on('close', (code, reason) => {
            if (code !== 1000 && code !== 1005) {
              send({
                type: 'site.error',
                site: k,
                code: `CLOSE_${code}`,
                message: reason.toString(),
                fatal: true,
              });
            }
          });
          ws.on('message', (data: Buffer, isBinary: boolean) => {
            bytesToSites += data.length;
            if (isBinary) {
              const h = headerOf(data);
              if (!signed(h)) return;
              const info = h['secureAggregation'] as RoundSecAgg | null;
              if (h['type'] === 'round.train' && info) {
                // Secure aggregation: advertise now; the masked update goes out once shares arrive.
                secure[local]?.client.destroy();
                const client = new SecAggClient({
                  siteId: siteIds[local]!,
                  identitySecretKey: fromB64(identity.secretKey, 64),
                  roster: new Map(info.roster.map((r) => [r.siteId, fromB64(r.publicKey, 32)])),
                  runId: String(h['runId']),
                  round: Number(h['round']),
                  modelHash: String(h['modelHash']),
                  params: info.params as unknown as SecAggParams,
                  vectorLength: info.vectorLength,
                });
                // The weight (records over the round's public normaliser) travels masked.
                secure[local] = { client, weight: Math.min(1, (100 + k) / info.weightNormalizer) };
                json({
                  type: 'secagg.advertise',
                  runId: h['runId'],
                  round: h['round'],
                  sum: 'update',
                  advertisement: client.advertise(),
                });
              } else if (h['type'] === 'round.train') {
                const header = {
                  v: PROTOCOL_VERSION,
                  type: 'round.update',
                  id: randomUUID(),
                  runId: h['runId'],
                  round: h['round'],
                  numExamples: 100 + k,
                  trainLoss: 0.5,
                };
                ws.send(encodeFrame(header, updates[local]!), { binary: true });
              } else if (h['type'] === 'round.evaluate') {
                const round = Number(h['round']);
                began(round, 'evaluation');
                const open = sums[local]!.get('evaluation');
                if (info && open) {
                  // Opened with sum.open while the update was unmasked: only the vector is new.
                  open.tally.inputSet = true;
                  const layout = h['evaluation'] as EvaluationLayout;
                  void open.sum.setInput(fixedEvaluation(layout), () => Promise.resolve(undefined));
                } else if (info) {
                  const layout = h['evaluation'] as EvaluationLayout;
                  const context = `evaluation/${String(h['runId'])}/${String(h['round'])}`;
                  joinSum('evaluation', h, info, context, fixedEvaluation(layout));
                } else {
                  json({
                    type: 'round.metrics',
                    runId: h['runId'],
                    round: h['round'],
                    modelVersionId: h['modelVersionId'],
                    metrics: { loss: 0.5, accuracy: 0.8, auc: 0.85, f1: 0.7, numExamples: 20 },
                  });
                  answered(round, 'evaluation');
                }
              }
              return;
            }
            const m = JSON.parse(data.toString('utf8')) as Record<string, unknown>;
            if (m['type'] === 'challenge') {
              const serverKey = String(m['serverKey']);
              const serverId = String(m['serverId']);
              const nonce = String(m['nonce']);
              if (
                !verifyServerBytes(serverKey, challengeBytes(serverId, nonce, serverKey), m['sig'])
              ) {
                fail('BAD_SERVER_SIGNATURE', 'the challenge is not signed by the key it announces');
                return;
              }
              serverKeys[local] = serverKey;
              json({
                type: 'login',
                federationId: setup.federationId,
                publicKey: identity.publicKey,
                nonce,
                clientNonce: randomBytes(32).toString('base64'),
                signature: signLogin(identity, serverId, nonce, setup.federationId, serverKey),
                client: 'confide-round-bench',
              });
              return;
            }
            if (!signed(m)) return;
            if (String(m['type']).startsWith('secagg.') && m['sum'] !== 'update') {
              stepSum(m);
              return;
            }
            const s = secure[local];
            const ref = { runId: m['runId'], round: m['round'] };
            switch (m['type']) {
              case 'secagg.advertisements':
                json({
                  type: 'secagg.shares',
                  ...ref,
                  sum: 'update',
                  shares: s!.client.shareKeys(m['advertisements'] as unknown[]),
                });
                // As the client node does: the masks expand while the shares go round, with room
                // before them for the frame header.
                s!.client.precomputeMasksOn(maskPool, { reserveBefore: FRAME_HEADER_ROOM });
                break;
              case 'secagg.deliver': {
                // As the client node does: the masks are added on a worker thread; the record count
                // and the training loss stay inside the masked vector.
                s!.client.receiveShares(m['shares'] as unknown[]);
                s!.client
                  .maskWeightedUpdateOn(maskPool, updates[local]!, s!.weight)
                  .then((masked) => {
                    const header = {
                      v: PROTOCOL_VERSION,
                      type: 'round.update',
                      id: randomUUID(),
                      ...ref,
                    };
                    ws.send(encodeFrameInPlace(header, masked), { binary: true });
                  })
                  .catch((e: unknown) => fail('MASK_FAILED', String(e)));
                break;
              }
              case 'secagg.unmask':
                json({
                  type: 'secagg.unmasked',
                  ...ref,
                  sum: 'update',
                  response: s!.client.unmask(m['request']),
                });
                s!.client.destroy();
                secure[local] = undefined;
                break;
              case 'welcome':
                siteIds[local] = String(m['siteId']);
                resolve();
                break;
              case 'sum.open': {
                // The evaluation sum's keys, agreed before the model is there (as the node does).
                const info = m['secureAggregation'] as RoundSecAgg;
                const context = `evaluation/${String(m['runId'])}/${String(m['round'])}`;
                joinSum('evaluation', m, info, context, undefined);
                break;
              }
              case 'stats.request': {
                // 100 rows of mean 0 and variance 1 per feature.
                const round = Number(m['round']);
                const d = Number(m['features']);
                const info = m['secureAggregation'] as RoundSecAgg | null;
                began(round, 'statistics');
                if (info) {
                  // Bound to the federation as the client node binds it.
                  const context = `statistics/${String(m['federationId'])}`;
                  joinSum('statistics', m, info, context, unitStatistics(d));
                } else {
                  json({
                    type: 'stats.report',
                    count: 100,
                    sum: new Array<number>(d).fill(0),
                    sumSq: new Array<number>(d).fill(100),
                  });
                  answered(round, 'statistics');
                }
                break;
              }
              case 'round.end': {
                for (const part of sums[local]!.values()) part.sum.destroy();
                sums[local]!.clear();
                const round = Number(m['round']);
                const seen = (ended.get(round) ?? 0) + 1;
                ended.set(round, seen);
                if (seen === n) {
                  send({
                    type: 'round.end',
                    round,
                    outcome: String(m['outcome']),
                    reason: (m['reason'] as string | null) ?? null,
                    bytesToSites,
                    cpuMs: ((): number => {
                      const c = process.cpuUsage(cpuMark);
                      cpuMark = process.cpuUsage();
                      return (c.user + c.system) / 1000;
                    })(),
                    spans: spans.get(round) ?? {},
                  });
                  spans.delete(round);
                  bytesToSites = 0;
                }
                break;
              }
              case 'error':
                send({
                  type: 'site.error',
                  site: k,
                  code: String(m['code']),
                  message: String(m['message']),
                  fatal: m['fatal'] === true,
                });
                if (m['fatal'] === true) reject(new Error(`site ${k}: ${String(m['message'])}`));
                break;
              default:
                break;
            }
          });
        }),
    ),
  );
  send({ type: 'ready', bufferutil: bufferUtilState() });
  process.on('message', (m: ToSites) => {
    if (m.type !== 'close') return;
    let open = sockets.length;
    for (const ws of sockets) {
      ws.once('close', () => --open === 0 && process.exit(0));
      ws.close(1000);
    }
  });
}

/**
 * Whether each copy of ws loaded in this process masks and unmasks with the native bufferutil
 * (ws falls back to a JS loop without it, or when WS_NO_BUFFER_UTIL is set).
 */
function bufferUtilState(): string {
  const require = createRequire(import.meta.url);
  const http = require('node:http') as { websocketMask?: unknown };
  if (typeof http.websocketMask === 'function') return 'not needed (node:http has websocketMask)';
  const copies = Object.values(require.cache).filter(
    (m): m is NodeJS.Module => !!m && m.id.endsWith(`${sep}ws${sep}lib${sep}buffer-util.js`),
  );
  if (!copies.length) return 'ws not loaded';
  return copies
    .map((m) => {
      const dir = dirname(dirname(m.id));
      const version = (require(join(dir, 'package.json')) as { version: string }).version;
      const where = relative(process.cwd(), dir);
      const util = m.children.find((c) => c.id.includes(`${sep}bufferutil${sep}`));
      const state = !util
        ? process.env['WS_NO_BUFFER_UTIL']
          ? 'off (WS_NO_BUFFER_UTIL)'
          : 'not loaded'
        : String((util.exports as { mask?: unknown }).mask).includes('[native code]')
          ? 'native'
          : 'JS fallback';
      return `ws ${version} (${where}): ${state}`;
    })
    .join('; ');
}

// ------------------------------------------------------------------------------------------------
// The driver (this process): aggregator, REST set-up, runs, figures

interface RoundFigures {
  round: number;
  wallMs: number;
  aggregatorMs: number;
  mbReceived: number;
  mbReceivedCounter: number;
  mbSent: number;
  mbPerS: number;
  /** CPU time of this process (aggregator, in-memory PGlite, driver; all threads) during the round. */
  aggregatorCpuMs: number;
  /** CPU time of all site processes during the round (real sites would each use their own). */
  sitesCpuMs: number;
  phasesMs: Record<string, number>;
  /** The feature statistics, timed at the sites (see Span); NaN in a round without them. */
  statisticsMs: number;
  /** The evaluation, timed at the sites (see Span); NaN in a round without one. */
  evaluationMs: number;
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
/**
 * The phase each part the sites time falls in: the statistics (once per federation) between
 * 'scheduled' and the next transition, the evaluation before 'evaluated'; both are secure sums under
 * secure aggregation.
 */
const SITE_PHASE_IN: Readonly<Record<string, SitePhase>> = {
  'select+load+encode': 'statistics',
  'store+evaluate': 'evaluation',
};

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
      const child = fork(launcher, [fileURLToPath(import.meta.url)], {
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
// Figures

interface Stat {
  median: number;
  min: number;
}

function stat(xs: number[]): Stat {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { median, min: s[0]! };
}

function summarise(rounds: RoundFigures[]) {
  const of = (f: (r: RoundFigures) => number): Stat => stat(rounds.map(f));
  return {
    wallMs: of((r) => r.wallMs),
    aggregatorMs: of((r) => r.aggregatorMs),
    mbReceived: of((r) => r.mbReceived),
    mbReceivedCounter: of((r) => r.mbReceivedCounter),
    mbSent: of((r) => r.mbSent),
    mbPerS: of((r) => r.mbPerS),
    aggregatorCpuMs: of((r) => r.aggregatorCpuMs),
    sitesCpuMs: of((r) => r.sitesCpuMs),
    evaluationMs: of((r) => r.evaluationMs),
    phasesMs: Object.fromEntries(
      Object.keys(rounds[0]?.phasesMs ?? {}).map((name) => [
        name,
        of((r) => r.phasesMs[name] ?? NaN),
      ]),
    ),
  };
}

function fmt(x: number): string {
  if (!Number.isFinite(x)) return '-';
  return x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2);
}

function printTable(report: {
  secureAggregation: boolean;
  statisticsMs: number;
  parameters: {
    sites: number;
    parameters: number;
    reps: number;
    warmup: number;
    interleaved: boolean;
    database: string;
  };
  environment: {
    node: string;
    platform: string;
    cpus: number;
    cpuModel: string;
    bufferutil: { aggregator: string; sites: string };
  };
  summary: ReturnType<typeof summarise>;
}): void {
  const { parameters: p, environment: e, summary: s } = report;
  const how = report.secureAggregation ? 'sum' : 'in the clear';
  const siteRows: Record<SitePhase, [string, Stat]> = {
    statistics: [
      `    of which statistics ${how}, first round only (ms)`,
      { median: report.statisticsMs, min: report.statisticsMs },
    ],
    evaluation: [`    of which evaluation ${how} (ms)`, s.evaluationMs],
  };
  const lines = [
    `round benchmark: ${p.sites} sites x ${p.parameters.toLocaleString('en-US')} parameters, ` +
      `${p.reps} measured round(s) after ${p.warmup} warm-up` +
      `${p.interleaved ? ', interleaved with the other mode' : ''}, ${p.database}`,
    `node ${e.node} on ${e.platform}, ${e.cpus} CPU(s) (${e.cpuModel})`,
    `bufferutil, aggregator process: ${e.bufferutil.aggregator}`,
    `bufferutil, site process: ${e.bufferutil.sites}`,
    '',
  ];
  const rows: Array<[string, Stat]> = [
    ['wall time, run start to committed (ms)', s.wallMs],
    ['aggregator round duration (ms)', s.aggregatorMs],
    ...Object.entries(s.phasesMs).flatMap(([name, st]): Array<[string, Stat]> => {
      const inside = SITE_PHASE_IN[name];
      return [[`  phase ${name} (ms)`, st], ...(inside ? [siteRows[inside]] : [])];
    }),
    ['received by aggregator, round (MB)', s.mbReceived],
    ['received by aggregator, socket counter (MB)', s.mbReceivedCounter],
    ['sent to sites (MB)', s.mbSent],
    ['received / wall time (MB/s)', s.mbPerS],
    ['CPU, aggregator process, all threads (ms)', s.aggregatorCpuMs],
    ['CPU, all site processes (ms)', s.sitesCpuMs],
  ];
  const w = Math.max(...rows.map(([n]) => n.length));
  lines.push(`${'figure'.padEnd(w)}  ${'median'.padStart(9)}  ${'min'.padStart(9)}`);
  for (const [name, st] of rows) {
    lines.push(`${name.padEnd(w)}  ${fmt(st.median).padStart(9)}  ${fmt(st.min).padStart(9)}`);
  }
  lines.push(
    '',
    "MB = 10^6 bytes. Phases: time between the round's recorded transitions (transaction starts).",
    'Statistics, evaluation: from the first site receiving the request to the last site sending its last',
    "  answer (stats.report, round.metrics; a secure sum: secagg.unmasked), by the sites' clocks. The",
    '  statistics run once per federation, in its first round (a warm-up round unless --warmup 0).',
    `CPU: user + system time per round; the sites share this machine's ${os.availableParallelism()} cores with the aggregator.`,
  );
  process.stdout.write(`${lines.join('\n')}\n`);
}

// ------------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  if (process.env[ROLE_ENV] === 'sites') return runSites();
  await runBenchmark(USAGE, parseOptions, runDriver);
}

try {
  await main();
} catch (e) {
  process.stderr.write(`round benchmark failed: ${(e as Error).stack ?? String(e)}\n`);
  process.exitCode = 1;
}
