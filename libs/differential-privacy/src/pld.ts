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
 * - pld_pmf.py `DensePLDPmf.self_compose` via common.py `self_convolve`: FFT raised to the power
 *   `steps`, over a window chosen by Chernoff bounds so that at most 1e-15 of mass is truncated (and
 *   counted as infinite loss), `DensePLDPmf.compose` with `_truncate_tails`, and
 *   `_get_epsilon_for_delta` / `_get_delta_for_epsilon`.
 *
 * The result is an upper bound on the true epsilon (pessimistic rounding everywhere); it is tighter
 * than the RDP bound. Differences from dp_accounting: every pmf is dense (dp_accounting keeps pmfs of
 * up to 1000 points sparse, which only changes how sub-1e-15 tails are cut), FFT lengths are powers
 * of two (scipy picks 5-smooth lengths), and when a history would need more than `maxGridSize`
 * points the discretisation interval is doubled until it fits, which keeps the bound valid but
 * looser (the interval used is reported).
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
import { fft, nextPow2, convolve } from './fft';
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

/** A discretised PLD: mass probs[i] at loss (lowerLoss + i) * discretization, plus +infinity. */
export interface PldPmf {
  discretization: number;
  lowerLoss: number;
  probs: Float64Array;
  infinityMass: number;
}

/** Pessimistic connect-the-dots pmf of one subsampled Gaussian step (fixed-gap variant). */
function gaussianPmf(sigma: number, q: number, adjacency: Adjacency, d: number): PldPmf {
  const pl = new GaussianPrivacyLoss(sigma, q, adjacency);
  const { epsilonUpper, epsilonLower } = pl.connectDotsBounds();
  const hi = Math.ceil(epsilonUpper / d);
  const lo = Math.floor(epsilonLower / d);
  const n = hi - lo + 1;
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
  return { discretization: d, lowerLoss: lo, probs, infinityMass: deltas[n - 1]! };
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
function chernoffBounds(
  mgfs: { order: number; logMgf: number }[],
  len: number,
  n: number,
  tail: number,
): [number, number] {
  let upper = (len - 1) * n;
  let lower = 0;
  const logTwoOverTail = Math.log(2 / tail);
  for (const { order, logMgf } of mgfs) {
    const bound = (n * logMgf + logTwoOverTail) / order;
    if (!Number.isFinite(bound)) continue;
    if (order > 0) upper = Math.min(upper, Math.ceil(bound));
    else lower = Math.max(lower, Math.floor(bound));
  }
  return [lower, upper];
}

function selfConvolveBounds(probs: Float64Array, n: number, tail: number): [number, number] {
  return chernoffBounds(chernoffLogMgfs(probs), probs.length, n, tail);
}

/** The support window and FFT length that self-composing `pmf` `n` times needs. */
function selfComposePlan(pmf: PldPmf, n: number): { lo: number; hi: number; size: number } {
  const [lo, hi] = selfConvolveBounds(pmf.probs, n, TAIL_MASS_TRUNCATION);
  return { lo, hi, size: nextPow2(Math.max(hi - lo + 1, pmf.probs.length)) };
}

/**
 * DensePLDPmf.self_compose via common.self_convolve: one FFT, raised to the power n, over the
 * Chernoff window. (Each coefficient's rounding error is multiplied by n, so at n = 10^6 every
 * output mass carries noise of about 1e-10; dp_accounting has the same limit, see pld.spec.ts.)
 */
function selfCompose(
  pmf: PldPmf,
  n: number,
  { lo, hi, size }: { lo: number; hi: number; size: number },
): PldPmf {
  const outLen = hi - lo + 1;
  const re = new Float64Array(size);
  const im = new Float64Array(size);
  re.set(pmf.probs);
  fft(re, im);
  for (let k = 0; k < size; k++) {
    const x = re[k]!;
    const y = im[k]!;
    const mag = Math.hypot(x, y);
    if (mag === 0) {
      re[k] = 0;
      im[k] = 0;
      continue;
    }
    // (x + iy)^n in polar form, as numpy's complex power.
    const m = Math.exp(n * Math.log(mag));
    const th = n * Math.atan2(y, x);
    re[k] = m * Math.cos(th);
    im[k] = m * Math.sin(th);
  }
  fft(re, im, true);
  // np.roll(out, -lo)[:outLen]: the DFT wraps modulo size.
  const probs = new Float64Array(outLen);
  for (let i = 0; i < outLen; i++) probs[i] = re[(i + lo) % size]!;
  return {
    discretization: pmf.discretization,
    lowerLoss: pmf.lowerLoss * n + lo,
    probs,
    infinityMass: TAIL_MASS_TRUNCATION - Math.expm1(n * Math.log1p(-pmf.infinityMass)),
  };
}

/** pld_pmf._truncate_tails (pessimistic): cut tails of mass <= tail/2 each side. */
function truncateTails(
  probs: Float64Array,
  tail: number,
): { offset: number; probs: Float64Array; rightMass: number } {
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

/** DensePLDPmf.compose: the pmf of the sum of two independent privacy losses. */
function compose(a: PldPmf, b: PldPmf): PldPmf {
  const conv =
    a.probs.length === 1
      ? b.probs.map((p) => p * a.probs[0]!)
      : b.probs.length === 1
        ? a.probs.map((p) => p * b.probs[0]!)
        : convolve(a.probs, b.probs);
  const t = truncateTails(conv, TAIL_MASS_TRUNCATION);
  return {
    discretization: a.discretization,
    lowerLoss: a.lowerLoss + b.lowerLoss + t.offset,
    probs: t.probs,
    infinityMass: a.infinityMass + b.infinityMass - a.infinityMass * b.infinityMass + t.rightMass,
  };
}

/** pld_pmf._get_epsilon_for_delta on a dense pmf. */
function epsilonForDelta(pmf: PldPmf, delta: number): number {
  if (pmf.infinityMass > delta) return Infinity;
  let massUpper = pmf.infinityMass;
  let massLower = 0;
  const { probs, lowerLoss, discretization: d } = pmf;
  for (let k = probs.length - 1; k >= 0; k--) {
    const loss = (lowerLoss + k) * d;
    if (massUpper > delta && massLower > 0 && Math.log((massUpper - delta) / massLower) >= loss) {
      break; // epsilon is at least this loss
    }
    const p = probs[k]!;
    massUpper += p;
    massLower += Math.exp(-loss) * p;
    if (massUpper >= delta && massLower === 0) return Math.max(0, loss);
  }
  if (massUpper <= massLower + delta) return 0;
  return Math.log((massUpper - delta) / massLower);
}

/** pld_pmf._get_delta_for_epsilon: the hockey-stick divergence of a dense pmf. */
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
   * Most grid points a pmf may have (default 2^23, about 200 MB of working memory). Larger
   * histories get a coarser grid: still an upper bound, less tight.
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
  private cached: { remove: PldPmf; add: PldPmf; infinite: boolean } | null = null;

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
    return Math.max(epsilonForDelta(pld.remove, delta), epsilonForDelta(pld.add, delta));
  }

  /** The delta of the composed mechanism at `epsilon` (the hockey-stick divergence). */
  getDelta(epsilon: number): number {
    if (typeof epsilon !== 'number' || Number.isNaN(epsilon) || epsilon < 0) {
      throw new DpError(DpErrorCode.INVALID_EPSILON, `epsilon must be >= 0; got ${epsilon}`);
    }
    const pld = this.build();
    if (pld.infinite) return 1;
    return Math.min(
      1,
      Math.max(deltaForEpsilon(pld.remove, epsilon), deltaForEpsilon(pld.add, epsilon)),
    );
  }

  private build(): { remove: PldPmf; add: PldPmf; infinite: boolean } {
    if (this.cached) return this.cached;
    // Composition is commutative: merge repeats of the same (q, sigma) into one self-composition.
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
    const identity = (): PldPmf => ({
      discretization: d,
      lowerLoss: 0,
      probs: Float64Array.of(1),
      infinityMass: 0,
    });
    for (;;) {
      // Grow the interval until every single-step pmf and every composed one fits.
      let fits = true;
      let total = 0;
      type Plan = { lo: number; hi: number; size: number };
      const steps: {
        e: GaussianEvent;
        remove: PldPmf;
        add: PldPmf | null;
        removePlan: Plan;
        addPlan: Plan | null;
      }[] = [];
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
        const len = Math.max(removePlan.size, addPlan?.size ?? 0);
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
      let remove = identity();
      let add = identity();
      for (const s of steps) {
        const r = selfCompose(s.remove, s.e.steps, s.removePlan);
        remove = compose(remove, r);
        add = compose(add, s.add && s.addPlan ? selfCompose(s.add, s.e.steps, s.addPlan) : r);
      }
      this.cached = { remove, add, infinite };
      return this.cached;
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
