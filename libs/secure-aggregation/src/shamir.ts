import { bytesEqual, randomBytes as csprng } from './bytes';
import { SecAggError } from './errors';

/**
 * Shamir secret sharing of 32-byte secrets over the prime field GF(2^521 - 1).
 *
 * Why this field: a 32-byte secret is an integer below 2^256 and must be a field element as it is, so
 * the prime must exceed 2^256 (the 2^255 - 19 field cannot hold 32 random bytes). 2^521 - 1 is a
 * Mersenne prime whose primality is classical, reduction is a shift and an add, and its 66-byte shares
 * are small next to a vector. A reconstructed value of 2^256 or more proves the shares inconsistent.
 * Secrets are shared whole (no chunking), so a share set reveals nothing about any part of the secret
 * below the threshold. BigInt intermediates cannot be zeroed; the byte buffers are.
 *
 * @example
 * SHAMIR_PRIME === 2n ** 521n - 1n; // true
 */
export const SHAMIR_PRIME = (1n << 521n) - 1n;
/**
 * Length of a shared secret in bytes.
 *
 * @example
 * shamirSplit(new Uint8Array(SECRET_BYTES), [1, 2], 2);
 */
export const SECRET_BYTES = 32;
/**
 * Length of an encoded share value (big-endian field element).
 *
 * @example
 * shamirSplit(secret, [1, 2], 2)[0].y.length === SHARE_BYTES; // true
 */
export const SHARE_BYTES = 66;
/**
 * Largest x-coordinate accepted (sites are numbered 1..n).
 *
 * @example
 * shamirSplit(secret, [MAX_SHARE_X], 1); // the largest position allowed
 */
export const MAX_SHARE_X = 1 << 20;

/** One share: the polynomial evaluated at `x` (a site's 1-based position), `y` as 66 bytes. */
export interface Share {
  readonly x: number;
  readonly y: Uint8Array;
}

const MASK_521 = SHAMIR_PRIME;

function reduce(v: bigint): bigint {
  while (v > MASK_521) v = (v & MASK_521) + (v >> 521n);
  return v === SHAMIR_PRIME ? 0n : v;
}

function mod(v: bigint): bigint {
  const r = v % SHAMIR_PRIME;
  return r < 0n ? r + SHAMIR_PRIME : r;
}

// Big-endian conversions through hex text: one native parse or print instead of a BigInt shift per
// byte (the byte loop cost a site ~7 ms of its share step at 500 sites).
function bytesToBigInt(bytes: Uint8Array): bigint {
  if (bytes.length === 0) return 0n;
  return BigInt(
    `0x${Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')}`,
  );
}

function bigIntToBytes(v: bigint, length: number): Uint8Array {
  const hex = v.toString(16);
  if (v < 0n || hex.length > 2 * length) {
    throw new SecAggError('BAD_INPUT', `value does not fit in ${length} bytes`);
  }
  const out = new Uint8Array(length);
  out.set(Buffer.from(hex.length % 2 ? `0${hex}` : hex, 'hex'), length - Math.ceil(hex.length / 2));
  return out;
}

function modInverse(a: bigint): bigint {
  let [r0, r1] = [mod(a), SHAMIR_PRIME];
  let [s0, s1] = [1n, 0n];
  while (r1 !== 0n) {
    const q = r0 / r1;
    [r0, r1] = [r1, r0 - q * r1];
    [s0, s1] = [s1, s0 - q * s1];
  }
  if (r0 !== 1n) throw new SecAggError('BAD_INPUT', 'element has no inverse');
  return mod(s0);
}

function randomFieldElement(randomBytes: (n: number) => Uint8Array): bigint {
  for (;;) {
    const bytes = randomBytes(SHARE_BYTES);
    bytes[0] = (bytes[0] ?? 0) & 0x01; // 521 bits
    const v = bytesToBigInt(bytes);
    bytes.fill(0);
    if (v < SHAMIR_PRIME) return v;
  }
}

function checkXs(xs: readonly number[]): void {
  const seen = new Set<number>();
  for (const x of xs) {
    if (!Number.isInteger(x) || x < 1 || x > MAX_SHARE_X) {
      throw new SecAggError(
        'BAD_INPUT',
        `share x-coordinates must be integers in [1, ${MAX_SHARE_X}]`,
      );
    }
    if (seen.has(x)) throw new SecAggError('BAD_INPUT', `share x-coordinate ${x} repeats`);
    seen.add(x);
  }
}

/**
 * Splits a 32-byte secret into shares at the x-coordinates `xs`, any `threshold` of which reconstruct
 * it and fewer reveal nothing (a random polynomial of degree threshold - 1 with the secret as constant
 * term; coefficients from a CSPRNG).
 *
 * @example
 * const shares = shamirSplit(secret, [1, 2, 3, 4, 5], 3);
 * shamirCombine([shares[0], shares[2], shares[4]], 3); // equals secret
 */
export function shamirSplit(
  secret: Uint8Array,
  xs: readonly number[],
  threshold: number,
  randomBytes: (n: number) => Uint8Array = csprng,
): Share[] {
  if (!(secret instanceof Uint8Array) || secret.length !== SECRET_BYTES) {
    throw new SecAggError('BAD_INPUT', `a secret must be ${SECRET_BYTES} bytes`);
  }
  if (!Number.isInteger(threshold) || threshold < 1 || threshold > xs.length) {
    throw new SecAggError('BAD_INPUT', `threshold must be an integer in [1, ${xs.length}]`);
  }
  checkXs(xs);
  const coefficients: bigint[] = [bytesToBigInt(secret)];
  for (let i = 1; i < threshold; i++) coefficients.push(randomFieldElement(randomBytes));
  const top = coefficients.length - 1;
  const shares: Share[] = [];
  for (const x of xs) {
    // Horner with lazy reduction: x < 2^21, so y grows by at most 21 bits per step; fold every 16.
    const bx = BigInt(x);
    let y = coefficients[top] ?? 0n;
    for (let j = top - 1; j >= 0; j--) {
      y = y * bx + (coefficients[j] ?? 0n);
      if ((top - j) % 16 === 0) y = reduce(y);
    }
    shares.push({ x, y: bigIntToBytes(reduce(y), SHARE_BYTES) });
  }
  coefficients.fill(0n);
  return shares;
}

const lagrangeCache = new Map<string, readonly bigint[]>();
const MAX_CACHED_SETS = 4096;

/**
 * The Lagrange coefficients at zero for the x-coordinates `xs` (in that order), cached per x-set: the
 * aggregator reconstructs hundreds of secrets from the same responders and pays for them once.
 *
 * @example
 * lagrangeAtZero([1, 2]); // [2n, SHAMIR_PRIME - 1n]  (2*f(1) - f(2) = f(0) for a line)
 */
export function lagrangeAtZero(xs: readonly number[]): readonly bigint[] {
  return lagrangeAtZeroMany([xs])[0] as readonly bigint[];
}

/** What a set's coefficients need besides the inverse of `acc`, the product of its denominators. */
interface LagrangeParts {
  id: string;
  product: bigint;
  denominators: bigint[];
  /** prefix[i]: the product of denominators[0..i-1]. */
  prefix: bigint[];
  acc: bigint;
}

function lagrangeParts(xs: readonly number[], id: string): LagrangeParts {
  // c_i = prod_{j != i} x_j / (x_j - x_i) = P / d_i with P = prod_j x_j and
  // d_i = x_i * prod_{j != i} (x_j - x_i): one product, then the d_i inverted together.
  const t = xs.length;
  let product = 1n;
  for (const x of xs) product = reduce(product * BigInt(x));
  const denominators: bigint[] = [];
  for (let i = 0; i < t; i++) {
    const xi = xs[i] ?? 0;
    // The small differences (|x_j - x_i| < 2^20) multiplied as doubles while the product stays an
    // exact integer, so a BigInt multiplication covers several of them.
    let den = 1n;
    let run = xi;
    let negative = false;
    for (let j = 0; j < t; j++) {
      if (j === i) continue;
      const xj = xs[j] ?? 0;
      if (xj < xi) negative = !negative;
      const f = Math.abs(xj - xi);
      if (run * f > Number.MAX_SAFE_INTEGER) {
        den = reduce(den * BigInt(run));
        run = f;
      } else {
        run *= f;
      }
    }
    den = reduce(den * BigInt(run));
    denominators.push(negative ? SHAMIR_PRIME - den : den);
  }
  const prefix: bigint[] = [];
  let acc = 1n;
  for (const d of denominators) {
    prefix.push(acc);
    acc = reduce(acc * d);
  }
  return { id, product, denominators, prefix, acc };
}

/**
 * lagrangeAtZero for many x-sets at once, with one modular inverse for all of them (Montgomery's
 * batch inversion over the sets' denominator products): on a SecAgg+ graph every secret has its own
 * x-set, and an inverse in this field costs more than a few hundred multiplications.
 *
 * @example
 * lagrangeAtZeroMany([[1, 2], [2, 3]]); // [lagrangeAtZero([1, 2]), lagrangeAtZero([2, 3])]
 */
export function lagrangeAtZeroMany(sets: readonly (readonly number[])[]): (readonly bigint[])[] {
  const out = new Array<readonly bigint[]>(sets.length);
  const todo = new Map<string, { xs: readonly number[]; at: number[] }>();
  sets.forEach((xs, i) => {
    checkXs(xs);
    const id = xs.join(',');
    const hit = lagrangeCache.get(id);
    if (hit !== undefined) out[i] = hit;
    else {
      const entry = todo.get(id);
      if (entry) entry.at.push(i);
      else todo.set(id, { xs, at: [i] });
    }
  });
  const parts = [...todo].map(([id, { xs }]) => lagrangeParts(xs, id));
  // Batch inversion: outer[k] is the product of the first k sets' accs; one inverse for all.
  const outer: bigint[] = [];
  let all = 1n;
  for (const p of parts) {
    outer.push(all);
    all = reduce(all * p.acc);
  }
  let inv = parts.length > 0 ? modInverse(all) : 1n;
  for (let k = parts.length - 1; k >= 0; k--) {
    const p = parts[k] as LagrangeParts;
    let setInv = reduce(inv * (outer[k] as bigint));
    inv = reduce(inv * p.acc);
    const t = p.denominators.length;
    const coefficients = new Array<bigint>(t);
    for (let i = t - 1; i >= 0; i--) {
      coefficients[i] = reduce(reduce(setInv * (p.prefix[i] as bigint)) * p.product);
      setInv = reduce(setInv * (p.denominators[i] as bigint));
    }
    if (lagrangeCache.size >= MAX_CACHED_SETS) lagrangeCache.clear();
    lagrangeCache.set(p.id, coefficients);
    for (const i of (todo.get(p.id) as { at: number[] }).at) out[i] = coefficients;
  }
  return out;
}

/**
 * Decodes a share value: 66 bytes, a field element. Throws BAD_SHARE otherwise.
 *
 * @example
 * shareValue(share.y); // bigint < SHAMIR_PRIME
 */
export function shareValue(y: Uint8Array): bigint {
  if (!(y instanceof Uint8Array) || y.length !== SHARE_BYTES) {
    throw new SecAggError('BAD_SHARE', `a share must be ${SHARE_BYTES} bytes`);
  }
  const v = bytesToBigInt(y);
  if (v >= SHAMIR_PRIME) throw new SecAggError('BAD_SHARE', 'a share is not a field element');
  return v;
}

/** A share with its value decoded: what the aggregator stores while collecting responses. */
export interface ShareValue {
  readonly x: number;
  readonly value: bigint;
}

/**
 * Decodes a base64 share value straight to a field element (no intermediate byte array: the
 * aggregator holds hundreds of thousands of these). Throws BAD_SHARE when it is not 66 bytes of a
 * field element.
 *
 * @example
 * shareValueFromBase64(response.selfMaskShares[0].share); // bigint
 */
export function shareValueFromBase64(text: string): bigint {
  const bytes = Buffer.from(text, 'base64');
  if (bytes.length !== SHARE_BYTES || bytes.toString('base64') !== text) {
    throw new SecAggError('BAD_SHARE', `a share must be ${SHARE_BYTES} bytes of canonical base64`);
  }
  const v = BigInt(`0x${bytes.toString('hex')}`);
  if (v >= SHAMIR_PRIME) throw new SecAggError('BAD_SHARE', 'a share is not a field element');
  return v;
}

/**
 * Reconstructs a 32-byte secret from decoded shares (see shamirCombine).
 *
 * @example
 * combineShareValues([{ x: 1, value: 5n }, { x: 2, value: 9n }], 2); // the secret f(0) = 1 as 32 bytes
 */
export function combineShareValues(shares: readonly ShareValue[], threshold: number): Uint8Array {
  if (!Number.isInteger(threshold) || threshold < 1) {
    throw new SecAggError('BAD_INPUT', 'threshold must be a positive integer');
  }
  if (shares.length < threshold) {
    throw new SecAggError(
      'TOO_FEW_SURVIVORS',
      `${shares.length} shares cannot reconstruct a secret shared with threshold ${threshold}`,
    );
  }
  const sorted = [...shares].sort((a, b) => a.x - b.x).slice(0, threshold);
  const coefficients = lagrangeAtZero(sorted.map((s) => s.x));
  let sum = 0n;
  for (let i = 0; i < sorted.length; i++) {
    const v = (sorted[i] as ShareValue).value;
    if (v < 0n || v >= SHAMIR_PRIME)
      throw new SecAggError('BAD_SHARE', 'a share is not a field element');
    sum += (coefficients[i] ?? 0n) * v;
  }
  const secret = mod(sum);
  if (secret >> 256n !== 0n) {
    throw new SecAggError('BAD_SHARE', 'the shares are inconsistent (the result is not 32 bytes)');
  }
  return bigIntToBytes(secret, SECRET_BYTES);
}

/** The result of combineShareValuesRobust: the secret and the x of every share found corrupt. */
export interface RobustCombination {
  secret: Uint8Array;
  /** x of the shares that disagree with the polynomial the secret came from (ascending). */
  corrupt: number[];
}

/**
 * Reconstructs a secret when some shares may be corrupt. First as combineShareValues (the threshold
 * shares with the smallest x); when that result is not 32 bytes or `accept` refuses it (a rebuilt
 * mask key that does not match its public key), it tries other threshold-subsets, chosen at random,
 * and keeps the first whose polynomial gives an accepted secret and disagrees with at most
 * (m - threshold) / 2 of all m shares, the unique-decoding bound, so no other polynomial could also
 * be accepted. Corrects a few corrupt shares (each try avoids all e of them with probability
 * C(m-e, t) / C(m, t)); throws BAD_SHARE when `attempts` subsets fail, TOO_FEW_SURVIVORS below
 * threshold.
 *
 * @example
 * const { secret, corrupt } = combineShareValuesRobust(values, 3); // corrupt: [] when all agree
 */
export function combineShareValuesRobust(
  shares: readonly ShareValue[],
  threshold: number,
  accept: (secret: Uint8Array) => boolean = () => true,
  attempts = 256,
): RobustCombination {
  let firstError: unknown;
  const sorted = [...shares].sort((a, b) => a.x - b.x);
  try {
    const secret = combineShareValues(sorted.slice(0, threshold), threshold);
    // With spare shares, the t with the largest x must give the same secret: a wrong share in either
    // set moves its result (by its Lagrange coefficient times the error), and a structured error
    // can stay below 2^256. Both x-sets repeat across the secrets of one round (cached coefficients).
    const spare = shares.length > threshold;
    const again = spare
      ? combineShareValues(sorted.slice(shares.length - threshold), threshold)
      : secret;
    const agree = again === secret || bytesEqual(again, secret);
    if (again !== secret) again.fill(0);
    if (agree && accept(secret)) return { secret, corrupt: [] };
    secret.fill(0);
    firstError = new SecAggError(
      'BAD_SHARE',
      agree
        ? 'the rebuilt secret was refused (corrupt shares)'
        : 'the shares are inconsistent (two sets of them give different secrets)',
    );
  } catch (e) {
    if (!(e instanceof SecAggError) || e.code !== 'BAD_SHARE') throw e;
    firstError = e;
  }
  const m = shares.length;
  checkXs(sorted.map((s) => s.x));
  if (sorted.some((s) => s.value < 0n || s.value >= SHAMIR_PRIME)) throw firstError;
  const maxWrong = Math.floor((m - threshold) / 2);
  if (maxWrong < 1) throw firstError;
  const inverses = inverseTable(sorted[m - 1]?.x ?? 1);
  // Subsets from a fixed-seed generator: the search is reproducible and needs no secret randomness.
  let state = (m * 2654435761 + threshold) >>> 0 || 1;
  const next = (bound: number): number => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state % bound;
  };
  const order = sorted.map((_, i) => i);
  for (let attempt = 0; attempt < attempts; attempt++) {
    for (let i = 0; i < threshold; i++) {
      const j = i + next(m - i);
      [order[i], order[j]] = [order[j] as number, order[i] as number];
    }
    const subset = order
      .slice(0, threshold)
      .sort((a, b) => a - b)
      .map((i) => sorted[i] as ShareValue);
    const poly = newtonForm(subset, inverses);
    const f0 = poly.at(0);
    if (f0 >> 256n !== 0n) continue;
    const corrupt = sorted.filter((s) => poly.at(s.x) !== s.value).map((s) => s.x);
    if (corrupt.length > maxWrong) continue;
    const secret = bigIntToBytes(f0, SECRET_BYTES);
    if (!accept(secret)) {
      secret.fill(0);
      continue;
    }
    return { secret, corrupt };
  }
  throw new SecAggError(
    'BAD_SHARE',
    `the shares are inconsistent and no ${threshold} of the ${m} agree with enough of the others`,
  );
}

/**
 * Computes, with one modular inverse, the Lagrange coefficients that combineShareValuesRobust will
 * use for each of these share lists when their shares are sound (the `threshold` shares with the
 * smallest x, and with spare shares the `threshold` with the largest), so that rebuilding many
 * secrets (one per site on a SecAgg+ graph, each from its own neighbours) finds them cached.
 *
 * @example
 * prepareCombinations(shareListsBySecret, t); for (const l of lists) combineShareValuesRobust(l, t);
 */
export function prepareCombinations(
  lists: readonly (readonly ShareValue[])[],
  threshold: number,
): void {
  const sets: number[][] = [];
  for (const list of lists) {
    if (list.length < threshold || threshold < 1) continue;
    const xs = list.map((s) => s.x).sort((a, b) => a - b);
    sets.push(xs.slice(0, threshold));
    if (xs.length > threshold) sets.push(xs.slice(xs.length - threshold));
  }
  lagrangeAtZeroMany(sets);
}

/**
 * How many share lists one prepareCombinations call should cover at most: the coefficients of more
 * would push the first ones out of the cache before they are used.
 */
export const PREPARE_MAX_LISTS = MAX_CACHED_SETS / 4;

/** Modular inverses of 1..n (the differences of share x-coordinates). */
function inverseTable(n: number): bigint[] {
  const out = [0n];
  for (let d = 1; d <= n; d++) out.push(modInverse(BigInt(d)));
  return out;
}

/**
 * The polynomial through `points` (distinct x) in Newton form, from divided differences with the
 * precomputed inverses of the x differences: O(t^2) multiplications, then O(t) per evaluation.
 */
function newtonForm(
  points: readonly ShareValue[],
  inverses: readonly bigint[],
): { at(z: number): bigint } {
  const t = points.length;
  const xs = points.map((p) => p.x);
  const c = points.map((p) => p.value);
  const inv = (d: number): bigint =>
    d > 0 ? (inverses[d] as bigint) : SHAMIR_PRIME - (inverses[-d] as bigint);
  for (let k = 1; k < t; k++) {
    for (let i = t - 1; i >= k; i--) {
      c[i] = mod(
        ((c[i] as bigint) - (c[i - 1] as bigint)) * inv((xs[i] as number) - (xs[i - k] as number)),
      );
    }
  }
  return {
    at(z: number): bigint {
      let r = c[t - 1] as bigint;
      for (let i = t - 2; i >= 0; i--)
        r = mod(r * BigInt(z - (xs[i] as number)) + (c[i] as bigint));
      return r;
    },
  };
}

/**
 * Reconstructs a 32-byte secret from shares (at least `threshold`, distinct x). It uses the
 * `threshold` shares with the smallest x, so repeated reconstructions from one responder set reuse
 * the cached Lagrange coefficients. Throws TOO_FEW_SURVIVORS with fewer shares and BAD_SHARE when the
 * result is not a 32-byte value (inconsistent shares).
 *
 * @example
 * shamirCombine(shamirSplit(secret, [1, 2, 3], 2).slice(1), 2); // equals secret
 */
export function shamirCombine(shares: readonly Share[], threshold: number): Uint8Array {
  return combineShareValues(
    shares.map((s) => ({ x: s.x, value: shareValue(s.y) })),
    threshold,
  );
}
