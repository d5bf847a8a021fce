import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateIdentity } from '@confide/protocol';
import { startAggregator } from '@confide/aggregator';
import {
  buildStrategy,
  registerStrategy,
  strategyNames,
  type StrategyState,
} from '@confide/federated';
import { partialStep } from '../support/partial-step-strategy';
import { parsePolicy, type LocalRoundResult } from '@confide/client-node';
import type { RunningAggregator } from '@confide/aggregator';
import { ApiClient, ApiRequestError } from '../../apps/cli/src/api-client';
import { startCapturingRelay } from '../support/capturing-relay';
import { databaseKind, freshDatabaseUrl } from '../support/database';
import {
  createFederation,
  enrolSites,
  listRounds,
  startNode,
  testAggregator,
  waitForRun,
  type TestSite,
} from '../support/federation';

/** These federations run without secure aggregation, as strategies that see each update need. */
const PLAIN = { secureAggregation: { enabled: false }, standardization: 'local' };
/** The sites agree to send their updates unmasked (and to reveal their own metrics). */
const OPEN_POLICY = parsePolicy({
  secureAggregation: { required: false },
  revealOwnMetrics: true,
  minSitesPerSum: 2,
});
const PARAMETERS = 31;

describe(`federations run the registry's strategies (${databaseKind})`, () => {
  let env: Awaited<ReturnType<typeof testAggregator>>;
  let agg: RunningAggregator;
  let api: ApiClient;

  beforeAll(async () => {
    env = await testAggregator();
    agg = env.agg;
    api = env.api;
  });
  afterAll(async () => {
    await env.close();
  });

  /** Runs `rounds` rounds of a new federation over three sites; returns what each site sent. */
  async function run(
    overrides: Record<string, unknown>,
    rounds = 2,
  ): Promise<{ fedId: string; updates: LocalRoundResult[][] }> {
    const fed = await createFederation(api, { ...PLAIN, ...overrides });
    const sites: TestSite[] = await enrolSites(api, fed.id, 3);
    const updates: LocalRoundResult[][] = sites.map(() => []);
    const nodes = await Promise.all(
      sites.map((s, i) =>
        startNode(agg, fed.id, s, { policy: OPEN_POLICY, onUpdate: (r) => updates[i]!.push(r) }),
      ),
    );
    try {
      const started = await api.post<{ id: string }>(`/api/v1/federations/${fed.id}/runs`, {
        rounds,
      });
      const ended = await waitForRun(api, fed.id, started.id);
      expect(ended).toMatchObject({ status: 'completed', roundsDone: rounds });
    } finally {
      for (const n of nodes) n.node.stop();
    }
    return { fedId: fed.id, updates };
  }

  /** The strategy state stored with a model version, read back as the round engine reads it. */
  async function storedState(
    strategy: string,
    config: unknown,
    versionId: string,
  ): Promise<StrategyState> {
    const rows = await agg.db.manager.query<Array<{ strategy_state: unknown }>>(
      'SELECT strategy_state FROM model_version WHERE id = $1',
      [versionId],
    );
    expect(rows[0]?.strategy_state).toMatchObject({ strategy, format: 'confide.strategy-state/1' });
    return buildStrategy(strategy, config).parseState(rows[0]!.strategy_state, PARAMETERS);
  }

  /** The sample-weighted mean of the sites' updates of round `i` (index), in float64. */
  function meanUpdate(updates: LocalRoundResult[][], i: number): Float64Array {
    const out = new Float64Array(PARAMETERS);
    let total = 0;
    for (const site of updates) {
      const u = site[i]!;
      total += u.numExamples;
      for (let k = 0; k < PARAMETERS; k++) out[k]! += u.numExamples * u.update[k]!;
    }
    return out.map((x) => x / total);
  }

  function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
    let m = 0;
    for (let k = 0; k < a.length; k++) m = Math.max(m, Math.abs(a[k]! - b[k]!));
    return m;
  }

  /** Each registered strategy's configuration for a three-site federation (Krum's f = 0). */
  const BUILT_IN: Record<string, Record<string, unknown>> = {
    krum: { byzantine: 0 },
    'multi-krum': { byzantine: 0 },
    'trimmed-mean': { beta: 0.34 },
  };

  it.each(strategyNames().filter((n) => n !== 'partial-step'))(
    "commits a %s round whose model is the strategy's own step from the sites' updates",
    async (name) => {
      const config = BUILT_IN[name] ?? {};
      const { fedId, updates } = await run({ strategy: name, strategyConfig: config }, 1);
      const [round] = await listRounds(api, fedId);
      expect(round?.state).toBe('committed');
      const base = (await api.modelWeights(fedId, round!.baseModelVersionId)).weights;
      const got = (await api.modelWeights(fedId, round!.modelVersionId!)).weights;
      const strategy = buildStrategy(name, config);
      const sites = updates.map((site, i) => ({
        siteId: `site-${i}`,
        delta: Float32Array.from(site[0]!.update),
        weight: site[0]!.numExamples,
      }));
      const sum = new Float64Array(PARAMETERS);
      for (const u of sites) for (let k = 0; k < PARAMETERS; k++) sum[k]! += u.weight * u.delta[k]!;
      const step = (input: typeof sites) =>
        strategy.aggregateTrain(
          Float32Array.from(base),
          strategy.needsIndividualUpdates
            ? input
            : { sum, totalWeight: sites.reduce((a, u) => a + u.weight, 0), contributors: [] },
          strategy.initialState(),
        ).weights;
      // Updates reach the strategy in arrival order, which breaks Krum's ties between equally
      // scored updates: the model must be the step for one of the orders.
      const orders = [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
      ];
      const closest = Math.min(...orders.map((o) => maxDiff(got, step(o.map((i) => sites[i]!)))));
      expect(closest).toBeLessThan(1e-5);
      expect(maxDiff(got, base)).toBeGreaterThan(0);
    },
  );

  it('commits fedadam rounds that move the model, with its moments stored per version', async () => {
    const config = { serverLearningRate: 0.05 };
    const { fedId } = await run({ strategy: 'fedadam', strategyConfig: config });
    const fed = await api.get<{ strategy: string; config: { strategyConfig: unknown } }>(
      `/api/v1/federations/${fedId}`,
    );
    // The settings are stored with the strategy's defaults applied.
    expect(fed.strategy).toBe('fedadam');
    expect(fed.config.strategyConfig).toMatchObject({ serverLearningRate: 0.05, beta1: 0.9 });
    const rounds = await listRounds(api, fedId);
    expect(rounds.map((r) => r.state)).toEqual(['committed', 'committed']);
    for (const [i, r] of rounds.entries()) {
      const got = await api.modelWeights(fedId, r.modelVersionId!);
      const base = await api.modelWeights(fedId, r.baseModelVersionId);
      expect(got.hash).not.toBe(base.hash);
      const state = await storedState('fedadam', config, r.modelVersionId!);
      expect(state.steps).toBe(i + 1);
      expect(state.vectors['v']!.some((x) => x > 0)).toBe(true);
    }
  });

  it('runs a federation with a strategy defined in one file and registered', async () => {
    if (!strategyNames().includes(partialStep.name)) registerStrategy(partialStep);
    const { fedId, updates } = await run({
      strategy: 'partial-step',
      strategyConfig: { fraction: 0.25 },
    });
    const rounds = await listRounds(api, fedId);
    expect(rounds.map((r) => r.state)).toEqual(['committed', 'committed']);
    for (const [i, r] of rounds.entries()) {
      const base = (await api.modelWeights(fedId, r.baseModelVersionId)).weights;
      const got = (await api.modelWeights(fedId, r.modelVersionId!)).weights;
      const mean = meanUpdate(updates, i);
      expect(
        maxDiff(
          got,
          base.map((w, k) => w + 0.25 * mean[k]!),
        ),
      ).toBeLessThan(1e-5);
      expect(maxDiff(got, base)).toBeGreaterThan(0);
    }
  });

  it('commits median rounds whose step is the coordinate-wise median of the updates', async () => {
    const { fedId, updates } = await run({ strategy: 'median' });
    const rounds = await listRounds(api, fedId);
    expect(rounds.map((r) => r.state)).toEqual(['committed', 'committed']);
    for (const [i, r] of rounds.entries()) {
      const base = (await api.modelWeights(fedId, r.baseModelVersionId)).weights;
      const got = (await api.modelWeights(fedId, r.modelVersionId!)).weights;
      const expected = base.map((w, k) => {
        const column = updates.map((site) => site[i]!.update[k]!).sort((a, b) => a - b);
        return w + column[1]!;
      });
      expect(maxDiff(got, expected)).toBeLessThan(1e-6);
      expect(maxDiff(got, base)).toBeGreaterThan(0);
    }
  });

  it('stores FedAvgM momentum with round 1 and steps from it in round 2', async () => {
    const config = { serverLearningRate: 1, momentum: 0.9 };
    const { fedId, updates } = await run({ strategy: 'fedavgm', strategyConfig: config });
    const [r1, r2] = await listRounds(api, fedId);
    const m1 = (await storedState('fedavgm', config, r1!.modelVersionId!)).vectors['momentum']!;
    // Round 1 starts from no momentum: the buffer is the mean update, and it is not zero.
    expect(maxDiff(m1, meanUpdate(updates, 0))).toBeLessThan(1e-6);
    expect(m1.some((x) => x !== 0)).toBe(true);
    // Round 2 read it back from round 1's model version: u2 = 0.9 u1 + mean2, w2 = w1 + u2.
    const base = (await api.modelWeights(fedId, r2!.baseModelVersionId)).weights;
    const got = (await api.modelWeights(fedId, r2!.modelVersionId!)).weights;
    const mean2 = meanUpdate(updates, 1);
    const expected = base.map((w, k) => w + (0.9 * m1[k]! + mean2[k]!));
    expect(maxDiff(got, expected)).toBeLessThan(1e-5);
    const withoutMomentum = base.map((w, k) => w + mean2[k]!);
    expect(maxDiff(got, withoutMomentum)).toBeGreaterThan(1e-4);
    const m2 = (await storedState('fedavgm', config, r2!.modelVersionId!)).vectors['momentum']!;
    expect(
      maxDiff(
        m2,
        m1.map((x, k) => 0.9 * x + mean2[k]!),
      ),
    ).toBeLessThan(1e-6);
  });

  /** The named error a refused creation answers with. */
  async function refusal(body: Record<string, unknown>): Promise<ApiRequestError> {
    const e: unknown = await createFederation(api, body).then(
      () => new Error('the federation was created'),
      (err: unknown) => err,
    );
    expect(e).toBeInstanceOf(ApiRequestError);
    return e as ApiRequestError;
  }

  it('refuses median with secure aggregation on, saying why', async () => {
    const e = await refusal({ strategy: 'median' });
    expect(e.status).toBe(400);
    expect(e.code).toBe('STRATEGY_NEEDS_INDIVIDUAL_UPDATES');
    expect(e.message).toMatch(/secure aggregation/);
    expect(e.message).toMatch(/fedavg/);
  });

  it('refuses an unknown strategy and a bad configuration with named errors', async () => {
    const unknown = await refusal({ ...PLAIN, strategy: 'fedsgd' });
    expect(unknown.code).toBe('UNKNOWN_STRATEGY');
    expect(unknown.message).toMatch(/fedadam/);
    const bad = await refusal({
      ...PLAIN,
      strategy: 'fedadam',
      strategyConfig: { serverLearningRate: -1 },
    });
    expect(bad.code).toBe('STRATEGY_CONFIG_INVALID');
    expect(bad.message).toMatch(/serverLearningRate/);
    const extra = await refusal({ ...PLAIN, strategy: 'krum', strategyConfig: { typo: 1 } });
    expect(extra.code).toBe('STRATEGY_CONFIG_INVALID');
    // DP-SGD does not apply a proximal term: FedProx with record-level DP is refused, not ignored.
    const prox = await refusal({
      ...PLAIN,
      strategy: 'fedprox',
      strategyConfig: { proximalMu: 0.5 },
      dp: { level: 'record', noiseMultiplier: 1, clipNorm: 1, delta: 1e-5, epsilonLimit: 10 },
    });
    expect(prox.code).toBe('STRATEGY_CONFIG_INVALID');
    expect(prox.message).toMatch(/record-level DP/);
  });

  it("sends FedProx's mu to the sites in round.train, and its rounds commit", async () => {
    const fed = await createFederation(api, {
      ...PLAIN,
      strategy: 'fedprox',
      strategyConfig: { proximalMu: 0.25 },
    });
    const sites: TestSite[] = await enrolSites(api, fed.id, 3);
    const relay = await startCapturingRelay(agg.wsUrl);
    const nodes = await Promise.all(
      sites.map((s, i) =>
        startNode(agg, fed.id, s, {
          policy: OPEN_POLICY,
          ...(i === 0 ? { server: relay.url } : {}),
        }),
      ),
    );
    try {
      const started = await api.post<{ id: string }>(`/api/v1/federations/${fed.id}/runs`, {
        rounds: 1,
      });
      expect(await waitForRun(api, fed.id, started.id)).toMatchObject({ status: 'completed' });
    } finally {
      for (const n of nodes) n.node.stop();
      await relay.close();
    }
    const train = relay.messages.find((m) => m.message?.['type'] === 'round.train');
    expect((train?.message?.['train'] as { proximalMu?: number }).proximalMu).toBe(0.25);
  });
});

/** An aggregator stopped between rounds: the next one continues the strategy from the database. */
describe(`strategy state across an aggregator restart (${databaseKind})`, () => {
  it('gives round 2 on a restarted aggregator the momentum round 1 stored', async () => {
    const db = await freshDatabaseUrl();
    const dataDir = db.url ? undefined : mkdtempSync(join(tmpdir(), 'confide-strategy-'));
    const identity = generateIdentity();
    const options = { databaseUrl: db.url, dataDir, identity, reconnectGraceMs: 300 };
    let agg = await startAggregator(options);
    try {
      // The first start's admin token stays valid in the database across the restart.
      const token = agg.initialAdminToken!;
      const api = new ApiClient(agg.url, token);
      const fed = await createFederation(api, { ...PLAIN, strategy: 'fedavgm' });
      const sites = await enrolSites(api, fed.id, 2);
      const updates: LocalRoundResult[] = [];
      const oneRound = async (): Promise<void> => {
        const client = new ApiClient(agg.url, token);
        const nodes = await Promise.all(
          sites.map((s) =>
            startNode(agg, fed.id, s, { policy: OPEN_POLICY, onUpdate: (r) => updates.push(r) }),
          ),
        );
        const started = await client.post<{ id: string }>(`/api/v1/federations/${fed.id}/runs`, {
          rounds: 1,
        });
        expect(await waitForRun(client, fed.id, started.id)).toMatchObject({ roundsDone: 1 });
        for (const n of nodes) n.node.stop();
        await Promise.all(nodes.map((n) => n.stopped.catch(() => undefined)));
      };
      await oneRound();
      await agg.close();
      agg = await startAggregator(options);
      await oneRound();
      const client = new ApiClient(agg.url, token);
      const [r1, r2] = await listRounds(client, fed.id);
      expect(r2!.baseModelVersionId).toBe(r1!.modelVersionId);
      const mean = (round: number): Float64Array => {
        const mine = updates.filter((u) => u.round === round);
        const total = mine.reduce((a, u) => a + u.numExamples, 0);
        return new Float64Array(PARAMETERS).map(
          (_, k) => mine.reduce((a, u) => a + u.numExamples * u.update[k]!, 0) / total,
        );
      };
      const m1 = mean(r1!.number);
      const base = (await client.modelWeights(fed.id, r2!.baseModelVersionId)).weights;
      const got = (await client.modelWeights(fed.id, r2!.modelVersionId!)).weights;
      const mean2 = mean(r2!.number);
      let err = 0;
      for (let k = 0; k < PARAMETERS; k++) {
        err = Math.max(err, Math.abs(got[k]! - (base[k]! + 0.9 * m1[k]! + mean2[k]!)));
      }
      expect(err).toBeLessThan(1e-5);
    } finally {
      await agg.close();
      await db.drop();
      if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
