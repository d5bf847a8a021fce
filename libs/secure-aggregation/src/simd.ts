/**
 * A 110-byte WebAssembly module with two SIMD kernels, `add(dst, src, n)` and `sub(dst, src, n)`:
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
  void: 0x40,
} as const;
const V128_LOAD = [0xfd, 0x00, 0x00, 0x00]; // v128.load align=0 offset=0
const V128_STORE = [0xfd, 0x0b, 0x00, 0x00];
const I32X4_ADD = [0xfd, 0xae, 0x01];
const I32X4_SUB = [0xfd, 0xb1, 0x01];
const DST = 0;
const SRC = 1;
const N = 2;

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
  const add = kernel(I32X4_ADD);
  const sub = kernel(I32X4_SUB);
  // prettier-ignore
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // "\0asm", version 1
    ...section(1, [1, 0x60, 3, 0x7f, 0x7f, 0x7f, 0]), // one type: (i32, i32, i32) -> ()
    ...section(3, [2, 0, 0]), // two functions of type 0
    ...section(5, [1, 0x00, 1]), // one memory, min 1 page, no max
    ...section(7, [3, ...name('mem'), 0x02, 0, ...name('add'), 0x00, 0, ...name('sub'), 0x00, 1]),
    ...section(10, [2, ...leb128(add.length), ...add, ...leb128(sub.length), ...sub]),
  ]);
}

/** The exports of an instance of the kernel module. */
export interface SimdKernels {
  readonly memory: WebAssembly.Memory;
  readonly add: (dst: number, src: number, bytes: number) => void;
  readonly sub: (dst: number, src: number, bytes: number) => void;
}

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
  return { memory: exports.mem, add: exports.add, sub: exports.sub };
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
