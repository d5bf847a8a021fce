import {
  recordLevelRelease,
  siteLevelRelease,
  type LedgerEntry,
  type MechanismParams,
} from '@confide/privacy-ledger';
import type { FederationRow } from '../database/rows';

/**
 * The mechanism a site's next release will use under the federation's current settings, for
 * projections and forecasts. Record level needs the site's record count: from its login
 * announcement, else from its last release (q = batch / records). Site level assumes every site is
 * sampled (q = 1), which over-estimates the spend and so never lets a site past its budget.
 */
export function nextRelease(
  fed: FederationRow,
  history: readonly LedgerEntry[],
  numExamples?: number,
  survivorsAssumed: number | null = null,
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
  return siteLevelRelease({
    siteSamplingRate: 1,
    noiseMultiplier: dp.noiseMultiplier,
    clipNorm: dp.clipNorm,
    survivorsAssumed:
      survivorsAssumed ?? history.at(-1)?.mechanism.survivorsAssumed ?? fed.config.minSites,
  });
}
