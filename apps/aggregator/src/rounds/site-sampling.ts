import { randomInt } from 'node:crypto';

/** A uniform integer in [min, max): node:crypto's randomInt, or a seeded one in tests. */
export type RandomInt = (min: number, max: number) => number;

/**
 * How many of `connected` sites a round takes: ceil(fraction x connected), at least minSites, at most
 * everyone connected.
 *
 * @example sampleSize(5, 0.4, 2) // 2
 */
export function sampleSize(connected: number, fraction: number, minSites: number): number {
  if (!Number.isInteger(connected) || connected < 0) {
    throw new RangeError(`connected must be a non-negative integer, got ${connected}`);
  }
  if (!(fraction > 0 && fraction <= 1)) {
    throw new RangeError(`fraction must be in (0, 1], got ${fraction}`);
  }
  if (!Number.isInteger(minSites) || minSites < 1) {
    throw new RangeError(`minSites must be a positive integer, got ${minSites}`);
  }
  // Products such as 0.7 x 10 land a hair above the integer; that hair must not add a site.
  const wanted = Math.ceil(fraction * connected - 1e-9);
  return Math.min(connected, Math.max(minSites, wanted));
}

/**
 * A uniformly random subset of `connected` of sampleSize(...) sites, drawn with a CSPRNG (a partial
 * Fisher-Yates shuffle), in the order they were given so the round's roster reads the same way.
 * With fraction 1 it is everyone, and no randomness is drawn.
 *
 * @example sampleSites(['a', 'b', 'c', 'd', 'e'], 0.4, 2) // e.g. ['b', 'e']
 */
export function sampleSites<T>(
  connected: readonly T[],
  fraction: number,
  minSites: number,
  random: RandomInt = randomInt,
): T[] {
  const k = sampleSize(connected.length, fraction, minSites);
  if (k === connected.length) return [...connected];
  const order = connected.map((_, i) => i);
  for (let i = 0; i < k; i++) {
    const j = random(i, order.length);
    if (!Number.isInteger(j) || j < i || j >= order.length) {
      throw new RangeError(`random source returned ${j}, outside [${i}, ${order.length})`);
    }
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order
    .slice(0, k)
    .sort((a, b) => a - b)
    .map((i) => connected[i]!);
}
