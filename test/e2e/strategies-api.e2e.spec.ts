/**
 * GET /api/v1/strategies on a real aggregator (PGlite, or DATABASE_URL): the registry as the
 * dashboard's federation form reads it, for the roles that may read federations.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { strategyConfigJsonSchema, strategyNames } from '@confide/federated';
import type { RunningAggregator } from '@confide/aggregator';
import { ApiClient, ApiRequestError } from '../../apps/cli/src/api-client';
import { databaseKind } from '../support/database';
import { testAggregator } from '../support/federation';

interface Entry {
  name: string;
  summary: string;
  needsIndividualUpdates: boolean;
  configSchema: { type?: string; properties?: Record<string, unknown> };
}

describe(`GET /api/v1/strategies (${databaseKind})`, () => {
  let env: Awaited<ReturnType<typeof testAggregator>>;
  let agg: RunningAggregator;

  beforeAll(async () => {
    env = await testAggregator();
    agg = env.agg;
  });
  afterAll(async () => {
    await env.close();
  });

  it("lists every registered strategy with its summary, whether it needs each site's update, and its config's JSON Schema", async () => {
    const list = await env.api.get<Entry[]>('/api/v1/strategies');
    expect(list.map((s) => s.name)).toEqual(strategyNames());
    for (const s of list) {
      expect(s.summary.length).toBeGreaterThan(0);
      expect(typeof s.needsIndividualUpdates).toBe('boolean');
      expect(s.configSchema).toEqual(strategyConfigJsonSchema(s.name));
      expect(s.configSchema.type).toBe('object');
    }
    const byName = new Map(list.map((s) => [s.name, s]));
    expect(byName.get('fedavg')!.needsIndividualUpdates).toBe(false);
    expect(byName.get('median')!.needsIndividualUpdates).toBe(true);
    expect(Object.keys(byName.get('fedadam')!.configSchema.properties!)).toContain(
      'serverLearningRate',
    );
  });

  it('answers an auditor too', async () => {
    const auditor = new ApiClient(agg.url, await agg.createToken('auditor', 'strategies reader'));
    expect((await auditor.get<Entry[]>('/api/v1/strategies')).length).toBe(strategyNames().length);
  });

  it('refuses a request without a token with 401', async () => {
    const res = await fetch(`${agg.url}/api/v1/strategies`);
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ error: { code: 'UNAUTHENTICATED' } });
    const e = await new ApiClient(agg.url, `cfd_admin_${'x'.repeat(43)}`)
      .get('/api/v1/strategies')
      .then(
        () => null,
        (err: unknown) => err,
      );
    expect(e).toBeInstanceOf(ApiRequestError);
    expect(e).toMatchObject({ status: 401, code: 'UNAUTHENTICATED' });
  });
});
