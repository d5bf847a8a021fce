import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import {
  encodeFrame,
  ErrorCode,
  fromBase64,
  generateIdentity,
  PROTOCOL_VERSION,
  type RoundSecAgg,
} from '@confide/protocol';
import { quantizeWeighted, SecAggClient, type SecAggParams } from '@confide/secure-aggregation';
import type { ApiClient } from '../../apps/cli/src/api-client';
import { databaseKind } from '../support/database';
import {
  createFederation,
  enrolSites,
  listRounds,
  startNode,
  testAggregator,
  waitForRun,
  type RoundView,
  type TestSite,
} from '../support/federation';
import { RawSite, type Received } from '../support/raw-site';

const RUN_TIMEOUT = 20_000;
const PARAMETERS = 31; // logistic regression over 30 features
/** Plain federations with each site's own standardisation: every contribution travels in the clear. */
const PLAIN = { secureAggregation: { enabled: false }, standardization: 'local' };

/** What one raw site sends in a round. */
interface Behaviour {
  update: Float32Array;
  numExamples: number;
  trainLoss?: number;
  metrics?: Record<string, number | null>;
  /** Sent as the round.update's runId instead of the round's own. */
  runId?: string;
}

const honest = (scale: number, numExamples: number): Behaviour => ({
  update: Float32Array.from({ length: PARAMETERS }, (_, i) => scale * Math.sin(i + 1)),
  numExamples,
  trainLoss: 0.4,
  metrics: { loss: 0.3, accuracy: 0.9, auc: 0.95, f1: 0.88, numExamples: 40 },
});

describe(`one site's influence on a plain federation is bounded (${databaseKind})`, () => {
  let env: Awaited<ReturnType<typeof testAggregator>>;
  let api: ApiClient;
  let cleanup: Array<() => void> = [];

  beforeAll(async () => {
    env = await testAggregator();
    api = env.api;
  });
  afterEach(() => {
    for (const f of cleanup) f();
    cleanup = [];
  });
  afterAll(async () => {
    await env?.close();
  });

  /** A logged-in raw site that answers round.train and round.evaluate as `b` says. */
  async function rawSite(fedId: string, site: TestSite, b: Behaviour): Promise<RawSite> {
    const raw = await RawSite.connect(env.agg.wsUrl);
    cleanup.push(() => raw.ws.terminate());
    raw.onMessage((r: Received) => {
      if (r.type === 'round.train') {
        raw.sendFrame(
          {
            type: 'round.update',
            id: `update-${site.name}`,
            runId: b.runId ?? r.msg['runId'],
            round: r.msg['round'],
            numExamples: b.numExamples,
            ...(b.trainLoss !== undefined ? { trainLoss: b.trainLoss } : {}),
          },
          b.update,
        );
      } else if (r.type === 'round.evaluate' && b.metrics) {
        raw.sendJson({
          type: 'round.metrics',
          id: `metrics-${site.name}`,
          runId: r.msg['runId'],
          round: r.msg['round'],
          modelVersionId: r.msg['modelVersionId'],
          metrics: b.metrics,
        });
      }
    });
    expect((await raw.login(site.identity, fedId)).type).toBe('welcome');
    return raw;
  }

  async function oneRound(
    fedId: string,
    sites: TestSite[],
    behaviours: Behaviour[],
  ): Promise<{ round: RoundView; raws: RawSite[]; run: { status: string } }> {
    const raws: RawSite[] = [];
    for (let i = 0; i < sites.length; i++) {
      raws.push(await rawSite(fedId, sites[i]!, behaviours[i]!));
    }
    const runId = (
      await api.post<{ id: string }>(`/api/v1/federations/${fedId}/runs`, { rounds: 1 })
    ).id;
    const run = await waitForRun(api, fedId, runId, RUN_TIMEOUT);
    const rounds = await listRounds(api, fedId);
    return { round: rounds[rounds.length - 1]!, raws, run };
  }

  const weights = async (fedId: string, version = 'current'): Promise<Float32Array> =>
    (await api.modelWeights(fedId, version)).weights;

  /** FedAvg over the given updates: global + sum(w u) / sum(w). */
  function fedAvg(global: Float32Array, parts: Array<{ u: Float32Array; w: number }>): number[] {
    const total = parts.reduce((a, p) => a + p.w, 0);
    return Array.from(global, (g, i) => g + parts.reduce((a, p) => a + p.w * p.u[i]!, 0) / total);
  }

  const detailOf = (round: RoundView, name: string): string =>
    round.participants.find((p) => p.name === name)?.detail ?? '';
  const statusOf = (round: RoundView, name: string): string =>
    round.participants.find((p) => p.name === name)?.status ?? '';

  it('excludes a site claiming numExamples = 2^53 - 1 with WEIGHT_OUT_OF_RANGE: the model is the honest sites’ average', async () => {
    const fedId = (await createFederation(api, { ...PLAIN, minSites: 2 })).id;
    const sites = await enrolSites(api, fedId, 3);
    const global = await weights(fedId);
    const a = honest(0.01, 120);
    const b = honest(-0.02, 80);
    const liar: Behaviour = { ...honest(0.5, 0), numExamples: Number.MAX_SAFE_INTEGER };
    const { round, raws, run } = await oneRound(fedId, sites, [a, b, liar]);
    expect(run.status).toBe('completed');
    expect(round.state).toBe('committed');
    const err = await raws[2]!.errorWith(ErrorCode.WEIGHT_OUT_OF_RANGE);
    expect(err.msg['fatal']).toBe(false);
    expect(statusOf(round, 'hospital-3')).toBe('rejected');
    expect(detailOf(round, 'hospital-3')).toMatch(
      /^WEIGHT_OUT_OF_RANGE: numExamples 9007199254740991/,
    );
    const want = fedAvg(global, [
      { u: a.update, w: 120 },
      { u: b.update, w: 80 },
    ]);
    const got = await weights(fedId);
    got.forEach((x, i) => expect(x).toBeCloseTo(want[i]!, 6));
    // The liar's metrics never arrive (it is out of the round); the round's are the honest ones.
    expect(round.metrics?.evaluation).toMatchObject({ sites: 2, accuracy: 0.9 });
  }, 30_000);

  it('clamps a weight to the maxWeight its admin enrolled it with, and weighs sites equally when told to', async () => {
    const fedId = (await createFederation(api, { ...PLAIN, minSites: 2 })).id;
    const [big] = await enrolSites(api, fedId, 1);
    const identity = generateIdentity();
    const enrolled = await api.post<{ id: string; maxWeight: number | null }>(
      `/api/v1/federations/${fedId}/sites`,
      { name: 'capped', publicKey: identity.publicKey, maxWeight: 10 },
    );
    expect(enrolled.maxWeight).toBe(10);
    await api.post(`/api/v1/federations/${fedId}/sites/${enrolled.id}/approve`);
    const second = { ...big!, name: 'capped', identity, siteId: enrolled.id };
    const global = await weights(fedId);
    const a = honest(0.01, 100);
    const b = honest(-0.03, 1000);
    const { round } = await oneRound(fedId, [big!, second], [a, b]);
    expect(round.state).toBe('committed');
    const want = fedAvg(global, [
      { u: a.update, w: 100 },
      { u: b.update, w: 10 },
    ]);
    (await weights(fedId)).forEach((x, i) => expect(x).toBeCloseTo(want[i]!, 6));

    const eq = (
      await createFederation(api, { ...PLAIN, minSites: 2, weighting: { mode: 'equal' } })
    ).id;
    const eqSites = await enrolSites(api, eq, 2);
    const eqGlobal = await weights(eq);
    const { round: eqRound } = await oneRound(eq, eqSites, [a, b]);
    expect(eqRound.state).toBe('committed');
    const eqWant = fedAvg(eqGlobal, [
      { u: a.update, w: 1 },
      { u: b.update, w: 1 },
    ]);
    (await weights(eq)).forEach((x, i) => expect(x).toBeCloseTo(eqWant[i]!, 6));
  }, 40_000);

  it('excludes float32-max updates with UPDATE_NORM_EXCEEDED; the committed model stays finite and honest', async () => {
    const fedId = (await createFederation(api, { ...PLAIN, minSites: 2 })).id;
    const sites = await enrolSites(api, fedId, 3);
    const global = await weights(fedId);
    const a = honest(0.01, 50);
    const b = honest(0.02, 50);
    const huge: Behaviour = { ...honest(0, 50), update: new Float32Array(PARAMETERS).fill(3.4e38) };
    const { round, raws } = await oneRound(fedId, sites, [a, b, huge]);
    expect(round.state).toBe('committed');
    await raws[2]!.errorWith(ErrorCode.UPDATE_NORM_EXCEEDED);
    expect(detailOf(round, 'hospital-3')).toMatch(/^UPDATE_NORM_EXCEEDED: /);
    const want = fedAvg(global, [
      { u: a.update, w: 50 },
      { u: b.update, w: 50 },
    ]);
    const got = await weights(fedId);
    got.forEach((x, i) => expect(x).toBeCloseTo(want[i]!, 6));
  }, 30_000);

  it('leaves out metrics outside their ranges (accuracy 123, AUC 7, F1 5) with METRICS_OUT_OF_RANGE', async () => {
    const fedId = (await createFederation(api, { ...PLAIN, minSites: 2 })).id;
    const sites = await enrolSites(api, fedId, 3);
    const liar: Behaviour = {
      ...honest(0.01, 50),
      metrics: { loss: 0.1, accuracy: 123, auc: 7, f1: 5, numExamples: 40 },
    };
    const { round, raws } = await oneRound(fedId, sites, [
      honest(0.01, 50),
      honest(0.02, 50),
      liar,
    ]);
    expect(round.state).toBe('committed');
    await raws[2]!.errorWith(ErrorCode.METRICS_OUT_OF_RANGE);
    expect(detailOf(round, 'hospital-3')).toMatch(/^METRICS_OUT_OF_RANGE: accuracy 123 .*auc 7/);
    const evaluation = round.metrics!.evaluation!;
    expect(evaluation.sites).toBe(2);
    expect(evaluation.accuracy).toBeCloseTo(0.9, 12);
    expect(evaluation.auc).toBeCloseTo(0.95, 12);
    expect(evaluation.f1).toBeCloseTo(0.88, 12);
  }, 30_000);

  it('refuses a message for another run with WRONG_RUN', async () => {
    const fedId = (await createFederation(api, { ...PLAIN, minSites: 2 })).id;
    const sites = await enrolSites(api, fedId, 3);
    const bogus: Behaviour = { ...honest(0.01, 50), runId: '00000000-0000-4000-8000-000000000000' };
    const { round, raws } = await oneRound(fedId, sites, [
      honest(0.01, 50),
      honest(0.02, 50),
      bogus,
    ]);
    const err = await raws[2]!.errorWith(ErrorCode.WRONG_RUN);
    expect(String(err.msg['message'])).toMatch(/belongs to run/);
    // Its update was never used, and the round did not wait for it.
    expect(round.state).toBe('committed');
    expect(statusOf(round, 'hospital-3')).toBe('rejected');
    expect(detailOf(round, 'hospital-3')).toMatch(/^WRONG_RUN: /);
  }, 30_000);

  it('excludes statistics impossible within the declared feature bounds (mean 1000) and stores the honest ones', async () => {
    const bounds = { lo: new Array<number>(30).fill(0), hi: new Array<number>(30).fill(10) };
    const fedId = (
      await createFederation(api, {
        secureAggregation: { enabled: false },
        minSites: 2,
        dataSchema: { featureBounds: bounds },
      })
    ).id;
    const sites = await enrolSites(api, fedId, 3);
    const stats = (mean: number): Record<string, unknown> => ({
      count: 10,
      sum: new Array<number>(30).fill(10 * mean),
      sumSq: new Array<number>(30).fill(10 * (mean * mean + 1)),
    });
    const raws: RawSite[] = [];
    const means = [2, 4, 1000];
    for (let i = 0; i < 3; i++) {
      const raw = await rawSite(fedId, sites[i]!, honest(0.01, 10));
      raw.onMessage((r) => {
        if (r.type === 'stats.request') {
          raw.sendJson({
            type: 'stats.report',
            runId: r.msg['runId'],
            round: r.msg['round'],
            ...stats(means[i]!),
          });
        }
      });
      raws.push(raw);
    }
    const runId = (
      await api.post<{ id: string }>(`/api/v1/federations/${fedId}/runs`, { rounds: 1 })
    ).id;
    await waitForRun(api, fedId, runId, RUN_TIMEOUT);
    await raws[2]!.errorWith(ErrorCode.STATISTICS_OUT_OF_RANGE);
    const [round] = await listRounds(api, fedId);
    expect(detailOf(round!, 'hospital-3')).toMatch(
      /^STATISTICS_OUT_OF_RANGE: feature 0: mean 1000/,
    );
    const fed = await api.get<{ featureStats: { mean: number[]; sites: number; count: number } }>(
      `/api/v1/federations/${fedId}`,
    );
    expect(fed.featureStats).toMatchObject({ sites: 2, count: 20 });
    expect(fed.featureStats.mean[0]).toBeCloseTo(3, 9);

    // An admin can have them collected again (refused while a run is running).
    const cleared = await api.post<{ featureStats: null }>(
      `/api/v1/federations/${fedId}/statistics/recollect`,
    );
    expect(cleared.featureStats).toBeNull();
    const after = await api.get<{ featureStats: unknown }>(`/api/v1/federations/${fedId}`);
    expect(after.featureStats).toBeNull();
  }, 30_000);
});

describe(`implausible secure sums abort their round (${databaseKind})`, () => {
  let env: Awaited<ReturnType<typeof testAggregator>>;
  let api: ApiClient;
  const stops: Array<() => void> = [];

  beforeAll(async () => {
    env = await testAggregator();
    api = env.api;
  });
  afterAll(async () => {
    for (const f of stops) f();
    await env?.close();
  });

  /**
   * A site that runs secure aggregation by the book except for its masked vector: its weight
   * coordinate claims `weight` (honest sites stay within [0, 1]).
   */
  async function inflatingSite(fedId: string, site: TestSite, weight: number): Promise<RawSite> {
    const raw = await RawSite.connect(env.agg.wsUrl);
    stops.push(() => raw.ws.terminate());
    let client: SecAggClient | null = null;
    let params: SecAggParams | null = null;
    let info: RoundSecAgg | null = null;
    raw.onMessage((r) => {
      const ref = { runId: r.msg['runId'], round: r.msg['round'], sum: 'update' };
      if (r.type === 'round.train') {
        info = r.msg['secureAggregation'] as RoundSecAgg;
        params = info.params as unknown as SecAggParams;
        client = new SecAggClient({
          siteId: site.siteId,
          identitySecretKey: fromBase64(site.identity.secretKey, 64),
          roster: new Map(info.roster.map((x) => [x.siteId, fromBase64(x.publicKey, 32)])),
          runId: String(r.msg['runId']),
          round: Number(r.msg['round']),
          modelHash: String(r.msg['modelHash']),
          params,
          vectorLength: info.vectorLength,
        });
        raw.sendJson({ type: 'secagg.advertise', ...ref, advertisement: client.advertise() });
      } else if (r.type === 'secagg.advertisements' && client) {
        raw.sendJson({
          type: 'secagg.shares',
          ...ref,
          shares: client.shareKeys(r.msg['advertisements']),
        });
      } else if (r.type === 'secagg.deliver' && client && params && info) {
        client.receiveShares(r.msg['shares'] as unknown[]);
        const q = quantizeWeighted(new Float32Array(PARAMETERS).fill(0.01), 0.5, params);
        q[PARAMETERS] = Math.round(weight * params.scale) >>> 0;
        raw.ws.send(
          encodeFrame(
            {
              v: PROTOCOL_VERSION,
              id: randomUUID(),
              type: 'round.update',
              runId: ref.runId,
              round: ref.round,
            },
            client.maskInput(q),
          ),
          { binary: true },
        );
      } else if (r.type === 'secagg.unmask' && client) {
        raw.sendJson({
          type: 'secagg.unmasked',
          ...ref,
          response: client.unmask(r.msg['request']),
        });
      }
    });
    expect((await raw.login(site.identity, fedId)).type).toBe('welcome');
    return raw;
  }

  it('aborts the round whose unmasked total weight no capped sites could reach; the model is unchanged', async () => {
    const fedId = (
      await createFederation(api, {
        minSites: 3,
        standardization: 'local',
        evaluation: { enabled: false },
        roundTimeoutSeconds: 30,
        // Three sites of at most 1000 records: a site's masked weight is at most 1000 / 3000.
        weighting: { maxWeight: 1000 },
      })
    ).id;
    const sites = await enrolSites(api, fedId, 3);
    const before = await api.modelWeights(fedId, 'current');
    for (const s of sites.slice(0, 2)) {
      const { node } = await startNode(env.agg, fedId, s);
      stops.push(() => node.stop());
    }
    const liar = await inflatingSite(fedId, sites[2]!, 2.5);
    const run = await api.post<{ id: string }>(`/api/v1/federations/${fedId}/runs`, {
      rounds: 1,
    });
    const ended = await waitForRun(api, fedId, run.id, 30_000);
    expect(ended.status).toBe('stopped');
    const [round] = await listRounds(api, fedId);
    expect(round).toMatchObject({ state: 'aborted' });
    expect(round!.reason).toMatch(
      /^the unmasked update sum is implausible: the unmasked total weight 2\.6\d* is outside \(0, 1\]/,
    );
    await liar.waitFor(
      (r) => r.type === 'round.end' && r.msg['outcome'] === 'aborted',
      5000,
      'round.end',
    );
    const after = await api.modelWeights(fedId, 'current');
    expect(after.versionId).toBe(before.versionId);
  }, 60_000);
});
