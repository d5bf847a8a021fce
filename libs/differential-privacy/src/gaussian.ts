/**
 * Continuous Gaussian noise from a CSPRNG, for federations without secure aggregation (DESIGN.md
 * section 6). Box-Muller over 53-bit uniforms built from `crypto.getRandomValues` words, read
 * through a buffer so a million draws cost a handful of system calls.
 *
 * Floating-point Gaussian noise is not exactly the Gaussian the accountant assumes (its tails stop
 * at about 8.6 sigma and its low bits are structured; see Mironov 2012 on the Laplace analogue);
 * with secure aggregation use the integer mechanisms of discrete.ts instead.
 */
import { checkCount, checkNoiseMultiplier, DpError, DpErrorCode } from './errors';
import { checkRandomSource, cryptoRandomSource, RandomStream, type RandomSource } from './random';

const TWO_PI = 2 * Math.PI;

/** Fills `out[from..to)` with N(0, sigma^2) draws, two per Box-Muller pair. */
function fillGaussian(
  out: Float32Array | Float64Array,
  sigma: number,
  stream: RandomStream,
  add: boolean,
): void {
  const n = out.length;
  for (let i = 0; i < n; i += 2) {
    // u1 in (0, 1] so the logarithm is finite; u2 in [0, 1).
    const u1 = 1 - stream.uniform();
    const u2 = stream.uniform();
    const r = sigma * Math.sqrt(-2 * Math.log(u1));
    const t = TWO_PI * u2;
    const z0 = r * Math.cos(t);
    if (add) out[i] = out[i]! + z0;
    else out[i] = z0;
    if (i + 1 < n) {
      const z1 = r * Math.sin(t);
      if (add) out[i + 1] = out[i + 1]! + z1;
      else out[i + 1] = z1;
    }
  }
}

function streamFor(n: number, rng: RandomSource): RandomStream {
  // Four words per pair of normals.
  return new RandomStream(checkRandomSource(rng), Math.min(16_384, Math.max(64, 2 * n + 4)));
}

/**
 * `n` independent draws from N(0, sigma^2), from a CSPRNG.
 *
 * @example
 * const noise = gaussianNoise(1000, 1.5); // Float64Array(1000)
 */
export function gaussianNoise(
  n: number,
  sigma: number,
  rng: RandomSource = cryptoRandomSource,
): Float64Array {
  checkCount(n);
  checkNoiseMultiplier(sigma, 'sigma (standard deviation)');
  const out = new Float64Array(n);
  if (sigma === 0 || n === 0) return out;
  const stream = streamFor(n, rng);
  fillGaussian(out, sigma, stream, false);
  stream.wipe();
  return out;
}

/**
 * A copy of `v` with independent N(0, sigma^2) noise added to each coordinate (the input is not
 * modified). For DP, sigma is the noise multiplier times the clipping norm.
 *
 * @example
 * const noisy = addGaussianNoise(clipL2(update, 1).clipped, 1.1 * 1);
 */
export function addGaussianNoise<T extends Float32Array | Float64Array>(
  v: T,
  sigma: number,
  rng: RandomSource = cryptoRandomSource,
): T {
  if (!(v instanceof Float32Array) && !(v instanceof Float64Array)) {
    throw new DpError(DpErrorCode.INVALID_VECTOR, 'v must be a Float32Array or Float64Array');
  }
  checkNoiseMultiplier(sigma, 'sigma (standard deviation)');
  const out = v.slice() as T;
  if (sigma === 0 || v.length === 0) return out;
  const stream = streamFor(v.length, rng);
  fillGaussian(out, sigma, stream, true);
  stream.wipe();
  return out;
}
