import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Dataset } from './dataset';
import { MlError } from './errors';
import { buildModel, getModelWeights, setModelWeights } from './model';
import type { ModelSpec } from './model-spec';
import { seededRandom } from './random';
import { trainModel, type TrainOptions } from './train';
import { initialWeights } from './weights';

beforeAll(async () => {
  tf.env().set('IS_TEST', true);
  await tf.setBackend('cpu');
});

/** Rows with 3 features and a label from a noisy linear rule, so training has somewhere to go. */
function tiny(numRows: number, classes: number, seed: number): Dataset {
  const rng = seededRandom(seed);
  const features = new Float32Array(numRows * 3);
  const labels = new Float32Array(numRows);
  for (let r = 0; r < numRows; r++) {
    for (let j = 0; j < 3; j++) features[r * 3 + j] = 2 * rng() - 1;
    const score = features[r * 3]! - 0.5 * features[r * 3 + 1]! + 0.3 * (rng() - 0.5);
    labels[r] = classes === 2 ? (score > 0 ? 1 : 0) : score > 0.3 ? 2 : score > -0.3 ? 1 : 0;
  }
  return {
    features,
    labels,
    numRows,
    numFeatures: 3,
    featureNames: ['a', 'b', 'c'],
    labelName: 'y',
  };
}

const logistic: ModelSpec = { kind: 'logistic', inputDim: 3 };
const mlp: ModelSpec = { kind: 'mlp', inputDim: 3, hidden: [4], output: { classes: 3 } };

async function trained(spec: ModelSpec, data: Dataset, opts: TrainOptions, start?: Float32Array) {
  const model = buildModel(spec);
  setModelWeights(model, start ?? initialWeights(spec, 3));
  const result = await trainModel(model, spec, data, opts);
  const weights = getModelWeights(model);
  model.dispose();
  return { weights, loss: result.loss };
}

const distance = (a: Float32Array, b: Float32Array): number =>
  Math.sqrt(a.reduce((s, x, i) => s + (x - b[i]!) ** 2, 0));

describe('trainModel with a FedProx proximal term', () => {
  const data = tiny(24, 2, 1);
  const base: TrainOptions = { epochs: 3, batchSize: 8, learningRate: 0.5, optimizer: 'sgd' };

  it('trains exactly as before with mu = 0', async () => {
    const without = await trained(logistic, data, base);
    const zero = await trained(logistic, data, { ...base, proximalMu: 0 });
    expect(Array.from(zero.weights)).toEqual(Array.from(without.weights));
    expect(zero.loss).toBe(without.loss);
  });

  it('adds mu (w - w_global) to each SGD gradient (two full-batch steps against hand composition)', async () => {
    const mu = 0.8;
    const lr = 0.5;
    const full: TrainOptions = { epochs: 1, batchSize: 24, learningRate: lr, optimizer: 'sgd' };
    const w0 = initialWeights(logistic, 3);
    // Without the term: w1 = w0 - lr g(w0), then w2' = w1 - lr g(w1).
    const w1 = (await trained(logistic, data, full, w0)).weights;
    const w2plain = (await trained(logistic, data, full, w1)).weights;
    // With it: the first step is the same (w = w_global), the second gains -lr mu (w1 - w0).
    const w2 = (await trained(logistic, data, { ...full, epochs: 2, proximalMu: mu }, w0)).weights;
    for (let i = 0; i < w0.length; i++) {
      expect(w2[i]).toBeCloseTo(w2plain[i]! - lr * mu * (w1[i]! - w0[i]!), 5);
    }
  });

  it('uses the same loss as the compiled model (multiclass, Adam, vanishing mu)', async () => {
    const data3 = tiny(30, 3, 2);
    const opts: TrainOptions = { epochs: 2, batchSize: 10, learningRate: 0.05, optimizer: 'adam' };
    const plain = await trained(mlp, data3, opts);
    const prox = await trained(mlp, data3, { ...opts, proximalMu: 1e-12 });
    expect(prox.loss).toBeCloseTo(plain.loss, 5);
    for (let i = 0; i < plain.weights.length; i++) {
      expect(prox.weights[i]).toBeCloseTo(plain.weights[i]!, 4);
    }
  });

  it('keeps the weights closer to the global ones as mu grows', async () => {
    const w0 = initialWeights(logistic, 3);
    // lr mu stays below 2, where SGD on the quadratic term itself would oscillate.
    const opts: TrainOptions = { ...base, epochs: 10, learningRate: 0.2 };
    const moved = async (mu: number) =>
      distance((await trained(logistic, data, { ...opts, proximalMu: mu })).weights, w0);
    const [free, some, strong] = [await moved(0), await moved(0.5), await moved(4)];
    expect(some).toBeLessThan(free);
    expect(strong).toBeLessThan(some);
  });

  it('leaves no tensors behind', async () => {
    const before = tf.memory().numTensors;
    await trained(mlp, tiny(30, 3, 2), { ...base, proximalMu: 0.1 });
    expect(tf.memory().numTensors).toBe(before);
  });

  it('refuses a negative or non-finite mu', async () => {
    for (const mu of [-1, NaN, Infinity]) {
      await expect(trained(logistic, data, { ...base, proximalMu: mu })).rejects.toThrow(MlError);
    }
  });
});
