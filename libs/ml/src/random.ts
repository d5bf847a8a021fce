import { MlError } from './errors';

/**
 * Seeded PRNG (mulberry32) returning floats in [0, 1). For data splits and weight initialisation only:
 * it is NOT cryptographically secure and must never feed masks, keys or differential-privacy noise.
 */
export function seededRandom(seed: number): () => number {
  if (!Number.isInteger(seed)) {
    throw new MlError('INVALID_ARGUMENT', `seed must be an integer, got ${String(seed)}`);
  }
  // Fold the high bits in so that seeds differing only above 2^32 give different streams.
  let state = (seed >>> 0) ^ Math.imul(Math.floor(seed / 0x1_0000_0000) >>> 0, 0x9e3779b9);
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 0x1_0000_0000;
  };
}

/** Fisher-Yates shuffle in place. */
export function shuffleInPlace<T>(items: T[], rng: () => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    const tmp = items[i] as T;
    items[i] = items[j] as T;
    items[j] = tmp;
  }
  return items;
}

/** A random permutation of 0..n-1. */
export function permutation(n: number, rng: () => number): number[] {
  return shuffleInPlace(
    Array.from({ length: n }, (_, i) => i),
    rng,
  );
}

/** Standard normal sample (Box-Muller). */
export function normalSample(rng: () => number): number {
  const u = 1 - rng(); // (0, 1]: log(u) is finite
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng());
}

/**
 * log of a Gamma(shape, 1) sample (Marsaglia-Tsang 2000). Returned in log space because for shape < 1
 * the sample is Gamma(shape + 1) * U^(1/shape), which underflows to 0 for small shapes.
 */
export function logGammaSample(shape: number, rng: () => number): number {
  if (!(shape > 0) || !Number.isFinite(shape)) {
    throw new MlError('INVALID_ARGUMENT', `gamma shape must be a positive number, got ${shape}`);
  }
  if (shape < 1) {
    return logGammaSample(shape + 1, rng) + Math.log(1 - rng()) / shape;
  }
  const d = shape - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    let x: number;
    let v: number;
    do {
      x = normalSample(rng);
      v = 1 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const u = 1 - rng();
    if (Math.log(u) < 0.5 * x * x + d - d * v + d * Math.log(v)) return Math.log(d * v);
  }
}

/** A Dirichlet(alpha, ..., alpha) sample of the given dimension. */
export function dirichletSample(dim: number, alpha: number, rng: () => number): number[] {
  const logs = Array.from({ length: dim }, () => logGammaSample(alpha, rng));
  const max = Math.max(...logs);
  const w = logs.map((l) => Math.exp(l - max));
  const sum = w.reduce((a, b) => a + b, 0);
  return w.map((x) => x / sum);
}
