import { describe, expect, it } from 'vitest';
import { parameterCount, type ModelSpec } from './model-spec';
import { initialWeights } from './weights';

const mlp: ModelSpec = { kind: 'mlp', inputDim: 20, hidden: [12, 6], output: { classes: 3 } };

describe('initialWeights', () => {
  it('has one value per parameter', () => {
    expect(initialWeights(mlp, 1)).toHaveLength(parameterCount(mlp));
    expect(initialWeights({ kind: 'logistic', inputDim: 30 }, 1)).toHaveLength(31);
  });

  it('is deterministic for a seed and differs between seeds', () => {
    expect(initialWeights(mlp, 42)).toEqual(initialWeights(mlp, 42));
    expect(initialWeights(mlp, 42)).not.toEqual(initialWeights(mlp, 43));
  });

  it('draws kernels within the glorot-uniform limit and sets biases to zero', () => {
    const w = initialWeights(mlp, 7);
    let offset = 0;
    for (const [fanIn, fanOut] of [
      [20, 12],
      [12, 6],
      [6, 3],
    ] as const) {
      const limit = Math.sqrt(6 / (fanIn + fanOut));
      const kernel = w.subarray(offset, offset + fanIn * fanOut);
      expect(Math.max(...kernel.map(Math.abs))).toBeLessThanOrEqual(limit);
      expect(Math.max(...kernel.map(Math.abs))).toBeGreaterThan(limit / 2);
      const bias = w.subarray(offset + fanIn * fanOut, offset + fanIn * fanOut + fanOut);
      expect([...bias]).toEqual(new Array(fanOut).fill(0));
      offset += fanIn * fanOut + fanOut;
    }
    expect(offset).toBe(w.length);
  });
});
