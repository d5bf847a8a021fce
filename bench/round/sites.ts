/**
 * The synthetic sites of the round benchmark (round.bench.ts), in a child process the driver forks
 * with CONFIDE_BENCH_ROLE=sites: raw `ws` clients that log in, check the aggregator's signature on
 * every message and answer each round at once (see round.bench.ts for what they send).
 */
import {
  MaskWorkerPool,
  SecAggClient,
  fromBase64 as fromB64,
  type SecAggParams,
} from '@confide/secure-aggregation';
import type { RoundSecAgg } from '@confide/protocol';
import { randomBytes, randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import { dirname, join, relative, sep } from 'node:path';
import { performance } from 'node:perf_hooks';
import WebSocket from 'ws';
import { evaluationVector, type EvaluationLayout } from '@confide/ml/spec';
import {
  challengeBytes,
  encodeFrame,
  encodeFrameInPlace,
  FRAME_HEADER_ROOM,
  PROTOCOL_VERSION,
  signLogin,
  verifyServerBytes,
  verifyServerMessage,
  type IdentityKeyPair,
} from '@confide/protocol';
import { SiteSum } from '@confide/site-runtime';

/** Set in the environment of the forked site process. */
export const ROLE_ENV = 'CONFIDE_BENCH_ROLE';

// Messages between the driver and the site process

export interface SiteSetup {
  type: 'setup';
  wsUrl: string;
  federationId: string;
  identities: IdentityKeyPair[];
  /** The index of identities[0] among all sites (site k trains on 100 + k records). */
  first: number;
  parameters: number;
}
/** The parts of a round the sites time themselves: the aggregator records no round state for them. */
export type SitePhase = 'statistics' | 'evaluation';
/** Epoch ms from the first site receiving a part's request to the last site sending its last answer. */
export interface Span {
  start: number;
  end: number;
}
export type Spans = Partial<Record<SitePhase, Span>>;
/** setup, then (once every process answered 'prepared') connect, then close. */
export type ToSites = SiteSetup | { type: 'connect' } | { type: 'close' };
export type FromSites =
  /** Its updates are generated: it connects when told to. */
  | { type: 'prepared' }
  /** Every site of the process has logged in. */
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
export function mergeSpans(a: Spans, b: Spans): Spans {
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

export async function runSites(): Promise<void> {
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
  send({ type: 'prepared' });
  await new Promise<void>((resolve) =>
    process.once('message', (m: ToSites) => m.type === 'connect' && resolve()),
  );

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
                  shares: s!.client.shareKeys(m['advertisements']),
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
                    runId: m['runId'],
                    round,
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
export function bufferUtilState(): string {
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

// Forked by the driver with ROLE_ENV set: run the sites until it closes them.
if (process.env[ROLE_ENV] === 'sites') {
  try {
    await runSites();
  } catch (e) {
    process.stderr.write(`round benchmark sites failed: ${(e as Error).stack ?? String(e)}\n`);
    process.exitCode = 1;
  }
}
