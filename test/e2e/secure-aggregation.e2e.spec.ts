import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parameterCount, subsetRows, type ModelSpec } from '@confide/ml';
import { bytesToFloat32 } from '@confide/protocol';
import { clipL2 } from '@confide/differential-privacy';
import {
  parsePolicy,
  selectBackend,
  type ClientNodeOptions,
  type LocalRoundResult,
} from '@confide/client-node';
import type { RunningAggregator } from '@confide/aggregator';
import { ApiRequestError, type ApiClient } from '../../apps/cli/src/api-client';
import { databaseKind } from '../support/database';
import { dumpDatabase, longestNumberArray } from '../support/database-dump';
import {
  createFederation,
  enrolSites,
  featureBounds,
  startNode,
  testAggregator,
  waitUntil,
  type TestSite,
  listRounds,
} from '../support/federation';

interface RunView {
  id: string;
  status: string;
  reason: string | null;
  roundsDone: number;
}

/** Every update each node reported through `onUpdate`, by site name. */
type Reports = Map<string, LocalRoundResult[]>;

describe(`secure aggregation over real WebSockets (${databaseKind})`, () => {
  let env: Awaited<ReturnType<typeof testAggregator>>;
  let agg: RunningAggregator;
  let api: ApiClient;
  let cleanup: Array<() => void> = [];

  beforeAll(async () => {
    // What `confide node --backend auto` picks on a machine without tfjs-node: about 3x faster than
    // tfjs's plain-JS default, which matters for the 10M-parameter test.
    await selectBackend('wasm');
    env = await testAggregator();
    agg = env.agg;
    api = env.api;
  });
  afterEach(() => {
    for (const f of cleanup) f();
    cleanup = [];
  });
  afterAll(async () => {
    await env?.close();
  });

  /** Starts a node per site, recording each site's `onUpdate` reports; `extra(i)` adds options. */
  async function startNodes(
    fedId: string,
    sites: TestSite[],
    extra: (i: number) => Partial<ClientNodeOptions> = () => ({}),
  ): Promise<Reports> {
    const reports: Reports = new Map(sites.map((s) => [s.name, []]));
    await Promise.all(
      sites.map(async (s, i) => {
        const n = await startNode(agg, fedId, s, {
          ...extra(i),
          onUpdate: (r) => reports.get(s.name)!.push(r),
        });
        cleanup.push(() => n.node.stop());
      }),
    );
    return reports;
  }

  /**
   * Starts a run and waits for it to end. Nodes train in this process, and a long tfjs step can hold
   * the event loop past the HTTP keep-alive timeout, so a poll may meet a reset connection: retried.
   */
  async function runRounds(fedId: string, rounds = 1, timeoutMs = 60_000): Promise<RunView> {
    const run = await api.post<{ id: string }>(`/api/v1/federations/${fedId}/runs`, { rounds });
    return waitUntil(
      async () => {
        try {
          const runs = await api.get<RunView[]>(`/api/v1/federations/${fedId}/runs`);
          const r = runs.find((x) => x.id === run.id);
          return r && r.status !== 'running' ? r : undefined;
        } catch (e) {
          if (e instanceof ApiRequestError && e.code === 'UNREACHABLE') return undefined;
          throw e;
        }
      },
      timeoutMs,
      `run ${run.id} to end`,
    );
  }

  describe('dropouts', () => {
    const stages = [
      { stage: 'share', when: 'before sharing its keys' },
      { stage: 'mask', when: 'after sharing its keys, before sending its masked input' },
      { stage: 'unmask', when: 'after its masked input, before unmasking' },
    ] as const;
    for (const { stage, when } of stages) {
      it(`commits a 4-site round when one site vanishes ${when}, averaging exactly the updates included`, async () => {
        const fed = await createFederation(api, {
          localEpochs: 1,
          secureAggregation: { graph: 'complete', threshold: 3 },
        });
        const sites = await enrolSites(api, fed.id, 4);
        const leaver = sites[3]!;
        const reports = await startNodes(fed.id, sites, (i) => (i === 3 ? { dropAt: stage } : {}));
        expect(await runRounds(fed.id)).toMatchObject({ status: 'completed', roundsDone: 1 });

        const [round] = await listRounds(api, fed.id);
        expect(round!.state).toBe('committed');
        expect(round!.metrics!.secureAggregation).toMatchObject({
          threshold: 3,
          graph: 'complete',
          sites: 4,
          dropped: 1,
        });
        const { events } = await api.get<{ events: Array<{ state: string }> }>(
          `/api/v1/federations/${fed.id}/rounds/${round!.number}`,
        );
        expect(events.map((e) => e.state)).toEqual([
          'scheduled',
          'advertising',
          'sharing',
          'collecting',
          'unmasking',
          'aggregated',
          'evaluated',
          'committed',
        ]);
        const leaverView = round!.participants.find((p) => p.siteId === leaver.siteId)!;
        expect(leaverView.status).toBe(stage === 'unmask' ? 'submitted' : 'dropped');

        // A site that vanished at 'share' or 'mask' sent no input; at 'unmask' its masked input had
        // arrived and is unmasked from its neighbours' shares, so its update is in the average.
        expect(reports.get(leaver.name)).toHaveLength(stage === 'unmask' ? 1 : 0);
        const included = sites.filter((s) => s !== leaver || stage === 'unmask');
        const local = included.map((s) => reports.get(s.name)![0]!);
        const base = await api.modelWeights(fed.id, round!.baseModelVersionId);
        const got = await api.modelWeights(fed.id, round!.modelVersionId!);
        for (const l of local) expect(maxAbsDiff(l.globalWeights, base.weights)).toBe(0);
        const expected = weightedStep(
          base.weights,
          local.map((l) => l.update),
          local.map((l) => l.numExamples),
        );
        expect(maxAbsDiff(got.weights, expected)).toBeLessThan(1e-5);
      }, 60_000);
    }

    it('aborts the round with the reason when fewer than threshold sites survive, and stops the run', async () => {
      const fed = await createFederation(api, {
        localEpochs: 1,
        secureAggregation: { graph: 'complete', threshold: 3 },
      });
      const sites = await enrolSites(api, fed.id, 3);
      await startNodes(fed.id, sites, (i) => (i === 2 ? { dropAt: 'mask' } : {}));
      const ended = await runRounds(fed.id, 3);
      expect(ended).toMatchObject({ status: 'stopped', roundsDone: 0 });
      expect(ended.reason).toMatch(/round 1 aborted/);
      expect(ended.reason).toMatch(/threshold is 3/);
      const rounds = await listRounds(api, fed.id);
      expect(rounds).toHaveLength(1);
      expect(rounds[0]).toMatchObject({ state: 'aborted', modelVersionId: null });
      expect(rounds[0]!.reason).toMatch(/only 2 sites sent their masked input; the threshold is 3/);
      const leaver = rounds[0]!.participants.find((p) => p.siteId === sites[2]!.siteId)!;
      expect(leaver.status).toBe('dropped');
    }, 60_000);
  });

  it('shares keys while the sites train: the masks expand during training, not after it', async () => {
    const fed = await createFederation(api, {
      localEpochs: 40,
      secureAggregation: { graph: 'complete', threshold: 2 },
    });
    const sites = await enrolSites(api, fed.id, 3);
    const logs = new Map<string, string[]>(sites.map((s) => [s.name, []]));
    await startNodes(fed.id, sites, (i) => ({
      log: (line: string) => logs.get(sites[i]!.name)!.push(line),
    }));
    expect(await runRounds(fed.id)).toMatchObject({ status: 'completed', roundsDone: 1 });
    for (const s of sites) {
      const lines = logs.get(s.name)!;
      const shared = lines.findIndex((l) => /round 1: key shares sent/.test(l));
      const trained = lines.findIndex((l) =>
        /round 1: trained on .* waiting for key shares/.test(l),
      );
      // Each node handles its messages in order, but answers the advertisements at once: its key
      // shares left while it was still training (40 epochs), not after.
      expect(shared).toBeGreaterThanOrEqual(0);
      expect(trained).toBeGreaterThan(shared);
    }
    const [round] = await listRounds(api, fed.id);
    expect(round!.state).toBe('committed');
  }, 120_000);

  /*
   * What the aggregator stores must not reveal any single site's update. The masked vectors never
   * reach the database (only their running sum exists, in memory), and a masked vector is
   * indistinguishable from random, so there is nothing to search for it; what can be searched for is
   * the update itself. We read back every column of every row of every table in the aggregator's
   * database (tables listed from information_schema, so a table added later is covered too), as text
   * with bytea as hex, and check:
   *  (a) no value contains any site's update, nor its local weights (base + update, which give the
   *      update away since the base is stored), as float32 bytes in hex or base64, or as the decimal
   *      numbers JSON would hold;
   *  (b) the only vector-shaped values (bytea, or numeric SQL/JSON arrays as long as the model) are
   *      model versions, and each version is the initial model or base + the sample-weighted average
   *      of the updates, far from base + any single update;
   *  (c) the round and ledger tables hold no vector data at all.
   * The search is shown to work by finding the stored new model's bytes the same way.
   */
  it('stores no individual update in any table, only model versions that are base + the average', async () => {
    // Record-level DP too, so the ledger tables hold rows for this round and are part of the scan.
    const spec: ModelSpec = { kind: 'mlp', inputDim: 30, hidden: [8], output: 'binary' };
    const L = parameterCount(spec);
    // Feature bounds: the statistics are a secure sum too, and their total sets the weights' normaliser.
    const fed = await createFederation(api, {
      modelSpec: spec,
      localEpochs: 1,
      dp: { level: 'record', noiseMultiplier: 3, clipNorm: 1, delta: 1e-5, epsilonLimit: 50 },
      dataSchema: { featureBounds: await featureBounds() },
    });
    const sites = await enrolSites(api, fed.id, 3);
    const reports = await startNodes(fed.id, sites);
    expect(await runRounds(fed.id)).toMatchObject({ status: 'completed', roundsDone: 1 });
    const local = sites.map((s) => reports.get(s.name)![0]!);

    // The statistics were a release too: one charged entry per site, besides its update's.
    const releases = await api.get<{ entries: Array<{ mechanism: { release?: string } }> }>(
      `/api/v1/federations/${fed.id}/ledger?pageSize=1000`,
    );
    expect(releases.entries.filter((e) => e.mechanism.release === 'statistics')).toHaveLength(3);

    const dump = await dumpDatabase(agg);
    for (const t of ['model_version', 'round', 'round_event', 'ledger_entry', 'training_run']) {
      expect(dump.tables).toContain(t);
    }
    const hexHay = dump.values.map((v) => v.text.toLowerCase()).join('\n');
    const textHay = dump.values.map((v) => v.text).join('\n');

    // (a) Every 16-byte window of the first 64 bytes, in hex and in base64 (the first 20 base64
    // characters encode the window's first 15 bytes whatever follows them).
    for (const l of local) {
      for (const v of [l.update, l.localWeights]) {
        const bytes = Buffer.from(v.buffer, v.byteOffset, 64);
        for (let o = 0; o + 16 <= bytes.length; o++) {
          const w = bytes.subarray(o, o + 16);
          expect(hexHay.includes(w.toString('hex')), `hex at ${o}`).toBe(false);
          for (const b of [w.toString('base64'), w.toString('base64url')]) {
            expect(textHay.includes(b.slice(0, 20)), `base64 at ${o}`).toBe(false);
          }
        }
        for (const x of Array.from(v.subarray(0, 16)).filter((x) => Math.abs(x) > 1e-6)) {
          expect(textHay.includes(String(x)), `decimal ${x}`).toBe(false);
        }
      }
    }

    // (b) Vectors only in model versions' weights; this federation's: initial, then the average.
    const vectors = dump.values.filter((v) => v.type === 'bytea' || longestNumberArray(v) >= L);
    expect(new Set(vectors.map((v) => `${v.table}.${v.column}`))).toEqual(
      new Set(['weight_chunk.data']),
    );
    const versions = await agg.db.manager.query<
      Array<{ round_number: number | null; hex: string }>
    >(
      `SELECT m.round_number, encode(string_agg(c.data, ''::bytea ORDER BY c.idx), 'hex') AS hex
         FROM model_version m JOIN weight_chunk c ON c.blob_id = m.weights_blob_id
        WHERE m.federation_id = $1 GROUP BY m.id ORDER BY m.created_at`,
      [fed.id],
    );
    expect(versions.map((v) => v.round_number)).toEqual([null, 1]);
    const [initial, next] = versions.map((v) => bytesToFloat32(Buffer.from(v.hex, 'hex')));
    const base = local[0]!.globalWeights;
    expect(maxAbsDiff(initial!, base)).toBe(0);
    const average = weightedStep(
      base,
      local.map((l) => l.update),
      local.map((l) => l.numExamples),
    );
    expect(maxAbsDiff(next!, average)).toBeLessThan(1e-5);
    for (const l of local) {
      expect(maxAbsDiff(next!, weightedStep(base, [l.update], [1]))).toBeGreaterThan(1e-3);
    }
    // The search finds what is there: the new model's bytes.
    expect(hexHay.includes(Buffer.from(next!.buffer, 0, 16).toString('hex'))).toBe(true);

    // (c) The round and ledger tables: rows, but no bytea and no model-length numeric array.
    for (const t of ['round', 'round_event', 'training_run', 'ledger_entry', 'privacy_budget']) {
      const values = dump.values.filter((v) => v.table === t);
      expect(values.length, `${t} has rows`).toBeGreaterThan(0);
      for (const v of values) {
        expect(v.type, `${t}.${v.column}`).not.toBe('bytea');
        expect(longestNumberArray(v), `${t}.${v.column}`).toBeLessThan(L);
      }
    }
  }, 60_000);

  it('runs record-level DP under secure aggregation with a verifiable ledger entry per contributor and release', async () => {
    const fed = await createFederation(api, {
      localEpochs: 1,
      batchSize: 64,
      optimizer: 'sgd',
      learningRate: 0.1,
      dp: { level: 'record', noiseMultiplier: 3, clipNorm: 1, delta: 1e-5, epsilonLimit: 5 },
    });
    const sites = await enrolSites(api, fed.id, 3);
    // The first site declares a power-of-two lower bound on its records, not their number.
    await startNodes(fed.id, sites, (i) =>
      i === 0 ? { policy: parsePolicy({ rowCount: 'lowerBound' }) } : {},
    );
    expect(await runRounds(fed.id)).toMatchObject({ status: 'completed', roundsDone: 1 });
    const [round] = await listRounds(api, fed.id);
    expect(round!.state).toBe('committed');
    expect(round!.metrics!.secureAggregation).toMatchObject({ sites: 3, dropped: 0 });
    const ledger = await api.get<{
      entries: Array<{
        siteId: string;
        round: number;
        mechanism: { level: string; release?: string; samplingRate: number };
      }>;
      total: number;
    }>(`/api/v1/federations/${fed.id}/ledger?pageSize=1000`);
    // Each site's update and its evaluation counts are releases (no statistics: without feature
    // bounds a DP federation standardises locally).
    expect(ledger.total).toBe(6);
    for (const release of [undefined, 'evaluation']) {
      const of = ledger.entries.filter((e) => e.mechanism.release === release);
      expect(new Set(of.map((e) => e.siteId))).toEqual(new Set(sites.map((s) => s.siteId)));
    }
    for (const e of ledger.entries)
      expect(e).toMatchObject({ round: 1, mechanism: { level: 'record' } });
    // Its receipt's q is batch / 128 (a 190-row shard, 152 left after the hold-out): the aggregator
    // accepted the over-charge; the others' q is batch / their exact training rows.
    const update = (siteId: string) =>
      ledger.entries.find((e) => e.siteId === siteId && e.mechanism.release === undefined)!;
    expect(update(sites[0]!.siteId).mechanism.samplingRate).toBe(64 / 128);
    expect(update(sites[1]!.siteId).mechanism.samplingRate).not.toBe(64 / 128);
    const report = await api.post<{ ok: boolean; discrepancies: unknown[] }>(
      `/api/v1/federations/${fed.id}/ledger/verify`,
    );
    expect(report.discrepancies).toEqual([]);
    expect(report.ok).toBe(true);
  }, 60_000);

  it('adds site-level DP noise of the announced scale, once, to the average of the clipped updates', async () => {
    const spec: ModelSpec = { kind: 'mlp', inputDim: 30, hidden: [16], output: 'binary' };
    const L = parameterCount(spec);
    const z = 0.5;
    const C = 1;
    const fed = await createFederation(api, {
      modelSpec: spec,
      localEpochs: 1,
      dp: { level: 'site', noiseMultiplier: z, clipNorm: C, delta: 1e-5, epsilonLimit: 50 },
    });
    const sites = await enrolSites(api, fed.id, 3);
    const reports = await startNodes(fed.id, sites);
    expect(await runRounds(fed.id)).toMatchObject({ status: 'completed', roundsDone: 1 });
    const [round] = await listRounds(api, fed.id);
    expect(round!.state).toBe('committed');
    const base = await api.modelWeights(fed.id, round!.baseModelVersionId);
    const got = await api.modelWeights(fed.id, round!.modelVersionId!);
    // Each site's update recomputed from its local weights and clipped to C; sites weigh equally.
    const clipped = sites.map((s) => {
      const l = reports.get(s.name)![0]!;
      const raw = new Float32Array(L);
      for (let k = 0; k < L; k++) raw[k] = l.localWeights[k]! - l.globalWeights[k]!;
      return clipL2(raw, C).clipped;
    });
    const mean = weightedStep(base.weights, clipped, [1, 1, 1]);
    // n = 3 sites each add a 1/t share (t = survivorsAssumed = minSites = 2) of N(0, (zC)^2) noise:
    // the sum carries variance (n/t)(zC)^2, the average sd = zC sqrt(n/t) / n per coordinate. With
    // L = 513 coordinates the sample sd is within 20% of it (over 6 standard errors) and the mean
    // within 5 standard errors of 0; noise added twice would give sd * sqrt(2).
    const n = 3;
    const t = 2;
    const sigma = (z * C * Math.sqrt(n / t)) / n;
    const residual = Array.from(got.weights, (w, k) => w - mean[k]!);
    const m = residual.reduce((a, x) => a + x, 0) / L;
    const sd = Math.sqrt(residual.reduce((a, x) => a + (x - m) ** 2, 0) / (L - 1));
    expect(Math.abs(m)).toBeLessThan((5 * sigma) / Math.sqrt(L));
    expect(sd).toBeGreaterThan(0.8 * sigma);
    expect(sd).toBeLessThan(1.2 * sigma);
  }, 60_000);

  it('self-sampling: every offered site signs the subsampled mechanism, whatever its own coin said', async () => {
    const fed = await createFederation(api, {
      localEpochs: 1,
      dp: { level: 'site', noiseMultiplier: 1, clipNorm: 1, delta: 1e-5, epsilonLimit: 50 },
      sampling: { fraction: 0.5 },
      evaluation: { enabled: false },
    });
    const sites = await enrolSites(api, fed.id, 3);
    await startNodes(fed.id, sites);
    expect(await runRounds(fed.id, 2)).toMatchObject({ status: 'completed', roundsDone: 2 });
    const ledger = await api.get<{
      entries: Array<{ siteId: string; round: number; mechanism: { samplingRate: number } }>;
    }>(`/api/v1/federations/${fed.id}/ledger?pageSize=1000`);
    // 3 sites x 2 rounds: every site charged q = 0.5 in every round it was offered.
    expect(ledger.entries).toHaveLength(6);
    for (const e of ledger.entries) expect(e.mechanism.samplingRate).toBe(0.5);
    const rounds = await listRounds(api, fed.id);
    for (const r of rounds) {
      // Every site sent (a zero update when its coin said no): nobody can tell who took part.
      expect(r.participants.map((p) => p.status)).toEqual(['submitted', 'submitted', 'submitted']);
    }
  }, 60_000);

  it('secure-aggregates a model of over 10M parameters', async () => {
    const spec: ModelSpec = { kind: 'mlp', inputDim: 30, hidden: [3150, 3150], output: 'binary' };
    const L = parameterCount(spec);
    expect(L).toBeGreaterThanOrEqual(10_000_000);
    const fed = await createFederation(api, {
      modelSpec: spec,
      localEpochs: 1,
      batchSize: 40,
      roundTimeoutSeconds: 300,
      evaluationTimeoutSeconds: 120,
    });
    const sites = await enrolSites(api, fed.id, 2);
    for (const s of sites)
      s.data = subsetRows(
        s.data,
        Array.from({ length: 40 }, (_, i) => i),
      );
    // Two sites: their policies must allow a sum of two (the default asks for three).
    await startNodes(fed.id, sites, () => ({ policy: parsePolicy({ minSitesPerSum: 2 }) }));
    expect(await runRounds(fed.id, 1, 240_000)).toMatchObject({
      status: 'completed',
      roundsDone: 1,
    });
    const [round] = await listRounds(api, fed.id);
    expect(round!.state).toBe('committed');
    expect(round!.metrics!.secureAggregation).toMatchObject({ sites: 2, dropped: 0 });
    const [stored] = await agg.db.manager.query<Array<{ num_params: number; bytes: number }>>(
      `SELECT m.num_params, sum(octet_length(c.data))::int AS bytes
         FROM model_version m JOIN weight_chunk c ON c.blob_id = m.weights_blob_id
        WHERE m.id = $1 GROUP BY m.id`,
      [round!.modelVersionId],
    );
    expect(stored).toEqual({ num_params: L, bytes: 4 * L });
  }, 300_000);
});

/** base + sum(w_i u_i) / sum(w_i), in float64. */
function weightedStep(
  base: Float32Array,
  updates: Float32Array[],
  weights: number[],
): Float64Array {
  const total = weights.reduce((a, w) => a + w, 0);
  const out = Float64Array.from(base);
  updates.forEach((u, i) => {
    for (let k = 0; k < out.length; k++) out[k] = out[k]! + (u[k]! * weights[i]!) / total;
  });
  return out;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let k = 0; k < a.length; k++) m = Math.max(m, Math.abs(a[k]! - b[k]!));
  return m;
}
