import { checkDataset, type Dataset } from './dataset';
import { MlError } from './errors';
import type { FeatureStats } from './standardize';

// Feature statistics through secure aggregation: each site turns its data into a vector of sums,
// the aggregator sees only the element-wise sum over the sites (plus Gaussian noise under
// differential privacy) and turns it back into federation-wide means and standard deviations.
//
// Vector layout, d features: [N, S1_0 .. S1_{d-1}, S2_0 .. S2_{d-1}]
//   record level: N = rows, S1_j = sum of x'_j, S2_j = sum of x'_j^2
//   site level:   N = 1,    S1_j = mean of x'_j, S2_j = mean of x'_j^2 (a site with no rows sends zeros)
// where x' = (clip(x, lo, hi) - lo) / (hi - lo) - 0.5 in [-0.5, 0.5] with bounds, x itself without.

/** Public per-feature bounds from the federation's data schema (lo[j] < hi[j]); values are clipped to them. */
export type FeatureBounds = { lo: number[]; hi: number[] };

/** Options of {@link statisticsVector} and {@link statisticsFromSum}. */
export interface StatisticsOptions {
  /** Clip and rescale to these bounds; null sends raw sums (exact, but no differential privacy). */
  bounds: FeatureBounds | null;
  /** Site-level privacy: each site sends [1, means, means of squares] instead of sums. */
  perSite: boolean;
}

/**
 * Smallest standard deviation decoded with bounds, as a fraction of the bound width. Under noise
 * the variance estimate can be zero or negative; this floor keeps standardised in-bound values
 * within +-1000 (never Infinity), and a spread under 0.1% of the declared range is below what a
 * noisy federation-wide estimate can resolve anyway.
 */
const STD_FLOOR_OF_WIDTH = 1e-3;

/** Refuses bounds that are not d finite [lo, hi] pairs with lo < hi (INVALID_ARGUMENT). */
export function checkBounds(bounds: FeatureBounds, d: number): void {
  if (bounds.lo.length !== d || bounds.hi.length !== d) {
    throw new MlError(
      'INVALID_ARGUMENT',
      `feature bounds give ${bounds.lo.length} lower and ${bounds.hi.length} upper bounds for ${d} features`,
    );
  }
  for (let j = 0; j < d; j++) {
    const lo = bounds.lo[j] as number;
    const hi = bounds.hi[j] as number;
    if (!(lo < hi) || !Number.isFinite(hi - lo)) {
      throw new MlError(
        'INVALID_ARGUMENT',
        `feature ${j}: bounds [${lo}, ${hi}] must be finite numbers with lo < hi`,
      );
    }
  }
}

function checkFeatureCount(d: number): void {
  if (!Number.isInteger(d) || d < 1) {
    throw new MlError('INVALID_ARGUMENT', `feature count must be an integer >= 1, got ${d}`);
  }
}

/**
 * The site's vector of sums for the federated statistics, length 1 + 2d (layout above); with bounds
 * every value is clipped to [lo, hi] first. Refuses NaN, and infinite values without bounds.
 * @example statisticsVector(ds, { bounds: { lo: [0], hi: [100] }, perSite: false }) // [rows, S1, S2]
 */
export function statisticsVector(ds: Dataset, options: StatisticsOptions): Float64Array {
  checkDataset(ds);
  const d = ds.numFeatures;
  const { bounds, perSite } = options;
  if (bounds !== null) checkBounds(bounds, d);
  const out = new Float64Array(1 + 2 * d);
  for (let r = 0; r < ds.numRows; r++) {
    for (let j = 0; j < d; j++) {
      let x = ds.features[r * d + j] as number;
      if (Number.isNaN(x) || (bounds === null && !Number.isFinite(x))) {
        throw new MlError('DATASET', `row ${r + 1}, feature ${j}: value ${x} is not a number`);
      }
      if (bounds !== null) {
        const lo = bounds.lo[j] as number;
        const hi = bounds.hi[j] as number;
        // x - lo <= hi - lo in floating point too, so x' stays within [-0.5, 0.5] exactly.
        x = (Math.min(Math.max(x, lo), hi) - lo) / (hi - lo) - 0.5;
      }
      out[1 + j] = (out[1 + j] as number) + x;
      out[1 + d + j] = (out[1 + d + j] as number) + x * x;
    }
  }
  out[0] = ds.numRows;
  if (perSite && ds.numRows > 0) {
    for (let i = 0; i < out.length; i++) out[i] = (out[i] as number) / ds.numRows;
  }
  return out;
}

/**
 * L2 sensitivity of {@link statisticsVector} with bounds: sqrt(1 + 5d/16), at record and site level.
 * Without bounds (options.bounds === null) no finite sensitivity exists, so it refuses.
 *
 * Record level (neighbouring datasets differ by adding or removing one row): N moves by 1, S1_j by
 * x'_j and S2_j by x'_j^2, so the squared change is 1 + sum_j (x'^2 + x'^4) <= 1 + d (1/4 + 1/16),
 * reached by a row at a corner of the box (|x'_j| = 1/2). Replacing a row instead would give
 * sqrt(d + d/16): the accountant must use add/remove adjacency.
 * Site level (adding or removing one site): the whole vector [1, m_j, q_j] with m_j = mean x'_j,
 * q_j = mean x'_j^2; m_j^2 <= q_j <= 1/4 (Jensen), so m_j^2 + q_j^2 <= 1/4 + 1/16, the same bound,
 * reached by a site whose rows all sit at corners.
 * @example statisticsSensitivity(30, { perSite: false }) // sqrt(1 + 150/16), about 3.22
 */
export function statisticsSensitivity(
  d: number,
  options: { perSite: boolean; bounds?: FeatureBounds | null },
): number {
  checkFeatureCount(d);
  if (options.bounds === null) {
    throw new MlError(
      'INVALID_ARGUMENT',
      'feature statistics without bounds have no finite sensitivity: differential privacy needs ' +
        'the bounds of every feature from the data schema',
    );
  }
  if (options.bounds !== undefined) checkBounds(options.bounds, d);
  // One formula for both levels (see above); perSite only names which adjacency it is for.
  return Math.sqrt(1 + d * (0.25 + 0.0625));
}

const clamp = (x: number, lo: number, hi: number): number => Math.min(Math.max(x, lo), hi);

/**
 * Federation-wide mean, population std and count (rows, or sites for perSite) from the sum of the
 * sites' {@link statisticsVector}s, in the original feature units; robust to noise (never NaN).
 *
 * Clamping: N is clamped to >= 1 as a divisor and count = round(max(0, N)). With bounds the mean of
 * x' is clamped to [-0.5, 0.5] (the mean lies within the bounds) and its variance to
 * [(1e-3)^2, 1/4 - mean^2] (the largest variance on an interval for a given mean), so
 * std >= 1e-3 (hi - lo). Without bounds (no noise: exact sums) a numerically zero variance gives
 * std 1, as in combineFeatureStats, so the result equals the plain pre-round's. For perSite the
 * statistics are those of the equal-weight mixture of the sites.
 * @example standardize(ds, statisticsFromSum(summed, { bounds, perSite: false, features: d }))
 */
export function statisticsFromSum(
  sum: ArrayLike<number>,
  options: StatisticsOptions & { features: number },
): FeatureStats & { count: number } {
  const { bounds, features: d } = options;
  checkFeatureCount(d);
  if (bounds !== null) checkBounds(bounds, d);
  if (sum.length !== 1 + 2 * d) {
    throw new MlError(
      'STATS_MISMATCH',
      `the summed statistics hold ${sum.length} values; ${d} features need 1 + 2 x ${d} = ${1 + 2 * d}`,
    );
  }
  for (let i = 0; i < sum.length; i++) {
    if (!Number.isFinite(sum[i])) {
      throw new MlError(
        'STATS_MISMATCH',
        `summed statistic ${i} is ${sum[i]}, not a finite number`,
      );
    }
  }
  const rawN = sum[0] as number;
  const n = Math.max(1, rawN);
  const mean: number[] = [];
  const std: number[] = [];
  for (let j = 0; j < d; j++) {
    const m = (sum[1 + j] as number) / n;
    const e2 = (sum[1 + d + j] as number) / n;
    if (bounds === null) {
      // m * m may overflow to Infinity: the variance is then -Infinity and gets std 1, never NaN.
      const variance = e2 - m * m;
      mean.push(m);
      std.push(variance > 1e-12 * m * m && variance > 0 ? Math.sqrt(variance) : 1);
    } else {
      const lo = bounds.lo[j] as number;
      const width = (bounds.hi[j] as number) - lo;
      const mc = clamp(m, -0.5, 0.5);
      const floor = STD_FLOOR_OF_WIDTH * STD_FLOOR_OF_WIDTH;
      const variance = clamp(e2 - mc * mc, floor, Math.max(floor, 0.25 - mc * mc));
      mean.push(lo + (0.5 + mc) * width);
      std.push(Math.sqrt(variance) * width);
    }
  }
  return { mean, std, count: Math.round(clamp(rawN, 0, Number.MAX_SAFE_INTEGER)) };
}
