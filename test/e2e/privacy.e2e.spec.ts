import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  confideAccountant,
  releaseOf,
  verifyLedger,
  type LedgerEntry,
} from '@confide/privacy-ledger';
import { databaseKind } from '../support/database';
import {
  createFederation,
  enrolSites,
  startNode,
  testAggregator,
  waitForRun,
} from '../support/federation';

describe(`record-level DP with the epsilon ledger (${databaseKind})`, () => {
  let env: Awaited<ReturnType<typeof testAggregator>>;
  beforeAll(async () => {
    env = await testAggregator();
  });
  afterAll(async () => {
    await env.close();
  });

  it('charges every release (updates and evaluations) to the ledger, signed by the site, and skips sites whose budget is spent', async () => {
    const { agg, api } = env;
    const fed = await createFederation(api, {
      localEpochs: 1,
      batchSize: 64,
      learningRate: 0.1,
      optimizer: 'sgd',
      dp: { level: 'record', noiseMultiplier: 3, clipNorm: 1, delta: 1e-5, epsilonLimit: 2.0 },
    });
    const sites = await enrolSites(api, fed.id, 3);
    const nodes = await Promise.all(sites.map((s) => startNode(agg, fed.id, s)));
    const run = await api.post<{ id: string }>(`/api/v1/federations/${fed.id}/runs`, {
      rounds: 20,
    });
    const ended = await waitForRun(api, fed.id, run.id, 120_000);
    // The budget runs out before 20 rounds: the run stops cleanly, saying why.
    expect(ended.status).toBe('stopped');
    expect(ended.reason).toMatch(/privacy budget/);
    const privacy = await api.get<{
      sites: Array<{
        name: string;
        epsilon: number;
        limit: number;
        roundsLeft: number;
        releases: number;
      }>;
    }>(`/api/v1/federations/${fed.id}/privacy`);
    const ledger = await api.get<{ entries: LedgerEntry[]; total: number }>(
      `/api/v1/federations/${fed.id}/ledger?pageSize=1000`,
    );
    // Each round a site released its update and then, inside a secure sum, its evaluation counts:
    // both are charged (no statistics: without feature bounds a DP federation standardises locally).
    const kinds = (siteName: string) =>
      ledger.entries.filter((e) => e.siteName === siteName).map((e) => releaseOf(e.mechanism));
    for (const s of privacy.sites) {
      expect(s.epsilon).toBeGreaterThan(0);
      expect(s.epsilon).toBeLessThanOrEqual(2.0);
      expect(s.roundsLeft).toBe(0);
      expect(s.releases).toBe(kinds(s.name).length);
      expect(kinds(s.name).filter((k) => k === 'update')).toHaveLength(ended.roundsDone);
      expect(kinds(s.name).filter((k) => k === 'evaluation')).toHaveLength(ended.roundsDone);
      expect(kinds(s.name)).not.toContain('statistics');
    }
    expect(ledger.total).toBe(2 * 3 * ended.roundsDone);
    const report = await api.post<{ ok: boolean; discrepancies: unknown[] }>(
      `/api/v1/federations/${fed.id}/ledger/verify`,
    );
    expect(report.discrepancies).toEqual([]);
    expect(report.ok).toBe(true);
    // The sites' own ledgers hold exactly what the aggregator holds for them.
    const exported = await api.get<{
      sites: Array<{ siteId: string; publicKey: string }>;
      orders: number[];
    }>(`/api/v1/federations/${fed.id}/ledger/export`);
    const local = new Map(nodes.map((n, i) => [sites[i]!.siteId, n.node.ledgerEntries()]));
    const reconciled = verifyLedger({
      entries: ledger.entries,
      orders: exported.orders,
      accountant: confideAccountant,
      sites: new Map(exported.sites.map((s) => [s.siteId, s.publicKey])),
      localLedgers: local,
    });
    expect(reconciled.ok).toBe(true);
    const { rounds } = await api.get<{
      rounds: Array<{
        state: string;
        reason: string | null;
        participants: Array<{ status: string }>;
      }>;
    }>(`/api/v1/federations/${fed.id}/rounds`);
    const last = rounds.at(-1)!;
    expect(last.state).toBe('aborted');
    expect(last.participants.every((p) => p.status === 'skipped')).toBe(true);
    for (const n of nodes) n.node.stop();
  }, 150_000);
});
