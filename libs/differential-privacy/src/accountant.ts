/**
 * The accountant's public face: compose a history of subsampled Gaussian steps, convert to
 * (epsilon, delta), and invert (the smallest noise multiplier that meets a target epsilon).
 *
 * RDP curves are composed by adding them (never by adding epsilons), as Opacus' RDPAccountant and
 * dp_accounting's RdpAccountant do. One step's curve depends only on (q, sigma), so curves are
 * cached per pair and multiplied by the number of steps: a ledger of 10,000 rounds with a handful of
 * distinct settings costs a handful of curve evaluations.
 */
import {
  checkDelta,
  checkNoiseMultiplier,
  checkSamplingRate,
  checkSteps,
  DpError,
  DpErrorCode,
} from './errors';
import { pldEpsilon, type GaussianEvent, type PldOptions } from './pld';
import {
  checkOrders,
  DEFAULT_ORDERS,
  rdpSubsampledGaussian,
  rdpToEpsilon,
  type EpsilonAtOrder,
  type RdpConversion,
} from './rdp';

/** One entry of a privacy history: `steps` releases at sampling rate `q`, noise multiplier `sigma`. */
export type HistoryEntry = GaussianEvent;

/** Which accountant converts a history to epsilon. */
export type Accountant = 'rdp' | 'pld';

const CACHE_LIMIT = 1024;
const curveCache = new Map<number, Map<number, Float64Array>>();
let cachedCurves = 0;

/** One step's RDP curve on the default orders, memoised per (q, sigma). */
function cachedCurve(q: number, sigma: number, orders: readonly number[]): Float64Array {
  if (orders !== DEFAULT_ORDERS) return rdpSubsampledGaussian(q, sigma, orders);
  let bySigma = curveCache.get(q);
  let c = bySigma?.get(sigma);
  if (!c) {
    c = rdpSubsampledGaussian(q, sigma, orders);
    if (cachedCurves >= CACHE_LIMIT) {
      curveCache.clear();
      cachedCurves = 0;
      bySigma = undefined;
    }
    if (!bySigma) curveCache.set(q, (bySigma = new Map<number, Float64Array>()));
    bySigma.set(sigma, c);
    cachedCurves++;
  }
  return c;
}

function checkEntry(e: unknown, i: number): HistoryEntry {
  if (typeof e !== 'object' || e === null) {
    throw new DpError(
      DpErrorCode.INVALID_ARGUMENT,
      `history[${i}] must be an object { q, sigma, steps }; got ${String(e)}`,
    );
  }
  const { q, sigma, steps } = e as Record<string, unknown>;
  // Fast path for well-formed entries; the named checks produce the messages otherwise.
  if (
    typeof q === 'number' &&
    q >= 0 &&
    q <= 1 &&
    typeof sigma === 'number' &&
    sigma >= 0 &&
    sigma < Infinity &&
    typeof steps === 'number' &&
    Number.isSafeInteger(steps) &&
    steps >= 0
  ) {
    return e as HistoryEntry;
  }
  checkSamplingRate(q, `history[${i}].q`);
  checkNoiseMultiplier(sigma, `history[${i}].sigma`);
  checkSteps(steps, `history[${i}].steps`);
  return e as HistoryEntry;
}

function checkHistory(history: unknown): readonly HistoryEntry[] {
  if (!Array.isArray(history)) {
    throw new DpError(
      DpErrorCode.INVALID_ARGUMENT,
      'history must be an array of { q, sigma, steps }',
    );
  }
  for (let i = 0; i < history.length; i++) checkEntry(history[i], i);
  return history as readonly HistoryEntry[];
}

/** Total steps per distinct (q, sigma), keyed by number (no string keys: 10^4 entries stay cheap). */
function mergeSteps(
  history: readonly HistoryEntry[],
): { q: number; sigma: number; steps: number }[] {
  const byQ = new Map<number, Map<number, number>>();
  for (const { q, sigma, steps } of history) {
    if (steps === 0) continue;
    let bySigma = byQ.get(q);
    if (!bySigma) byQ.set(q, (bySigma = new Map<number, number>()));
    bySigma.set(sigma, (bySigma.get(sigma) ?? 0) + steps);
  }
  const out: { q: number; sigma: number; steps: number }[] = [];
  for (const [q, bySigma] of byQ)
    for (const [sigma, steps] of bySigma) out.push({ q, sigma, steps });
  return out;
}

function composeChecked(history: readonly HistoryEntry[], orders: readonly number[]): Float64Array {
  const total = new Float64Array(orders.length);
  for (const e of mergeSteps(history)) {
    const curve = cachedCurve(e.q, e.sigma, orders);
    for (let k = 0; k < total.length; k++) total[k] = total[k]! + curve[k]! * e.steps;
  }
  return total;
}

/**
 * The RDP curve of a whole history: the sum over entries of steps x one step's curve, as Opacus'
 * `RDPAccountant.get_privacy_spent` sums `compute_rdp(q, sigma, steps, orders)` over its history.
 *
 * @example
 * const rdp = composeRdp([{ q: 0.01, sigma: 1.1, steps: 500 }, { q: 0.02, sigma: 1.3, steps: 200 }]);
 */
export function composeRdp(
  history: readonly HistoryEntry[],
  orders: readonly number[] = DEFAULT_ORDERS,
): Float64Array {
  const entries = checkHistory(history);
  const ords = orders === DEFAULT_ORDERS ? DEFAULT_ORDERS : checkOrders(orders);
  return composeChecked(entries, ords);
}

/** What to account: a whole history, or one (q, sigma, steps) setting. */
export type PrivacyInput = { history: readonly HistoryEntry[] } | HistoryEntry;

/** Options of computeEpsilon. */
export interface EpsilonOptions extends PldOptions {
  /** 'rdp' (default, as Opacus) or 'pld' (as dp_accounting's PLDAccountant; tighter). */
  accountant?: Accountant;
  /** RDP only: 'balle' (default, Balle et al. 2020 Theorem 21) or 'classic' (Mironov 2017). */
  conversion?: RdpConversion;
  /** RDP only: the orders (default: Opacus' DEFAULT_ALPHAS). */
  orders?: readonly number[];
}

function toHistory(input: PrivacyInput): readonly HistoryEntry[] {
  if (typeof input !== 'object' || input === null) {
    throw new DpError(
      DpErrorCode.INVALID_ARGUMENT,
      'input must be { history } or { q, sigma, steps }',
    );
  }
  if ('history' in input) return checkHistory(input.history);
  return checkHistory([input]);
}

function checkAccountant(a: unknown): Accountant {
  if (a !== 'rdp' && a !== 'pld') {
    throw new DpError(
      DpErrorCode.INVALID_ARGUMENT,
      `accountant must be 'rdp' or 'pld'; got ${String(a)}`,
    );
  }
  return a;
}

/**
 * Epsilon spent by a history (or one setting) at `delta`. With the RDP accountant this equals
 * Opacus' `RDPAccountant.get_epsilon(delta)` (same orders, same conversion); `order` is the RDP
 * order that attains it (null for the PLD accountant, or when epsilon is infinite).
 *
 * @example
 * computeEpsilon({ q: 256 / 60000, sigma: 1.1, steps: 14063 }, 1e-5); // { epsilon: 2.5967, order: 8.1 }
 * computeEpsilon({ history: [{ q: 0.01, sigma: 1, steps: 1000 }] }, 1e-5, { accountant: 'pld' }); // { epsilon: 1.8282, order: null }
 */
export function computeEpsilon(
  input: PrivacyInput,
  delta: number,
  options: EpsilonOptions = {},
): EpsilonAtOrder {
  const history = toHistory(input);
  checkDelta(delta);
  const accountant = checkAccountant(options.accountant ?? 'rdp');
  if (accountant === 'pld') {
    if (options.conversion !== undefined && options.conversion !== 'balle') {
      // The PLD accountant computes epsilon directly; a conversion does not apply.
      throw new DpError(
        DpErrorCode.INVALID_ARGUMENT,
        'conversion applies to the RDP accountant only; leave it unset with accountant pld',
      );
    }
    return { epsilon: pldEpsilon(history, delta, options).epsilon, order: null };
  }
  const orders = options.orders ?? DEFAULT_ORDERS;
  const ords = orders === DEFAULT_ORDERS ? DEFAULT_ORDERS : checkOrders(orders);
  return rdpToEpsilon(composeChecked(history, ords), ords, delta, options.conversion ?? 'balle');
}

/** Inputs of findNoiseMultiplier. */
export interface NoiseSearch extends EpsilonOptions {
  targetEpsilon: number;
  delta: number;
  q: number;
  steps: number;
  /** Relative width of the final bracket (default 1e-4 for RDP, 1e-3 for PLD). */
  tolerance?: number;
}

const MAX_SIGMA = 1e6;

/**
 * The smallest noise multiplier whose epsilon at `delta` after `steps` steps at sampling rate `q` is
 * at most `targetEpsilon`, to a relative tolerance (default 1e-4; 1e-3 with the PLD accountant):
 * bisection on sigma that returns
 * the upper end of the final bracket, so the guarantee always holds. Like Opacus'
 * `get_noise_multiplier`, but with a relative rather than an absolute epsilon tolerance.
 *
 * @example
 * findNoiseMultiplier({ targetEpsilon: 8, delta: 1e-5, q: 0.04, steps: 2250 }); // { noiseMultiplier: 1.4159, epsilon: 7.9991 }
 */
export function findNoiseMultiplier(search: NoiseSearch): {
  noiseMultiplier: number;
  epsilon: number;
} {
  if (typeof search !== 'object' || search === null) {
    throw new DpError(
      DpErrorCode.INVALID_ARGUMENT,
      'findNoiseMultiplier takes { targetEpsilon, delta, q, steps }',
    );
  }
  const { targetEpsilon, delta, q, steps } = search;
  if (typeof targetEpsilon !== 'number' || !Number.isFinite(targetEpsilon) || targetEpsilon <= 0) {
    throw new DpError(
      DpErrorCode.INVALID_EPSILON,
      `targetEpsilon must be a finite number > 0; got ${String(targetEpsilon)}`,
    );
  }
  checkDelta(delta);
  checkSamplingRate(q);
  checkSteps(steps);
  const accountantChoice = search.accountant ?? 'rdp';
  // Each PLD evaluation costs ~0.1-1 s: stop at 0.1% there, 0.01% with RDP. Both are far below 1%.
  const tolerance = search.tolerance ?? (accountantChoice === 'pld' ? 1e-3 : 1e-4);
  if (typeof tolerance !== 'number' || !(tolerance > 0 && tolerance < 0.01)) {
    throw new DpError(
      DpErrorCode.INVALID_ARGUMENT,
      `tolerance must be in (0, 0.01); got ${String(tolerance)}`,
    );
  }
  const accountant = checkAccountant(accountantChoice);
  const options: EpsilonOptions = { ...search, accountant };
  const eps = (sigma: number): number =>
    computeEpsilon({ q, sigma, steps }, delta, options).epsilon;

  if (q === 0 || steps === 0) return { noiseMultiplier: 0, epsilon: 0 };
  let hi: number;
  let lo: number;
  let epsHi: number;
  if (accountant === 'pld') {
    // PLD epsilons are below RDP ones, so the RDP answer brackets the PLD one from above; the
    // PLD one is rarely more than 30% lower, so step down in 10% strides.
    const viaRdp = findNoiseMultiplier({ ...search, accountant: 'rdp', conversion: 'balle' });
    hi = viaRdp.noiseMultiplier;
    epsHi = eps(hi);
    while (epsHi > targetEpsilon) {
      // Only if discretisation made PLD looser than RDP here; widen upwards.
      hi *= 1.1;
      if (hi > MAX_SIGMA) {
        throw new DpError(
          DpErrorCode.BUDGET_TOO_LOW,
          `no noise multiplier up to ${MAX_SIGMA} reaches epsilon ${targetEpsilon}`,
        );
      }
      epsHi = eps(hi);
    }
    lo = hi * 0.9;
    for (let e = eps(lo); e <= targetEpsilon && lo > 1e-3; e = eps(lo)) {
      hi = lo;
      epsHi = e;
      lo *= 0.9;
    }
  } else {
    hi = 1;
    epsHi = eps(hi);
    while (epsHi > targetEpsilon) {
      hi *= 2;
      if (hi > MAX_SIGMA) {
        throw new DpError(
          DpErrorCode.BUDGET_TOO_LOW,
          `no noise multiplier up to ${MAX_SIGMA} reaches epsilon ${targetEpsilon} at delta ${delta} ` +
            `over ${steps} steps at q = ${q}; allow a larger epsilon or fewer steps`,
        );
      }
      epsHi = eps(hi);
    }
    lo = hi / 2;
    while (lo > 1e-3 && eps(lo) <= targetEpsilon) {
      hi = lo;
      lo /= 2;
    }
    epsHi = eps(hi);
  }
  while ((hi - lo) / hi > tolerance) {
    const mid = (lo + hi) / 2;
    const e = eps(mid);
    if (e <= targetEpsilon) {
      hi = mid;
      epsHi = e;
    } else {
      lo = mid;
    }
  }
  return { noiseMultiplier: hi, epsilon: epsHi };
}
