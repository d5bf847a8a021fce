/**
 * L2 clipping, the step that bounds each contribution's sensitivity before noise is added
 * (DP-SGD per example, DP-FedAvg per site update).
 */
import { checkPositive, DpError, DpErrorCode } from './errors';

function checkVector(v: unknown, name: string): Float32Array {
  if (!(v instanceof Float32Array)) {
    throw new DpError(DpErrorCode.INVALID_VECTOR, `${name} must be a Float32Array`);
  }
  return v;
}

/** The L2 norm of a vector, accumulated in double precision; NaN or Infinity are refused. */
function l2Norm(v: Float32Array, from = 0, to = v.length, name = 'v'): number {
  let s = 0;
  for (let i = from; i < to; i++) {
    const x = v[i]!;
    s += x * x;
  }
  if (!Number.isFinite(s)) {
    // Either a non-finite entry, or a sum that overflowed: rescale to tell them apart.
    let m = 0;
    for (let i = from; i < to; i++) {
      const x = Math.abs(v[i]!);
      if (!Number.isFinite(x)) {
        throw new DpError(
          DpErrorCode.INVALID_VECTOR,
          `${name} contains NaN or Infinity at index ${i}`,
        );
      }
      m = Math.max(m, x);
    }
    let t = 0;
    for (let i = from; i < to; i++) t += (v[i]! / m) ** 2;
    return m * Math.sqrt(t);
  }
  return Math.sqrt(s);
}

/**
 * Scales `v` so its L2 norm is at most `c` (when it is larger), returning a new vector, the norm
 * before clipping and the factor applied (1 when nothing was clipped). The clipped vector's norm,
 * computed in double precision, is guaranteed to be <= c despite float32 rounding, so the
 * sensitivity bound the accountant assumes holds exactly.
 *
 * @example
 * const { clipped, norm, factor } = clipL2(Float32Array.of(3, 4), 1); // norm 5, factor 0.2
 */
export function clipL2(
  v: Float32Array,
  c: number,
): { clipped: Float32Array; norm: number; factor: number } {
  checkVector(v, 'v');
  checkPositive(c, 'c (clipping norm)', DpErrorCode.INVALID_CLIP_NORM);
  const norm = l2Norm(v);
  if (norm <= c) return { clipped: v.slice(), norm, factor: 1 };
  let factor = c / norm;
  const clipped = new Float32Array(v.length);
  for (let attempt = 0; ; attempt++) {
    for (let i = 0; i < v.length; i++) clipped[i] = v[i]! * factor;
    if (l2Norm(clipped) <= c || attempt > 8) break;
    // Rounding to float32 pushed the norm a hair over c: shrink by a few float32 ulps and redo.
    factor *= 1 - 2 ** -22;
  }
  return { clipped, norm, factor };
}

/**
 * Per-example clip factors for a batch stored row-major (`batchSize` rows of equal length): each
 * row's L2 norm and min(1, c / norm), the factor DP-SGD multiplies that example's gradient by.
 *
 * @example
 * const { norms, factors } = clipFactors(Float32Array.of(3, 4, 0.3, 0.4), 2, 1); // factors [0.2, 1]
 */
export function clipFactors(
  perExample: Float32Array,
  batchSize: number,
  c: number,
): { norms: Float64Array; factors: Float64Array } {
  checkVector(perExample, 'perExample');
  if (!Number.isSafeInteger(batchSize) || batchSize < 1 || perExample.length % batchSize !== 0) {
    throw new DpError(
      DpErrorCode.INVALID_ARGUMENT,
      `batchSize must be a positive integer dividing perExample.length (${perExample.length}); got ${String(batchSize)}`,
    );
  }
  checkPositive(c, 'c (clipping norm)', DpErrorCode.INVALID_CLIP_NORM);
  const dim = perExample.length / batchSize;
  const norms = new Float64Array(batchSize);
  const factors = new Float64Array(batchSize);
  for (let b = 0; b < batchSize; b++) {
    const n = l2Norm(perExample, b * dim, (b + 1) * dim, `perExample row ${b}`);
    norms[b] = n;
    // Slightly under c / n so that scaling in float32 cannot exceed c.
    factors[b] = n > c ? (c / n) * (1 - 2 ** -22) : 1;
  }
  return { norms, factors };
}
