import { parameterCount } from '@confide/ml/spec';
import {
  recordLevelRelease,
  siteLevelRelease,
  type LedgerEntry,
  type MechanismParams,
} from '@confide/privacy-ledger';
import type { FederationRow } from '../database/rows';
import { secureQuantization } from '../rounds/secure-quantization';

/** What the distributed discrete Gaussian's bound needs of a round beyond the DP settings. */
export interface IntegerNoise {
  /** The round's quantisation scale. */
  scale: number;
  /** The noised coordinates: the model's parameter count. */
  dimension: number;
}

/**
 * The quantisation a site-level DP round under secure aggregation would use with `sites` sites and
 * `noiseShares` noise-adding survivors, and the model's parameter count; null when the federation
 * does not run site-level DP under secure aggregation, or no scale has headroom for that many sites.
 * @example integerNoiseFor(fed, selected.length, survivorsAssumed) // { scale: 2 ** 25, dimension: 31 }
 */
export function integerNoiseFor(
  fed: FederationRow,
  sites: number,
  noiseShares: number,
): IntegerNoise | null {
  const dp = fed.config.dp;
  const sa = fed.config.secureAggregation;
  if (!dp || dp.level !== 'site' || !sa?.enabled) return null;
  try {
    const { scale } = secureQuantization(sa.clip, dp, Math.max(2, sites), noiseShares);
    return { scale, dimension: parameterCount(fed.modelSpec) };
  } catch {
    return null;
  }
}

/**
 * The mechanism a site's next release will use under the federation's current settings, for
 * projections and forecasts. Record level needs the site's record count: from its login
 * announcement, else from its last release (q = batch / records). Site level assumes every site is
 * sampled (q = 1), which over-estimates the spend and so never lets a site past its budget. Site
 * level under secure aggregation is the distributed discrete Gaussian with `integerNoise` (the
 * round's quantisation), else, for a forecast, the quantisation of the site's last such release or
 * the one for minSites sites; null when none can be had.
 */
export function nextRelease(
  fed: FederationRow,
  history: readonly LedgerEntry[],
  numExamples?: number,
  survivorsAssumed: number | null = null,
  integerNoise?: IntegerNoise,
): MechanismParams | null {
  const dp = fed.config.dp;
  if (!dp || dp.level === 'none') return null;
  if (dp.level === 'record') {
    const last = history.at(-1);
    const n =
      numExamples ??
      (last ? Math.round(fed.config.train.batchSize / last.mechanism.samplingRate) : undefined);
    if (!n) return null;
    return recordLevelRelease({
      batchSize: fed.config.train.batchSize,
      epochs: fed.config.train.epochs,
      numExamples: n,
      noiseMultiplier: dp.noiseMultiplier,
      clipNorm: dp.clipNorm,
    });
  }
  const last = history.at(-1)?.mechanism;
  const t = survivorsAssumed ?? last?.survivorsAssumed ?? fed.config.minSites;
  let noise: IntegerNoise | null = null;
  if (fed.config.secureAggregation?.enabled) {
    const dimension = parameterCount(fed.modelSpec);
    noise =
      integerNoise ??
      (last?.quantizationScale !== undefined && last.dimension === dimension
        ? { scale: last.quantizationScale, dimension }
        : integerNoiseFor(fed, fed.config.minSites, t));
    if (!noise) return null;
  }
  return siteLevelRelease({
    siteSamplingRate: 1,
    noiseMultiplier: dp.noiseMultiplier,
    clipNorm: dp.clipNorm,
    survivorsAssumed: t,
    integerNoise: noise,
  });
}
