import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Dataset } from './dataset';
import { normalSample, seededRandom } from './random';
import {
  statisticsFromSum,
  statisticsSensitivity,
  statisticsVector,
  type FeatureBounds,
} from './secure-stats';
import { partitionIid } from './split';
import { combineFeatureStats, featureStatsPartial, standardize } from './standardize';

function dataset(rows: number[][]): Dataset {
  const numFeatures = rows[0]?.length ?? 2;
  return {
    features: Float32Array.from(rows.flat()),
    labels: Float32Array.from(rows.map((_, i) => i % 2)),
    numRows: rows.length,
    numFeatures,
    featureNames: Array.from({ length: numFeatures }, (_, i) => `f${i}`),
    labelName: 'y',
  };
}

function sumVectors(vectors: Float64Array[], length: number): Float64Array {
  const out = new Float64Array(length);
  for (const v of vectors) v.forEach((x, i) => (out[i] = (out[i] as number) + x));
  return out;
}

const l2 = (v: ArrayLike<number>): number =>
  Math.sqrt(Array.from(v).reduce((a, x) => a + x * x, 0));

function expectClose(actual: number[], expected: number[], relative: number): void {
  expect(actual).toHaveLength(expected.length);
  actual.forEach((a, j) => {
    const e = expected[j] as number;
    expect(Math.abs(a - e)).toBeLessThanOrEqual(relative * Math.max(1, Math.abs(e)));
  });
}

/** Rows of two features on a grid of eighths and sixteenths, never constant (two fixed rows). */
const rowsArb = fc
  .array(fc.tuple(fc.integer({ min: -1000, max: 1000 }), fc.integer({ min: 0, max: 100_000 })), {
    minLength: 6,
    maxLength: 80,
  })
  .map((pairs) => [[0, 0], [1, 1], ...pairs.map(([a, b]) => [a / 8, b / 16])]);

describe('statisticsFromSum of the summed vectors of the shards', () => {
  it('equals the pooled statistics of combineFeatureStats without bounds', () => {
    fc.assert(
      fc.property(rowsArb, fc.integer({ min: 1, max: 5 }), fc.integer(), (rows, parts, seed) => {
        const ds = dataset(rows);
        const shards = partitionIid(ds, parts, seed);
        const options = { bounds: null, perSite: false };
        const sum = sumVectors(
          shards.map((s) => statisticsVector(s, options)),
          5,
        );
        const decoded = statisticsFromSum(sum, { ...options, features: 2 });
        const pooled = combineFeatureStats([featureStatsPartial(ds)]);
        expect(decoded.count).toBe(ds.numRows);
        expectClose(decoded.mean, pooled.mean, 1e-9);
        expectClose(decoded.std, pooled.std, 1e-9);
      }),
      { numRuns: 100 },
    );
  });

  it('gives std 1 to a constant feature without bounds, as combineFeatureStats does', () => {
    const ds = dataset([
      [1, 7],
      [2, 7],
      [4, 7],
    ]);
    const decoded = statisticsFromSum(statisticsVector(ds, { bounds: null, perSite: false }), {
      bounds: null,
      perSite: false,
      features: 2,
    });
    expect(decoded).toEqual({ ...combineFeatureStats([featureStatsPartial(ds)]), count: 3 });
  });

  it('equals the pooled statistics with bounds wider than the data', () => {
    const bounds: FeatureBounds = { lo: [-130, -10], hi: [130, 7000] };
    fc.assert(
      fc.property(rowsArb, fc.integer({ min: 1, max: 5 }), fc.integer(), (rows, parts, seed) => {
        const ds = dataset(rows);
        const options = { bounds, perSite: false };
        const sum = sumVectors(
          partitionIid(ds, parts, seed).map((s) => statisticsVector(s, options)),
          5,
        );
        const decoded = statisticsFromSum(sum, { ...options, features: 2 });
        const pooled = combineFeatureStats([featureStatsPartial(ds)]);
        expect(decoded.count).toBe(ds.numRows);
        expectClose(decoded.mean, pooled.mean, 1e-9);
        expectClose(decoded.std, pooled.std, 1e-9);
      }),
      { numRuns: 100 },
    );
  });

  it('equals the statistics of the clipped values with tight bounds', () => {
    const bounds: FeatureBounds = { lo: [-20, 1000], hi: [30, 4000] };
    fc.assert(
      fc.property(rowsArb, fc.integer({ min: 1, max: 5 }), fc.integer(), (rows, parts, seed) => {
        const ds = dataset(rows);
        const options = { bounds, perSite: false };
        const sum = sumVectors(
          partitionIid(ds, parts, seed).map((s) => statisticsVector(s, options)),
          5,
        );
        const decoded = statisticsFromSum(sum, { ...options, features: 2 });
        const clipped = dataset(
          rows.map((row) =>
            row.map((x, j) =>
              Math.min(Math.max(x, bounds.lo[j] as number), bounds.hi[j] as number),
            ),
          ),
        );
        const pooled = combineFeatureStats([featureStatsPartial(clipped)]);
        expectClose(decoded.mean, pooled.mean, 1e-9);
        decoded.std.forEach((s, j) => {
          const width = (bounds.hi[j] as number) - (bounds.lo[j] as number);
          // A feature clipped to one value has zero spread: combineFeatureStats says 1, we the floor.
          const expected = pooled.std[j] === 1 ? 1e-3 * width : (pooled.std[j] as number);
          expect(Math.abs(s - expected)).toBeLessThanOrEqual(1e-9 * Math.max(1, expected));
        });
      }),
      { numRuns: 100 },
    );
  });

  it('decodes the equal-weight mixture of the sites at site level, counting sites', () => {
    const sites = [
      dataset([[1], [3]]),
      dataset([[10], [10], [10], [14]]),
      dataset([[-2], [0], [2], [4], [6], [8]]),
    ];
    const options = { bounds: null, perSite: true };
    const decoded = statisticsFromSum(
      sumVectors(
        sites.map((s) => statisticsVector(s, options)),
        3,
      ),
      { ...options, features: 1 },
    );
    // Site means 2, 11, 3; site means of squares 5, 124, 124/6.
    const mean = (2 + 11 + 3) / 3;
    const secondMoment = (5 + 124 + 124 / 6) / 3;
    expect(decoded.count).toBe(3);
    expect(decoded.mean[0]).toBeCloseTo(mean, 12);
    expect(decoded.std[0]).toBeCloseTo(Math.sqrt(secondMoment - mean * mean), 12);
  });
});

/** A dataset of 1..3 features, its bounds, and one extra row that may fall outside them. */
const boundedCase = fc.integer({ min: 1, max: 3 }).chain((d) =>
  fc.record({
    rows: fc.array(
      fc.array(fc.double({ min: -1e4, max: 1e4, noNaN: true }), { minLength: d, maxLength: d }),
      {
        maxLength: 30,
      },
    ),
    extra: fc.array(fc.double({ min: -2e4, max: 2e4, noNaN: true }), {
      minLength: d,
      maxLength: d,
    }),
    lo: fc.array(fc.double({ min: -1e4, max: 1e4, noNaN: true }), { minLength: d, maxLength: d }),
    width: fc.array(fc.double({ min: 1e-3, max: 1e4, noNaN: true }), {
      minLength: d,
      maxLength: d,
    }),
    d: fc.constant(d),
  }),
);

function datasetOf(rows: number[][], d: number): Dataset {
  return {
    ...dataset(rows),
    numFeatures: d,
    featureNames: Array.from({ length: d }, (_, i) => `f${i}`),
  };
}

describe('statisticsSensitivity', () => {
  it('bounds the L2 change of the vector when one row is added, inside or outside the bounds', () => {
    fc.assert(
      fc.property(boundedCase, ({ rows, extra, lo, width, d }) => {
        const bounds = { lo, hi: lo.map((l, j) => l + (width[j] as number)) };
        const options = { bounds, perSite: false };
        const before = statisticsVector(datasetOf(rows, d), options);
        const after = statisticsVector(datasetOf([...rows, extra], d), options);
        const change = l2(after.map((x, i) => x - (before[i] as number)));
        expect(change).toBeLessThanOrEqual(statisticsSensitivity(d, options) + 1e-9);
      }),
      { numRuns: 300 },
    );
  });

  it('bounds the L2 norm of a whole site vector at site level', () => {
    fc.assert(
      fc.property(boundedCase, ({ rows, extra, lo, width, d }) => {
        const bounds = { lo, hi: lo.map((l, j) => l + (width[j] as number)) };
        const options = { bounds, perSite: true };
        const site = statisticsVector(datasetOf([...rows, extra], d), options);
        expect(l2(site)).toBeLessThanOrEqual(statisticsSensitivity(d, options) + 1e-12);
      }),
      { numRuns: 300 },
    );
  });

  it('is reached by a row at a corner of the bounds, at both levels', () => {
    const bounds = { lo: [0, -5, 10], hi: [1, 5, 20] };
    const corner = dataset([[1, -5, 20]]);
    for (const perSite of [false, true]) {
      const options = { bounds, perSite };
      expect(l2(statisticsVector(corner, options))).toBeCloseTo(
        statisticsSensitivity(3, options),
        12,
      );
    }
    expect(statisticsSensitivity(3, { perSite: false })).toBeCloseTo(Math.sqrt(1 + 3 * 0.3125), 15);
  });

  it('refuses statistics without bounds, which have no finite sensitivity', () => {
    expect(() => statisticsSensitivity(3, { bounds: null, perSite: false })).toThrow(
      'no finite sensitivity',
    );
  });
});

describe('statisticsFromSum on noisy sums', () => {
  it('returns finite means within the bounds and positive stds for any noise', () => {
    const bounds: FeatureBounds = { lo: [-1, 0, 1000], hi: [1, 1e-3, 1e6] };
    const rng = seededRandom(7);
    const ds = dataset(
      Array.from({ length: 40 }, () => [rng() * 2 - 1, rng() * 1e-3, 1000 + rng() * 1e5]),
    );
    fc.assert(
      fc.property(
        fc.double({ min: 0, max: 1e6, noNaN: true }),
        fc.boolean(),
        fc.integer(),
        (sigma, perSite, seed) => {
          const noise = seededRandom(seed);
          const options = { bounds, perSite };
          const sum = statisticsVector(ds, options).map((x) => x + sigma * normalSample(noise));
          const decoded = statisticsFromSum(sum, { ...options, features: 3 });
          expect(Number.isInteger(decoded.count) && decoded.count >= 0).toBe(true);
          decoded.mean.forEach((m, j) => {
            expect(m).toBeGreaterThanOrEqual(bounds.lo[j] as number);
            expect(m).toBeLessThanOrEqual(bounds.hi[j] as number);
          });
          decoded.std.forEach((s, j) => {
            const width = (bounds.hi[j] as number) - (bounds.lo[j] as number);
            expect(s).toBeGreaterThanOrEqual(1e-3 * width * (1 - 1e-12));
            expect(s).toBeLessThanOrEqual(width / 2);
          });
          expect(() => standardize(ds, decoded)).not.toThrow();
        },
      ),
      { numRuns: 200 },
    );
  });

  it('survives extreme finite sums, with or without bounds', () => {
    const extremes = [
      [0, 0, 0],
      [-1e300, 1e300, -1e300],
      [1e-300, -1e300, 1e300],
      [1e308, 1e308, 1e308],
      [-5, -3, -2],
    ];
    for (const sum of extremes) {
      for (const bounds of [null, { lo: [0], hi: [1] }]) {
        const decoded = statisticsFromSum(sum, { bounds, perSite: false, features: 1 });
        expect(Number.isFinite(decoded.mean[0])).toBe(true);
        expect(decoded.std[0]).toBeGreaterThan(0);
        expect(Number.isFinite(decoded.std[0])).toBe(true);
        expect(Number.isInteger(decoded.count) && decoded.count >= 0).toBe(true);
      }
    }
  });

  it('refuses a sum of the wrong length or bounds with lo >= hi', () => {
    expect(() => statisticsFromSum([1, 2], { bounds: null, perSite: false, features: 1 })).toThrow(
      '1 + 2 x 1 = 3',
    );
    expect(() =>
      statisticsVector(dataset([[1, 2]]), {
        bounds: { lo: [0, 5], hi: [1, 5] },
        perSite: false,
      }),
    ).toThrow('feature 1: bounds [5, 5]');
  });
});
