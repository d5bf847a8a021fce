import { canonicalJson, sha256Hex } from './canonical';
import { LedgerError, LedgerErrorCode } from './errors';
import { type Fail, failWith, finite, inRange, integer, record } from './fields';

/** Who DP protects: each record (DP-SGD at the site) or each site's whole update (DP-FedAvg). */
export type ProtectionLevel = 'record' | 'site';

/**
 * The noise a release carries: the continuous Gaussian (no secure aggregation, or DP-SGD at the
 * site), or the distributed discrete Gaussian that sites add in the integer domain after quantisation
 * under secure aggregation (DESIGN.md section 6).
 */
export type NoiseKind = 'gaussian' | 'distributed-discrete-gaussian';

/**
 * What a release made public: the site's model update (the default, absent from the record), or the
 * sums of its feature statistics or evaluation counts, each a Gaussian mechanism of its own.
 */
export type ReleaseKind = 'update' | 'statistics' | 'evaluation';

/** One release's DP mechanism, as recorded in its ledger entry. */
export interface MechanismParams {
  level: ProtectionLevel;
  /** q: batch / local records (record level) or sampled sites / sites (site level); 0 < q <= 1. */
  samplingRate: number;
  /** z: noise standard deviation over clip norm; > 0. */
  noiseMultiplier: number;
  /** Compositions of the subsampled Gaussian in this release (local DP-SGD steps; 1 at site level). */
  steps: number;
  /** C: the L2 clip norm; > 0. */
  clipNorm: number;
  /** With secure aggregation, the honest survivors t whose noise shares the accounting assumes. */
  survivorsAssumed: number | null;
  accountant: 'rdp';
  /**
   * 'distributed-discrete-gaussian' for site-level noise drawn in the integer domain under secure
   * aggregation (then `survivorsAssumed` is the n of the bound, and the next two fields are
   * recorded). Absent for the continuous Gaussian: entries written before this field existed keep
   * their 7 keys, so their canonical JSON, hash and signature are unchanged. Never 'gaussian'
   * explicitly, so that one mechanism has one encoding.
   */
  noise?: 'distributed-discrete-gaussian';
  /** Distributed discrete Gaussian only: gamma, the round's fixed-point quantisation scale; > 0. */
  quantizationScale?: number;
  /** Distributed discrete Gaussian only: d, the number of noised coordinates (model parameters). */
  dimension?: number;
  /**
   * 'statistics' or 'evaluation' for a release of summed statistics or evaluation counts (then
   * clipNorm is the L2 sensitivity of the summed vector, one step, q = 1). Absent for an update
   * release, so that entries written before this field existed keep their hash; never 'update'.
   */
  release?: 'statistics' | 'evaluation';
}

/**
 * What a recorded mechanism released, 'update' when the entry has no `release` field.
 * @example releaseOf(entry.mechanism) // 'evaluation'
 */
export function releaseOf(m: Pick<MechanismParams, 'release'>): ReleaseKind {
  return m.release ?? 'update';
}

/**
 * The noise of a recorded mechanism, 'gaussian' when the entry has no `noise` field.
 * @example noiseOf(entry.mechanism) // 'distributed-discrete-gaussian'
 */
export function noiseOf(m: Pick<MechanismParams, 'noise'>): NoiseKind {
  return m.noise ?? 'gaussian';
}

/**
 * The DP accountant the ledger is computed with, injected so the aggregator and the CLI wire in
 * Confide's RDP accountant (libs/differential-privacy) and tests can use a closed form.
 */
export interface LedgerAccountant {
  /** The Renyi orders every curve is evaluated at (all > 1, increasing). */
  readonly orders: readonly number[];
  /** The RDP curve of one whole release (all its steps composed) over `orders`. */
  releaseRdp(mechanism: MechanismParams): number[];
  /** (epsilon, delta) from a composed RDP curve over `orders`; monotone in every coordinate. */
  epsilon(rdp: number[], delta: number): { epsilon: number; order: number };
}

const MECHANISM_KEYS = [
  'level',
  'samplingRate',
  'noiseMultiplier',
  'steps',
  'clipNorm',
  'survivorsAssumed',
  'accountant',
  'noise',
  'quantizationScale',
  'dimension',
  'release',
] as const;

/** The fields recorded only with the distributed discrete Gaussian. */
const DDG_KEYS = ['quantizationScale', 'dimension'] as const;

/**
 * Checks a mechanism and returns a copy with exactly its fields; throws INVALID_MECHANISM otherwise.
 * A continuous-Gaussian mechanism has exactly the 7 fields it always had; one with the distributed
 * discrete Gaussian adds `noise`, `quantizationScale` and `dimension`, and is site level with a
 * number of noise-adding survivors.
 * @example validateMechanism({ level: 'site', samplingRate: 0.5, noiseMultiplier: 1.1, steps: 1, clipNorm: 1, survivorsAssumed: 8, accountant: 'rdp' })
 */
export function validateMechanism(x: unknown, path = 'mechanism'): MechanismParams {
  const fail: Fail = failWith(LedgerErrorCode.INVALID_MECHANISM);
  const m = record(x, path, fail, MECHANISM_KEYS);
  if (m.level !== 'record' && m.level !== 'site')
    fail(`${path}.level`, "must be 'record' or 'site'");
  if (m.accountant !== 'rdp') fail(`${path}.accountant`, "must be 'rdp'");
  const survivors = m.survivorsAssumed;
  const base: MechanismParams = {
    level: m.level,
    samplingRate: inRange(
      m.samplingRate,
      `${path}.samplingRate`,
      fail,
      { gt: 0, le: 1 },
      'in (0, 1]',
    ),
    noiseMultiplier: inRange(m.noiseMultiplier, `${path}.noiseMultiplier`, fail, { gt: 0 }, '> 0'),
    steps: integer(m.steps, `${path}.steps`, fail, 1),
    clipNorm: inRange(m.clipNorm, `${path}.clipNorm`, fail, { gt: 0 }, '> 0'),
    survivorsAssumed:
      survivors === null ? null : integer(survivors, `${path}.survivorsAssumed`, fail, 1),
    accountant: 'rdp',
  };
  if (m.release !== undefined) {
    if (m.release !== 'statistics' && m.release !== 'evaluation') {
      fail(`${path}.release`, "must be 'statistics' or 'evaluation', or absent for an update");
    }
    if (m.noise !== undefined) {
      fail(`${path}.noise`, 'statistics and evaluation releases carry the continuous Gaussian');
    }
    if (base.steps !== 1 || base.samplingRate !== 1) {
      fail(`${path}.steps`, 'a statistics or evaluation release is one unsampled step (q = 1)');
    }
    base.release = m.release;
  }
  // An undefined member is absent (JSON has none; canonicalJson refuses them, so none is kept).
  if (m.noise === undefined) {
    for (const k of DDG_KEYS) {
      if (m[k] !== undefined)
        fail(`${path}.${k}`, "is recorded only with noise 'distributed-discrete-gaussian'");
    }
    return base;
  }
  if (m.noise !== 'distributed-discrete-gaussian') {
    fail(
      `${path}.noise`,
      "must be 'distributed-discrete-gaussian', or absent for the continuous Gaussian",
    );
  }
  if (base.level !== 'site') {
    fail(`${path}.noise`, 'the distributed discrete Gaussian is a site-level mechanism');
  }
  if (base.survivorsAssumed === null) {
    fail(
      `${path}.survivorsAssumed`,
      'must be the number of noise-adding sites with the distributed discrete Gaussian',
    );
  }
  return {
    ...base,
    noise: 'distributed-discrete-gaussian',
    quantizationScale: inRange(
      m.quantizationScale,
      `${path}.quantizationScale`,
      fail,
      { gt: 0 },
      '> 0',
    ),
    dimension: integer(m.dimension, `${path}.dimension`, fail, 1),
  };
}

/**
 * Checks an order grid (non-empty, finite, > 1, strictly increasing); throws INVALID_ORDERS otherwise.
 * @example validateOrders([1.5, 2, 4, 8, 16, 32, 64])
 */
export function validateOrders(x: unknown, path = 'orders'): number[] {
  const fail: Fail = failWith(LedgerErrorCode.INVALID_ORDERS);
  if (!Array.isArray(x) || x.length === 0) fail(path, 'must be a non-empty array of numbers');
  const orders = (x as unknown[]).map((o, i) => finite(o, `${path}[${i}]`, fail));
  orders.forEach((o, i) => {
    if (o <= 1) fail(`${path}[${i}]`, `Renyi orders must be > 1, got ${o}`);
    const prev = orders[i - 1];
    if (prev !== undefined && o <= prev) fail(`${path}[${i}]`, 'orders must strictly increase');
  });
  return orders;
}

/**
 * The fingerprint recorded in every entry: hex SHA-256 of the canonical JSON of the order grid.
 * @example ordersFingerprint([2, 4, 8]) === sha256Hex('[2,4,8]')
 */
export function ordersFingerprint(orders: readonly number[]): string {
  return sha256Hex(canonicalJson(validateOrders(orders)));
}

/**
 * Composes RDP curves by adding them order by order (RDP composes additively; epsilons do not).
 * `[]` stands for "no release yet" and is the identity.
 * @example addRdp([0.1, 0.2], [0.1, 0.2]) // [0.2, 0.4]
 */
export function addRdp(a: readonly number[], b: readonly number[]): number[] {
  if (a.length === 0) return [...b];
  if (b.length === 0) return [...a];
  if (a.length !== b.length) {
    throw new LedgerError(
      LedgerErrorCode.INVALID_ARGUMENT,
      `RDP curves over different order grids (${a.length} and ${b.length} orders) cannot be composed`,
    );
  }
  return a.map((v, i) => v + (b[i] as number));
}

/**
 * The curve of `k` identical releases: k times the curve.
 * @example scaleRdp([0.1, 0.2], 3) // [0.3, 0.6] (up to rounding)
 */
export function scaleRdp(curve: readonly number[], k: number): number[] {
  return curve.map((v) => v * k);
}

/** The curve of one release from the accountant, checked: one finite value >= 0 per order. */
export function releaseCurve(accountant: LedgerAccountant, mechanism: MechanismParams): number[] {
  const m = validateMechanism(mechanism);
  const curve = accountant.releaseRdp(m);
  checkCurve(curve, accountant.orders.length, 'the RDP curve from the accountant', true);
  return curve;
}

/** Epsilon of a composed curve from the accountant, checked to be finite and >= 0. */
export function accountantEpsilon(
  accountant: LedgerAccountant,
  rdp: readonly number[],
  delta: number,
): { epsilon: number; order: number } {
  checkDelta(delta);
  checkCurve(rdp, accountant.orders.length, 'the RDP curve', false);
  const out = accountant.epsilon([...rdp], delta);
  if (!Number.isFinite(out.epsilon) || out.epsilon < 0) {
    throw new LedgerError(
      LedgerErrorCode.ACCOUNTANT_ERROR,
      `the accountant returned epsilon ${out.epsilon}; expected a finite number >= 0`,
    );
  }
  return out;
}

/** Throws INVALID_ARGUMENT unless 0 < delta < 1. */
export function checkDelta(delta: number): void {
  if (!(typeof delta === 'number' && delta > 0 && delta < 1)) {
    throw new LedgerError(
      LedgerErrorCode.INVALID_ARGUMENT,
      `delta must be in (0, 1), got ${delta}`,
    );
  }
}

function checkCurve(curve: unknown, length: number, what: string, fromAccountant: boolean): void {
  const code = fromAccountant ? LedgerErrorCode.ACCOUNTANT_ERROR : LedgerErrorCode.INVALID_ARGUMENT;
  if (!Array.isArray(curve) || curve.length !== length) {
    throw new LedgerError(code, `${what} must have one value per order (${length})`);
  }
  for (const v of curve as unknown[]) {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
      throw new LedgerError(
        code,
        `${what} holds ${String(v)}; every value must be finite and >= 0`,
      );
    }
  }
}
