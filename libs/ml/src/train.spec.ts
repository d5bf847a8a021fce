import * as tf from '@tensorflow/tfjs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadCsv } from './csv';
import type { Dataset } from './dataset';
import { MlError } from './errors';
import { buildModel, getModelWeights, setModelWeights } from './model';
import type { ModelSpec } from './model-spec';
import { seededRandom } from './random';
import { stratifiedSplit } from './split';
import { combineFeatureStats, featureStatsPartial, standardize } from './standardize';
import { evaluateModel, predictScores, trainModel } from './train';
import { initialWeights } from './weights';

const logistic: ModelSpec = { kind: 'logistic', inputDim: 30 };
let train: Dataset;
let test: Dataset;

beforeAll(async () => {
  tf.env().set('IS_TEST', true); // silences the "install tfjs-node" banner
  await tf.setBackend('cpu');
  const bc = await loadCsv(
    join(import.meta.dirname, '../../../datasets/breast-cancer-wisconsin.csv'),
    {
      label: 'diagnosis',
      expectedFeatures: 30,
    },
  );
  const split = stratifiedSplit(bc, 0.2, 1);
  const stats = combineFeatureStats([featureStatsPartial(split.train)]);
  train = standardize(split.train, stats);
  test = standardize(split.test, stats);
});

/** Three gaussian blobs in 4 dimensions, labels 0..2. */
function blobs(numRows: number, seed: number): Dataset {
  const rng = seededRandom(seed);
  const features = new Float32Array(numRows * 4);
  const labels = new Float32Array(numRows);
  for (let r = 0; r < numRows; r++) {
    const c = r % 3;
    labels[r] = c;
    for (let j = 0; j < 4; j++) features[r * 4 + j] = (j === c ? 3 : 0) + (rng() - 0.5) * 2;
  }
  return {
    features,
    labels,
    numRows,
    numFeatures: 4,
    featureNames: ['a', 'b', 'c', 'd'],
    labelName: 'y',
  };
}

describe('trainModel on the breast-cancer data', () => {
  it('reaches at least 0.96 test accuracy with a logistic model, 20 epochs, batch 32', async () => {
    const model = buildModel(logistic);
    setModelWeights(model, initialWeights(logistic, 1));
    const before = await evaluateModel(model, logistic, test);
    const result = await trainModel(model, logistic, train, {
      epochs: 20,
      batchSize: 32,
      learningRate: 0.01,
      optimizer: 'adam',
      shuffleSeed: 1,
    });
    const after = await evaluateModel(model, logistic, test);
    expect(result.numExamples).toBe(455);
    expect(result.loss).toBeLessThan(0.15);
    expect(after.numExamples).toBe(114);
    expect(after.loss).toBeLessThan(before.loss);
    expect(after.accuracy).toBeGreaterThanOrEqual(0.96);
    expect(after.auc).toBeGreaterThan(0.98);
    expect(after.f1).toBeGreaterThan(0.93);
    model.dispose();
  });

  it('also learns with plain SGD', async () => {
    const model = buildModel(logistic);
    await trainModel(model, logistic, train, {
      epochs: 20,
      batchSize: 32,
      learningRate: 0.1,
      optimizer: 'sgd',
    });
    expect((await evaluateModel(model, logistic, test)).accuracy).toBeGreaterThanOrEqual(0.96);
    model.dispose();
  });

  it('leaves no tensors behind in training, evaluation and weight exchange', async () => {
    const model = buildModel(logistic);
    const before = tf.memory().numTensors;
    for (const optimizer of ['adam', 'sgd'] as const) {
      await trainModel(model, logistic, train, {
        epochs: 2,
        batchSize: 50,
        learningRate: 0.01,
        optimizer,
      });
    }
    await evaluateModel(model, logistic, test);
    setModelWeights(model, getModelWeights(model));
    expect(tf.memory().numTensors).toBe(before);
    model.dispose();
  });

  it('is deterministic for the same weights and shuffle seed, and reports progress', async () => {
    const runs: Float32Array[] = [];
    const batches: number[] = [];
    const epochs: number[] = [];
    for (let i = 0; i < 2; i++) {
      const model = buildModel(logistic);
      await trainModel(model, logistic, train, {
        epochs: 3,
        batchSize: 100,
        learningRate: 0.05,
        shuffleSeed: 5,
        onBatchEnd: ({ epoch, batch, batchesPerEpoch }) =>
          batches.push(epoch * batchesPerEpoch + batch),
        onEpochEnd: ({ epoch, epochs: total }) => epochs.push(epoch * 10 + total),
      });
      runs.push(getModelWeights(model));
      model.dispose();
    }
    expect(runs[0]).toEqual(runs[1]);
    expect(batches.slice(0, 15)).toEqual([...Array(15).keys()]); // 455 rows -> 5 batches x 3 epochs
    expect(epochs.slice(0, 3)).toEqual([3, 13, 23]);
  });

  it('refuses data that does not fit the model', async () => {
    const model = buildModel({ kind: 'logistic', inputDim: 4 });
    await expect(
      trainModel(model, { kind: 'logistic', inputDim: 4 }, blobs(30, 1), {
        epochs: 1,
        batchSize: 8,
        learningRate: 0.1,
      }),
    ).rejects.toThrow(
      new MlError(
        'DATASET',
        'row 3: label 2 is not a class of this model (expected 0..1 for a binary model)',
      ),
    );
    await expect(
      trainModel(model, { kind: 'logistic', inputDim: 4 }, train, {
        epochs: 1,
        batchSize: 8,
        learningRate: 0.1,
      }),
    ).rejects.toThrow(
      new MlError('DATASET', 'the data has 30 features, the model expects inputDim 4'),
    );
    await expect(
      trainModel(model, logistic, train, { epochs: 1, batchSize: 8, learningRate: 0.1 }),
    ).rejects.toThrow(
      'the model does not match the spec: its weight shapes are [4,1],[1], the spec gives [30,1],[1]',
    );
    model.dispose();
    const ok = buildModel(logistic);
    await expect(
      trainModel(ok, logistic, train, { epochs: 0, batchSize: 8, learningRate: 0.1 }),
    ).rejects.toThrow('training options: epochs must be an integer >= 1, got 0');
    ok.dispose();
  });
});

describe('multiclass models', () => {
  it('trains an MLP with softmax output and reports macro-F1 without AUC', async () => {
    const spec: ModelSpec = { kind: 'mlp', inputDim: 4, hidden: [8], output: { classes: 3 } };
    const model = buildModel(spec);
    const data = blobs(300, 2);
    await trainModel(model, spec, data, { epochs: 15, batchSize: 32, learningRate: 0.05 });
    const metrics = await evaluateModel(model, spec, blobs(150, 3));
    expect(metrics.accuracy).toBeGreaterThan(0.9);
    expect(metrics.f1).toBeGreaterThan(0.9);
    expect(metrics.auc).toBeNull();
    expect(predictScores(model, data)).toHaveLength(900);
    model.dispose();
  });
});
