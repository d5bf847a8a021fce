/**
 * Renyi DP of the Poisson-subsampled Gaussian mechanism (Mironov, Talwar, Zhang 2019, "Renyi
 * Differential Privacy of the Sampled Gaussian Mechanism", arXiv:1908.10530, Section 3.3), and its
 * conversion to (epsilon, delta).
 *
 * A line-by-line port of Opacus' `opacus/accountants/analysis/rdp.py` (pytorch/opacus, itself
 * adapted from TensorFlow Privacy's `rdp_accountant.py`): `_log_add`, `_log_sub`,
 * `_compute_log_a_for_int_alpha`, `_compute_log_a_for_frac_alpha`, `_log_erfc`, `_compute_rdp`,
 * `compute_rdp` and `get_privacy_spent`, with the same loop structure and stopping rule, so that
 * our epsilons equal Opacus' RDPAccountant's (see rdp.spec.ts for the measured agreement). Where
 * Opacus calls scipy we use our own special functions (special.ts): log|binom(alpha, i)| by the
 * product recurrence, and log erfc via Cody's erfcx.
 */
import {
  checkDelta,
  checkNoiseMultiplier,
  checkSamplingRate,
  DpError,
  DpErrorCode,
} from './errors';
import { logErfc } from './special';

/**
 * Opacus' `RDPAccountant.DEFAULT_ALPHAS`: `[1 + x / 10.0 for x in range(1, 100)] + list(range(12,
 * 64))`, i.e. 1.1, 1.2, ..., 10.9 and 12, 13, ..., 63 (151 orders).
 *
 * @example
 * DEFAULT_ORDERS.length; // 151
 */
export const DEFAULT_ORDERS: readonly number[] = Object.freeze([
  ...Array.from({ length: 99 }, (_, k) => 1 + (k + 1) / 10.0),
  ...Array.from({ length: 52 }, (_, k) => 12 + k),
]);

/** Opacus `_log_add`: log(exp(logx) + exp(logy)). */
function logAdd(logx: number, logy: number): number {
  const a = Math.min(logx, logy);
  const b = Math.max(logx, logy);
  if (a === -Infinity) return b; // adding 0
  return Math.log1p(Math.exp(a - b)) + b;
}

/** Opacus `_log_sub`: log(exp(logx) - exp(logy)) for logx >= logy. */
function logSub(logx: number, logy: number): number {
  if (logx < logy) {
    // Opacus raises ValueError here; the series never reaches it for sigma > 0 and 0 < q < 1.
    throw new DpError(
      DpErrorCode.INVALID_ARGUMENT,
      'internal: the RDP series of the subsampled Gaussian went negative',
    );
  }
  if (logy === -Infinity) return logx; // subtracting 0
  if (logx === logy) return -Infinity; // 0 is represented as -Infinity in the log space
  const d = Math.expm1(logx - logy);
  // Python's math.expm1 raises OverflowError past ~709.78, where Opacus returns logx.
  if (!Number.isFinite(d)) return logx;
  return Math.log(d) + logy;
}

/** Opacus `_compute_log_a_for_int_alpha`: log(A_alpha) for integer alpha, 0 < q < 1. */
function computeLogAInt(q: number, sigma: number, alpha: number): number {
  let logA = -Infinity;
  const logQ = Math.log(q);
  const log1mQ = Math.log(1 - q);
  const twoSigma2 = 2 * sigma ** 2;
  let logBinom = 0; // log C(alpha, 0)
  for (let i = 0; i <= alpha; i++) {
    if (i > 0) logBinom += Math.log((alpha - i + 1) / i);
    const logCoefI = logBinom + i * logQ + (alpha - i) * log1mQ;
    const s = logCoefI + (i * i - i) / twoSigma2;
    logA = logAdd(logA, s);
  }
  return logA;
}

const MAX_FRAC_TERMS = 2_000_000;

/** Opacus `_compute_log_a_for_frac_alpha`: log(A_alpha) for fractional alpha, 0 < q < 1. */
function computeLogAFrac(q: number, sigma: number, alpha: number): number {
  // The two parts of A_alpha, integrals over (-inf, z0] and [z0, +inf), start at 0 (log -inf).
  let logA0 = -Infinity;
  let logA1 = -Infinity;
  const z0 = sigma ** 2 * Math.log(1 / q - 1) + 0.5;
  const logQ = Math.log(q);
  const log1mQ = Math.log(1 - q);
  const twoSigma2 = 2 * sigma ** 2;
  const sqrt2Sigma = Math.SQRT2 * sigma;
  // binom(alpha, i) = binom(alpha, i - 1) * (alpha - i + 1) / i, tracked as sign and log|.|.
  let logCoef = 0;
  let coefPositive = true;
  for (let i = 0; ; i++) {
    if (i > 0) {
      const f = (alpha - i + 1) / i;
      logCoef += Math.log(Math.abs(f));
      if (f < 0) coefPositive = !coefPositive;
    }
    const j = alpha - i;
    const logT0 = logCoef + i * logQ + j * log1mQ;
    const logT1 = logCoef + j * logQ + i * log1mQ;
    const logE0 = Math.log(0.5) + logErfc((i - z0) / sqrt2Sigma);
    const logE1 = Math.log(0.5) + logErfc((z0 - j) / sqrt2Sigma);
    const logS0 = logT0 + (i * i - i) / twoSigma2 + logE0;
    const logS1 = logT1 + (j * j - j) / twoSigma2 + logE1;
    if (coefPositive) {
      logA0 = logAdd(logA0, logS0);
      logA1 = logAdd(logA1, logS1);
    } else {
      logA0 = logSub(logA0, logS0);
      logA1 = logSub(logA1, logS1);
    }
    if (Math.max(logS0, logS1) < -30) break;
    // Opacus has no cap; this one is far above what the stated parameter ranges need (about 2e4
    // terms at q = 0.5, sigma = 100) and only stops a runaway loop on absurd inputs.
    if (i >= MAX_FRAC_TERMS) return Infinity;
  }
  return logAdd(logA0, logA1);
}

/** Opacus `_compute_rdp`: RDP of one step of the subsampled Gaussian at one order. */
function computeRdpOne(q: number, sigma: number, alpha: number): number {
  if (q === 0) return 0;
  if (sigma === 0) return Infinity; // no privacy
  if (q === 1) return alpha / (2 * sigma ** 2);
  if (alpha === Infinity) return Infinity;
  const logA = Number.isInteger(alpha)
    ? computeLogAInt(q, sigma, alpha)
    : computeLogAFrac(q, sigma, alpha);
  return logA / (alpha - 1);
}

/** `orders` as a non-empty array of numbers > 1, or INVALID_ORDERS. */
export function checkOrders(orders: unknown): readonly number[] {
  if (!Array.isArray(orders) && !(orders instanceof Float64Array)) {
    throw new DpError(DpErrorCode.INVALID_ORDERS, 'orders must be an array of numbers > 1');
  }
  const arr = orders as ArrayLike<unknown>;
  if (arr.length === 0) throw new DpError(DpErrorCode.INVALID_ORDERS, 'orders must not be empty');
  for (let k = 0; k < arr.length; k++) {
    const a = arr[k];
    if (typeof a !== 'number' || Number.isNaN(a) || a <= 1) {
      throw new DpError(
        DpErrorCode.INVALID_ORDERS,
        `every RDP order must be a number > 1; orders[${k}] is ${String(a)}`,
      );
    }
  }
  return Array.from(arr as ArrayLike<number>);
}

/**
 * RDP of one step of the Poisson-subsampled Gaussian mechanism (sampling rate `q`, noise
 * multiplier `sigma`) at each order, as Opacus' `compute_rdp(q, sigma, steps=1, orders)`. Infinite
 * when sigma is 0; 0 when q is 0; alpha / (2 sigma^2) when q is 1.
 *
 * @example
 * const rdp = rdpSubsampledGaussian(0.01, 1.1, DEFAULT_ORDERS); // Float64Array(151)
 */
export function rdpSubsampledGaussian(
  q: number,
  sigma: number,
  orders: readonly number[] = DEFAULT_ORDERS,
): Float64Array {
  checkSamplingRate(q);
  checkNoiseMultiplier(sigma);
  const ords = orders === DEFAULT_ORDERS ? DEFAULT_ORDERS : checkOrders(orders);
  const out = new Float64Array(ords.length);
  for (let k = 0; k < ords.length; k++) out[k] = computeRdpOne(q, sigma, ords[k]!);
  return out;
}

/** How RDP converts to (epsilon, delta). */
export type RdpConversion = 'balle' | 'classic';

/** An epsilon and the RDP order that attains it (null when no order gives a finite bound). */
export interface EpsilonAtOrder {
  epsilon: number;
  order: number | null;
}

/**
 * Converts an RDP curve to (epsilon, delta)-DP, minimising over the orders.
 *
 * - `'balle'` (default), as Opacus' `get_privacy_spent`: Balle et al. 2020, "Hypothesis testing
 *   interpretations and Renyi differential privacy", Theorem 21:
 *   eps = rdp - (log(delta) + log(alpha)) / (alpha - 1) + log((alpha - 1) / alpha).
 * - `'classic'`: Mironov 2017, "Renyi Differential Privacy", Proposition 3 (TensorFlow Privacy before
 *   2020 and the papers of that time): eps = rdp + log(1 / delta) / (alpha - 1).
 *
 * Like Opacus, NaN entries are skipped; an infinite bound is reported with order null; an all-zero
 * curve (nothing released) gives epsilon 0 with order null. Unlike
 * Opacus, a negative minimum (possible with Theorem 21 for very small RDP) is reported as 0: an
 * (eps, delta) guarantee with eps < 0 implies (0, delta), and a negative epsilon only confuses a
 * ledger.
 *
 * @example
 * const { epsilon, order } = rdpToEpsilon(composeRdp([{ q: 0.01, sigma: 1.1, steps: 1000 }]), DEFAULT_ORDERS, 1e-5);
 */
export function rdpToEpsilon(
  rdp: ArrayLike<number>,
  orders: readonly number[] = DEFAULT_ORDERS,
  delta: number,
  conversion: RdpConversion = 'balle',
): EpsilonAtOrder {
  const ords = orders === DEFAULT_ORDERS ? DEFAULT_ORDERS : checkOrders(orders);
  checkDelta(delta);
  if (conversion !== 'balle' && conversion !== 'classic') {
    throw new DpError(
      DpErrorCode.INVALID_ARGUMENT,
      `conversion must be 'balle' or 'classic'; got ${String(conversion)}`,
    );
  }
  if (!rdp || typeof rdp.length !== 'number' || rdp.length !== ords.length) {
    throw new DpError(
      DpErrorCode.INVALID_RDP,
      `rdp must have one value per order (${ords.length}); got ${rdp?.length ?? 'none'}`,
    );
  }
  // Nothing released (an empty history, q = 0): (0, 0)-DP. Opacus would report the grid's floor
  // (about 0.1 at delta 1e-5) here; dp_accounting reports 0, as we do.
  if (Array.prototype.every.call(rdp, (r: unknown) => r === 0)) return { epsilon: 0, order: null };
  const logDelta = Math.log(delta);
  let best = NaN;
  let bestOrder: number | null = null;
  for (let k = 0; k < ords.length; k++) {
    const a = ords[k]!;
    const r = rdp[k]!;
    if (typeof r !== 'number') {
      throw new DpError(DpErrorCode.INVALID_RDP, `rdp[${k}] must be a number; got ${String(r)}`);
    }
    // RDP is >= 0; at tiny q the series rounds to -1e-16 or so, which is used as is (as Opacus).
    if (r < -1e-9) {
      throw new DpError(DpErrorCode.INVALID_RDP, `rdp[${k}] must be >= 0; got ${r}`);
    }
    const eps =
      conversion === 'balle'
        ? r - (logDelta + Math.log(a)) / (a - 1) + Math.log((a - 1) / a)
        : r - logDelta / (a - 1);
    // np.nanargmin: the first minimum, ignoring NaN.
    if (!Number.isNaN(eps) && (bestOrder === null || eps < best)) {
      best = eps;
      bestOrder = a;
    }
  }
  if (bestOrder === null || best === Infinity) return { epsilon: Infinity, order: null };
  return { epsilon: Math.max(0, best), order: bestOrder };
}
