/**
 * Plausibility of what a secure sum unmasks. No single contribution is visible under secure
 * aggregation, so a site that ignores its quantisation range is caught only by its effect on the
 * sum: these checks say why a sum is impossible for sites that kept to the public ranges (the round
 * then aborts with that reason). Within the ranges a malicious site can still shift a sum; the
 * threat model says how far.
 */

/** Relative slack for the rounding of quantised sums. */
const SLACK = 1e-6;

/**
 * Why an unmasked update sum is impossible, or null: the total weight must lie in (0, contributors
 * x `maxSiteWeight`], and the weighted average, a convex combination of updates whose coordinates
 * each lie within +-`clip`, must lie within +-`clip` too.
 * @example updateSumProblem(Float32Array.of(3, -3), 2, 2, 1, 10) // null
 */
export function updateSumProblem(
  sum: ArrayLike<number>,
  totalWeight: number,
  contributors: number,
  maxSiteWeight: number,
  clip: number,
): string | null {
  const most = contributors * maxSiteWeight;
  if (!(totalWeight > 0) || totalWeight > most * (1 + SLACK) + SLACK) {
    return (
      `the unmasked total weight ${totalWeight} is outside (0, ${most}] ` +
      `(${contributors} site(s), each weighing at most ${maxSiteWeight})`
    );
  }
  const bound = clip * (1 + SLACK) + SLACK;
  for (let i = 0; i < sum.length; i++) {
    const avg = (sum[i] as number) / totalWeight;
    if (!(Math.abs(avg) <= bound)) {
      return `coordinate ${i} of the weighted average is ${avg}, outside the quantisation range +-${clip}`;
    }
  }
  return null;
}

/** The largest magnitude a standardised float32 pipeline can square without overflow. */
const FLOAT32_SQUARE_ROOM = 3.4e38;

/**
 * Why summed feature statistics are impossible, or null: a record count no larger than the sites'
 * caps allow and no smaller than one record a site, and (without declared bounds, which clamp the
 * statistics anyway) means and deviations whose squares sites can compute in float32.
 */
export function statisticsSumProblem(
  stats: { count: number; mean: readonly number[]; std: readonly number[] },
  contributors: number,
  capPerSite: number,
  bounded: boolean,
): string | null {
  const most = contributors * capPerSite;
  if (!(stats.count >= contributors && stats.count <= most)) {
    return (
      `the summed record count ${stats.count} is outside [${contributors}, ${most}] ` +
      `(${contributors} site(s), each with at least one record and at most ${capPerSite})`
    );
  }
  if (bounded) return null;
  for (let j = 0; j < stats.mean.length; j++) {
    const m = stats.mean[j] as number;
    const s = stats.std[j] as number;
    if (!(m * m + s * s < FLOAT32_SQUARE_ROOM)) {
      return `feature ${j}: mean ${m} and deviation ${s} are beyond what sites can standardise`;
    }
  }
  return null;
}
