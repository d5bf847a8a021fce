import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { weightedAverage } from '@confide/federated';
import type { LocalRoundResult } from '@confide/client-node';
import type { ApiClient } from '../../apps/cli/src/api-client';
import { databaseKind } from '../support/database';
import {
  createFederation,
  enrolSites,
  startNode,
  testAggregator,
  waitForRun,
  type TestSite,
} from '../support/federation';
import type { RunningAggregator } from '@confide/aggregator';

describe(`a federation of three sites over real WebSockets (${databaseKind})`, () => {
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

  it('commits rounds whose new global model is the sample-weighted average of the sites’ weights', async () => {
    const fed = await createFederation(api);
    const sites: TestSite[] = await enrolSites(api, fed.id, 3);
    const updates = new Map<string, LocalRoundResult[]>();
    const nodes = await Promise.all(
      sites.map(async (s) => ({
        site: s,
        ...(await startNode(agg, fed.id, s, {
          onUpdate: (r) => updates.set(s.name, [...(updates.get(s.name) ?? []), r]),
        })),
      })),
    );
    const run = await api.post<{ id: string }>(`/api/v1/federations/${fed.id}/runs`, { rounds: 2 });
    const ended = await waitForRun(api, fed.id, run.id);
    expect(ended).toMatchObject({ status: 'completed', roundsDone: 2 });

    const { rounds } = await api.get<{
      rounds: Array<{
        number: number;
        state: string;
        modelVersionId: string;
        baseModelVersionId: string;
        metrics: { evaluation: { accuracy: number; numExamples: number; sites: number } };
      }>;
    }>(`/api/v1/federations/${fed.id}/rounds`);
    expect(rounds.map((r) => r.state)).toEqual(['committed', 'committed']);
    expect(rounds[1]!.baseModelVersionId).toBe(rounds[0]!.modelVersionId);
    expect(rounds[1]!.metrics.evaluation.sites).toBe(3);
    // Evaluated on the rows each site held out (20% of its shard, stratified), never on training rows.
    const held = nodes.reduce((a, n) => a + n.node.rows.eval, 0);
    expect(held).toBeGreaterThan(0.18 * 569);
    expect(nodes.every((n) => n.node.rows.train + n.node.rows.eval === n.site.data.numRows)).toBe(
      true,
    );
    expect(rounds[1]!.metrics.evaluation.numExamples).toBe(held);

    for (const [i, round] of rounds.entries()) {
      // Independently: each site's local weights after training, weighted by its row count.
      const local = sites.map((s) => updates.get(s.name)![i]!);
      expect(local.every((l) => l.round === round.number)).toBe(true);
      const expected = weightedAverage(
        local.map((l) => l.localWeights),
        local.map((l) => l.numExamples),
      );
      const got = await api.modelWeights(fed.id, round.modelVersionId);
      expect(got.weights.length).toBe(31);
      let maxErr = 0;
      for (let k = 0; k < expected.length; k++)
        maxErr = Math.max(maxErr, Math.abs(got.weights[k]! - expected[k]!));
      expect(maxErr).toBeLessThan(1e-5);
      // And the model did move: it is not the base model.
      const base = await api.modelWeights(fed.id, round.baseModelVersionId);
      expect(base.hash).not.toBe(got.hash);
    }
    const current = await api.modelWeights(fed.id, 'current');
    expect(current.versionId).toBe(rounds[1]!.modelVersionId);
    for (const n of nodes) n.node.stop();
  });
});
