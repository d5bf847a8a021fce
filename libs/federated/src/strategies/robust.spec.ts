import { describe, expect, it } from 'vitest';
import { PlainSumCollector, type SiteUpdate } from '../index';
import { StrategyErrorCode } from './errors';
import { FedAvg } from './fedavg';
import { Krum, krumScores } from './krum';
import { Median } from './median';
import { MultiKrum } from './multi-krum';
import { seededUniformRandom, shuffled } from './random';
import { bucketMeans } from './robust';
import { TrimmedMean } from './trimmed-mean';

const f32 = (...xs: number[]): Float32Array => Float32Array.from(xs);
const updates = (...deltas: number[][]): SiteUpdate[] =>
  deltas.map((d, k) => ({ siteId: `s${k}`, delta: f32(...d), weight: 1 }));
const zeros = (n: number): Float32Array => new Float32Array(n);
const step = (s: { aggregateTrain: Median['aggregateTrain'] }, ups: SiteUpdate[]): number[] =>
  Array.from(s.aggregateTrain(zeros(ups[0]!.delta.length), ups, { steps: 0, vectors: {} }).weights);

describe('median', () => {
  it('moves each weight by the median of the updates for it', () => {
    const s = new Median({});
    expect(step(s, updates([1, 5, -1], [2, -3, 0], [100, 4, 2]))).toEqual([2, 4, 0]);
  });

  it('averages the two middle values for an even count', () => {
    const s = new Median({});
    // Columns sorted: [1, 2, 3, 100], [-3, 0, 4, 5], [-1, 0, 1, 2].
    expect(step(s, updates([1, 5, -1], [2, -3, 0], [100, 4, 2], [3, 0, 1]))).toEqual([2.5, 2, 0.5]);
  });

  it('ignores the weight a site claims', () => {
    const ups = updates([1], [2], [3]);
    ups[2]!.weight = 1e6;
    expect(step(new Median({}), ups)).toEqual([2]);
  });

  it('refuses a round that yielded only a sum, saying it needs each update', () => {
    const c = new PlainSumCollector(1);
    c.add({ siteId: 'a', delta: f32(1), weight: 1 });
    const s = new Median({});
    expect(() => s.aggregateTrain(zeros(1), c.result(), s.initialState())).toThrow(
      expect.objectContaining({ code: StrategyErrorCode.STRATEGY_NEEDS_INDIVIDUAL_UPDATES }),
    );
  });
});

describe('trimmed-mean', () => {
  const five = updates([1, -10], [2, 0], [3, 1], [4, 2], [100, 3]);

  it('drops floor(beta n) values at each end of every coordinate and averages the rest', () => {
    // beta 0.2, n 5: one dropped each side; [2, 3, 4] -> 3 and [0, 1, 2] -> 1.
    expect(step(new TrimmedMean({ beta: 0.2 }), five)).toEqual([3, 1]);
  });

  it('is the plain mean when beta n is below one', () => {
    const out = step(new TrimmedMean({ beta: 0.1 }), five);
    expect(out[0]).toBeCloseTo(22, 5);
    expect(out[1]).toBeCloseTo(-0.8, 5);
  });
});

describe('krum and multi-krum', () => {
  // Four honest updates near the origin and one outlier. Squared distances:
  //   a=[0,0] b=[1,0] c=[0,2] d=[1,1] e=[10,10]
  //   a: b 1, c 4, d 2, e 200 | b: a 1, c 5, d 1, e 181 | c: a 4, b 5, d 2, e 164
  //   d: a 2, b 1, c 2, e 162 | e: a 200, b 181, c 164, d 162
  // With f = 1, n - f - 2 = 2 nearest: scores a 3, b 2, c 6, d 3, e 326.
  const worked = updates([0, 0], [1, 0], [0, 2], [1, 1], [10, 10]);

  it('scores each update by its distances to its n - f - 2 nearest neighbours', () => {
    expect(
      krumScores(
        worked.map((u) => u.delta),
        1,
      ),
    ).toEqual([3, 2, 6, 3, 326]);
  });

  it('Krum takes the best-scored update, never the outlier', () => {
    expect(step(new Krum(1, undefined), worked)).toEqual([1, 0]);
  });

  it('Multi-Krum averages the m best-scored updates', () => {
    // m = 3: b, a, d -> [2/3, 1/3].
    const out = step(new MultiKrum({ byzantine: 1, selected: 3 }), worked);
    expect(out[0]).toBeCloseTo(2 / 3, 6);
    expect(out[1]).toBeCloseTo(1 / 3, 6);
    // m defaults to n - f = 4: every honest update, [0.5, 0.75].
    expect(step(new MultiKrum({ byzantine: 1 }), worked)).toEqual([0.5, 0.75]);
  });

  it('ignore an outlier that claims a large weight, which drags FedAvg away', () => {
    const loud = updates([0, 0], [1, 0], [0, 2], [1, 1], [10, 10]);
    loud[4]!.weight = 96;
    const avg = new FedAvg().aggregateTrain(zeros(2), loud, { steps: 0, vectors: {} }).weights;
    expect(avg[0]).toBeGreaterThan(9);
    expect(step(new MultiKrum({ byzantine: 1 }), loud)).toEqual([0.5, 0.75]);
  });

  it('refuses fewer than 2f + 3 updates, naming the bound', () => {
    expect(() => step(new Krum(1, undefined), worked.slice(0, 4))).toThrow(
      expect.objectContaining({
        code: StrategyErrorCode.STRATEGY_TOO_FEW_UPDATES,
        message: expect.stringMatching(/more than 2f \+ 2 = 4 inputs, got 4/),
      }),
    );
    expect(() => step(new MultiKrum({ byzantine: 0, selected: 6 }), worked)).toThrow(
      /m = 6 inputs, got 5/,
    );
  });
});

describe('bucketing', () => {
  const six = updates([0], [1], [2], [3], [4], [5]).map((u) => u.delta);

  it('averages random buckets of s, the same ones for the same seed', () => {
    const a = bucketMeans(six, 2, seededUniformRandom(42)).map((v) => v[0]!);
    const b = bucketMeans(six, 2, seededUniformRandom(42)).map((v) => v[0]);
    expect(a).toEqual(b);
    expect(a).toHaveLength(3);
    // Whatever the buckets, their means average to the mean of all.
    expect(a.reduce((s, x) => s + x, 0) / 3).toBeCloseTo(2.5, 12);
    const seeds = [1, 2, 3, 4, 5].map((seed) =>
      JSON.stringify(bucketMeans(six, 2, seededUniformRandom(seed)).map((v) => v[0])),
    );
    expect(new Set(seeds).size).toBeGreaterThan(1);
  });

  it('keeps a smaller last bucket', () => {
    const [full, rest] = bucketMeans(six, 4, seededUniformRandom(7)).map((v) => v[0]!);
    // A bucket of four and one of two: 4 full + 2 rest is the sum of all six.
    expect(4 * full! + 2 * rest!).toBeCloseTo(15, 12);
    expect(bucketMeans(six, 4, seededUniformRandom(7))).toHaveLength(2);
  });

  it('gives the same robust step for the same seed', () => {
    const ups = updates([0, 0], [1, 0], [0, 2], [1, 1], [10, 10], [0.5, 0.5], [1, 2], [2, 1]);
    const run = (seed: number) => step(new Krum(0, 2, { random: seededUniformRandom(seed) }), ups);
    expect(run(9)).toEqual(run(9));
  });

  it('counts buckets, not updates, against Krum’s bound', () => {
    const ups = updates([0], [1], [2], [3], [4], [5]);
    expect(() => step(new Krum(1, 2, { random: seededUniformRandom(1) }), ups)).toThrow(
      /got 3 \(buckets of 2\)/,
    );
  });

  it('shuffles into a permutation of its input', () => {
    const out = shuffled([1, 2, 3, 4, 5, 6, 7], seededUniformRandom(3));
    expect([...out].sort()).toEqual([1, 2, 3, 4, 5, 6, 7]);
  });
});
