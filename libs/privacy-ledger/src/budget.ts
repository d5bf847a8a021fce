import { LedgerError, LedgerErrorCode } from './errors';
import {
  accountantEpsilon,
  addRdp,
  checkDelta,
  type LedgerAccountant,
  type MechanismParams,
  releaseCurve,
  scaleRdp,
} from './mechanism';

/** What the budget functions need of a site's past releases: their recorded RDP curves, oldest first. */
export type SiteHistory = readonly { readonly rdp: readonly number[] }[];

/**
 * The composed RDP curve of a site's past releases (`[]` when it has none).
 * @example composeHistory(entriesOfSite) // sum of their `rdp` curves
 */
export function composeHistory(history: SiteHistory): number[] {
  return history.reduce<number[]>((sum, e) => addRdp(sum, e.rdp), []);
}

/**
 * A site's cumulative epsilon after one more release: adds the release's curve to the RDP of its
 * previous releases, then converts once. Never adds epsilons, which would overstate the loss.
 * `previousRdpSum` is `[]` for the first release.
 * @example cumulativeEpsilon(composeHistory(history), accountant.releaseRdp(m), 1e-5, accountant).epsilon
 */
export function cumulativeEpsilon(
  previousRdpSum: readonly number[],
  releaseRdp: readonly number[],
  delta: number,
  accountant: LedgerAccountant,
): { epsilon: number; order: number; rdpSum: number[] } {
  const rdpSum = addRdp(previousRdpSum, releaseRdp);
  return { ...accountantEpsilon(accountant, rdpSum, delta), rdpSum };
}

/** What a site's budget looks like if it takes part in one more release with `nextMechanism`. */
export interface RoundProjection {
  /** Epsilon spent so far (0 before the first release). */
  currentEpsilon: number;
  /** Cumulative epsilon after the next release. */
  projectedEpsilon: number;
  /** True when `projectedEpsilon <= limit`: the site may be selected / may train. */
  allowed: boolean;
  /** `limit - projectedEpsilon`: budget left after the release (negative when not allowed). */
  remaining: number;
}

/**
 * Projects a site's cumulative epsilon for the next round; the aggregator's selection and the client
 * node's refusal to train both rest on `allowed`.
 * @example if (!projectNextRound(history, mechanism, 1e-5, 8, accountant).allowed) skipSite()
 */
export function projectNextRound(
  siteHistory: SiteHistory,
  nextMechanism: MechanismParams,
  delta: number,
  limit: number,
  accountant: LedgerAccountant,
): RoundProjection {
  checkLimit(limit);
  const sum = composeHistory(siteHistory);
  const currentEpsilon = sum.length === 0 ? 0 : accountantEpsilon(accountant, sum, delta).epsilon;
  const next = releaseCurve(accountant, nextMechanism);
  const projectedEpsilon = cumulativeEpsilon(sum, next, delta, accountant).epsilon;
  return {
    currentEpsilon,
    projectedEpsilon,
    allowed: projectedEpsilon <= limit,
    remaining: limit - projectedEpsilon,
  };
}

/**
 * How many more releases identical to `nextMechanism` the site's budget allows (at most `cap`):
 * the largest k with epsilon(history + k * curve) <= limit, by binary search on k, which is sound
 * because epsilon is monotone in every RDP coordinate.
 * @example forecastRoundsLeft(history, mechanism, 1e-5, 8, accountant) // e.g. 37
 */
export function forecastRoundsLeft(
  siteHistory: SiteHistory,
  nextMechanism: MechanismParams,
  delta: number,
  limit: number,
  accountant: LedgerAccountant,
  cap = 100_000,
): number {
  checkLimit(limit);
  checkDelta(delta);
  if (!Number.isSafeInteger(cap) || cap < 0) {
    throw new LedgerError(
      LedgerErrorCode.INVALID_ARGUMENT,
      `cap must be an integer >= 0, got ${cap}`,
    );
  }
  const sum = composeHistory(siteHistory);
  const curve = releaseCurve(accountant, nextMechanism);
  const fits = (k: number): boolean => {
    const total = k === 0 ? sum : addRdp(sum, scaleRdp(curve, k));
    return total.length === 0 || accountantEpsilon(accountant, total, delta).epsilon <= limit;
  };
  if (!fits(0)) return 0;
  if (fits(cap)) return cap;
  let lo = 0; // fits
  let hi = cap; // does not fit
  while (hi - lo > 1) {
    const mid = lo + Math.floor((hi - lo) / 2);
    if (fits(mid)) lo = mid;
    else hi = mid;
  }
  return lo;
}

function checkLimit(limit: number): void {
  if (!(typeof limit === 'number' && Number.isFinite(limit) && limit > 0)) {
    throw new LedgerError(
      LedgerErrorCode.INVALID_ARGUMENT,
      `the epsilon limit must be a finite number > 0, got ${limit}`,
    );
  }
}
