import { DpError, DpErrorCode } from './errors';

/**
 * The zero-concentrated DP (zCDP) budget rho equivalent to an (epsilon, delta) budget through the
 * conversion of Bun and Steinke 2016 (rho-zCDP implies (rho + 2 sqrt(rho ln(1/delta)), delta)-DP):
 * the largest rho with rho + 2 sqrt(rho ln(1/delta)) <= epsilon. zCDP budgets add up across
 * mechanisms, which is what makes a *share* of a budget well defined where epsilons do not add.
 * @example zcdpOfBudget(1, 1e-5) // 0.0206
 */
export function zcdpOfBudget(epsilon: number, delta: number): number {
  if (!(epsilon > 0 && Number.isFinite(epsilon))) {
    throw new DpError(
      DpErrorCode.INVALID_ARGUMENT,
      `epsilon must be a positive number, got ${epsilon}`,
    );
  }
  if (!(delta > 0 && delta < 1)) {
    throw new DpError(DpErrorCode.INVALID_ARGUMENT, `delta must be in (0, 1), got ${delta}`);
  }
  const l = Math.log(1 / delta);
  const root = Math.sqrt(l + epsilon) - Math.sqrt(l);
  return root * root;
}

/**
 * The zCDP cost of one Gaussian mechanism with noise multiplier z (noise standard deviation z times
 * the L2 sensitivity): rho = 1 / (2 z^2), exactly its Renyi curve alpha * rho.
 * @example gaussianZcdp(10) // 0.005
 */
export function gaussianZcdp(noiseMultiplier: number): number {
  if (!(noiseMultiplier > 0 && Number.isFinite(noiseMultiplier))) {
    throw new DpError(
      DpErrorCode.INVALID_ARGUMENT,
      `noise multiplier must be a positive number, got ${noiseMultiplier}`,
    );
  }
  return 1 / (2 * noiseMultiplier * noiseMultiplier);
}

/**
 * The noise multiplier with which `releases` Gaussian releases together use `share` of the zCDP
 * equivalent of an (epsilon, delta) budget: how a federation sets aside part of each site's budget
 * for its statistics and evaluation sums. The ledger still composes every release exactly (RDP);
 * this only decides how much noise those releases carry.
 * @example shareNoiseMultiplier({ epsilon: 1, delta: 1e-5, share: 0.1, releases: 11 }) // ~51.7
 */
export function shareNoiseMultiplier(p: {
  epsilon: number;
  delta: number;
  share: number;
  releases: number;
}): number {
  if (!(p.share > 0 && p.share < 1)) {
    throw new DpError(DpErrorCode.INVALID_ARGUMENT, `share must be in (0, 1), got ${p.share}`);
  }
  if (!Number.isSafeInteger(p.releases) || p.releases < 1) {
    throw new DpError(
      DpErrorCode.INVALID_ARGUMENT,
      `releases must be a positive integer, got ${p.releases}`,
    );
  }
  return Math.sqrt(p.releases / (2 * p.share * zcdpOfBudget(p.epsilon, p.delta)));
}
