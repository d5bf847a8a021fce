/** out[i] = a[i] - b[i] as float32 (a site's update: local weights minus global weights). */
export function subtract(a: Float32Array, b: Float32Array): Float32Array {
  assertSameLength(a, b);
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! - b[i]!;
  return out;
}

/** acc[i] += scale * v[i], accumulating in float64 so many sites add up without float32 drift. */
export function addScaledInto(acc: Float64Array, v: Float32Array, scale: number): void {
  assertSameLength(acc, v);
  for (let i = 0; i < v.length; i++) acc[i] = acc[i]! + scale * v[i]!;
}

/** The L2 norm of a vector, accumulated in float64. */
export function l2Norm(v: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i]! * v[i]!;
  return Math.sqrt(s);
}

/** Sample-weighted average of vectors, in float64 (reference implementation for tests and checks). */
export function weightedAverage(vectors: Float32Array[], weights: number[]): Float64Array {
  if (vectors.length === 0 || vectors.length !== weights.length) {
    throw new Error('weightedAverage needs one weight per vector and at least one vector');
  }
  const total = weights.reduce((a, b) => a + b, 0);
  if (!(total > 0)) throw new Error('weights must sum to a positive number');
  const out = new Float64Array(vectors[0]!.length);
  vectors.forEach((v, k) => addScaledInto(out, v, weights[k]! / total));
  return out;
}

function assertSameLength(a: ArrayLike<number>, b: ArrayLike<number>): void {
  if (a.length !== b.length) throw new Error(`vector lengths differ: ${a.length} vs ${b.length}`);
}
