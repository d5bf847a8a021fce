/**
 * A small WebAssembly module with SIMD kernels: `add(dst, src, n)` and `sub(dst, src, n)`:
 * `dst[i] = dst[i] +/- src[i]` on 32-bit lanes (mod 2^32) over `n` bytes (a multiple of 16).
 *
 * Why: masking is "AES-CTR keystream, then add it to the vector mod 2^32". OpenSSL makes the keystream
 * fast; the add in a JavaScript loop then costs more than the AES itself (about 2.5 ns per element on
 * the 2-core reference machine against about 0.8 ns with `i32x4.add`). The module is built below from
 * named opcodes; its text form is:
 *
 *   (module (memory (export "mem") 1)
 *     (func (export "add") (param $dst i32) (param $src i32) (param $n i32)
 *       (block $done (br_if $done (i32.eqz (local.get $n)))
 *         (loop $next
 *           (v128.store (local.get $dst)
 *             (i32x4.add (v128.load (local.get $dst)) (v128.load (local.get $src))))
 *           (local.set $dst (i32.add (local.get $dst) (i32.const 16)))
 *           (local.set $src (i32.add (local.get $src) (i32.const 16)))
 *           (br_if $next (i32.gt_s
 *             (local.tee $n (i32.sub (local.get $n) (i32.const 16))) (i32.const 0))))))
 *     (func (export "sub") ...the same with i32x4.sub...))
 *
 * Two more kernels quantize for secure aggregation, two coordinates per step (f64x2 lanes):
 * `quantizeF32(src, rnd, dst, n, weight, clip, scale)` reads `n` float32 values at `src` (and
 * `quantizeF64` float64 values), `n` uint32 random values at `rnd`, and writes to `dst` the int32
 * stochastic rounding of clip(x * weight) * scale, in exactly the double-precision operations of
 * quantize.ts `roundStochastic` (so bit for bit its result); it returns 1 when any x * weight was NaN
 * or infinite (that chunk is then redone in JavaScript, which names the coordinate), else 0. `n` is
 * even; the results must fit int32 (the caller checks ceil(clip * scale) < 2^31). 1M float32
 * coordinates with their copies in and out: about 1.5 ms against 5.5 ms for the JavaScript loop
 * (bench/secagg/kernels.bench.ts); with the conversion opcodes and f64x2.min/max, which V8 lowers to
 * instruction sequences on x86, the kernel took 2.6 ms.
 *
 * Where WebAssembly SIMD is missing, callers fall back to the JavaScript loop (same results, tested).
 */

const OP = {
  block: 0x02,
  loop: 0x03,
  end: 0x0b,
  brIf: 0x0d,
  localGet: 0x20,
  localSet: 0x21,
  localTee: 0x22,
  i32Const: 0x41,
  i32Eqz: 0x45,
  i32GtS: 0x4a,
  i32Add: 0x6a,
  i32Sub: 0x6b,
  f64Neg: 0x9a,
  f64Const: 0x44,
  void: 0x40,
} as const;
const V128_LOAD = [0xfd, 0x00, 0x00, 0x00]; // v128.load align=0 offset=0
const V128_STORE = [0xfd, 0x0b, 0x00, 0x00];
const I32X4_ADD = [0xfd, 0xae, 0x01];
const I32X4_SUB = [0xfd, 0xb1, 0x01];
const DST = 0;
const SRC = 1;
const N = 2;

/** SIMD opcodes (after the 0xfd prefix) of the quantize kernels. */
const SIMD = {
  v128Load: [0x00, 0x00, 0x00], // align=0 offset=0
  v128Load64Zero: [0x5d, 0x00, 0x00],
  v128Load32x2U: [0x06, 0x00, 0x00], // two uint32, zero-extended to i64 lanes
  i8x16Shuffle: [0x0d], // followed by 16 lane indices
  v128Store64Lane0: [0x5b, 0x00, 0x00, 0x00], // align=0 offset=0 lane 0
  v128Const: [0x0c],
  f64x2Splat: [0x14],
  f64x2Ne: [0x48],
  v128Or: [0x50],
  v128AnyTrue: [0x53],
  f64x2PromoteLowF32x4: [0x5f],
  f64x2Floor: [0x75],
  f64x2Add: [0xf0, 0x01],
  f64x2Sub: [0xf1, 0x01],
  f64x2Mul: [0xf2, 0x01],
  // Pseudo-min/max (pmin(a, b) = b < a ? b : a): one minpd/maxpd on x86, where f64x2.min/max need
  // a sequence for their NaN and -0 rules. NaN chunks are redone in JavaScript, and on every other
  // value they pick what the JavaScript clip (x > clip ? clip : x < -clip ? -clip : x) picks, -0
  // included.
  f64x2Pmin: [0xf6, 0x01],
  f64x2Pmax: [0xf7, 0x01],
} as const;

function simd(op: readonly number[]): number[] {
  return [0xfd, ...op];
}

function f64Bytes(x: number): number[] {
  return Array.from(new Uint8Array(Float64Array.of(x).buffer));
}

/** v128.const of two float64 lanes equal to x. */
function f64x2Const(x: number): number[] {
  return [...simd(SIMD.v128Const), ...f64Bytes(x), ...f64Bytes(x)];
}

/** The bits of 2^52 as a float64: OR-ing a uint32 u into them gives the float64 2^52 + u. */
const TWO_52_BITS = [0, 0, 0, 0, 0, 0, 0x30, 0x43];

/**
 * quantizeF32 / quantizeF64: (src, rnd, dst, n: i32, weight, clip, scale: f64) -> bad: i32. Per two
 * coordinates, as roundStochastic: x = value * weight; bad |= (x - x) != 0 (x - x is NaN exactly
 * when x is not finite); v = min(max(x, -clip), clip) * scale; f = floor(v);
 * out = int32(f + floor((v - f) + r * 2^-32)). Two conversions go through float64 bit patterns, one
 * instruction each where the conversion opcodes take several: the uint32 r becomes a float64 as
 * (2^52 with r OR-ed into its low bits) - 2^52, and the integer-valued result t (|t| < 2^31) becomes
 * an int32 as the low 32 bits of t + 1.5 * 2^52. Both are exact.
 */
function quantizeKernel(float64: boolean): number[] {
  const [Q_SRC, Q_RND, Q_DST, Q_N, Q_WEIGHT, Q_CLIP, Q_SCALE] = [0, 1, 2, 3, 4, 5, 6];
  // v128 locals after the 7 parameters.
  const [W, C, NC, S, K, BAD, X, V, F] = [7, 8, 9, 10, 11, 12, 13, 14, 15];
  const get = (i: number): number[] => [OP.localGet, i];
  const set = (i: number): number[] => [OP.localSet, i];
  const splat = (from: number[], to: number): number[] => [
    ...from,
    ...simd(SIMD.f64x2Splat),
    ...set(to),
  ];
  const bump = (i: number, by: number): number[] => [
    ...get(i),
    OP.i32Const,
    by,
    OP.i32Add,
    ...set(i),
  ];
  const load = float64
    ? [...get(Q_SRC), ...simd(SIMD.v128Load)]
    : [...get(Q_SRC), ...simd(SIMD.v128Load64Zero), ...simd(SIMD.f64x2PromoteLowF32x4)];
  // prettier-ignore
  return [
    0x01, 9, 0x7b, // 9 v128 locals
    ...splat(get(Q_WEIGHT), W),
    ...splat(get(Q_CLIP), C),
    ...splat([...get(Q_CLIP), OP.f64Neg], NC),
    ...splat(get(Q_SCALE), S),
    ...splat([OP.f64Const, ...f64Bytes(2 ** -32)], K),
    ...simd(SIMD.v128Const), ...new Array<number>(16).fill(0), ...set(BAD),
    OP.block, OP.void,
    ...get(Q_N), OP.i32Eqz, OP.brIf, 0,
    OP.loop, OP.void,
    // x = value * weight
    ...load, ...get(W), ...simd(SIMD.f64x2Mul), ...set(X),
    // bad |= (x - x) != 0, as quantize.ts tests x - x !== 0
    ...get(BAD),
    ...get(X), ...get(X), ...simd(SIMD.f64x2Sub),
    ...f64x2Const(0), ...simd(SIMD.f64x2Ne), ...simd(SIMD.v128Or), ...set(BAD),
    // v = min(max(x, -clip), clip) * scale; f = floor(v)
    ...get(X), ...get(NC), ...simd(SIMD.f64x2Pmax), ...get(C), ...simd(SIMD.f64x2Pmin),
    ...get(S), ...simd(SIMD.f64x2Mul), ...set(V),
    ...get(V), ...simd(SIMD.f64x2Floor), ...set(F),
    // store64_lane(dst, int32(f + floor((v - f) + u32(rnd) * 2^-32)), 0)
    ...get(Q_DST),
    ...get(F),
    ...get(V), ...get(F), ...simd(SIMD.f64x2Sub),
    ...get(Q_RND), ...simd(SIMD.v128Load32x2U),
    ...simd(SIMD.v128Const), ...TWO_52_BITS, ...TWO_52_BITS, ...simd(SIMD.v128Or),
    ...f64x2Const(2 ** 52), ...simd(SIMD.f64x2Sub),
    ...get(K), ...simd(SIMD.f64x2Mul),
    ...simd(SIMD.f64x2Add), ...simd(SIMD.f64x2Floor),
    ...simd(SIMD.f64x2Add),
    ...f64x2Const(1.5 * 2 ** 52), ...simd(SIMD.f64x2Add),
    // the low 32 bits of both lanes into the low 64 (shuffle of the value with itself)
    OP.localTee, V, ...get(V),
    ...simd(SIMD.i8x16Shuffle), 0, 1, 2, 3, 8, 9, 10, 11, 0, 1, 2, 3, 8, 9, 10, 11,
    ...simd(SIMD.v128Store64Lane0),
    ...bump(Q_SRC, float64 ? 16 : 8), ...bump(Q_RND, 8), ...bump(Q_DST, 8),
    ...get(Q_N), OP.i32Const, 2, OP.i32Sub, OP.localTee, Q_N,
    OP.i32Const, 0, OP.i32GtS, OP.brIf, 0,
    OP.end, // loop
    OP.end, // block
    ...get(BAD), ...simd(SIMD.v128AnyTrue),
    OP.end, // function
  ];
}

function kernel(laneOp: readonly number[]): number[] {
  // prettier-ignore
  return [
    0x00, // no locals besides the parameters
    OP.block, OP.void,
    OP.localGet, N, OP.i32Eqz, OP.brIf, 0, // if n == 0: done
    OP.loop, OP.void,
    OP.localGet, DST, // address for the store
    OP.localGet, DST, ...V128_LOAD,
    OP.localGet, SRC, ...V128_LOAD,
    ...laneOp,
    ...V128_STORE,
    OP.localGet, DST, OP.i32Const, 16, OP.i32Add, OP.localSet, DST, // dst += 16
    OP.localGet, SRC, OP.i32Const, 16, OP.i32Add, OP.localSet, SRC, // src += 16
    OP.localGet, N, OP.i32Const, 16, OP.i32Sub, OP.localTee, N, // n -= 16
    OP.i32Const, 0, OP.i32GtS, OP.brIf, 0, // if n > 0: next
    OP.end, // loop
    OP.end, // block
    OP.end, // function
  ];
}

function name(text: string): number[] {
  return [text.length, ...Array.from(text, (c) => c.charCodeAt(0))];
}

function leb128(value: number): number[] {
  const out: number[] = [];
  do {
    let byte = value & 0x7f;
    value >>>= 7;
    if (value !== 0) byte |= 0x80;
    out.push(byte);
  } while (value !== 0);
  return out;
}

function section(id: number, body: readonly number[]): number[] {
  return [id, ...leb128(body.length), ...body];
}

function buildModule(): Uint8Array<ArrayBuffer> {
  const bodies = [
    kernel(I32X4_ADD),
    kernel(I32X4_SUB),
    quantizeKernel(false),
    quantizeKernel(true),
  ];
  const I32 = 0x7f;
  const F64 = 0x7c;
  // prettier-ignore
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // "\0asm", version 1
    ...section(1, [
      2,
      0x60, 3, I32, I32, I32, 0, // type 0: (i32, i32, i32) -> ()
      0x60, 7, I32, I32, I32, I32, F64, F64, F64, 1, I32, // type 1: (i32 x4, f64 x3) -> i32
    ]),
    ...section(3, [4, 0, 0, 1, 1]), // add, sub: type 0; quantizeF32, quantizeF64: type 1
    ...section(5, [1, 0x00, 1]), // one memory, min 1 page, no max
    ...section(7, [
      5,
      ...name('mem'), 0x02, 0,
      ...name('add'), 0x00, 0,
      ...name('sub'), 0x00, 1,
      ...name('quantizeF32'), 0x00, 2,
      ...name('quantizeF64'), 0x00, 3,
    ]),
    ...section(10, [4, ...bodies.flatMap((b) => [...leb128(b.length), ...b])]),
  ]);
}

/** The exports of an instance of the kernel module. */
export interface SimdKernels {
  readonly memory: WebAssembly.Memory;
  readonly add: (dst: number, src: number, bytes: number) => void;
  readonly sub: (dst: number, src: number, bytes: number) => void;
  /** Quantizes `n` (even) float32 values at `src`; returns 1 if any was NaN or infinite. */
  readonly quantizeF32: QuantizeKernel;
  /** The same for float64 values. */
  readonly quantizeF64: QuantizeKernel;
}

/** (src, rnd, dst, n, weight, clip, scale) -> 1 when a value was not finite, else 0. */
export type QuantizeKernel = (
  src: number,
  rnd: number,
  dst: number,
  n: number,
  weight: number,
  clip: number,
  scale: number,
) => number;

let compiled: WebAssembly.Module | null | undefined;

/**
 * The compiled kernel module, or null where WebAssembly SIMD is unavailable (or disabled with
 * CONFIDE_SECAGG_NO_SIMD=1, which the tests use to check the fallback).
 *
 * @example
 * const mod = simdModule(); if (mod) instantiateKernels(mod);
 */
export function simdModule(): WebAssembly.Module | null {
  if (compiled !== undefined) return compiled;
  compiled = null;
  if (process.env['CONFIDE_SECAGG_NO_SIMD'] === '1' || typeof WebAssembly !== 'object') return null;
  const bytes = buildModule();
  try {
    if (WebAssembly.validate(bytes)) compiled = new WebAssembly.Module(bytes);
  } catch {
    compiled = null;
  }
  return compiled;
}

/**
 * A fresh instance of the kernels with its own memory, grown to at least `bytes`.
 *
 * @example
 * const k = instantiateKernels(simdModule()!, 1 << 20); k.add(0, 16, 16);
 */
export function instantiateKernels(module: WebAssembly.Module, bytes: number): SimdKernels {
  const instance = new WebAssembly.Instance(module, {});
  const exports = instance.exports as unknown as SimdKernels & { mem: WebAssembly.Memory };
  const pages = Math.ceil(bytes / 65536);
  const have = exports.mem.buffer.byteLength / 65536;
  if (pages > have) exports.mem.grow(pages - have);
  return {
    memory: exports.mem,
    add: exports.add,
    sub: exports.sub,
    quantizeF32: exports.quantizeF32,
    quantizeF64: exports.quantizeF64,
  };
}

/**
 * Test hook: forget the compiled module so the next call re-reads the environment.
 *
 * @example
 * process.env.CONFIDE_SECAGG_NO_SIMD = '1'; resetSimdForTests(); simdModule(); // null
 */
export function resetSimdForTests(): void {
  compiled = undefined;
}
