import { SecAggError } from './errors';

/**
 * Exact secure sums of real numbers. Secure aggregation adds uint32 vectors mod 2^32, which holds a
 * quantized value only when its range is known in advance (quantize.ts). Statistics such as counts,
 * sums and sums of squares have no range known in advance, so each value is rounded to a 64-bit
 * fixed-point integer V = round(x * 2^F) and split into four 16-bit limbs, one per uint32
 * coordinate. A limb is below 2^16 in magnitude, so the limbs of up to 2^15 sites add without
 * wrapping, and the carries between limbs are resolved only after unmasking, in the clear.
 */

/** Coordinates per encoded value: four 16-bit limbs of a 64-bit two's-complement integer. */
export const FIXED_POINT_LIMBS = 4;

/**
 * Most encodings a sum may hold: 2^15 sites * limbs below 2^16 stay below 2^31, so no limb sum wraps
 * and the top limb reads back as a signed int32.
 */
export const FIXED_POINT_MAX_SITES = 2 ** 15;

/** Default fraction bits F: a resolution of 2^-20 (about 1e-6), magnitudes below 2^28. */
export const FIXED_POINT_FRACTION_BITS = 20;

/**
 * The quantization clip that describes encoded limbs to validateParams: every limb is an integer in
 * [-2^15, 2^16 - 1], already scaled (FIXED_POINT_SCALE is 1), so |limb| <= 2^16 - 1 = clip. With it
 * checkHeadroom passes for exactly maxSites <= FIXED_POINT_MAX_SITES: 2^15 * (2^16 - 1) < 2^31, while
 * (2^15 + 1) * (2^16 - 1) >= 2^31.
 */
export const FIXED_POINT_CLIP = 2 ** 16 - 1;

/** The quantization scale that goes with FIXED_POINT_CLIP: limbs are integers, not scaled again. */
export const FIXED_POINT_SCALE = 1;

/** Options of encodeFixedPoint and decodeFixedPointSum; both sides must use the same. */
export interface FixedPointOptions {
  /** Fraction bits F: values are rounded to multiples of 2^-F (integer in [0, 40], default 20). */
  fractionBits?: number;
}

const TWO_32 = 2 ** 32;
const TWO_48 = 2 ** 48;
/** |V| must stay below 2^(63 - 15), so 2^15 of them sum within a signed 64-bit integer. */
const MAX_MAGNITUDE = TWO_48;
const MAX_FRACTION_BITS = 40;
/** Four coordinates per value and a round's vector holds at most 2^28 coordinates. */
const MAX_VALUES = 2 ** 26;

function fractionBitsOf(options: FixedPointOptions | undefined): number {
  if (options === undefined) return FIXED_POINT_FRACTION_BITS;
  if (typeof options !== 'object' || options === null) {
    throw new SecAggError('BAD_PARAMS', 'fixed-point options must be an object');
  }
  const f = options.fractionBits ?? FIXED_POINT_FRACTION_BITS;
  if (!Number.isInteger(f) || f < 0 || f > MAX_FRACTION_BITS) {
    throw new SecAggError(
      'BAD_PARAMS',
      `fractionBits must be an integer in [0, ${MAX_FRACTION_BITS}], not ${String(f)}`,
    );
  }
  return f;
}

/** Round to nearest, ties to even: unbiased on exact halves, which x * 2^F often is. */
function roundHalfEven(y: number): number {
  const f = Math.floor(y);
  const d = y - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/**
 * Encodes values as fixed-point limbs for an exact secure sum: V = round(x * 2^F) (ties to even) as
 * four uint32 coordinates per value, lowest limb first (limb 3 signed, as two's complement). Refuses
 * NaN and Infinity (NON_FINITE_INPUT) and |x| * 2^F that rounds to 2^48 or more (BAD_INPUT).
 *
 * @example
 * encodeFixedPoint([1.5, -1], { fractionBits: 1 }); // Uint32Array [3, 0, 0, 0, 65534, 65535, 65535, 4294967295]
 */
export function encodeFixedPoint(
  values: ArrayLike<number>,
  options?: FixedPointOptions,
): Uint32Array {
  const f = fractionBitsOf(options);
  if (
    typeof values !== 'object' ||
    values === null ||
    !Number.isSafeInteger(values.length) ||
    values.length < 0 ||
    values.length > MAX_VALUES
  ) {
    throw new SecAggError('BAD_INPUT', `values must be an array of at most ${MAX_VALUES} numbers`);
  }
  const scale = 2 ** f;
  const n = values.length;
  const out = new Uint32Array(n * FIXED_POINT_LIMBS);
  for (let i = 0; i < n; i++) {
    const x = values[i];
    if (typeof x !== 'number') {
      throw new SecAggError('BAD_INPUT', `coordinate ${i} is not a number: ${String(x)}`);
    }
    if (!Number.isFinite(x)) throw new SecAggError('NON_FINITE_INPUT', `coordinate ${i} is ${x}`);
    // x * 2^F is exact (a power-of-two scale), so V is the correctly rounded fixed-point value.
    const v = roundHalfEven(x * scale);
    if (Math.abs(v) >= MAX_MAGNITUDE) {
      throw new SecAggError(
        'BAD_INPUT',
        `coordinate ${i} is ${x}: with ${f} fraction bits |x| must be below 2^${48 - f} so ${FIXED_POINT_MAX_SITES} sites can be summed; use fewer fraction bits`,
      );
    }
    // |V| < 2^48 is a safe integer, so the limbs are split exactly in doubles: top is 0 or -1.
    const top = Math.floor(v / TWO_48);
    const low48 = v - top * TWO_48;
    const high16 = Math.floor(low48 / TWO_32);
    const low32 = low48 - high16 * TWO_32;
    const o = i * FIXED_POINT_LIMBS;
    out[o] = low32 & 0xffff;
    out[o + 1] = low32 >>> 16;
    out[o + 2] = high16;
    out[o + 3] = top >>> 0;
  }
  return out;
}

/**
 * Recombines the unmasked mod-2^32 sum of fixed-point encodings into the sums of the values:
 * sum_j S_j * 2^(16 j - F), S_3 read as int32, rounded once to float64 (exact while the summed V
 * stays below 2^53). Refuses a length that is not a multiple of 4 and a low limb sum of 2^31 or
 * more, which no sum of at most FIXED_POINT_MAX_SITES encodings can have (BAD_INPUT).
 *
 * @example
 * decodeFixedPointSum(Uint32Array.of(2, 0, 0, 0), { fractionBits: 1 }); // Float64Array [1]
 */
export function decodeFixedPointSum(sum: Uint32Array, options?: FixedPointOptions): Float64Array {
  const f = fractionBitsOf(options);
  if (!(sum instanceof Uint32Array))
    throw new SecAggError('BAD_INPUT', 'sum must be a Uint32Array');
  if (sum.length % FIXED_POINT_LIMBS !== 0) {
    throw new SecAggError(
      'BAD_INPUT',
      `the sum has ${sum.length} coordinates, not a multiple of ${FIXED_POINT_LIMBS} limbs`,
    );
  }
  const unscale = 2 ** -f;
  const out = new Float64Array(sum.length / FIXED_POINT_LIMBS);
  for (let i = 0; i < out.length; i++) {
    const o = i * FIXED_POINT_LIMBS;
    const s0 = sum[o] as number;
    const s1 = sum[o + 1] as number;
    const s2 = sum[o + 2] as number;
    if (s0 >= 2 ** 31 || s1 >= 2 ** 31 || s2 >= 2 ** 31) {
      throw new SecAggError(
        'BAD_INPUT',
        `value ${i} has a limb sum of 2^31 or more: not a sum of at most ${FIXED_POINT_MAX_SITES} fixed-point encodings (still masked, or another layout)`,
      );
    }
    const s3 = (sum[o + 3] as number) | 0;
    // The exact total can pass 2^53, so it is formed in BigInt and rounded once by Number().
    const total = (BigInt(s3) << 48n) + (BigInt(s2) << 32n) + (BigInt(s1) << 16n) + BigInt(s0);
    out[i] = Number(total) * unscale;
  }
  return out;
}

/** Coordinates per value in the wide encoding: two fixed-point numbers of four limbs each. */
export const WIDE_FIXED_POINT_LIMBS = 2 * FIXED_POINT_LIMBS;

const WIDE_SPLIT = 2 ** FIXED_POINT_FRACTION_BITS;

/**
 * encodeFixedPoint for values of any magnitude below 2^67 at the default resolution 2^-20: each value
 * x is split into a multiple of 2^20 and a remainder in [0, 2^20) (both exact in float64), encoded as
 * two fixed-point numbers. Layout: every value's high part (F = 0, in units of 2^20), then every
 * value's remainder (F = 20). For sums whose magnitude nothing bounds, such as raw sums of squares.
 * @example decodeWideFixedPointSum(encodeWideFixedPoint([3e12, -0.5])) // Float64Array [3e12, -0.5]
 */
export function encodeWideFixedPoint(values: ArrayLike<number>): Uint32Array {
  const high = new Float64Array(values.length);
  const low = new Float64Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const x = values[i] as number;
    if (typeof x !== 'number' || !Number.isFinite(x)) {
      throw new SecAggError('NON_FINITE_INPUT', `coordinate ${i} is ${String(x)}`);
    }
    const h = Math.floor(x / WIDE_SPLIT);
    high[i] = h;
    low[i] = x - h * WIDE_SPLIT;
  }
  const out = new Uint32Array(values.length * WIDE_FIXED_POINT_LIMBS);
  out.set(encodeFixedPoint(high, { fractionBits: 0 }), 0);
  out.set(encodeFixedPoint(low), values.length * FIXED_POINT_LIMBS);
  return out;
}

/**
 * The element-wise sum that a (masked, then unmasked) sum of wide encodings holds.
 * @example decodeWideFixedPointSum(sumOfMaskedInputs) // Float64Array of the sums
 */
export function decodeWideFixedPointSum(sum: Uint32Array): Float64Array {
  if (!(sum instanceof Uint32Array) || sum.length % WIDE_FIXED_POINT_LIMBS !== 0) {
    throw new SecAggError(
      'BAD_INPUT',
      `a wide fixed-point sum has a multiple of ${WIDE_FIXED_POINT_LIMBS} coordinates`,
    );
  }
  const half = sum.length / 2;
  const high = decodeFixedPointSum(sum.subarray(0, half), { fractionBits: 0 });
  const low = decodeFixedPointSum(sum.subarray(half));
  return high.map((h, i) => h * WIDE_SPLIT + (low[i] as number));
}
