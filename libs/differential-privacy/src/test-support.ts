/**
 * Test support (not exported from index.ts): a seeded CSPRNG so statistical tests are
 * reproducible, and the statistics they use.
 */
import { createCipheriv, createHash } from 'node:crypto';
import type { RandomSource } from './random';

/** AES-256-CTR keystream keyed by SHA-256(seed): a deterministic CSPRNG for tests. */
export function seededRandomSource(seed: string): RandomSource {
  const key = createHash('sha256').update(seed).digest();
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  return {
    fill(words: Uint32Array): void {
      const bytes = cipher.update(Buffer.alloc(words.byteLength));
      new Uint8Array(words.buffer, words.byteOffset, words.byteLength).set(bytes);
    },
  };
}

export function mean(xs: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += xs[i]!;
  return s / xs.length;
}

export function variance(xs: ArrayLike<number>): number {
  const m = mean(xs);
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += (xs[i]! - m) ** 2;
  return s / (xs.length - 1);
}

/** Upper alpha-quantile of chi-square with `df` degrees of freedom (Wilson-Hilferty). */
export function chiSquareCritical(df: number, z: number): number {
  const h = 2 / (9 * df);
  return df * (1 - h + z * Math.sqrt(h)) ** 3;
}
