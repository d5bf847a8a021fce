import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FedAvg, PlainSumCollector, weightedAverage, subtract, applyTransforms } from './index';

describe('FedAvg over a plain collector', () => {
  it('gives the sample-weighted average of the sites’ new weights', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 40 }),
        fc.array(fc.integer({ min: 1, max: 1000 }), { minLength: 1, maxLength: 6 }),
        fc.integer(),
        (len, weights, seed) => {
          let s = seed;
          const rnd = (): number => ((s = (s * 1103515245 + 12345) | 0) >>> 8) / 2 ** 24 - 0.5;
          const global = Float32Array.from({ length: len }, rnd);
          const locals = weights.map(() => Float32Array.from({ length: len }, rnd));
          const collector = new PlainSumCollector(len);
          locals.forEach((w, k) =>
            collector.add({ siteId: `s${k}`, delta: subtract(w, global), weight: weights[k]! }),
          );
          const next = new FedAvg().serverStep(global, collector.result());
          const expected = weightedAverage(locals, weights);
          for (let i = 0; i < len; i++) expect(next[i]).toBeCloseTo(expected[i]!, 5);
        },
      ),
      { numRuns: 100 },
    );
  });

  it('refuses a second update from the same site', () => {
    const c = new PlainSumCollector(2);
    c.add({ siteId: 'a', delta: new Float32Array(2), weight: 1 });
    expect(() => c.add({ siteId: 'a', delta: new Float32Array(2), weight: 1 })).toThrow(/already/);
  });

  it('refuses a zero or non-finite weight', () => {
    const c = new PlainSumCollector(1);
    expect(() => c.add({ siteId: 'a', delta: new Float32Array(1), weight: 0 })).toThrow();
    expect(() => c.add({ siteId: 'b', delta: new Float32Array(1), weight: NaN })).toThrow();
  });
});

describe('client update transforms', () => {
  it('apply in order', async () => {
    const ctx = { federationId: 'f', runId: 'r', round: 1, numExamples: 1 };
    const out = await applyTransforms(
      new Float32Array([1]),
      [
        { name: 'double', apply: (u) => u.map((x) => x * 2) },
        { name: 'plus-one', apply: (u) => u.map((x) => x + 1) },
      ],
      ctx,
    );
    expect(Array.from(out)).toEqual([3]);
  });
});
