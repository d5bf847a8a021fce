import { describe, expect, it } from 'vitest';
import {
  chooseScale,
  dequantize,
  quantizeWeighted,
  simulateRound,
  type SecAggParams,
} from '@confide/secure-aggregation';
import { statisticsSumProblem, updateSumProblem } from './sum-checks';

/** A round's parameters as the aggregator chooses them for three sites and clip 10. */
const CLIP = 10;
const params: SecAggParams = {
  threshold: 2,
  graph: 'complete',
  threatModel: 'semi-honest',
  clip: CLIP,
  scale: chooseScale(CLIP, 3),
  maxSites: 3,
};

const update = (k: number): Float32Array =>
  Float32Array.from({ length: 8 }, (_, i) => 0.01 * k * Math.sin(i + k));

/** Three sites' quantised, weighted updates through a real secure-aggregation round, unmasked. */
function unmasked(inputs: Uint32Array[]): { sum: Float64Array; weight: number } {
  const values = dequantize(simulateRound({ params, inputs }).sum, params);
  return { sum: values.subarray(0, 8), weight: values[8]! };
}

describe('plausibility of an unmasked update sum', () => {
  it('passes the sum of sites that kept to their ranges', () => {
    const { sum, weight } = unmasked([
      quantizeWeighted(update(1), 0.2, params),
      quantizeWeighted(update(2), 0.5, params),
      quantizeWeighted(update(3), 0.3, params),
    ]);
    expect(weight).toBeCloseTo(1, 4);
    expect(updateSumProblem(sum, weight, 3, 1, CLIP)).toBeNull();
  });

  it('names a site that inflated its masked weight past the cap (the total weight is impossible)', () => {
    const liar = quantizeWeighted(update(3), 0.3, params);
    liar[8] = Math.round(5 * params.scale) >>> 0; // weight 5 where at most 1 is allowed
    const { sum, weight } = unmasked([
      quantizeWeighted(update(1), 0.2, params),
      quantizeWeighted(update(2), 0.5, params),
      liar,
    ]);
    expect(updateSumProblem(sum, weight, 3, 1, CLIP)).toMatch(
      /total weight 5\.(69|70)\d* is outside \(0, 3\]/,
    );
  });

  it('names a site that cancelled the others’ weights (the average leaves the clip range)', () => {
    const liar = quantizeWeighted(update(3), 0.3, params);
    // Its weight coordinate is minus the honest ones plus a sliver: the division blows the model up.
    liar[8] = Math.round(-0.6999 * params.scale) >>> 0;
    const { sum, weight } = unmasked([
      quantizeWeighted(update(1), 0.2, params),
      quantizeWeighted(update(2), 0.5, params),
      liar,
    ]);
    expect(weight).toBeGreaterThan(0);
    expect(updateSumProblem(sum, weight, 3, 1, CLIP)).toMatch(
      /weighted average is .* outside the quantisation range \+-10/,
    );
  });

  it('refuses a total weight of zero or less', () => {
    expect(updateSumProblem(new Float32Array(2), 0, 2, 1, CLIP)).toMatch(/outside \(0, 2\]/);
    expect(updateSumProblem(new Float32Array(2), -1, 2, 1, CLIP)).toMatch(/outside \(0, 2\]/);
  });
});

describe('plausibility of unmasked statistics', () => {
  const ok = { count: 30, mean: [1, 2], std: [1, 1] };
  it('passes counts within [sites, sites x cap] and finite standardisation', () => {
    expect(statisticsSumProblem(ok, 3, 100, false)).toBeNull();
  });
  it('refuses a count beyond what the sites may claim, or below one record a site', () => {
    expect(statisticsSumProblem({ ...ok, count: 301 }, 3, 100, false)).toMatch(
      /count 301 is outside \[3, 300\]/,
    );
    expect(statisticsSumProblem({ ...ok, count: 2 }, 3, 100, false)).toMatch(/outside \[3, 300\]/);
  });
  it('refuses, without declared bounds, a mean no site can standardise with (1e200)', () => {
    expect(statisticsSumProblem({ ...ok, mean: [1e200, 0] }, 3, 100, false)).toMatch(
      /feature 0: mean 1e\+200/,
    );
    // Declared bounds clamp the statistics, so only the count is checked.
    expect(statisticsSumProblem({ ...ok, mean: [1e200, 0] }, 3, 100, true)).toBeNull();
  });
});
