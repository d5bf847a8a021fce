/**
 * Privacy-loss-distribution (PLD) accountant for the Poisson-subsampled Gaussian mechanism under
 * the add-or-remove-one neighbouring relation.
 *
 * A port of the path that Google's dp_accounting takes for
 * `PLDAccountant(NeighboringRelation.ADD_OR_REMOVE_ONE, value_discretization_interval=1e-4)`
 * composing `SelfComposedDpEvent(PoissonSampledDpEvent(q, GaussianDpEvent(sigma)), steps)`
 * (google/differential-privacy, python/dp_accounting/dp_accounting/pld/):
 *
 * - privacy_loss_mechanism.py `GaussianPrivacyLoss` (sensitivity 1, pessimistic estimate,
 *   log_mass_truncation_bound -50) and `AdditiveNoisePrivacyLoss` (subsampled privacy loss, its
 *   inverse, the hockey-stick divergence `get_delta_for_epsilon`) for the ADD and REMOVE adjacency
 *   types;
 * - privacy_loss_distribution.py `from_gaussian_mechanism` with `use_connect_dots=True`, i.e. the
 *   pessimistic "Connect the Dots" discretisation of Doroshenko, Ghazi, Kamath, Kumar, Manurangsi
 *   2022 (arXiv:2207.04380, Algorithm 1), pld_pmf.py `create_pmf_pessimistic_connect_dots_fixed_gap`;
 * - pld_pmf.py `create_pmf` (pmfs of up to 1000 points are sparse: they self-compose by direct
 *   sums, or not at all for one step, and without the 1e-15 truncation), `DensePLDPmf.self_compose`
 *   via common.py `self_convolve`: FFT raised to the power `steps`, over a window chosen by Chernoff
 *   bounds so that at most 1e-15 of mass is truncated (and counted as infinite loss),
 *   `compose_pmfs` onto the accountant's identity with `_truncate_tails`, and
 *   `_get_epsilon_for_delta` / `_get_delta_for_epsilon` (the max over REMOVE and ADD).
 *
 * The result is an upper bound on the true epsilon (pessimistic rounding everywhere); it is tighter
 * than the RDP bound.
 *
 * One deliberate difference: dp_accounting evaluates `fft(probs) ** steps` in double precision, so
 * its FFT round-off is multiplied by `steps`. Up to 10^4 steps that moves its epsilon by < 0.3%, but
 * at 10^5-10^6 steps and delta = 1e-10 by up to ~5%, either way, and its answer there even depends
 * on the machine (numpy's AVX-512 exp or glibc's feed slightly different pmfs into the same
 * amplification). From 32 steps on this port computes the transform's significant coefficients and
 * their power in double-double arithmetic (fft.ts, dd.ts), i.e. the value dp_accounting's algorithm
 * has in exact arithmetic: it agrees with dp_accounting run in long double to ~3e-5 in that corner
 * (fixtures/dp-accounting-pld.json, column epsilonExtended) and with dp_accounting as it runs
 * wherever the latter's own round-off is small.
 *
 * Other differences: FFT lengths are powers of two (scipy's are 11-smooth; the two wrap the
 * < 1e-15 of mass outside the window differently), identical events of a history are merged into
 * one self-composition, and when a history would need more than `maxGridSize` points the
 * discretisation interval is doubled until it fits, which keeps the bound valid but looser (the
 * interval used is reported).
 */
import {
  checkDelta,
  checkNoiseMultiplier,
  checkPositive,
  checkSamplingRate,
  checkSteps,
  DpError,
  DpErrorCode,
} from './errors';
import { DDTwiddles } from './dd';
import {
  convolve,
  ddComplexPow,
  dftDDAt,
  inverseRealFft,
  nextPow2,
  realFft,
  realFftDDAt,
} from './fft';
import { logNdtr, ndtr, ndtri } from './special';

/** One self-composed Poisson-subsampled Gaussian: sampling rate, noise multiplier, repetitions. */
export interface GaussianEvent {
  q: number;
  sigma: number;
  steps: number;
}

type Adjacency = 'add' | 'remove';

const TAIL_MASS_TRUNCATION = 1e-15;
const LOG_MASS_TRUNCATION_BOUND = -50;

function logAdd(x: number, y: number): number {
  const mn = Math.min(x, y);
  const mx = Math.max(x, y);
  return mx + Math.log1p(Math.exp(mn - mx));
}

function logSub(x: number, y: number): number {
  if (y >= x) throw new DpError(DpErrorCode.INVALID_ARGUMENT, 'internal: log_sub of a <= b');
  return x + Math.log1p(-Math.exp(y - x));
}

/** dp_accounting `common.log_a_times_exp_b_plus_c`: log(a exp(b) + c). */
function logATimesExpBPlusC(a: number, b: number, c: number): number {
  if (a === 0) return Math.log(c);
  if (a < 0) {
    if (c <= 0) throw new DpError(DpErrorCode.INVALID_ARGUMENT, 'internal: a exp(b) + c <= 0');
    return logSub(Math.log(c), Math.log(-a) + b);
  }
  if (b === 0) return Math.log(a + c);
  const d = b + Math.log(a);
  if (c === 0) return d;
  if (c < 0) return logSub(d, Math.log(-c));
  return logAdd(d, Math.log(c));
}

/** Python's math.isclose with its defaults (rel_tol 1e-9). */
function isClose(a: number, b: number): boolean {
  return a === b || Math.abs(a - b) <= 1e-9 * Math.max(Math.abs(a), Math.abs(b));
}

/** dp_accounting `GaussianPrivacyLoss` with sensitivity 1 and pessimistic estimates. */
class GaussianPrivacyLoss {
  private readonly log1mQ: number;
  private readonly logQ: number;
  private readonly var: number;
  /** math.log(1 - q), as dp_accounting writes it in inverse_privacy_loss. */
  private readonly logOneMinusQ: number;

  constructor(
    private readonly sd: number,
    private readonly q: number,
    private readonly adjacency: Adjacency,
  ) {
    this.log1mQ = Math.log1p(-q);
    this.logQ = Math.log(q);
    this.var = sd ** 2;
    this.logOneMinusQ = Math.log(1 - q);
  }

  private noiseCdf(x: number): number {
    return ndtr(x / this.sd);
  }

  private noiseLogCdf(x: number): number {
    return logNdtr(x / this.sd);
  }

  muUpperCdf(x: number): number {
    if (this.adjacency === 'add') return this.noiseCdf(x);
    if (this.q === 1) return this.noiseCdf(x + 1);
    return (1 - this.q) * this.noiseCdf(x) + this.q * this.noiseCdf(x + 1);
  }

  muLowerLogCdf(x: number): number {
    if (this.adjacency === 'add') {
      if (this.q === 1) return this.noiseLogCdf(x - 1);
      // np.logaddexp
      const a = this.log1mQ + this.noiseLogCdf(x);
      const b = this.logQ + this.noiseLogCdf(x - 1);
      const mx = Math.max(a, b);
      if (mx === -Infinity) return -Infinity;
      return mx + Math.log1p(Math.exp(-Math.abs(a - b)));
    }
    return this.noiseLogCdf(x);
  }

  private lossWithoutSubsampling(x: number): number {
    return this.adjacency === 'add' ? (0.5 - x) / this.var : (-0.5 - x) / this.var;
  }

  private inverseLossWithoutSubsampling(loss: number): number {
    return this.adjacency === 'add' ? 0.5 - loss * this.var : -0.5 - loss * this.var;
  }

  privacyLoss(x: number): number {
    const p = this.lossWithoutSubsampling(x);
    if (this.q === 1) return p;
    if (this.adjacency === 'add') return -logATimesExpBPlusC(this.q, -p, 1 - this.q);
    return logATimesExpBPlusC(this.q, p, 1 - this.q);
  }

  inversePrivacyLoss(loss: number): number {
    const q = this.q;
    if (q === 1) return this.inverseLossWithoutSubsampling(loss);
    if (this.adjacency === 'add') {
      if (isClose(loss, -this.logOneMinusQ)) return this.inverseLossWithoutSubsampling(Infinity);
      return this.inverseLossWithoutSubsampling(-logATimesExpBPlusC(1 / q, -loss, 1 - 1 / q));
    }
    if (isClose(loss, this.logOneMinusQ)) return this.inverseLossWithoutSubsampling(-Infinity);
    return this.inverseLossWithoutSubsampling(logATimesExpBPlusC(1 / q, loss, 1 - 1 / q));
  }

  /** The hockey-stick divergence at `eps` (AdditiveNoisePrivacyLoss.get_delta_for_epsilon). */
  deltaForEpsilon(eps: number): number {
    const q = this.q;
    let delta: number;
    let invert: boolean;
    if (q === 1) invert = true;
    else if (this.adjacency === 'add') invert = eps < -this.log1mQ;
    else invert = eps > this.log1mQ;
    if (invert) {
      const x = this.inversePrivacyLoss(eps);
      delta = this.muUpperCdf(x) - Math.exp(eps + this.muLowerLogCdf(x));
    } else {
      delta = this.adjacency === 'add' ? 0 : -Math.expm1(eps);
    }
    return Math.min(1, Math.max(0, delta));
  }

  /** `connect_dots_bounds` from `privacy_loss_tail`: the losses at the truncation points. */
  connectDotsBounds(): { epsilonUpper: number; epsilonLower: number } {
    let lower = this.sd * LOWER_TAIL_QUANTILE;
    let upper = -lower;
    if (this.adjacency === 'add') upper += 1;
    else lower -= 1;
    return { epsilonUpper: this.privacyLoss(lower), epsilonLower: this.privacyLoss(upper) };
  }
}

/** stats.norm.ppf(0.5 * exp(log_mass_truncation_bound)). */
const LOWER_TAIL_QUANTILE = ndtri(0.5 * Math.exp(LOG_MASS_TRUNCATION_BOUND));

/**
 * A discretised PLD: mass probs[i] at loss (lowerLoss + i) * discretization, plus +infinity.
 * `sparse` marks the pmfs dp_accounting would hold as a SparsePLDPmf (at most 1000 points, from a
 * single step or a few sparse compositions): they compose without an FFT and without the
 * 1e-15 tail truncation of a dense self-composition.
 */
export interface PldPmf {
  discretization: number;
  lowerLoss: number;
  probs: Float64Array;
  infinityMass: number;
  sparse: boolean;
}

/** pld_pmf._MAX_PMF_SPARSE_SIZE. */
const MAX_PMF_SPARSE_SIZE = 1000;

/** Pessimistic connect-the-dots pmf of one subsampled Gaussian step (fixed-gap variant). */
export function gaussianPmf(sigma: number, q: number, adjacency: Adjacency, d: number): PldPmf {
  const pl = new GaussianPrivacyLoss(sigma, q, adjacency);
  const { epsilonUpper, epsilonLower } = pl.connectDotsBounds();
  const hi = Math.ceil(epsilonUpper / d);
  const lo = Math.floor(epsilonLower / d);
  const n = hi - lo + 1;
  const sparse = n <= MAX_PMF_SPARSE_SIZE;
  const deltas = new Float64Array(n);
  let running = Infinity;
  for (let k = 0; k < n; k++) {
    // np.minimum.accumulate: deltas are non-increasing up to rounding.
    running = Math.min(running, pl.deltaForEpsilon((lo + k) * d));
    deltas[k] = running;
  }
  if (n === 1) {
    return {
      discretization: d,
      lowerLoss: lo,
      probs: Float64Array.of(1 - deltas[0]!),
      infinityMass: deltas[0]!,
      sparse,
    };
  }
  const probs = new Float64Array(n);
  const em1 = Math.expm1(d);
  const e = Math.exp(d);
  probs[0] = 1 - deltas[0]! + (deltas[1]! - deltas[0]!) / em1;
  for (let k = 1; k < n - 1; k++) {
    probs[k] = (deltas[k + 1]! - deltas[k]! - (deltas[k]! - deltas[k - 1]!) * e) / em1;
  }
  probs[n - 1] = (deltas[n - 1]! - deltas[n - 2]!) / Math.expm1(-d);
  for (let k = 0; k < n; k++) if (!(probs[k]! > 0)) probs[k] = 0;
  return { discretization: d, lowerLoss: lo, probs, infinityMass: deltas[n - 1]!, sparse };
}

/** Grid points of one step's pmf, before building it. */
function singleStepSize(sigma: number, q: number, adjacency: Adjacency, d: number): number {
  const { epsilonUpper, epsilonLower } = new GaussianPrivacyLoss(
    sigma,
    q,
    adjacency,
  ).connectDotsBounds();
  return Math.ceil(epsilonUpper / d) - Math.floor(epsilonLower / d) + 1;
}

const CHERNOFF_ORDERS = [
  ...Array.from({ length: 20 }, (_, k) => k - 20),
  ...Array.from({ length: 20 }, (_, k) => k + 1),
];

/** log E[exp(order * index)] of probs at dp_accounting's Chernoff orders (+-1..20 / length). */
function chernoffLogMgfs(probs: Float64Array): { order: number; logMgf: number }[] {
  const len = probs.length;
  return CHERNOFF_ORDERS.map((o) => {
    const order = o / len;
    // scipy.special.logsumexp(arange(len) * order, b=probs), anchored at the largest exponent.
    const aMax = order > 0 ? (len - 1) * order : 0;
    let s = 0;
    const r = Math.exp(order);
    let w = 1;
    for (let i = 0; i < len; i++) {
      if ((i & 1023) === 0) w = Math.exp(i * order - aMax);
      s += probs[i]! * w;
      w *= r;
    }
    return { order, logMgf: Math.log(s) + aMax };
  });
}

/**
 * common.compute_self_convolve_bounds: Chernoff bounds [lower, upper] on the indices (relative to
 * n * lowerLoss) outside which probs^{*n} has at most `tail` mass.
 */
function selfConvolveBounds(probs: Float64Array, n: number, tail: number): [number, number] {
  const len = probs.length;
  let upper = (len - 1) * n;
  let lower = 0;
  const logTwoOverTail = Math.log(2 / tail);
  for (const { order, logMgf } of chernoffLogMgfs(probs)) {
    const bound = (n * logMgf + logTwoOverTail) / order;
    if (!Number.isFinite(bound)) continue;
    if (order > 0) upper = Math.min(upper, Math.ceil(bound));
    else lower = Math.max(lower, Math.floor(bound));
  }
  return [lower, upper];
}

/** The Chernoff window of common.self_convolve and the (power-of-two) FFT length we use. */
function selfConvolvePlan(
  probs: Float64Array,
  n: number,
): { lo: number; outLen: number; fftLen: number } {
  const [lo, hi] = selfConvolveBounds(probs, n, TAIL_MASS_TRUNCATION);
  const outLen = hi - lo + 1;
  return { lo, outLen, fftLen: Math.max(4, nextPow2(Math.max(outLen, probs.length))) };
}

/**
 * From this many steps on, the transform and its power are done in double-double: the power
 * multiplies double rounding errors enough to matter (dp_accounting's own result moves by < 1e-4
 * below 1000 steps, by up to 0.3% at 10^4 and ~5% at 10^6).
 */
const EXACT_POWER_FROM = 1000;

/**
 * common.self_convolve: `real(ifft(fft(probs, L) ** n))` rolled to the Chernoff window, in the
 * value dp_accounting's algorithm has in exact arithmetic.
 *
 * dp_accounting computes this in double precision, where every rounding error of the forward
 * transform and of the power is multiplied by n: at 10^6 steps its epsilon at delta = 1e-10 is
 * off its own exact value by up to ~5%, in a direction that depends on the machine (numpy's SIMD
 * exp on AVX-512 or glibc's). Here, from EXACT_POWER_FROM steps on, every coefficient that can
 * matter is computed in double-double, by direct summation when few are needed and by a
 * double-double FFT otherwise, and raised to the power n in double-double; the inverse transform
 * (whose errors are not amplified) stays in double. "Can matter": a coefficient left in double
 * carries a relative error of about 20 n ulps (~2.2e-15 n), so if every one below |Y| = 1/(4 L n)
 * is, all of them together move the result's mass by < 1e-15 (delta is >= 1e-10 in practice). The FFT length is a power of two,
 * not scipy's 11-smooth length: the two wrap the < 1e-15 of mass outside the window differently,
 * which moves delta by < 1e-15.
 */
function selfConvolve(
  probs: Float64Array,
  n: number,
  plan: { lo: number; outLen: number; fftLen: number },
): Float64Array {
  const L = plan.fftLen;
  const half = L / 2;
  const x = realFft(probs, L);
  const yRe = new Float64Array(half + 1);
  const yIm = new Float64Array(half + 1);
  const significant: number[] = [];
  const negligibleLogModulus = -Math.log(4 * L * n);
  for (let k = 0; k <= half; k++) {
    const re = x.re[k]!;
    const im = x.im[k]!;
    const logMod = 0.5 * Math.log(re * re + im * im);
    if (n >= EXACT_POWER_FROM && n * logMod > negligibleLogModulus) {
      significant.push(k);
      continue;
    }
    if (n < EXACT_POWER_FROM) {
      doublePow(re, im, n, yRe, yIm, k);
    } else if (n * logMod > -746) {
      // Negligible: the polar form is plenty (and below e^-746 the power is 0).
      const m = Math.exp(n * logMod);
      const th = n * Math.atan2(im, re);
      yRe[k] = m * Math.cos(th);
      yIm[k] = m * Math.sin(th);
    }
  }
  if (significant.length > 0) {
    const tw = new DDTwiddles(L);
    const span = nonzeroSpan(probs);
    // Direct sums cost ~span multiply-adds per coefficient (~40 ns each); the double-double FFT
    // (L/4) log2(L/2) butterflies of ~80 ns.
    const direct = significant.length * span <= 2 * (L / 4) * Math.log2(L / 2);
    const xs = direct ? dftDDAt(probs, tw, significant) : realFftDDAt(probs, tw, significant);
    const out = new Float64Array(2);
    for (let q = 0; q < significant.length; q++) {
      const k = significant[q]!;
      ddComplexPow(xs.reHi[q]!, xs.reLo[q]!, xs.imHi[q]!, xs.imLo[q]!, n, out);
      yRe[k] = out[0]!;
      yIm[k] = out[1]!;
    }
  }
  const y = inverseRealFft(yRe, yIm, L);
  const out = new Float64Array(plan.outLen);
  for (let i = 0; i < plan.outLen; i++) out[i] = y[(i + plan.lo) % L]!;
  return out;
}

/** z^n in double by binary powering (for small n, where rounding is not amplified much). */
function doublePow(
  re: number,
  im: number,
  n: number,
  outRe: Float64Array,
  outIm: Float64Array,
  k: number,
): void {
  let ar = 1;
  let ai = 0;
  let pr = re;
  let pi = im;
  let m = n;
  for (;;) {
    if (m % 2 === 1) {
      const r = ar * pr - ai * pi;
      ai = ar * pi + ai * pr;
      ar = r;
    }
    m = Math.floor(m / 2);
    if (m === 0) break;
    const r = pr * pr - pi * pi;
    pi = 2 * pr * pi;
    pr = r;
  }
  outRe[k] = ar;
  outIm[k] = ai;
}

/** Length of the stretch between the first and last non-zero entries. */
function nonzeroSpan(probs: Float64Array): number {
  let first = 0;
  while (first < probs.length && probs[first] === 0) first++;
  let last = probs.length - 1;
  while (last > first && probs[last] === 0) last--;
  return Math.max(0, last - first + 1);
}

/** pld_pmf._truncate_tails (pessimistic): cut tails of mass <= tail/2 each side. */
function truncateTails(
  probs: Float64Array,
  tail: number,
): { offset: number; probs: Float64Array; rightMass: number } {
  if (tail === 0) return { offset: 0, probs, rightMass: 0 };
  const half = tail / 2;
  const prefix = (fromEnd: boolean): number => {
    let s = 0;
    for (let k = 0; k < probs.length; k++) {
      s += probs[fromEnd ? probs.length - 1 - k : k]!;
      if (s > half) return k;
    }
    return probs.length;
  };
  const left = prefix(false);
  const right = Math.max(probs.length - prefix(true), left + 1);
  let leftMass = 0;
  for (let k = 0; k < left; k++) leftMass += probs[k]!;
  let rightMass = 0;
  for (let k = right; k < probs.length; k++) rightMass += probs[k]!;
  const out = probs.slice(left, right);
  out[0] = out[0]! + leftMass;
  return { offset: left, probs: out, rightMass };
}

/** SparsePLDPmf.compose / DensePLDPmf.compose: the pmf of the sum of two privacy losses. */
function composeTwo(a: PldPmf, b: PldPmf, tail: number, sparse: boolean): PldPmf {
  let conv: Float64Array;
  if (sparse || a.probs.length === 1 || b.probs.length === 1) {
    // Direct sums in dp_accounting's order (outer loop over a). A length-1 factor is what
    // scipy.signal.fftconvolve turns into a plain product.
    conv = new Float64Array(a.probs.length + b.probs.length - 1);
    for (let i = 0; i < a.probs.length; i++) {
      const ai = a.probs[i]!;
      for (let j = 0; j < b.probs.length; j++) conv[i + j] = conv[i + j]! + ai * b.probs[j]!;
    }
  } else {
    conv = convolve(a.probs, b.probs);
  }
  const infinityMass = a.infinityMass + b.infinityMass - a.infinityMass * b.infinityMass;
  const t = truncateTails(conv, tail);
  return {
    discretization: a.discretization,
    lowerLoss: a.lowerLoss + b.lowerLoss + t.offset,
    probs: t.probs,
    infinityMass: infinityMass + t.rightMass,
    sparse,
  };
}

/** pld_pmf.compose_pmfs with dp_accounting's default truncation of 1e-15. */
function composePmfs(a: PldPmf, b: PldPmf): PldPmf {
  const sparse = a.sparse && b.sparse && a.probs.length * b.probs.length <= MAX_PMF_SPARSE_SIZE;
  return composeTwo(a, b, TAIL_MASS_TRUNCATION, sparse);
}

/** How a pmf self-composes: as dp_accounting's Sparse/DensePLDPmf.self_compose would. */
type SelfComposePlan =
  | { kind: 'same' }
  | { kind: 'sparse' }
  | { kind: 'fft'; lo: number; outLen: number; fftLen: number };

function selfComposePlan(pmf: PldPmf, n: number): SelfComposePlan {
  if (pmf.sparse) {
    if (n === 1) return { kind: 'same' };
    if (pmf.probs.length ** n <= MAX_PMF_SPARSE_SIZE) return { kind: 'sparse' };
  }
  return { kind: 'fft', ...selfConvolvePlan(pmf.probs, n) };
}

/** probs[lo .. lo + len), zero beyond the end. */
function windowOf(probs: Float64Array, lo: number, len: number): Float64Array {
  const out = new Float64Array(len);
  out.set(probs.subarray(lo, Math.min(probs.length, lo + len)));
  return out;
}

/** PLDPmf.self_compose(n) with tail truncation 1e-15. */
function selfCompose(pmf: PldPmf, n: number, plan: SelfComposePlan): PldPmf {
  switch (plan.kind) {
    case 'same':
      return pmf;
    case 'sparse': {
      let result = pmf;
      for (let i = 2; i <= n; i++) {
        result = composeTwo(result, pmf, i === n ? TAIL_MASS_TRUNCATION : 0, true);
      }
      return result;
    }
    case 'fft':
      return {
        discretization: pmf.discretization,
        lowerLoss: pmf.lowerLoss * n + plan.lo,
        // One "composition" only cuts the pmf to its window (the FFT round trip is the identity).
        probs:
          n === 1 ? windowOf(pmf.probs, plan.lo, plan.outLen) : selfConvolve(pmf.probs, n, plan),
        infinityMass: TAIL_MASS_TRUNCATION - Math.expm1(n * Math.log1p(-pmf.infinityMass)),
        sparse: false,
      };
  }
}

/** pld_pmf._get_epsilon_for_delta, with the losses enumerated as dp_accounting does. */
function epsilonForDelta(pmf: PldPmf, delta: number): number {
  if (pmf.infinityMass > delta) return Infinity;
  let massUpper = pmf.infinityMass;
  let massLower = 0;
  const { probs, lowerLoss, discretization: d } = pmf;
  // Dense pmfs count down from the top loss by repeated subtraction (itertools.count); sparse
  // ones multiply each index by the interval.
  let loss = (lowerLoss + probs.length - 1) * d;
  for (let k = probs.length - 1; k >= 0; k--) {
    if (pmf.sparse) loss = (lowerLoss + k) * d;
    if (massUpper > delta && massLower > 0 && logRatio(massUpper - delta, massLower) >= loss) {
      break; // epsilon is at least this loss
    }
    const p = probs[k]!;
    massUpper += p;
    massLower += Math.exp(-loss) * p;
    if (massUpper >= delta && massLower === 0) return Math.max(0, loss);
    if (!pmf.sparse) loss = loss + -d;
  }
  if (massUpper <= massLower + delta) return 0;
  return logRatio(massUpper - delta, massLower);
}

/**
 * log(a / b) for positive a, b, as log a - log b: dp_accounting divides first, and when the lower
 * mass is subnormal (losses near 745) the quotient overflows to Infinity, so it reports epsilon =
 * Infinity at a large delta where a smaller delta has a finite one (q = 1, sigma = 0.027, one step,
 * delta = 0.1). Wherever the quotient is finite the two agree to rounding.
 */
function logRatio(a: number, b: number): number {
  return Math.log(a) - Math.log(b);
}

/** pld_pmf._get_delta_for_epsilon: the hockey-stick divergence of a pmf. */
function deltaForEpsilon(pmf: PldPmf, epsilon: number): number {
  let delta = pmf.infinityMass;
  const { probs, lowerLoss, discretization: d } = pmf;
  for (let k = 0; k < probs.length; k++) {
    const loss = (lowerLoss + k) * d;
    if (loss > epsilon) delta += -Math.expm1(epsilon - loss) * probs[k]!;
  }
  return delta;
}

/** Options of the PLD accountant. */
export interface PldOptions {
  /** Width of the privacy-loss grid (dp_accounting's default 1e-4). */
  valueDiscretizationInterval?: number;
  /**
   * Most grid points a pmf may have (default 2^23; a self-composition of L points needs about
   * 32 L bytes). Larger histories get a coarser grid: still an upper bound, less tight, and no
   * longer dp_accounting's value (which would need the finer grid).
   */
  maxGridSize?: number;
}

function checkEvent(e: unknown, where: string): GaussianEvent {
  if (typeof e !== 'object' || e === null) {
    throw new DpError(
      DpErrorCode.INVALID_ARGUMENT,
      `${where} must be an object { q, sigma, steps }; got ${String(e)}`,
    );
  }
  const { q, sigma, steps } = e as Record<string, unknown>;
  return {
    q: checkSamplingRate(q, `${where}.q`),
    sigma: checkNoiseMultiplier(sigma, `${where}.sigma`),
    steps: checkSteps(steps, `${where}.steps`),
  };
}

/** Grid points a self-composition plan needs (its FFT length, or the pmf itself). */
function planSize(pmf: PldPmf, plan: SelfComposePlan): number {
  return plan.kind === 'fft' ? plan.fftLen : pmf.probs.length;
}

/** The REMOVE and ADD pmfs of a composed history; `symmetric` when they are one and the same. */
interface Composed {
  remove: PldPmf;
  add: PldPmf;
  symmetric: boolean;
  infinite: boolean;
}

/**
 * A PLD accountant for Poisson-subsampled Gaussian steps (add-or-remove-one neighbours), as
 * dp_accounting's `PLDAccountant`. Compose events, then ask for epsilon at a delta or delta at an
 * epsilon; the discretisation is pessimistic, so both are upper bounds.
 *
 * @example
 * const acc = new PldAccountant();
 * acc.compose({ q: 0.01, sigma: 1, steps: 1000 });
 * acc.getEpsilon(1e-5); // about 1.83
 */
export class PldAccountant {
  private readonly events: GaussianEvent[] = [];
  private readonly baseInterval: number;
  private readonly maxGridSize: number;
  private cached: Composed | null = null;

  constructor(options: PldOptions = {}) {
    this.baseInterval = checkPositive(
      options.valueDiscretizationInterval ?? 1e-4,
      'valueDiscretizationInterval',
    );
    const m = options.maxGridSize ?? 2 ** 23;
    if (!Number.isSafeInteger(m) || m < 1024 || m > 2 ** 26) {
      throw new DpError(
        DpErrorCode.INVALID_ARGUMENT,
        `maxGridSize must be an integer in [1024, 2^26]; got ${String(m)}`,
      );
    }
    this.maxGridSize = m;
  }

  /** Adds `steps` repetitions of the subsampled Gaussian with rate `q` and multiplier `sigma`. */
  compose(event: GaussianEvent): this {
    this.events.push(checkEvent(event, 'event'));
    this.cached = null;
    return this;
  }

  /** The discretisation interval the composed PLD uses (after any coarsening). */
  get discretization(): number {
    return this.build().remove.discretization;
  }

  /** The smallest epsilon whose hockey-stick divergence is at most `delta`. */
  getEpsilon(delta: number): number {
    checkDelta(delta);
    const pld = this.build();
    if (pld.infinite) return Infinity;
    const e = epsilonForDelta(pld.remove, delta);
    return pld.symmetric ? e : Math.max(e, epsilonForDelta(pld.add, delta));
  }

  /** The delta of the composed mechanism at `epsilon` (the hockey-stick divergence). */
  getDelta(epsilon: number): number {
    if (typeof epsilon !== 'number' || Number.isNaN(epsilon) || epsilon < 0) {
      throw new DpError(DpErrorCode.INVALID_EPSILON, `epsilon must be >= 0; got ${epsilon}`);
    }
    const pld = this.build();
    if (pld.infinite) return 1;
    const d = deltaForEpsilon(pld.remove, epsilon);
    return Math.min(1, pld.symmetric ? d : Math.max(d, deltaForEpsilon(pld.add, epsilon)));
  }

  private build(): Composed {
    if (this.cached) return this.cached;
    // Composition is commutative: merge repeats of the same (q, sigma) into one self-composition
    // (dp_accounting would self-compose each SelfComposedDpEvent separately; the two agree to
    // rounding, and a ledger of 10^4 rounds stays one FFT instead of 10^4 convolutions).
    const merged = new Map<string, GaussianEvent>();
    let infinite = false;
    for (const e of this.events) {
      if (e.steps === 0 || e.q === 0) continue;
      if (e.sigma === 0) {
        infinite = true;
        continue;
      }
      const key = `${e.q}:${e.sigma}`;
      const m = merged.get(key);
      if (m) m.steps += e.steps;
      else merged.set(key, { ...e });
    }
    const events = [...merged.values()];
    let d = this.baseInterval;
    type Step = {
      e: GaussianEvent;
      remove: PldPmf;
      add: PldPmf | null;
      removePlan: SelfComposePlan;
      addPlan: SelfComposePlan | null;
    };
    for (;;) {
      // Grow the interval until every single-step pmf and every self-composition fits.
      let fits = true;
      let total = 0;
      const steps: Step[] = [];
      for (const e of events) {
        const sizes = [singleStepSize(e.sigma, e.q, 'remove', d)];
        if (e.q < 1) sizes.push(singleStepSize(e.sigma, e.q, 'add', d));
        const biggest = Math.max(...sizes);
        if (biggest > this.maxGridSize) {
          d *= nextPow2(Math.ceil(biggest / this.maxGridSize));
          fits = false;
          break;
        }
        const remove = gaussianPmf(e.sigma, e.q, 'remove', d);
        const add = e.q < 1 ? gaussianPmf(e.sigma, e.q, 'add', d) : null;
        const removePlan = selfComposePlan(remove, e.steps);
        const addPlan = add ? selfComposePlan(add, e.steps) : null;
        const len = Math.max(
          planSize(remove, removePlan),
          add && addPlan ? planSize(add, addPlan) : 0,
        );
        total += len;
        // Composing several entries convolves their windows: allow twice the per-pmf limit.
        if (len > this.maxGridSize || total > 2 * this.maxGridSize) {
          d *= nextPow2(Math.ceil(Math.max(len, total / 2) / this.maxGridSize));
          fits = false;
          break;
        }
        steps.push({ e, remove, add, removePlan, addPlan });
      }
      if (!fits) continue;
      // PLD.identity(): a sparse pmf {0: 1}, symmetric.
      const identity: PldPmf = {
        discretization: d,
        lowerLoss: 0,
        probs: Float64Array.of(1),
        infinityMass: 0,
        sparse: true,
      };
      let acc: Composed = { remove: identity, add: identity, symmetric: true, infinite };
      for (const s of steps) {
        const r = selfCompose(s.remove, s.e.steps, s.removePlan);
        const a = s.add && s.addPlan ? selfCompose(s.add, s.e.steps, s.addPlan) : null;
        const remove = composePmfs(acc.remove, r);
        if (acc.symmetric && !a) {
          acc = { remove, add: remove, symmetric: true, infinite };
        } else {
          acc = { remove, add: composePmfs(acc.add, a ?? r), symmetric: false, infinite };
        }
      }
      this.cached = acc;
      return acc;
    }
  }
}

/**
 * Epsilon of a history of subsampled Gaussian steps by the PLD accountant, with the discretisation
 * interval actually used.
 *
 * @example
 * pldEpsilon([{ q: 0.01, sigma: 1, steps: 1000 }], 1e-5); // { epsilon: ~1.83, discretization: 1e-4 }
 */
export function pldEpsilon(
  history: readonly GaussianEvent[],
  delta: number,
  options: PldOptions = {},
): { epsilon: number; discretization: number } {
  if (!Array.isArray(history)) {
    throw new DpError(
      DpErrorCode.INVALID_ARGUMENT,
      'history must be an array of { q, sigma, steps }',
    );
  }
  checkDelta(delta);
  const acc = new PldAccountant(options);
  history.forEach((e, i) => acc.compose(checkEvent(e, `history[${i}]`)));
  return { epsilon: acc.getEpsilon(delta), discretization: acc.discretization };
}
