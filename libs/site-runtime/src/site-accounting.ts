import type { MessageOf, ServerMessage, SumPrivacy } from '@confide/protocol';
import { gaussianZcdp, zcdpOfBudget } from '@confide/differential-privacy';
import {
  recordLevelRelease,
  releaseOf,
  siteLevelRelease,
  sumRelease,
  type LedgerEntry,
  type MechanismParams,
} from '@confide/privacy-ledger';
import type { SecAggParams } from '@confide/secure-aggregation';

type TrainMsg = MessageOf<ServerMessage, 'round.train'>;

/**
 * The mechanism of this site's update release, computed from what the site itself knows and
 * enforces, never from numbers the aggregator could bend: record level q = batch / the site's own
 * (declared) record count; site level q = the rate of its own coin (1 without self-sampling), its
 * noise sized for the t survivors a secure sum needs (the round's Shamir threshold), or all of it
 * without secure aggregation (the aggregator then sees the update alone).
 */
export function updateMechanism(msg: TrainMsg, declaredRows: number): MechanismParams {
  const p = msg.privacy!;
  const secure = msg.secureAggregation;
  const params = secure?.params as unknown as SecAggParams | undefined;
  if (p.level === 'record') {
    return recordLevelRelease({
      batchSize: msg.train.batchSize,
      epochs: msg.train.epochs,
      numExamples: declaredRows,
      noiseMultiplier: p.noiseMultiplier,
      clipNorm: p.clipNorm,
    });
  }
  return siteLevelRelease({
    siteSamplingRate: p.siteSamplingRate ?? 1,
    noiseMultiplier: p.noiseMultiplier,
    clipNorm: p.clipNorm,
    survivorsAssumed: secure && params ? params.threshold : null,
    integerNoise:
      secure && params ? { scale: params.scale, dimension: secure.vectorLength - 1 } : null,
  });
}

/** The mechanism of a statistics or evaluation release of L2 sensitivity `sensitivity`. */
export function sumMechanism(
  kind: 'statistics' | 'evaluation',
  privacy: SumPrivacy,
  sensitivity: number,
): MechanismParams {
  return sumRelease({
    release: kind,
    level: privacy.level,
    noiseMultiplier: privacy.noiseMultiplier,
    sensitivity,
  });
}

/**
 * Whether one more statistics or evaluation release fits the share of the site's budget that the
 * federation sets aside for them, in zCDP terms (releases are Gaussian mechanisms whose rho adds up):
 * a dishonest aggregator cannot spend the site's training budget on evaluations.
 */
export function withinStatisticsShare(
  history: readonly Pick<LedgerEntry, 'mechanism'>[],
  mechanism: MechanismParams,
  share: number,
  epsilonLimit: number,
  delta: number,
): { allowed: boolean; spent: number; allowance: number } {
  let spent = 0;
  for (const e of history) {
    if (releaseOf(e.mechanism) !== 'update') spent += gaussianZcdp(e.mechanism.noiseMultiplier);
  }
  const allowance = share * zcdpOfBudget(epsilonLimit, delta);
  return {
    allowed: spent + gaussianZcdp(mechanism.noiseMultiplier) <= allowance * (1 + 1e-12),
    spent,
    allowance,
  };
}
