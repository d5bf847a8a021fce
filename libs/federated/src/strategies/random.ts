import type { UniformRandom } from './types';

/** A uniform number in [0, 1) from the platform CSPRNG (Web Crypto, in Node and in browsers). */
export const cryptoUniformRandom: UniformRandom = () => {
  const words = new Uint32Array(2);
  globalThis.crypto.getRandomValues(words);
  // 53 random bits, so every float64 in [0, 1) on the 2^-53 grid is equally likely.
  return ((words[0]! >>> 5) * 2 ** 26 + (words[1]! >>> 6)) / 2 ** 53;
};

/**
 * A reproducible uniform source for tests and the simulator (splitmix32); not for secrets.
 *
 * @example
 * const strategy = buildStrategy('krum', { bucketSize: 2 }, { random: seededUniformRandom(1) });
 */
export function seededUniformRandom(seed: number): UniformRandom {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    z = (z ^ (z >>> 16)) >>> 0;
    return z / 2 ** 32;
  };
}

/** A uniformly random permutation of `items` (Fisher-Yates); the input is left as it is. */
export function shuffled<T>(items: readonly T[], random: UniformRandom): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.min(i, Math.floor(random() * (i + 1)));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}
