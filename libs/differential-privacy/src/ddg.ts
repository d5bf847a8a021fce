/**
 * Renyi DP of the distributed discrete Gaussian (DDG) mechanism: each of n sites adds an independent
 * N_Z(0, sigma^2) share to its quantised (integer) vector, secure aggregation reveals only the sum
 * (DESIGN.md section 6). Kairouz, Liu, Steinke 2021, "The Distributed Discrete Gaussian Mechanism for
 * Federated Learning with Secure Aggregation" (ICML 2021, arXiv:2102.06387).
 *
 * A sum of discrete Gaussians is not a discrete Gaussian; the paper bounds how far it is from one
 * with
 *
 *   tau = 10 * sum_{k=1}^{n-1} exp(-2 pi^2 sigma^2 k / (k + 1))
 *
 * and gives, for integer-domain sensitivities Delta2 (L2) and Delta1 (L1) in dimension d, with
 * l2 = Delta2 / (sqrt(n) sigma) and l1 = Delta1 / (sqrt(n) sigma), the RDP bound (its Proposition 14,
 * which the reference code evaluates):
 *
 *   eps(alpha) = min{ alpha/2 l2^2 + tau d,
 *                     alpha/2 (l2^2 + 2 l1 tau + tau^2 d),
 *                     alpha/2 (l2 + tau sqrt(d))^2 }.
 *
 * The third term is the (1/2)eps^2-concentrated DP of the paper's Theorem 1 with
 * eps = l2 + tau sqrt(d). This file follows Google's reference implementation,
 * google-research/federated `distributed_dp/accounting_utils.py` (`compute_rdp_dgaussian`,
 * `ddgauss_epsilon`, `rounded_l2_norm_bound`, `rounded_l1_norm_bound`, `_compute_rdp_subsampled`),
 * term for term; ddg.spec.ts compares it with numbers from a transcription of that code.
 *
 * Subsampling, as the reference: Zhu & Wang 2019, "Poisson Subsampled Renyi Differential Privacy"
 * (ICML 2019), Theorem 5, the general upper bound for any mechanism under Poisson subsampling at
 * integer orders, and never more than the unsubsampled bound. The reference evaluates integer orders
 * only; Confide's ledger uses Opacus' grid, which has fractional orders, so at a fractional alpha we
 * take the smaller of the unsubsampled bound at alpha (valid at every real alpha > 1) and the
 * interpolation of the cumulant (alpha - 1) eps(alpha) between floor(alpha) and ceil(alpha). The
 * cumulant log E[(P/Q)^alpha] is convex in alpha and 0 at alpha = 1 for every pair of neighbours, so
 * is its supremum (Wang, Balle, Kasiviswanathan 2019, "Subsampled Renyi Differential Privacy and
 * Analytical Moments Accountant", Corollary 10, used the same way by TF Privacy for fractional
 * orders).
 */
import { distributedNoiseShare } from './discrete';
import { checkPositive, checkSamplingRate, DpError, DpErrorCode } from './errors';
import { checkOrders, DEFAULT_ORDERS } from './rdp';

/** The largest number of noise shares accepted (tau sums n - 1 terms). */
const MAX_SHARES = 10_000_000;
/** Above this order Theorem 5's sum (alpha terms) is skipped: the unsubsampled bound stands alone. */
const MAX_SUBSAMPLED_ORDER = 100_000;

/** What the DDG bound needs: integer-domain sensitivities, each share's sigma^2, n and d. */
export interface DdgMechanism {
  /** Delta2: the L2 norm bound of one site's integer vector, i.e. of its contribution to the sum. */
  l2Sensitivity: number;
  /** Delta1: the L1 norm bound; default Delta2 * min(sqrt(d), Delta2), as the reference. */
  l1Sensitivity?: number;
  /** sigma^2 of each site's N_Z(0, sigma^2) share (the `sigma2` given to sampleDiscreteGaussian). */
  sigma2: number;
  /** n: the number of independent shares the sum is assumed to carry (the honest survivors, t). */
  shares: number;
  /** d: the number of coordinates that carry noise. */
  dimension: number;
}

/** What Confide's quantised, secure-aggregated site-level release is made of. */
export interface QuantizedRelease {
  /** z: the standard deviation of the summed noise over the clip norm, in the real domain. */
  noiseMultiplier: number;
  /** C: the L2 norm each site's update is clipped to before quantisation. */
  clipNorm: number;
  /** gamma: the fixed-point scale of the quantiser (q = stochastic rounding of gamma * x). */
  scale: number;
  /** d: the number of quantised coordinates that carry noise (the model's parameter count). */
  dimension: number;
  /** t: the honest survivors assumed to add their share of the noise. */
  survivors: number;
}

function checkInteger(x: unknown, name: string, min: number, max: number): number {
  if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < min || x > max) {
    throw new DpError(
      DpErrorCode.INVALID_ARGUMENT,
      `${name} must be an integer in [${min}, ${max}]; got ${String(x)}`,
    );
  }
  return x;
}

function checkMechanism(m: unknown): Required<DdgMechanism> {
  if (typeof m !== 'object' || m === null) {
    throw new DpError(
      DpErrorCode.INVALID_ARGUMENT,
      'the DDG mechanism must be an object { l2Sensitivity, sigma2, shares, dimension }',
    );
  }
  const x = m as Record<string, unknown>;
  const l2 = checkPositive(x['l2Sensitivity'], 'l2Sensitivity (integer-domain L2 sensitivity)');
  const sigma2 = checkPositive(x['sigma2'], 'sigma2 (variance of each discrete Gaussian share)');
  const shares = checkInteger(x['shares'], 'shares (noise-adding sites n)', 1, MAX_SHARES);
  const dimension = checkInteger(x['dimension'], 'dimension d', 1, Number.MAX_SAFE_INTEGER);
  const l1 =
    x['l1Sensitivity'] === undefined
      ? l2 * Math.min(Math.sqrt(dimension), l2)
      : checkPositive(x['l1Sensitivity'], 'l1Sensitivity (integer-domain L1 sensitivity)');
  return { l2Sensitivity: l2, l1Sensitivity: l1, sigma2, shares, dimension };
}

/**
 * tau of Kairouz et al. 2021 for n shares of N_Z(0, sigma2): 10 * sum_{k=1}^{n-1}
 * exp(-2 pi^2 sigma2 k / (k + 1)). 0 for a single share (a discrete Gaussian itself); underflows to 0
 * once pi^2 sigma2 passes about 745, i.e. sigma above about 8.7.
 *
 * @example
 * ddgTau(0.36, 5); // 0.4564...
 */
export function ddgTau(sigma2: number, shares: number): number {
  checkPositive(sigma2, 'sigma2 (variance of each discrete Gaussian share)');
  checkInteger(shares, 'shares (noise-adding sites n)', 1, MAX_SHARES);
  let sum = 0;
  // The terms shrink as k grows (k / (k + 1) increases) towards exp(-2 pi^2 sigma2), so once one
  // underflows to 0 all later ones do.
  for (let k = 1; k < shares; k++) {
    const term = Math.exp((-2 * Math.PI ** 2 * sigma2 * k) / (k + 1));
    if (term === 0) break;
    sum += term;
  }
  return 10 * sum;
}

/**
 * RDP of one release of the distributed discrete Gaussian, without subsampling, at one order alpha >
 * 1: min of the three bounds of Kairouz et al. 2021, Proposition 14 (see the file comment).
 */
function ddgRdpAt(m: Required<DdgMechanism>, tau: number, alpha: number): number {
  const sd = Math.sqrt(m.shares * m.sigma2);
  const l2 = m.l2Sensitivity / sd;
  const l1 = m.l1Sensitivity / sd;
  const d = m.dimension;
  const t1 = (alpha / 2) * l2 * l2 + tau * d;
  const t2 = (alpha / 2) * (l2 * l2 + 2 * l1 * tau + tau * tau * d);
  const t3 = (alpha / 2) * (l2 + Math.sqrt(d) * tau) ** 2;
  return Math.min(t1, t2, t3);
}

/** log(exp(a_1) + ... + exp(a_k)), stable. */
function logSumExp(terms: readonly number[]): number {
  const max = Math.max(...terms);
  if (max === -Infinity || max === Infinity) return max;
  let s = 0;
  for (const t of terms) s += Math.exp(t - max);
  return max + Math.log(s);
}

/**
 * Zhu & Wang 2019, Theorem 5, at an integer order alpha >= 2, for 0 < q < 1: an upper bound on the
 * RDP of M o PoissonSample(q) from the RDP eps(l), l = 2..alpha, of M:
 *
 *   1/(alpha-1) log{ (1-q)^(alpha-1) (alpha q - q + 1) + C(alpha,2) q^2 (1-q)^(alpha-2) e^eps(2)
 *                    + 3 sum_{l=3}^{alpha} C(alpha,l) q^l (1-q)^(alpha-l) e^((l-1) eps(l)) }.
 */
function zhuWangTheorem5(alpha: number, q: number, eps: (l: number) => number): number {
  const logQ = Math.log(q);
  const log1mQ = Math.log1p(-q);
  const terms: number[] = [(alpha - 1) * log1mQ + Math.log1p((alpha - 1) * q)];
  let logBinom = Math.log(alpha); // log C(alpha, 1)
  for (let l = 2; l <= alpha; l++) {
    logBinom += Math.log((alpha - l + 1) / l);
    const base = logBinom + l * logQ + (alpha - l) * log1mQ;
    terms.push(l === 2 ? base + eps(2) : Math.log(3) + base + (l - 1) * eps(l));
  }
  return logSumExp(terms) / (alpha - 1);
}

/**
 * The RDP curve of a mechanism `rdp` (valid at every real order > 1) under Poisson subsampling at
 * rate q, as the reference code does it: at an integer order, the smaller of Zhu & Wang 2019 Theorem
 * 5 and the unsubsampled bound; at a fractional order, the smaller of the unsubsampled bound and the
 * convex interpolation of the cumulant between the neighbouring integers (see the file comment).
 * q = 0 gives 0, q = 1 the unsubsampled curve.
 *
 * @example
 * const curve = rdpPoissonSubsampled(0.01, (a) => a / (2 * 1.1 ** 2)); // Float64Array(151)
 */
export function rdpPoissonSubsampled(
  q: number,
  rdp: (alpha: number) => number,
  orders: readonly number[] = DEFAULT_ORDERS,
): Float64Array {
  checkSamplingRate(q);
  if (typeof rdp !== 'function') {
    throw new DpError(DpErrorCode.INVALID_ARGUMENT, 'rdp must be a function of the order');
  }
  const ords = orders === DEFAULT_ORDERS ? DEFAULT_ORDERS : checkOrders(orders);
  const out = new Float64Array(ords.length);
  if (q === 0) return out;
  const memo = new Map<number, number>();
  const eps = (a: number): number => {
    let v = memo.get(a);
    if (v === undefined) {
      v = rdp(a);
      if (typeof v !== 'number' || Number.isNaN(v) || v < 0) {
        throw new DpError(
          DpErrorCode.INVALID_RDP,
          `the mechanism's RDP at order ${a} must be a number >= 0; got ${String(v)}`,
        );
      }
      memo.set(a, v);
    }
    return v;
  };
  const subsampledInt = new Map<number, number>();
  const atInteger = (a: number): number => {
    let v = subsampledInt.get(a);
    if (v === undefined) {
      v =
        q === 1 || a > MAX_SUBSAMPLED_ORDER ? eps(a) : Math.min(zhuWangTheorem5(a, q, eps), eps(a));
      subsampledInt.set(a, v);
    }
    return v;
  };
  for (let k = 0; k < ords.length; k++) {
    const a = ords[k]!;
    if (a === Infinity) {
      out[k] = eps(a);
    } else if (Number.isInteger(a)) {
      out[k] = atInteger(a);
    } else {
      const lo = Math.floor(a);
      const t = a - lo;
      // Cumulant K(j) = (j - 1) eps(j), K(1) = 0; K is convex, so K(a) <= (1 - t) K(lo) + t K(lo + 1).
      const kLo = lo === 1 ? 0 : (lo - 1) * atInteger(lo);
      const kHi = lo * atInteger(lo + 1);
      const interpolated = ((1 - t) * kLo + t * kHi) / (a - 1);
      out[k] = Math.min(interpolated, eps(a));
    }
  }
  return out;
}

/**
 * RDP of one release of the distributed discrete Gaussian mechanism with Poisson sampling rate q
 * (Kairouz et al. 2021, Proposition 14; subsampled with Zhu & Wang 2019, Theorem 5), at each order.
 * As the reference `compute_rdp_dgaussian(q, l1_scale, l2_scale, tau, dim, steps=1, orders)`.
 *
 * @example
 * const rdp = rdpDistributedDiscreteGaussian(0.1, { l2Sensitivity: 1056, sigma2: 262144, shares: 4, dimension: 1000 });
 */
export function rdpDistributedDiscreteGaussian(
  q: number,
  mechanism: DdgMechanism,
  orders: readonly number[] = DEFAULT_ORDERS,
): Float64Array {
  checkSamplingRate(q);
  const m = checkMechanism(mechanism);
  const tau = ddgTau(m.sigma2, m.shares);
  return rdpPoissonSubsampled(q, (a) => ddgRdpAt(m, tau, a), orders);
}

/**
 * The integer-domain mechanism of one Confide site-level release under secure aggregation, derived
 * from what the client node actually does (apps/client-node, libs/secure-aggregation/src/quantize.ts):
 *
 * 1. The update u is clipped to ||u||_2 <= C (clipL2 guarantees it in double precision).
 * 2. appendWeight multiplies by the site's weight, 1 at site level (exact), and appends the weight;
 *    that last coordinate carries no noise and is not part of the d noised coordinates: it is the
 *    same constant for every contributor and reveals only how many sites contributed, which the
 *    aggregator knows anyway.
 * 3. quantize clips each coordinate to [-clip, clip] (which never increases the L2 norm), multiplies
 *    by gamma = scale (a power of two: exact) and rounds stochastically: q_i is floor(v_i) or
 *    floor(v_i) + 1, so |q_i - v_i| < 1, with no conditional rounding and no rotation.
 * 4. The site adds its N_Z(0, sigma^2) share to each of the d coordinates, sigma^2 = (z C gamma)^2 / t
 *    (distributedNoiseShare, as the client node draws it), so t shares sum to variance (z C gamma)^2.
 *
 * Under add/remove-one-site, the sums differ by one site's integer vector q, and by the triangle
 * inequality ||q||_2 <= ||gamma u||_2 + ||q - gamma u||_2 < gamma C + sqrt(d): Delta2 = gamma C +
 * sqrt(d), the reference's `rounded_l2_norm_bound` with beta = 0. Its tighter bound (beta > 0) holds
 * only for conditional randomized rounding (resampling the rounding until the norm fits), which our
 * quantiser does not do, so it is not used. Delta1 = Delta2 min(sqrt(d), Delta2), the reference's
 * `rounded_l1_norm_bound` (||q||_1 <= sqrt(d) ||q||_2, and ||q||_1 <= ||q||_2^2 on integers). The
 * modular (mod 2^32) sum is a function of the integer sum, so wrap-around costs no privacy.
 *
 * @example
 * const m = quantizedDdgMechanism({ noiseMultiplier: 1, clipNorm: 1, scale: 2 ** 10, dimension: 1000, survivors: 4 });
 * // { l2Sensitivity: 1055.62..., l1Sensitivity: 33381.9..., sigma2: 262144, shares: 4, dimension: 1000 }
 */
export function quantizedDdgMechanism(release: QuantizedRelease): Required<DdgMechanism> {
  if (typeof release !== 'object' || release === null) {
    throw new DpError(
      DpErrorCode.INVALID_ARGUMENT,
      'the release must be { noiseMultiplier, clipNorm, scale, dimension, survivors }',
    );
  }
  const { noiseMultiplier, clipNorm, scale, dimension, survivors } = release;
  checkPositive(noiseMultiplier, 'noiseMultiplier', DpErrorCode.INVALID_NOISE_MULTIPLIER);
  checkPositive(clipNorm, 'clipNorm', DpErrorCode.INVALID_CLIP_NORM);
  checkPositive(scale, 'scale (quantisation scale gamma)');
  checkInteger(dimension, 'dimension d', 1, Number.MAX_SAFE_INTEGER);
  checkInteger(survivors, 'survivors (honest noise-adding sites t)', 1, MAX_SHARES);
  const l2 = scale * clipNorm + Math.sqrt(dimension);
  const { discreteGaussianSigma2 } = distributedNoiseShare({
    sigma: noiseMultiplier * clipNorm * scale,
    t: survivors,
  });
  return checkMechanism({
    l2Sensitivity: l2,
    l1Sensitivity: l2 * Math.min(Math.sqrt(dimension), l2),
    sigma2: discreteGaussianSigma2,
    shares: survivors,
    dimension,
  });
}
