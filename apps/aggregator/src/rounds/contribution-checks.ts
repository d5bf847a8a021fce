import { ErrorCode, ProtocolError, squaredNorm, type SiteMetrics } from '@confide/protocol';
import type { FederationRow, SiteRow } from '../database/rows';

/**
 * Bounds on what one site can do to a round. In a plain federation every contribution is seen, so
 * each is checked against its range and an out-of-range one costs its sender the round; under secure
 * aggregation only the sums are seen, so the sums are checked for plausibility (see sum-checks.ts).
 */

/** The default federation-wide cap on a site's weight (its record count). */
export const DEFAULT_MAX_WEIGHT = 1_000_000;

/** How sites weigh in a round's average, as announced to them in `round.train`. */
export interface Weighting {
  /** 'records': by record count, capped; 'equal': every site weighs 1. */
  mode: 'records' | 'equal';
  /** The most records any site may claim. */
  cap: number;
}

/** The federation's weighting (site-level DP weighs every site 1 whatever the config says). */
export function weightingOf(fed: FederationRow): Weighting {
  const w = fed.config.weighting;
  const equal = w?.mode === 'equal' || fed.config.dp?.level === 'site';
  return { mode: equal ? 'equal' : 'records', cap: w?.maxWeight ?? DEFAULT_MAX_WEIGHT };
}

/**
 * The weight of a plain update: a claim above the announced cap is a lie (an honest node clamps to
 * it), so it excludes the site; below it, the admin's per-site `maxWeight` clamps further.
 * @example plainWeight(500, { mode: 'records', cap: 1000 }, { maxWeight: 200 }) // 200
 */
export function plainWeight(
  claimed: number | undefined,
  weighting: Weighting,
  site: Pick<SiteRow, 'maxWeight'> | null,
): number {
  if (weighting.mode === 'equal') return 1;
  if (claimed === undefined) {
    throw new ProtocolError(
      ErrorCode.MALFORMED_MESSAGE,
      'a plain update must say how many records it was trained on (its weight)',
    );
  }
  if (!Number.isSafeInteger(claimed) || claimed < 1 || claimed > weighting.cap) {
    throw new ProtocolError(
      ErrorCode.WEIGHT_OUT_OF_RANGE,
      `numExamples ${claimed} is outside [1, ${weighting.cap}], the range this round announced`,
    );
  }
  return Math.min(claimed, site?.maxWeight ?? Infinity);
}

/**
 * The largest L2 norm a plain update may have: the federation's `maxUpdateNorm`, else what the
 * quantisation clip would allow under secure aggregation (every coordinate within +-clip). With
 * site-level DP the site's own Gaussian noise comes on top of its clipped update: room is left for
 * it up to ten standard deviations past its expected norm.
 */
export function maxUpdateNorm(fed: FederationRow, length: number): number {
  const dp = fed.config.dp;
  if (dp?.level === 'site') {
    const noise = dp.noiseMultiplier * dp.clipNorm;
    return dp.clipNorm + noise * (Math.sqrt(length) + 10);
  }
  if (fed.config.maxUpdateNorm !== undefined) return fed.config.maxUpdateNorm;
  return (fed.config.secureAggregation?.clip ?? 10) * Math.sqrt(length);
}

/** Throws UPDATE_NORM_EXCEEDED when the update's L2 norm is above `max`. */
export function checkUpdateNorm(update: Float32Array | number, max: number): void {
  // A number is the update's squared norm, already computed (with the finiteness check).
  const norm = Math.sqrt(typeof update === 'number' ? update : squaredNorm(update, 'update'));
  if (!(norm <= max)) {
    throw new ProtocolError(
      ErrorCode.UPDATE_NORM_EXCEEDED,
      `the update's L2 norm ${norm.toPrecision(4)} is above the federation's clip ${max.toPrecision(4)}`,
    );
  }
}

/** Throws METRICS_OUT_OF_RANGE unless every metric lies in its range and the count within the cap. */
export function checkMetrics(m: SiteMetrics, cap: number): void {
  const bad: string[] = [];
  const unit = (name: string, x: number | null): void => {
    if (x !== null && !(x >= 0 && x <= 1)) bad.push(`${name} ${x} is outside [0, 1]`);
  };
  unit('accuracy', m.accuracy);
  unit('f1', m.f1);
  unit('auc', m.auc);
  if (!(m.loss >= 0) || !Number.isFinite(m.loss))
    bad.push(`loss ${m.loss} is not a finite value >= 0`);
  if (!(m.numExamples >= 1 && m.numExamples <= cap)) {
    bad.push(`numExamples ${m.numExamples} is outside [1, ${cap}]`);
  }
  if (bad.length) throw new ProtocolError(ErrorCode.METRICS_OUT_OF_RANGE, bad.join('; '));
}

/** One site's feature statistics in the clear. */
export interface PlainStats {
  count: number;
  sum: readonly number[];
  sumSq: readonly number[];
}

/**
 * Throws STATISTICS_OUT_OF_RANGE unless some data could produce these statistics: a count within the
 * cap, sums of squares no smaller than the squared sums allow (Cauchy-Schwarz), and, with declared
 * feature bounds, every feature's sums within what rows inside the bounds can reach.
 */
export function checkPlainStats(
  s: PlainStats,
  cap: number,
  bounds: { lo: readonly number[]; hi: readonly number[] } | null,
): void {
  const bad: string[] = [];
  if (!(s.count >= 1 && s.count <= cap)) bad.push(`count ${s.count} is outside [1, ${cap}]`);
  if (bounds && bounds.lo.length !== s.sum.length) {
    bad.push(`${s.sum.length} features, the federation declares bounds for ${bounds.lo.length}`);
  }
  const n = s.count;
  for (let j = 0; j < s.sum.length && bad.length < 5; j++) {
    const sum = s.sum[j] as number;
    const sq = s.sumSq[j] as number;
    // Relative slack for float rounding in the site's own accumulation.
    if (!(sq >= 0) || !(sq * n >= sum * sum * (1 - 1e-9) - 1e-9)) {
      bad.push(`feature ${j}: sum ${sum} and sum of squares ${sq} fit no ${n} real values`);
      continue;
    }
    if (!bounds) continue;
    const lo = bounds.lo[j] as number;
    const hi = bounds.hi[j] as number;
    const tol = 1e-9 * n * Math.max(Math.abs(lo), Math.abs(hi), 1);
    if (sum < n * lo - tol || sum > n * hi + tol) {
      bad.push(`feature ${j}: mean ${sum / n} is outside its declared bounds [${lo}, ${hi}]`);
    } else if (
      sq >
      n * Math.max(lo * lo, hi * hi) + tol * Math.max(Math.abs(lo), Math.abs(hi), 1)
    ) {
      bad.push(`feature ${j}: mean square ${sq / n} is beyond what values in [${lo}, ${hi}] reach`);
    }
  }
  if (bad.length) throw new ProtocolError(ErrorCode.STATISTICS_OUT_OF_RANGE, bad.join('; '));
}
