import { randomFillSync } from 'node:crypto';
import { SecAggError } from './errors';
import { CHUNK_ELEMENTS } from './prg';
import { instantiateKernels, simdModule, type SimdKernels } from './simd';

/**
 * Fixed-point quantization for secure aggregation. A value x is clipped to [-clip, clip], scaled by
 * `scale` and rounded stochastically (up with probability equal to the fractional part, so the
 * rounding is unbiased) with randomness from the CSPRNG, then stored as two's complement mod 2^32.
 * Headroom: with |q| <= ceil(clip * scale) per site and at most maxSites sites, the sum stays in
 * (-2^31, 2^31) and never wraps, so the signed reading of the masked sum is exact.
 */
export interface QuantizationParams {
  /** Absolute bound on each coordinate before scaling (> 0). */
  clip: number;
  /** Fixed-point scale: q = round(x * scale) (> 0; a power of two keeps dequantization exact). */
  scale: number;
}

/**
 * Coordinates per chunk of quantizeChunk, and stochastic-rounding random values per CSPRNG call; the
 * same as the masking chunk (CHUNK_ELEMENTS), so a site quantizes each chunk straight into its mask
 * accumulator.
 */
export const QUANTIZE_CHUNK = CHUNK_ELEMENTS;

/**
 * The largest |q| that quantize can produce: ceil(clip * scale).
 *
 * @example
 * maxQuantized({ clip: 1, scale: 2 ** 16 }); // 65536
 */
export function maxQuantized(params: QuantizationParams): number {
  checkQuantization(params);
  return Math.ceil(params.clip * params.scale);
}

/**
 * Throws BAD_PARAMS unless clip and scale are positive finite numbers and `maxSites` sums of
 * quantized values cannot wrap: maxSites * ceil(clip * scale) < 2^31.
 *
 * @example
 * checkHeadroom({ clip: 1, scale: 2 ** 16 }, 1000); // ok: 1000 * 65536 < 2^31
 */
export function checkHeadroom(params: QuantizationParams, maxSites: number): void {
  const q = maxQuantized(params);
  if (!Number.isSafeInteger(maxSites) || maxSites < 1) {
    throw new SecAggError('BAD_PARAMS', 'maxSites must be a positive integer');
  }
  if (maxSites * q >= 2 ** 31) {
    throw new SecAggError(
      'BAD_PARAMS',
      `no headroom: ${maxSites} sites * max |q| ${q} >= 2^31; lower scale or clip`,
    );
  }
}

/**
 * The largest power-of-two scale with headroom for `maxSites` sites at this clip.
 *
 * @example
 * chooseScale(1, 1000); // 2^21: 1000 * 2^21 < 2^31
 */
export function chooseScale(clip: number, maxSites: number): number {
  if (!(clip > 0) || !Number.isFinite(clip))
    throw new SecAggError('BAD_PARAMS', 'clip must be > 0');
  if (!Number.isSafeInteger(maxSites) || maxSites < 1) {
    throw new SecAggError('BAD_PARAMS', 'maxSites must be a positive integer');
  }
  let exponent = Math.floor(Math.log2((2 ** 31 - 1) / maxSites / clip));
  while (exponent > -1074 && maxSites * Math.ceil(clip * 2 ** exponent) >= 2 ** 31) exponent--;
  if (Math.ceil(clip * 2 ** exponent) < 1) {
    throw new SecAggError('BAD_PARAMS', 'no scale gives headroom for this many sites');
  }
  return 2 ** exponent;
}

function checkQuantization(params: QuantizationParams): void {
  const { clip, scale } = params;
  if (typeof clip !== 'number' || !Number.isFinite(clip) || clip <= 0) {
    throw new SecAggError('BAD_PARAMS', 'clip must be a positive finite number');
  }
  if (typeof scale !== 'number' || !Number.isFinite(scale) || scale <= 0) {
    throw new SecAggError('BAD_PARAMS', 'scale must be a positive finite number');
  }
  if (!Number.isFinite(clip * scale) || clip * scale >= 2 ** 31) {
    throw new SecAggError('BAD_PARAMS', 'clip * scale must be below 2^31');
  }
}

function defaultRandom(out: Uint32Array): void {
  randomFillSync(out);
}

/**
 * Quantizes values to uint32 (two's complement): clip, scale, stochastic rounding from the CSPRNG.
 * Refuses NaN and Infinity (NON_FINITE_INPUT). For every coordinate,
 * |dequantize(q) - clip(x)| < 1/scale, and E[dequantize(q)] = clip(x).
 *
 * @example
 * const q = quantize(new Float32Array([0.5, -0.25]), { clip: 1, scale: 2 ** 16 });
 * // q = Uint32Array [32768, 4294950912]
 */
export function quantize(
  values: ArrayLike<number>,
  params: QuantizationParams,
  fillRandom: (out: Uint32Array) => void = defaultRandom,
): Uint32Array {
  checkQuantization(params);
  return quantizeScaled(values, 1, false, params, fillRandom);
}

/**
 * quantize(appendWeight(update, weight), params) in one pass, without the intermediate array: the
 * same values, the same use of the randomness, bit for bit. What a site masks for weighted averaging.
 *
 * @example
 * quantizeWeighted(new Float32Array([2, 4]), 0.25, { clip: 1, scale: 4 }); // Uint32Array [2, 4, 1]
 */
export function quantizeWeighted(
  update: ArrayLike<number>,
  weight: number,
  params: QuantizationParams,
  fillRandom: (out: Uint32Array) => void = defaultRandom,
): Uint32Array {
  checkWeight(weight);
  checkQuantization(params);
  return quantizeScaled(update, weight, true, params, fillRandom);
}

/** Typed input, so the hot loop sees at most two element kinds (about 8 ns per coordinate). */
function typed(values: ArrayLike<number>): Float32Array | Float64Array {
  if (values instanceof Float32Array || values instanceof Float64Array) return values;
  const n = values.length;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = values[i] as number;
  return out;
}

function quantizeScaled(
  input: ArrayLike<number>,
  weight: number,
  appendTheWeight: boolean,
  params: QuantizationParams,
  fillRandom: (out: Uint32Array) => void,
): Uint32Array {
  const q = new ChunkQuantizer(input, weight, appendTheWeight, params, fillRandom);
  const out = new Uint32Array(q.length);
  try {
    q.quantizeAll(out);
  } finally {
    q.destroy();
  }
  return out;
}

/**
 * Quantizes a (weighted) update one chunk of QUANTIZE_CHUNK coordinates at a time, straight into the
 * caller's memory (the masking accumulator): chunk after chunk from 0, it writes exactly what
 * quantizeWeighted returns, using the randomness the same way.
 *
 * @example
 * const q = weightedQuantizer(update, 0.5, params);
 * for (let s = 0; s < q.length; s += QUANTIZE_CHUNK)
 *   q.quantizeChunk(out.subarray(s, Math.min(s + QUANTIZE_CHUNK, q.length)), s);
 * q.destroy();
 */
export function weightedQuantizer(
  update: ArrayLike<number>,
  weight: number,
  params: QuantizationParams,
  fillRandom: ((out: Uint32Array) => void) | undefined = defaultRandom,
): ChunkQuantizer {
  checkWeight(weight);
  checkQuantization(params);
  return new ChunkQuantizer(update, weight, true, params, fillRandom ?? defaultRandom);
}

// Layout of the WebAssembly memory the SIMD quantizer works in: one chunk of input values (float64 at
// most), its random values, its output, and the chunk of the caller's vector it is added to.
const Q_SRC = 0;
const Q_RND = QUANTIZE_CHUNK * 8;
const Q_DST = Q_RND + QUANTIZE_CHUNK * 4;
const Q_ACC = Q_DST + QUANTIZE_CHUNK * 4;
const Q_BYTES = Q_ACC + QUANTIZE_CHUNK * 4;
let quantizeKernels: { module: WebAssembly.Module; kernels: SimdKernels } | undefined;

/**
 * The SIMD quantize kernels (one instance, shared: each quantizeChunk call uses its memory only while
 * it runs), or undefined where WebAssembly SIMD is missing or the result could overflow int32.
 */
function simdQuantizer(clip: number, scale: number): SimdKernels | undefined {
  if (Math.ceil(clip * scale) >= 2 ** 31) return undefined;
  const module = simdModule();
  if (module === null) return undefined;
  if (quantizeKernels?.module !== module) {
    quantizeKernels = { module, kernels: instantiateKernels(module, Q_BYTES) };
  }
  return quantizeKernels.kernels;
}

export class ChunkQuantizer {
  /** Coordinates in the output (the update's, plus one for the appended weight). */
  readonly length: number;
  private readonly values: Float32Array | Float64Array;
  private random: Uint32Array;
  private readonly kernels: SimdKernels | undefined;
  /** Scratch chunk for accumulating without the SIMD kernels. */
  private chunk: Uint32Array | undefined;
  private next = 0;

  constructor(
    input: ArrayLike<number>,
    private readonly weight: number,
    private readonly appendTheWeight: boolean,
    private readonly params: QuantizationParams,
    private readonly fillRandom: (out: Uint32Array) => void,
  ) {
    this.values = typed(input);
    this.length = appendTheWeight ? this.values.length + 1 : this.values.length;
    this.kernels = simdQuantizer(params.clip, params.scale);
    // With the SIMD kernels the random values are drawn straight into their memory.
    const randomLength = Math.min(QUANTIZE_CHUNK, this.length);
    this.random = this.kernels
      ? new Uint32Array(this.kernels.memory.buffer, Q_RND, randomLength)
      : new Uint32Array(randomLength);
  }

  /** Whether this quantizer runs the WebAssembly SIMD kernels (same results as the JavaScript loop). */
  get simd(): boolean {
    return this.kernels !== undefined;
  }

  /**
   * Writes coordinates [start, start + out.length) into `out`, or with `accumulate` adds them to it
   * mod 2^32 (a site quantizing straight into its precomputed masks). Chunks must come in order from
   * 0, each QUANTIZE_CHUNK long except the last; throws NON_FINITE_INPUT at a NaN or Infinity (when
   * accumulating, after adding the chunks before it: check the input first where that matters).
   */
  quantizeChunk(out: Uint32Array, start: number, accumulate = false): void {
    const end = start + out.length;
    if (start !== this.next || end !== Math.min(start + QUANTIZE_CHUNK, this.length)) {
      throw new SecAggError(
        'BAD_INPUT',
        `quantize chunks must be consecutive ${QUANTIZE_CHUNK}-element ranges`,
      );
    }
    this.next = end;
    const n = this.values.length;
    const { clip, scale } = this.params;
    const random = this.random;
    this.fillRandom(random);
    const valuesEnd = Math.min(end, n);
    const k = this.kernels;
    // Where the chunk is quantized: `out` itself, or (accumulating) the kernels' output memory or a
    // scratch chunk, added to `out` at the end.
    const into = !accumulate
      ? out
      : k
        ? new Uint32Array(k.memory.buffer, Q_DST, out.length)
        : (this.chunk ??= new Uint32Array(QUANTIZE_CHUNK)).subarray(0, out.length);
    // The SIMD kernels take pairs of coordinates; an odd last one and any chunk with a NaN or an
    // Infinity (redone to name the coordinate and throw) go through the JavaScript loop.
    const pairs = k ? Math.max(0, valuesEnd - start) & ~1 : 0;
    const done = k && pairs > 0 && this.quantizePairs(k, start, pairs) ? pairs : 0;
    if (k && done > 0 && !accumulate) out.set(new Uint32Array(k.memory.buffer, Q_DST, done));
    // The rest (random[done] is the random value of coordinate start + done).
    quantizeRange(
      this.values,
      this.weight,
      clip,
      scale,
      random.subarray(done),
      into,
      start + done,
      valuesEnd,
      start,
    );
    if (end > n && this.appendTheWeight) {
      // The appended weight coordinate, rounded with its own random value like any other.
      const j = n - start;
      into[j] = roundStochastic(this.weight, clip, scale, random[j] as number);
    }
    if (accumulate) this.addChunk(out, into);
  }

  /**
   * Writes every coordinate into `out` (of this.length), chunk after chunk from 0; with `accumulate`,
   * adds them to it mod 2^32.
   */
  quantizeAll(out: Uint32Array, accumulate = false): void {
    if (out.length !== this.length) {
      throw new SecAggError('BAD_INPUT', `the output must have ${this.length} elements`);
    }
    for (let start = 0; start < this.length; start += QUANTIZE_CHUNK) {
      const end = Math.min(start + QUANTIZE_CHUNK, this.length);
      this.quantizeChunk(out.subarray(start, end), start, accumulate);
    }
  }

  /** out[i] += chunk[i] mod 2^32 (chunk is in the kernels' memory at Q_DST when they run). */
  private addChunk(out: Uint32Array, chunk: Uint32Array): void {
    const k = this.kernels;
    const count = out.length;
    const whole = k ? count & ~3 : 0;
    if (k && whole > 0) {
      const acc = new Uint32Array(k.memory.buffer, Q_ACC, whole);
      acc.set(out.subarray(0, whole));
      k.add(Q_ACC, Q_DST, whole * 4);
      out.set(acc, 0);
    }
    for (let i = whole; i < count; i++) out[i] = ((out[i] as number) + (chunk[i] as number)) >>> 0;
  }

  /** Runs the SIMD kernel over `pairs` coordinates from `start`; false when one was not finite. */
  private quantizePairs(k: SimdKernels, start: number, pairs: number): boolean {
    const { values, weight } = this;
    const { clip, scale } = this.params;
    const mem = k.memory.buffer;
    const slice = values.subarray(start, start + pairs);
    if (values instanceof Float32Array) {
      new Float32Array(mem, Q_SRC, pairs).set(slice);
      return k.quantizeF32(Q_SRC, Q_RND, Q_DST, pairs, weight, clip, scale) === 0;
    }
    new Float64Array(mem, Q_SRC, pairs).set(slice);
    return k.quantizeF64(Q_SRC, Q_RND, Q_DST, pairs, weight, clip, scale) === 0;
  }

  /** Zeroes the randomness kept between chunks (and the SIMD kernels' copy of the last chunk). */
  destroy(): void {
    this.random.fill(0);
    this.chunk?.fill(0);
    if (this.kernels) new Uint8Array(this.kernels.memory.buffer, 0, Q_BYTES).fill(0);
  }
}

/**
 * out[i - base] = stochastic round(clip(values[i] * weight) * scale) for i in [start, end), with the
 * random value random[i - start]; throws NON_FINITE_INPUT at the first NaN or Infinity. (x * weight
 * is exactly x for weight 1, and is what appendWeight computes otherwise.)
 */
function quantizeRange(
  values: Float32Array | Float64Array,
  weight: number,
  clip: number,
  scale: number,
  random: Uint32Array,
  out: Uint32Array,
  start: number,
  end: number,
  base: number,
): void {
  for (let i = start; i < end; i++) {
    const x = (values[i] as number) * weight;
    // x - x is 0 for every finite x and NaN for NaN and +/-Infinity (weight is finite, so x is
    // finite exactly when values[i] is).
    if (x - x !== 0) {
      throw new SecAggError('NON_FINITE_INPUT', `coordinate ${i} is ${values[i]}`);
    }
    out[i - base] = roundStochastic(x, clip, scale, random[i - start] as number);
  }
}

/**
 * Clips x to [-clip, clip], scales it and rounds it stochastically with the 32-bit random value r:
 * up with probability frac = v - floor(v). With u = r / 2^32 uniform on [0, 1) in steps of 2^-32,
 * floor(frac + u) is 1 exactly when u >= 1 - frac. No branch on the random value (a compare-and-branch
 * mispredicts half the time and cost twice as much). frac + u is exact for |v| >= 1 and otherwise
 * rounds by less than 2^-53. Returns the result as uint32 (two's complement).
 */
function roundStochastic(x: number, clip: number, scale: number, r: number): number {
  const v = (x > clip ? clip : x < -clip ? -clip : x) * scale;
  const floor = Math.floor(v);
  return (floor + Math.floor(v - floor + r * 2 ** -32)) >>> 0;
}

/**
 * Throws NON_FINITE_INPUT naming the first NaN or Infinity in `values`.
 *
 * @example
 * assertFiniteValues([1, NaN]); // throws: coordinate 1 is NaN
 */
export function assertFiniteValues(values: ArrayLike<number>): void {
  if (values instanceof Float32Array && allFiniteF32(values)) return;
  const n = values.length;
  for (let i = 0; i < n; i++) {
    const x = values[i] as number;
    if (x - x !== 0) throw new SecAggError('NON_FINITE_INPUT', `coordinate ${i} is ${x}`);
  }
}

/**
 * Whether every float32 value is finite, from the bits: a value is NaN or infinite exactly when its
 * exponent bits (0x7f800000) are all set, and only then does adding 0x00800000 to them carry into the
 * sign bit. Four values a step, no branch: about 0.7 ns a value against 1.2 ns for `x - x`
 * (bench/secagg/kernels.bench.ts).
 */
function allFiniteF32(values: Float32Array): boolean {
  const bits = new Int32Array(values.buffer, values.byteOffset, values.length);
  const n = bits.length;
  const whole = n & ~3;
  let carry = 0;
  for (let i = 0; i < whole; i += 4) {
    carry |=
      (((bits[i] as number) & 0x7f800000) + 0x00800000) |
      (((bits[i + 1] as number) & 0x7f800000) + 0x00800000) |
      (((bits[i + 2] as number) & 0x7f800000) + 0x00800000) |
      (((bits[i + 3] as number) & 0x7f800000) + 0x00800000);
  }
  for (let i = whole; i < n; i++) carry |= ((bits[i] as number) & 0x7f800000) + 0x00800000;
  return carry >= 0;
}

function checkWeight(weight: number): void {
  if (typeof weight !== 'number' || !Number.isFinite(weight) || weight < 0 || weight > 1) {
    throw new SecAggError('BAD_INPUT', 'weight must be a finite number in [0, 1]');
  }
}

/**
 * Reads a (summed) quantized vector back as real numbers: each uint32 as a signed 32-bit integer,
 * divided by scale.
 *
 * @example
 * dequantize(Uint32Array.of(32768, 4294950912), { clip: 1, scale: 2 ** 16 }); // [0.5, -0.25]
 */
export function dequantize(sum: Uint32Array, params: QuantizationParams): Float64Array {
  checkQuantization(params);
  if (!(sum instanceof Uint32Array))
    throw new SecAggError('BAD_INPUT', 'sum must be a Uint32Array');
  const out = new Float64Array(sum.length);
  for (let i = 0; i < sum.length; i++) out[i] = ((sum[i] as number) | 0) / params.scale;
  return out;
}

/**
 * Prepares a weighted update for secure aggregation: the update multiplied by `weight`, followed by
 * the weight itself as one extra coordinate. Summing these over sites gives sum(w_i x_i) and sum(w_i),
 * and averageWeighted divides. `weight` must be in [0, 1] (normalise sample counts by the largest
 * expected count) so the weight coordinate fits the quantization range when clip >= 1.
 *
 * @example
 * appendWeight(new Float32Array([2, 4]), 0.5); // Float64Array [1, 2, 0.5]
 */
export function appendWeight(update: ArrayLike<number>, weight: number): Float64Array {
  checkWeight(weight);
  const out = new Float64Array(update.length + 1);
  for (let i = 0; i < update.length; i++) {
    const x = update[i] as number;
    if (!Number.isFinite(x)) throw new SecAggError('NON_FINITE_INPUT', `coordinate ${i} is ${x}`);
    out[i] = x * weight;
  }
  out[update.length] = weight;
  return out;
}

/**
 * The inverse of appendWeight on the server: the dequantized sum divided by its last coordinate (the
 * total weight). Throws BAD_INPUT when the total weight is not positive.
 *
 * @example
 * averageWeighted(Float64Array.of(1, 2, 0.5)); // { average: Float32Array [2, 4], totalWeight: 0.5 }
 */
export function averageWeighted(sum: ArrayLike<number>): {
  average: Float32Array;
  totalWeight: number;
} {
  if (sum.length < 1) throw new SecAggError('BAD_INPUT', 'the sum has no weight coordinate');
  const totalWeight = sum[sum.length - 1] as number;
  if (!(totalWeight > 0) || !Number.isFinite(totalWeight)) {
    throw new SecAggError('BAD_INPUT', `total weight ${totalWeight} is not positive`);
  }
  const average = new Float32Array(sum.length - 1);
  for (let i = 0; i < average.length; i++) average[i] = (sum[i] as number) / totalWeight;
  return { average, totalWeight };
}
