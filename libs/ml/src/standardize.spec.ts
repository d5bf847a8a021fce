import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Dataset } from './dataset';
import { partitionIid } from './split';
import { combineFeatureStats, featureStatsPartial, standardize } from './standardize';

function dataset(rows: number[][], labels?: number[]): Dataset {
  const numFeatures = rows[0]?.length ?? 1;
  return {
    features: Float32Array.from(rows.flat()),
    labels: Float32Array.from(labels ?? rows.map((_, i) => i % 2)),
    numRows: rows.length,
    numFeatures,
    featureNames: Array.from({ length: numFeatures }, (_, i) => `f${i}`),
    labelName: 'y',
  };
}

describe('combineFeatureStats', () => {
  it('gives the population mean and std', () => {
    const stats = combineFeatureStats([
      featureStatsPartial(
        dataset([
          [1, 10],
          [3, 10],
          [5, 10],
        ]),
      ),
    ]);
    expect(stats.mean).toEqual([3, 10]);
    expect(stats.std[0]).toBeCloseTo(Math.sqrt(8 / 3), 12);
    expect(stats.std[1]).toBe(1); // constant feature
  });

  it('combines the partials of any partition into the statistics of the whole', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.tuple(fc.integer({ min: -1000, max: 1000 }), fc.integer({ min: 0, max: 100_000 })),
          { minLength: 8, maxLength: 80 },
        ),
        fc.integer({ min: 1, max: 4 }),
        fc.integer(),
        (pairs, parts, seed) => {
          const ds = dataset(pairs.map(([a, b]) => [a / 8, b / 16]));
          const whole = combineFeatureStats([featureStatsPartial(ds)]);
          const combined = combineFeatureStats(
            partitionIid(ds, parts, seed).map(featureStatsPartial),
          );
          for (let j = 0; j < 2; j++) {
            expect(combined.mean[j]).toBeCloseTo(whole.mean[j] as number, 6);
            expect(combined.std[j]).toBeCloseTo(whole.std[j] as number, 6);
          }
        },
      ),
      { numRuns: 100 },
    );
  });

  it('refuses partials with different feature counts', () => {
    const a = featureStatsPartial(dataset([[1, 2]]));
    const b = featureStatsPartial(dataset([[1, 2, 3]]));
    expect(() => combineFeatureStats([a, b])).toThrow('partial 1 has 3 sums');
  });
});

describe('standardize', () => {
  it('maps every feature to zero mean and unit variance without touching the input', () => {
    const ds = dataset([
      [1, 100],
      [2, 300],
      [6, 200],
      [3, 400],
    ]);
    const copy = ds.features.slice();
    const out = standardize(ds, combineFeatureStats([featureStatsPartial(ds)]));
    expect(ds.features).toEqual(copy);
    const after = combineFeatureStats([featureStatsPartial(out)]);
    after.mean.forEach((m) => expect(m).toBeCloseTo(0, 6));
    after.std.forEach((s) => expect(s).toBeCloseTo(1, 6));
  });

  it('refuses statistics of another width', () => {
    expect(() => standardize(dataset([[1, 2]]), { mean: [0], std: [1] })).toThrow(
      'the statistics cover 1 means and 1 standard deviations; the dataset has 2 features',
    );
  });
});
