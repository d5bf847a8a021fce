/**
 * Integer-valued noise for secure aggregation, where noise must live in the same ring as the
 * masked, quantised updates (DESIGN.md section 6): the discrete Gaussian and the Skellam
 * distribution, and the per-site share of a distributed mechanism.
 *
 * The discrete Gaussian sampler is the exact one of Canonne, Kamath, Steinke 2020, "The Discrete
 * Gaussian for Differential Privacy" (NeurIPS 2020, arXiv:2004.00010): Algorithm 1 (Bernoulli(exp(-
 * gamma)) for rational gamma from Bernoulli(gamma / k) draws), Algorithm 2 (discrete Laplace) and
 * Algorithm 3 (discrete Gaussian by rejection from the discrete Laplace with t = floor(sigma) + 1).
 * Every probability is an exact rational: sigma^2 is taken as the exact binary fraction of the
 * double passed in, and arithmetic switches to BigInt whenever an integer would exceed 2^53. Its
 * output distribution is exactly N_Z(0, sigma^2) given uniform random bits.
 *
 * Skellam(mu) = Poisson(mu) - Poisson(mu) (Agarwal, Kairouz, Liu 2021, "The Skellam Mechanism for
 * Differentially Private Federated Learning", NeurIPS 2021), with Poisson draws by inversion for
 * mu < 10 and by Hormann's transformed rejection PTRS (1993, "The transformed rejection method for
 * generating Poisson random variables") above: a rejection sampler, exact up to double rounding of
 * its acceptance test, with no normal approximation at any mean. Unlike sums of discrete Gaussians,
 * a sum of Skellam shares is again Skellam, which is why the Skellam paper prefers it.
 */
import { checkCount, checkPositive, DpError, DpErrorCode } from './errors';
import { checkRandomSource, cryptoRandomSource, RandomStream, type RandomSource } from './random';
import { logGamma } from './special';

const SAFE = 2 ** 53;

// ------------------------------------------------------------------------------------------------
// Exact Bernoulli draws (CKS 2020, Algorithm 1).

/** Bernoulli(num / den) for integers 0 <= num <= den, den >= 1. */
function bernoulli(s: RandomStream, num: bigint, den: bigint): boolean {
  return s.belowBig(den) < num;
}

/** Bernoulli(exp(-num / den)) for 0 <= num <= den (gamma in [0, 1]), exact. */
function bernoulliExpNegUnit(s: RandomStream, num: number | bigint, den: number | bigint): boolean {
  if (typeof num === 'number' && typeof den === 'number') {
    // Number arithmetic while den * k stays below 2^53.
    let k = 1;
    for (;;) {
      if (den * k >= SAFE) return bernoulliExpNegUnitBig(s, BigInt(num), BigInt(den), k);
      if (!(s.below(den * k) < num)) break;
      k++;
    }
    return k % 2 === 1;
  }
  return bernoulliExpNegUnitBig(s, BigInt(num), BigInt(den), 1);
}

function bernoulliExpNegUnitBig(s: RandomStream, num: bigint, den: bigint, k0: number): boolean {
  let k = k0;
  while (bernoulli(s, num, den * BigInt(k))) k++;
  return k % 2 === 1;
}

/** Bernoulli(exp(-num / den)) for any rational gamma = num / den >= 0, exact. */
function bernoulliExpNeg(s: RandomStream, num: number | bigint, den: number | bigint): boolean {
  let whole: number | bigint;
  let rest: number | bigint;
  if (typeof num === 'number' && typeof den === 'number') {
    whole = Math.floor(num / den);
    rest = num - whole * den;
  } else {
    const n = BigInt(num);
    const d = BigInt(den);
    whole = n / d;
    rest = n % d;
  }
  for (let i = 0n; i < BigInt(whole); i++) {
    if (!bernoulliExpNegUnit(s, 1, 1)) return false;
  }
  return bernoulliExpNegUnit(s, rest, den);
}

// ------------------------------------------------------------------------------------------------
// Discrete Laplace and discrete Gaussian (CKS 2020, Algorithms 2 and 3).

/** Discrete Laplace with scale t (integer >= 1): P(x) proportional to exp(-|x| / t). */
function discreteLaplace(s: RandomStream, t: number): number {
  for (;;) {
    const u = s.below(t);
    if (!bernoulliExpNegUnit(s, u, t)) continue;
    let v = 0;
    while (bernoulliExpNegUnit(s, 1, 1)) v++;
    const y = u + t * v;
    const negative = (s.u32() & 1) === 1;
    if (negative && y === 0) continue;
    return negative ? -y : y;
  }
}

/** The exact rational a / b of a positive finite double (b a power of two). */
function toRational(x: number): { a: bigint; b: bigint } {
  let b = 1n;
  let m = x;
  while (!Number.isInteger(m)) {
    m *= 2;
    b *= 2n;
  }
  let a = BigInt(m);
  while (a % 2n === 0n && b > 1n) {
    a /= 2n;
    b /= 2n;
  }
  return { a, b };
}

/** floor(sqrt(a / b)) for positive integers a, b. */
function floorSqrtRatio(a: bigint, b: bigint): bigint {
  let r = BigInt(Math.floor(Math.sqrt(Number(a) / Number(b))));
  while (r * r * b > a) r--;
  while ((r + 1n) * (r + 1n) * b <= a) r++;
  return r;
}

/** A prepared exact sampler of N_Z(0, sigma^2). */
function discreteGaussianSampler(sigma2: number): (s: RandomStream) => number {
  const { a, b } = toRational(sigma2);
  const tBig = floorSqrtRatio(a, b) + 1n;
  const t = Number(tBig);
  // gamma(y) = (|y| b t - a)^2 / (2 a b t^2)
  const denBig = 2n * a * b * tBig * tBig;
  const btBig = b * tBig;
  const fast = denBig < BigInt(SAFE) / 64n;
  const den = Number(denBig);
  const bt = Number(btBig);
  const an = Number(a);
  return (s) => {
    for (;;) {
      const y = discreteLaplace(s, t);
      const ay = Math.abs(y);
      if (fast && ay * bt < 2 ** 26 && an < 2 ** 26) {
        const diff = ay * bt - an;
        if (bernoulliExpNeg(s, diff * diff, den)) return y;
      } else {
        const diff = BigInt(ay) * btBig - a;
        if (bernoulliExpNeg(s, diff * diff, denBig)) return y;
      }
    }
  };
}

const INT32_MAX = 2 ** 31 - 1;

function checkSigma2(sigma2: unknown): number {
  checkPositive(sigma2, 'sigma2 (variance)');
  if ((sigma2 as number) > 1e14) {
    throw new DpError(
      DpErrorCode.INVALID_ARGUMENT,
      `sigma2 must be at most 1e14 so that samples fit in an Int32Array; got ${String(sigma2)}`,
    );
  }
  return sigma2 as number;
}

/**
 * `n` independent draws from the discrete Gaussian N_Z(0, sigma2), P(x) proportional to
 * exp(-x^2 / (2 sigma2)) on the integers, by the exact sampler of Canonne, Kamath, Steinke 2020.
 *
 * @example
 * const noise = sampleDiscreteGaussian(4, 1000); // Int32Array(1000), variance close to 4
 */
export function sampleDiscreteGaussian(
  sigma2: number,
  n: number,
  rng: RandomSource = cryptoRandomSource,
): Int32Array {
  checkSigma2(sigma2);
  checkCount(n);
  const stream = new RandomStream(checkRandomSource(rng));
  const draw = discreteGaussianSampler(sigma2);
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const x = draw(stream);
    // |x| > 2^31 would need a deviation of over 200 standard deviations: probability < e^-20000.
    if (Math.abs(x) > INT32_MAX) throw new DpError(DpErrorCode.INVALID_ARGUMENT, 'overflow');
    out[i] = x;
  }
  stream.wipe();
  return out;
}

// ------------------------------------------------------------------------------------------------
// Poisson and Skellam.

/** Poisson(mu) for mu < 10 by sequential inversion. */
function poissonSmall(s: RandomStream, mu: number): number {
  let u = s.uniform();
  let p = Math.exp(-mu);
  let k = 0;
  while (u > p) {
    u -= p;
    k++;
    p *= mu / k;
    if (k > 1000) return poissonSmall(s, mu); // only reachable through rounding at u ~ 1
  }
  return k;
}

/** Poisson(mu) for mu >= 10 by Hormann's PTRS (as numpy's random_poisson_ptrs). */
function poissonPtrs(s: RandomStream, mu: number): number {
  const slam = Math.sqrt(mu);
  const loglam = Math.log(mu);
  const b = 0.931 + 2.53 * slam;
  const a = -0.059 + 0.02483 * b;
  const invalpha = 1.1239 + 1.1328 / (b - 3.4);
  const vr = 0.9277 - 3.6224 / (b - 2);
  for (;;) {
    const u = s.uniform() - 0.5;
    const v = s.uniform();
    const us = 0.5 - Math.abs(u);
    const k = Math.floor(((2 * a) / us + b) * u + mu + 0.43);
    if (us >= 0.07 && v <= vr) return k;
    if (k < 0 || (us < 0.013 && v > us)) continue;
    if (
      Math.log(v) + Math.log(invalpha) - Math.log(a / (us * us) + b) <=
      -mu + k * loglam - logGamma(k + 1)
    ) {
      return k;
    }
  }
}

function poisson(s: RandomStream, mu: number): number {
  if (mu === 0) return 0;
  return mu < 10 ? poissonSmall(s, mu) : poissonPtrs(s, mu);
}

/**
 * `n` independent draws from the symmetric Skellam distribution with parameter mu (the difference
 * of two independent Poisson(mu) variables; mean 0, variance 2 mu).
 *
 * @example
 * const noise = sampleSkellam(50, 1000); // Int32Array(1000), variance close to 100
 */
export function sampleSkellam(
  mu: number,
  n: number,
  rng: RandomSource = cryptoRandomSource,
): Int32Array {
  checkPositive(mu, 'mu');
  if (mu > 1e14) {
    throw new DpError(
      DpErrorCode.INVALID_ARGUMENT,
      `mu must be at most 1e14 so that samples fit in an Int32Array; got ${mu}`,
    );
  }
  checkCount(n);
  const stream = new RandomStream(checkRandomSource(rng));
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = poisson(stream, mu) - poisson(stream, mu);
  stream.wipe();
  return out;
}

/**
 * The noise each site adds so that the aggregate carries variance sigma^2 even if only `t` honest
 * sites survive and add theirs: per-site variance sigma^2 / t, i.e. a discrete Gaussian with
 * sigma2 = sigma^2 / t or a Skellam with mu = sigma^2 / (2 t). `sigma` is the standard deviation the
 * accountant assumes for the sum, in the integer domain (noise multiplier x clipping norm x
 * quantisation scale).
 *
 * @example
 * const share = distributedNoiseShare({ sigma: 200, t: 8 }); // variance 5000, skellamMu 2500
 * const noise = sampleSkellam(share.skellamMu, dim);
 */
export function distributedNoiseShare({ sigma, t }: { sigma: number; t: number }): {
  variance: number;
  discreteGaussianSigma2: number;
  skellamMu: number;
} {
  checkPositive(sigma, 'sigma');
  if (!Number.isSafeInteger(t) || t < 1) {
    throw new DpError(
      DpErrorCode.INVALID_ARGUMENT,
      `t (honest surviving sites) must be a positive integer; got ${String(t)}`,
    );
  }
  const variance = (sigma * sigma) / t;
  return { variance, discreteGaussianSigma2: variance, skellamMu: variance / 2 };
}
