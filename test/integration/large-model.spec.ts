// Issue 14: creating a federation with a 50M-parameter model held the embedded database's only
// connection for minutes (its weights went in as one statement), so every other request waited.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initialWeights, parameterCount, parseModelSpec } from '@confide/ml/spec';
import { sha256Hex, float32ToBytes } from '@confide/protocol';
import { databaseKind } from '../support/database';
import { createFederation, testAggregator } from '../support/federation';
import type { RunningAggregator } from '@confide/aggregator';
import type { ApiClient } from '../../apps/cli/src/api-client';

// About 9M parameters (36 MB): tens of chunks, and a single statement slow enough to see.
const SPEC = { kind: 'mlp', inputDim: 3000, hidden: [3000], output: 'binary' } as const;

describe(`a federation with a large model (${databaseKind})`, { timeout: 180_000 }, () => {
  let agg: RunningAggregator;
  let api: ApiClient;
  let close: () => Promise<void>;

  beforeAll(async () => {
    ({ agg, api, close } = await testAggregator());
  });
  afterAll(async () => {
    await close?.();
  });

  it('is created while other requests keep being answered, and serves back the seeded weights', async () => {
    const small = await createFederation(api);
    let creating = true;
    const started = performance.now();
    const created = createFederation(api, { modelSpec: SPEC, seed: 11 }).finally(() => {
      creating = false;
    });
    const latencies: number[] = [];
    while (creating) {
      const t = performance.now();
      const got = await api.get<{ id: string }>(`/api/v1/federations/${small.id}`);
      expect(got.id).toBe(small.id);
      latencies.push(performance.now() - t);
      await new Promise((r) => setTimeout(r, 10));
    }
    const fed = await created;
    const took = performance.now() - started;

    // Requests started during the creation were answered all along: none waited for most of it, as
    // one did for the single statement that stored the whole model.
    expect(Math.max(...latencies)).toBeLessThan(took / 2);
    expect(latencies.length).toBeGreaterThanOrEqual(3);

    const spec = parseModelSpec(SPEC);
    const expected = initialWeights(spec, 11);
    const { weights, hash } = await api.modelWeights(fed.id);
    expect(weights.length).toBe(parameterCount(spec));
    expect(hash).toBe(sha256Hex(float32ToBytes(expected)));
    expect(
      Buffer.compare(Buffer.from(float32ToBytes(weights)), Buffer.from(float32ToBytes(expected))),
    ).toBe(0);
  });

  it('leaves no stored weights behind when a creation fails after storing them', async () => {
    const blobs = async (): Promise<number> =>
      (
        await agg.db.manager.query<Array<{ n: number }>>(
          `SELECT count(*)::int AS n FROM weight_blob b
            WHERE NOT EXISTS (SELECT 1 FROM model_version m WHERE m.weights_blob_id = b.id)`,
        )
      )[0]!.n;
    expect(await blobs()).toBe(0);
    // Both pass the name check, both store their weights; the second to commit breaks the unique name.
    const same = {
      name: 'twice',
      modelSpec: { kind: 'mlp', inputDim: 300, hidden: [300], output: 'binary' },
    };
    const results = await Promise.allSettled([
      createFederation(api, same),
      createFederation(api, same),
    ]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect(await blobs()).toBe(0);
  });
});
