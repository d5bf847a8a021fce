/**
 * Randomness for the samplers: a cryptographically secure source only (Web Crypto's
 * `getRandomValues`, which Node backs with its CSPRNG). Never the non-cryptographic `Math` generator: noise drawn from a
 * predictable generator can be subtracted by anyone who recovers its state, voiding the guarantee.
 */
import { DpError, DpErrorCode } from './errors';

/**
 * A source of uniformly random 32-bit words. Production code uses cryptoRandomSource; tests may
 * pass a seeded CSPRNG (e.g. AES-CTR) for reproducibility. Never back it with a non-cryptographic generator.
 *
 * @example
 * const rng: RandomSource = { fill: (w) => crypto.getRandomValues(w) };
 */
export interface RandomSource {
  /** Fills `words` with independent uniform 32-bit values. */
  fill(words: Uint32Array): void;
}

/** `getRandomValues` refuses more than 65,536 bytes per call. */
const MAX_WORDS_PER_CALL = 16_384;

/**
 * The default source: `crypto.getRandomValues`, in chunks it accepts.
 *
 * @example
 * const w = new Uint32Array(4); cryptoRandomSource.fill(w);
 */
export const cryptoRandomSource: RandomSource = {
  fill(words: Uint32Array): void {
    for (let i = 0; i < words.length; i += MAX_WORDS_PER_CALL) {
      globalThis.crypto.getRandomValues(
        words.subarray(i, Math.min(i + MAX_WORDS_PER_CALL, words.length)),
      );
    }
  },
};

/** `rng` if it has a fill(words) method, or INVALID_ARGUMENT. */
export function checkRandomSource(rng: unknown): RandomSource {
  if (
    typeof rng !== 'object' ||
    rng === null ||
    typeof (rng as { fill?: unknown }).fill !== 'function'
  ) {
    throw new DpError(
      DpErrorCode.INVALID_ARGUMENT,
      'rng must be a RandomSource with a fill(words: Uint32Array) method',
    );
  }
  return rng as RandomSource;
}

const TWO_POW_26 = 67_108_864;
const TWO_POW_32 = 4_294_967_296;
const TWO_POW_53 = 9_007_199_254_740_992;
const TWO_POW_M53 = 1 / TWO_POW_53;

/**
 * Buffered reader over a RandomSource: whole 32-bit words, 53-bit uniforms and unbiased integers.
 * The buffer is zeroed by `wipe()` so that no unused noise bits linger after a call.
 */
export class RandomStream {
  private readonly buf: Uint32Array;
  private pos: number;

  constructor(
    private readonly source: RandomSource,
    words = 4096,
  ) {
    this.buf = new Uint32Array(Math.max(2, Math.min(words, 65_536)));
    this.pos = this.buf.length;
  }

  /** A uniform 32-bit unsigned integer. */
  u32(): number {
    if (this.pos >= this.buf.length) {
      this.source.fill(this.buf);
      this.pos = 0;
    }
    return this.buf[this.pos++]!;
  }

  /** A uniform double in [0, 1) with 53 random bits (every multiple of 2^-53 equally likely). */
  uniform(): number {
    const hi = this.u32() >>> 5; // 27 bits
    const lo = this.u32() >>> 6; // 26 bits
    return (hi * TWO_POW_26 + lo) * TWO_POW_M53;
  }

  /** A uniform integer in [0, 2^53). */
  u53(): number {
    const hi = this.u32() >>> 11; // 21 bits
    return hi * TWO_POW_32 + this.u32();
  }

  /** A uniform integer in [0, n) for an integer 1 <= n <= 2^53, by rejection (no modulo bias). */
  below(n: number): number {
    if (n <= TWO_POW_32) {
      if (n === TWO_POW_32) return this.u32();
      const limit = TWO_POW_32 - (TWO_POW_32 % n);
      for (;;) {
        const r = this.u32();
        if (r < limit) return r % n;
      }
    }
    const limit = TWO_POW_53 - (TWO_POW_53 % n);
    for (;;) {
      const r = this.u53();
      if (r < limit) return r % n;
    }
  }

  /** A uniform bigint in [0, n) for n >= 1, by rejection on the bit length of n - 1. */
  belowBig(n: bigint): bigint {
    if (n <= BigInt(TWO_POW_53)) return BigInt(this.below(Number(n)));
    const bits = (n - 1n).toString(2).length;
    const words = Math.ceil(bits / 32);
    const topMask = bits % 32 === 0 ? 0xffffffff : 2 ** (bits % 32) - 1;
    for (;;) {
      let r = BigInt((this.u32() & topMask) >>> 0);
      for (let i = 1; i < words; i++) r = (r << 32n) | BigInt(this.u32());
      if (r < n) return r;
    }
  }

  /** Overwrites the buffered random words. */
  wipe(): void {
    this.buf.fill(0);
    this.pos = this.buf.length;
  }
}
