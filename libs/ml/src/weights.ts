import { layerSizes, type ModelSpec } from './model-spec';
import { seededRandom } from './random';

/**
 * Initial weights without tfjs: glorot-uniform kernels drawn from a seeded PRNG and zero biases, flattened
 * in {@link weightShapes} order. The same seed gives the same weights on every machine.
 */
export function initialWeights(spec: ModelSpec, seed: number): Float32Array {
  const rng = seededRandom(seed);
  const sizes = layerSizes(spec);
  let total = 0;
  for (let i = 0; i + 1 < sizes.length; i++) {
    total += ((sizes[i] as number) + 1) * (sizes[i + 1] as number);
  }
  const flat = new Float32Array(total); // biases stay 0
  let offset = 0;
  for (let i = 0; i + 1 < sizes.length; i++) {
    const fanIn = sizes[i] as number;
    const fanOut = sizes[i + 1] as number;
    const limit = Math.sqrt(6 / (fanIn + fanOut));
    const kernelSize = fanIn * fanOut;
    for (let j = 0; j < kernelSize; j++) flat[offset + j] = (2 * rng() - 1) * limit;
    offset += kernelSize + fanOut;
  }
  return flat;
}
