import { createCipheriv, type Cipher } from 'node:crypto';
import { encodeFields } from './bytes';
import { SecAggError } from './errors';
import { hkdfSha256, LABELS } from './kdf';
import { instantiateKernels, simdModule, type SimdKernels } from './simd';

/**
 * The mask PRG. A mask stream is AES-256-CTR keyed by HKDF-SHA256(seed, salt = sessionId,
 * info = encodeFields([LABELS.mask, tensorId])), counter block starting at zero; element i of the
 * mask is the little-endian uint32 at bytes 4i..4i+3 of the keystream. Masks are added chunk by chunk
 * into the vector mod 2^32 and never materialised whole.
 */

/**
 * Elements per keystream chunk (32 KiB). Each `cipher.update` allocates its output (in Node 20 twice:
 * a buffer one byte longer than the input, for the block size of 1, then a zero-filled exact copy;
 * about half the cost of a call besides the AES itself), and V8 frees those buffers only when it
 * collects them, so the chunk size trades the per-call cost against the
 * allocator: with 64 KiB chunks glibc keeps handing back fresh pages (tens of thousands of page
 * faults, 8-20 ms of system time per 40 MB of keystream), which is worst when two processes mask at
 * once, as sites beside the aggregator or two unmasking workers do (2-4x the CPU time of one alone);
 * 16 KiB chunks fault little but pay 4x the calls (27% slower unmasking on one core). Measured on the
 * 2-core reference machine, secure round of bench/round (10 sites x 1M, median of 9, two runs each):
 * 16 KiB 625 / 576 ms, 32 KiB 520 / 508 ms, 64 KiB 641 / 615 ms; aggregator unmasking on one core
 * (bench/secagg, complete graph, n = 500, m = 100K, 10% dropout, best of 3): 16 KiB 5.3 s, 32 KiB
 * 4.8 s, 64 KiB 4.2 s.
 *
 * @example
 * Math.ceil(100_000 / CHUNK_ELEMENTS); // 13 cipher calls per 100K-element stream
 */
export const CHUNK_ELEMENTS = 8192;
const CHUNK_BYTES = CHUNK_ELEMENTS * 4;
const ZERO_CHUNK = Buffer.alloc(CHUNK_BYTES);
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * Zeroed kernel instances (each with its memory) kept for reuse: every byte of a pooled memory is
 * zero (an accumulator zeroes what it used before giving it back, and never touches the rest).
 */
const kernelPool: SimdKernels[] = [];
const POOL_MAX = 4;
const POOL_MAX_BYTES = 256 * 1024 * 1024;

function takeKernels(module: WebAssembly.Module, bytes: number): SimdKernels {
  let best = -1;
  for (let i = 0; i < kernelPool.length; i++) {
    const size = (kernelPool[i] as SimdKernels).memory.buffer.byteLength;
    if (
      size >= bytes &&
      (best < 0 || size < (kernelPool[best] as SimdKernels).memory.buffer.byteLength)
    ) {
      best = i;
    }
  }
  if (best >= 0) return kernelPool.splice(best, 1)[0] as SimdKernels;
  return instantiateKernels(module, bytes);
}

function giveBackKernels(kernels: SimdKernels): void {
  const pooled = kernelPool.reduce((a, k) => a + k.memory.buffer.byteLength, 0);
  const size = kernels.memory.buffer.byteLength;
  if (kernelPool.length < POOL_MAX && pooled + size <= POOL_MAX_BYTES) kernelPool.push(kernels);
}

/** +1 adds the mask, -1 subtracts it. */
export type MaskSign = 1 | -1;

/** One mask stream to apply: the AES-256 key of its keystream and whether it is added or subtracted. */
export interface MaskStream {
  key: Uint8Array;
  sign: MaskSign;
}

function checkBytes(value: Uint8Array, length: number, what: string): void {
  if (!(value instanceof Uint8Array) || value.length !== length) {
    throw new SecAggError('BAD_INPUT', `${what} must be ${length} bytes`);
  }
}

function checkTensorId(tensorId: string): void {
  if (typeof tensorId !== 'string' || tensorId.length < 1 || tensorId.length > 128) {
    throw new SecAggError('BAD_INPUT', 'tensor id must be a string of 1-128 characters');
  }
}

function checkSign(sign: number): void {
  if (sign !== 1 && sign !== -1) throw new SecAggError('BAD_INPUT', 'sign must be 1 or -1');
}

/**
 * The AES-256 key of one mask stream: HKDF-SHA256(seed, sessionId, [LABELS.mask, tensorId]).
 *
 * @example
 * const key = maskStreamKey(seed, sessionId, 'update');
 */
export function maskStreamKey(
  seed: Uint8Array,
  sessionId: Uint8Array,
  tensorId: string,
): Uint8Array {
  checkBytes(seed, 32, 'mask seed');
  checkBytes(sessionId, 32, 'session id');
  checkTensorId(tensorId);
  if (tensorId !== lastInfo.tensorId) {
    lastInfo = { tensorId, info: encodeFields([LABELS.mask, tensorId]) };
  }
  return hkdfSha256(seed, sessionId, lastInfo.info, 32);
}

// The HKDF info of the last tensor id: the aggregator derives thousands of keys for one tensor.
let lastInfo: { tensorId: string; info: Uint8Array } = { tensorId: '', info: new Uint8Array(0) };

/**
 * AES-256-CTR of `data` with a 16-byte initial counter block (big-endian, incremented over all 128
 * bits, as NIST SP 800-38A). Exposed for the published test vectors.
 *
 * @example
 * aes256Ctr(key, iv, new Uint8Array(64)); // the first 64 keystream bytes
 */
export function aes256Ctr(key: Uint8Array, iv: Uint8Array, data: Uint8Array): Uint8Array {
  checkBytes(key, 32, 'AES-256 key');
  checkBytes(iv, 16, 'counter block');
  const cipher = createCipheriv('aes-256-ctr', key, iv);
  const out = Buffer.concat([cipher.update(data), cipher.final()]);
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/** The counter block for stream element `offset` and the bytes to skip inside that block. */
function counterFor(offset: number): { iv: Buffer; skip: number } {
  const block = Math.floor(offset / 4);
  const iv = Buffer.alloc(16);
  iv.writeUInt32BE(Math.floor(block / 2 ** 32), 8);
  iv.writeUInt32BE(block >>> 0, 12);
  return { iv, skip: (offset % 4) * 4 };
}

/**
 * Calls `each(keystream, elementIndex, count)` for consecutive chunks of the stream keyed by `key`,
 * covering stream elements [offset, offset + length). The keystream buffer is zeroed after each call.
 */
function forEachChunk(
  key: Uint8Array,
  offset: number,
  length: number,
  each: (keystream: Buffer, start: number, count: number) => void,
): void {
  const { iv, skip } = counterFor(offset);
  const cipher = createCipheriv('aes-256-ctr', key, iv);
  if (skip > 0) cipher.update(ZERO_CHUNK.subarray(0, skip)).fill(0);
  for (let start = 0; start < length; start += CHUNK_ELEMENTS) {
    const count = Math.min(CHUNK_ELEMENTS, length - start);
    const ks = cipher.update(
      count === CHUNK_ELEMENTS ? ZERO_CHUNK : ZERO_CHUNK.subarray(0, count * 4),
    );
    each(ks, start, count);
    ks.fill(0);
  }
}

function int32View(buf: Buffer, count: number): Int32Array {
  if (buf.byteOffset % 4 === 0) return new Int32Array(buf.buffer, buf.byteOffset, count);
  return new Int32Array(new Uint8Array(buf.subarray(0, count * 4)).buffer);
}

function addJs(acc: Int32Array, at: number, ks: Int32Array, count: number, sign: MaskSign): void {
  if (sign === 1)
    for (let i = 0; i < count; i++) acc[at + i] = ((acc[at + i] ?? 0) + (ks[i] ?? 0)) | 0;
  else for (let i = 0; i < count; i++) acc[at + i] = ((acc[at + i] ?? 0) - (ks[i] ?? 0)) | 0;
}

function checkStreamArgs(length: number, offset: number): void {
  if (!LITTLE_ENDIAN) throw new SecAggError('BAD_INPUT', 'big-endian hosts are not supported');
  if (!Number.isSafeInteger(offset) || offset < 0 || offset + length > 2 ** 52) {
    throw new SecAggError('BAD_INPUT', 'stream offset must be a non-negative safe integer');
  }
}

/**
 * Adds (sign 1) or subtracts (sign -1) the mask stream of `seed` into `acc` mod 2^32:
 * `acc[i] += sign * mask[offset + i]`. The reference implementation (plain JavaScript add);
 * MaskAccumulator does the same faster.
 *
 * @example
 * const y = Uint32Array.from(x);
 * expandMaskInto(y, seed, sessionId, 'update', 1);  // y = x + PRG(seed)
 * expandMaskInto(y, seed, sessionId, 'update', -1); // y = x again
 */
export function expandMaskInto(
  acc: Uint32Array,
  seed: Uint8Array,
  sessionId: Uint8Array,
  tensorId: string,
  sign: MaskSign,
  offset = 0,
): void {
  if (!(acc instanceof Uint32Array))
    throw new SecAggError('BAD_INPUT', 'acc must be a Uint32Array');
  checkSign(sign);
  checkStreamArgs(acc.length, offset);
  const key = maskStreamKey(seed, sessionId, tensorId);
  const view = new Int32Array(acc.buffer, acc.byteOffset, acc.length);
  forEachChunk(key, offset, acc.length, (ks, start, count) => {
    addJs(view, start, int32View(ks, count), count, sign);
  });
  key.fill(0);
}

/**
 * A vector mod 2^32 into which mask streams and vectors are added: the client's masked input and the
 * aggregator's running sum. Uses the WebAssembly SIMD kernels when available (about 2x faster end to
 * end than the JavaScript add), else a JavaScript loop; both give identical results.
 *
 * @example
 * const acc = new MaskAccumulator(x.length);
 * acc.addVector(x, 1);
 * acc.addMask(seed, sessionId, 'update', 1);
 * const y = acc.read(); acc.wipe();
 */
export class MaskAccumulator {
  readonly length: number;
  private kernels: SimdKernels | undefined;
  private js: Int32Array | undefined;
  private readonly accOffset = CHUNK_BYTES;

  constructor(length: number, options: { simd?: boolean } = {}) {
    if (!Number.isSafeInteger(length) || length < 1 || length > 2 ** 28) {
      throw new SecAggError('BAD_INPUT', 'vector length must be an integer in [1, 2^28]');
    }
    if (!LITTLE_ENDIAN) throw new SecAggError('BAD_INPUT', 'big-endian hosts are not supported');
    this.length = length;
    const module = options.simd === false ? null : simdModule();
    if (module) {
      this.kernels = takeKernels(module, this.usedBytes());
    } else {
      this.js = new Int32Array(length);
    }
  }

  /** Whether this accumulator runs the WebAssembly SIMD kernels. */
  get simd(): boolean {
    return this.kernels !== undefined;
  }

  /** Adds sign * the stream keyed by the AES-256 `key`, from stream element `offset`. */
  addStream(key: Uint8Array, sign: MaskSign, offset = 0): void {
    this.addStreams([{ key, sign }], undefined, offset);
  }

  /**
   * Adds sign * every stream, chunk-major: for each chunk of the vector, `init` (when given) first
   * writes or updates that chunk of the accumulator in place, then every stream's keystream for the
   * chunk is added while the chunk is still in cache. The same result as calling addStream for each
   * stream (stream-major order reads and writes the whole accumulator once per stream; this reads it
   * once, which matters when it is larger than the CPU's cache: about 2x less time for 10 streams
   * over 1M elements).
   *
   * @example
   * const acc = new MaskAccumulator(x.length);
   * acc.addStreams(keys.map((key) => ({ key, sign: 1 })), (chunk, start) =>
   *   chunk.set(x.subarray(start, start + chunk.length)),
   * );
   */
  addStreams(
    streams: readonly MaskStream[],
    init?: (chunk: Uint32Array, start: number) => void,
    offset = 0,
  ): void {
    for (const { key, sign } of streams) {
      checkBytes(key, 32, 'AES-256 key');
      checkSign(sign);
    }
    checkStreamArgs(this.length, offset);
    const { iv, skip } = counterFor(offset);
    const ciphers = streams.map(({ key }) => {
      const cipher = createCipheriv('aes-256-ctr', key, iv);
      if (skip > 0) cipher.update(ZERO_CHUNK.subarray(0, skip)).fill(0);
      return cipher;
    });
    const k = this.kernels;
    const scratch = k && new Uint8Array(k.memory.buffer, 0, CHUNK_BYTES);
    try {
      for (let start = 0; start < this.length; start += CHUNK_ELEMENTS) {
        const count = Math.min(CHUNK_ELEMENTS, this.length - start);
        if (init) {
          init(
            k
              ? new Uint32Array(k.memory.buffer, this.accOffset + start * 4, count)
              : new Uint32Array(this.live().buffer, start * 4, count),
            start,
          );
        }
        const zero = count === CHUNK_ELEMENTS ? ZERO_CHUNK : ZERO_CHUNK.subarray(0, count * 4);
        for (let j = 0; j < ciphers.length; j++) {
          const ks = (ciphers[j] as Cipher).update(zero);
          const sign = (streams[j] as { sign: MaskSign }).sign;
          if (k) this.addChunk(k, scratch as Uint8Array, ks, start, count, sign);
          else addJs(this.live(), start, int32View(ks, count), count, sign);
          ks.fill(0);
        }
      }
    } finally {
      scratch?.fill(0);
    }
  }

  /** Adds sign * PRG(seed) for this session and tensor (see maskStreamKey). */
  addMask(seed: Uint8Array, sessionId: Uint8Array, tensorId: string, sign: MaskSign): void {
    const key = maskStreamKey(seed, sessionId, tensorId);
    this.addStream(key, sign);
    key.fill(0);
  }

  /** Adds sign * `vector` (same length) mod 2^32. */
  addVector(vector: Uint32Array, sign: MaskSign = 1): void {
    if (!(vector instanceof Uint32Array) || vector.length !== this.length) {
      throw new SecAggError('BAD_INPUT', `vector must be a Uint32Array of length ${this.length}`);
    }
    checkSign(sign);
    const k = this.kernels;
    const bytes = new Uint8Array(vector.buffer, vector.byteOffset, vector.byteLength);
    if (k === undefined) {
      const acc = this.live();
      addJs(
        acc,
        0,
        new Int32Array(vector.buffer, vector.byteOffset, this.length),
        this.length,
        sign,
      );
      return;
    }
    const scratch = new Uint8Array(k.memory.buffer, 0, CHUNK_BYTES);
    for (let start = 0; start < this.length; start += CHUNK_ELEMENTS) {
      const count = Math.min(CHUNK_ELEMENTS, this.length - start);
      this.addChunk(k, scratch, bytes.subarray(start * 4, (start + count) * 4), start, count, sign);
    }
    scratch.fill(0);
  }

  /** A copy of the current value. */
  read(): Uint32Array {
    const out = new Uint32Array(this.length);
    this.readInto(out);
    return out;
  }

  /** Copies the current value into `out` (of the same length), e.g. shared memory for a worker pool. */
  readInto(out: Uint32Array): void {
    if (!(out instanceof Uint32Array) || out.length !== this.length) {
      throw new SecAggError('BAD_INPUT', `out must be a Uint32Array of length ${this.length}`);
    }
    if (this.kernels === undefined) out.set(new Uint32Array(this.live().buffer));
    else out.set(new Uint32Array(this.kernels.memory.buffer, this.accOffset, this.length));
  }

  /** Zeroes all memory of this accumulator (the value and the keystream scratch). */
  wipe(): void {
    if (this.kernels !== undefined) {
      new Uint8Array(this.kernels.memory.buffer, 0, this.usedBytes()).fill(0);
    }
    this.js?.fill(0);
  }

  /**
   * Zeroes and releases the memory; the accumulator cannot be used afterwards. The zeroed
   * WebAssembly memory goes back to a small pool for the next accumulator (a site masks every round,
   * and fresh memory costs a page fault per 4 KiB on first touch).
   */
  destroy(): void {
    this.wipe();
    if (this.kernels !== undefined) giveBackKernels(this.kernels);
    this.kernels = undefined;
    this.js = undefined;
  }

  /** Bytes of WebAssembly memory this accumulator uses: keystream scratch, then the vector. */
  private usedBytes(): number {
    return CHUNK_BYTES + Math.ceil(this.length / 4) * 16;
  }

  private live(): Int32Array {
    if (this.js === undefined) throw new SecAggError('WRONG_STATE', 'accumulator destroyed');
    return this.js;
  }

  private addChunk(
    k: SimdKernels,
    scratch: Uint8Array,
    src: Uint8Array,
    start: number,
    count: number,
    sign: MaskSign,
  ): void {
    scratch.set(src.subarray(0, count * 4));
    const whole = count & ~3;
    const dst = this.accOffset + start * 4;
    if (whole > 0) {
      if (sign === 1) k.add(dst, 0, whole * 4);
      else k.sub(dst, 0, whole * 4);
    }
    if (whole < count) {
      // The tail (fewer than 4 elements) in JavaScript.
      const acc = new Int32Array(k.memory.buffer, dst, count);
      const ks = new Int32Array(k.memory.buffer, 0, count);
      addJs(acc.subarray(whole), 0, ks.subarray(whole), count - whole, sign);
    }
  }
}
