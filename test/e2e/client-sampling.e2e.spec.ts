import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePolicy } from '@confide/client-node';
import type { RunningAggregator } from '@confide/aggregator';
import { ApiRequestError, type ApiClient } from '../../apps/cli/src/api-client';
import { databaseKind } from '../support/database';
import {
  createFederation,
  enrolSites,
  listRounds,
  startNode,
  testAggregator,
  waitForRun,
} from '../support/federation';

/** A plain federation: the aggregator sees each update, so the sites' policy must allow that. */
const PLAIN = { secureAggregation: { enabled: false }, standardization: 'local' };
const OPEN_POLICY = parsePolicy({
  secureAggregation: { required: false },
  revealOwnMetrics: true,
  minSitesPerSum: 2,
});

describe(`client sampling by the aggregator (${databaseKind})`, () => {
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

  it('gives each round a recorded random pair of the five connected sites; the rest get nothing', async () => {
    const rounds = 6;
    const fed = await createFederation(api, {
      ...PLAIN,
      minSites: 2,
      localEpochs: 1,
      sampling: { fraction: 0.4 },
    });
    const sites = await enrolSites(api, fed.id, 5);
    // What each site was asked to do, by round: training (round.train) and the round's end.
    const trained = new Map<string, number[]>(sites.map((s) => [s.siteId, []]));
    const ended = new Map<string, number[]>(sites.map((s) => [s.siteId, []]));
    const nodes = await Promise.all(
      sites.map((s) =>
        startNode(agg, fed.id, s, {
          policy: OPEN_POLICY,
          onUpdate: (r) => trained.get(s.siteId)!.push(r.round),
          onRoundEnd: (m) => ended.get(s.siteId)!.push(m.round),
        }),
      ),
    );
    try {
      const run = await api.post<{ id: string }>(`/api/v1/federations/${fed.id}/runs`, { rounds });
      expect(await waitForRun(api, fed.id, run.id)).toMatchObject({
        status: 'completed',
        roundsDone: rounds,
      });
    } finally {
      for (const n of nodes) n.node.stop();
    }

    const listed = await listRounds(api, fed.id);
    expect(listed.map((r) => r.state)).toEqual(new Array(rounds).fill('committed'));
    const ids = new Set(sites.map((s) => s.siteId));
    const pairs = new Set<string>();
    for (const r of listed) {
      // max(minSites 2, ceil(0.4 x 5)) = 2 of the 5 connected, each sent its update.
      expect(r.participants).toHaveLength(2);
      expect(r.participants.map((p) => p.status)).toEqual(['evaluated', 'evaluated']);
      const chosen = r.participants.map((p) => p.siteId);
      expect(new Set(chosen).size).toBe(2);
      for (const id of chosen) expect(ids.has(id)).toBe(true);
      expect(r.metrics?.sampling).toEqual({ fraction: 0.4, connected: 5, sampled: 2 });
      pairs.add([...chosen].sort().join('+'));
      for (const s of sites) {
        // A site trains, and hears the round end, exactly in the rounds it was drawn for.
        const drawn = chosen.includes(s.siteId);
        expect(trained.get(s.siteId)!.includes(r.number)).toBe(drawn);
        expect(ended.get(s.siteId)!.includes(r.number)).toBe(drawn);
      }
    }
    // Ten pairs are possible: six rounds all on the same one has probability (1/10)^5.
    expect(pairs.size).toBeGreaterThanOrEqual(2);
    // Each site trained once per round it was drawn for, never otherwise.
    const total = [...trained.values()].reduce((a, t) => a + t.length, 0);
    expect(total).toBe(2 * rounds);
  }, 120_000);

  it('runs secure aggregation among the sampled sites only', async () => {
    const fed = await createFederation(api, { localEpochs: 1, sampling: { fraction: 0.6 } });
    const sites = await enrolSites(api, fed.id, 5);
    const trained = new Map<string, number>();
    const nodes = await Promise.all(
      sites.map((s) =>
        startNode(agg, fed.id, s, {
          onUpdate: () => trained.set(s.siteId, (trained.get(s.siteId) ?? 0) + 1),
        }),
      ),
    );
    try {
      const run = await api.post<{ id: string }>(`/api/v1/federations/${fed.id}/runs`, {
        rounds: 1,
      });
      expect(await waitForRun(api, fed.id, run.id)).toMatchObject({ status: 'completed' });
    } finally {
      for (const n of nodes) n.node.stop();
    }
    const [round] = await listRounds(api, fed.id);
    // ceil(0.6 x 5) = 3 sites masked their updates for each other; the other two never trained.
    expect(round!.participants).toHaveLength(3);
    expect(round!.metrics?.sampling).toEqual({ fraction: 0.6, connected: 5, sampled: 3 });
    expect(round!.metrics?.secureAggregation?.sites).toBe(3);
    expect([...trained.keys()].sort()).toEqual(round!.participants.map((p) => p.siteId).sort());
  }, 60_000);

  it('charges only the drawn sites in a record-level DP federation', async () => {
    const rounds = 3;
    const fed = await createFederation(api, {
      localEpochs: 1,
      batchSize: 64,
      evaluation: { enabled: false },
      sampling: { fraction: 0.5 },
      dp: { level: 'record', noiseMultiplier: 3, clipNorm: 1, delta: 1e-5, epsilonLimit: 50 },
    });
    // Three drawn of six: the sites' default policy wants at least three in a secure sum.
    const sites = await enrolSites(api, fed.id, 6);
    const nodes = await Promise.all(sites.map((s) => startNode(agg, fed.id, s)));
    try {
      const run = await api.post<{ id: string }>(`/api/v1/federations/${fed.id}/runs`, { rounds });
      expect(await waitForRun(api, fed.id, run.id)).toMatchObject({
        status: 'completed',
        reason: null,
      });
    } finally {
      for (const n of nodes) n.node.stop();
    }
    const ledger = await api.get<{ entries: Array<{ siteId: string; round: number }> }>(
      `/api/v1/federations/${fed.id}/ledger?pageSize=1000`,
    );
    for (const r of await listRounds(api, fed.id)) {
      expect(r.metrics?.sampling).toEqual({ fraction: 0.5, connected: 6, sampled: 3 });
      // One update release per drawn site; a site left out of the round spends nothing.
      const charged = ledger.entries.filter((e) => e.round === r.number).map((e) => e.siteId);
      expect(charged.sort()).toEqual(r.participants.map((p) => p.siteId).sort());
    }
    expect(ledger.entries).toHaveLength(3 * rounds);
  }, 60_000);

  it('keeps fraction 1 as before: every connected site, no sample recorded', async () => {
    const fed = await createFederation(api, { ...PLAIN, localEpochs: 1 });
    const sites = await enrolSites(api, fed.id, 3);
    const nodes = await Promise.all(
      sites.map((s) => startNode(agg, fed.id, s, { policy: OPEN_POLICY })),
    );
    try {
      const run = await api.post<{ id: string }>(`/api/v1/federations/${fed.id}/runs`, {
        rounds: 1,
      });
      expect(await waitForRun(api, fed.id, run.id)).toMatchObject({ status: 'completed' });
    } finally {
      for (const n of nodes) n.node.stop();
    }
    const [round] = await listRounds(api, fed.id);
    expect(round!.participants).toHaveLength(3);
    expect(round!.metrics).not.toHaveProperty('sampling');
  }, 60_000);

  it('lets robust strategies sample (real updates only), but not with self-sampling site-level DP', async () => {
    // The aggregator's draw: only sampled sites train and send real updates, so a median is sound.
    const median = await createFederation(api, {
      ...PLAIN,
      strategy: 'median',
      sampling: { fraction: 0.5 },
    });
    expect(median.id).toBeTruthy();
    const selfSampled: unknown = await createFederation(api, {
      ...PLAIN,
      strategy: 'median',
      sampling: { fraction: 0.5 },
      dp: { level: 'site', noiseMultiplier: 1, clipNorm: 1, delta: 1e-5, epsilonLimit: 50 },
    }).then(
      () => new Error('the federation was created'),
      (e: unknown) => e,
    );
    expect(selfSampled).toBeInstanceOf(ApiRequestError);
    expect((selfSampled as ApiRequestError).code).toBe('STRATEGY_NEEDS_INDIVIDUAL_UPDATES');
    expect((selfSampled as ApiRequestError).message).toMatch(/zero updates/);
  });
});
