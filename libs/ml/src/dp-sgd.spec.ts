import * as tf from '@tensorflow/tfjs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadCsv } from './csv';
import type { Dataset } from './dataset';
import {
  cryptoNormal,
  cryptoUniform,
  perExampleGradientNorms,
  trainModelDpSgd,
  type DpSgdOptions,
} from './dp-sgd';
import { MlError } from './errors';
import { buildModel, getModelWeights, setModelWeights } from './model';
import { parameterCount, type ModelSpec } from './model-spec';
import { normalSample, seededRandom } from './random';
import { stratifiedSplit } from './split';
import { combineFeatureStats, featureStatsPartial, standardize } from './standardize';
import { evaluateModel, predictScores, trainModel } from './train';
import { initialWeights } from './weights';

const logistic: ModelSpec = { kind: 'logistic', inputDim: 30 };
let train: Dataset;
let test: Dataset;

beforeAll(async () => {
  tf.env().set('IS_TEST', true);
  await tf.setBackend('cpu');
  const bc = await loadCsv(
    join(import.meta.dirname, '../../../datasets/breast-cancer-wisconsin.csv'),
    { label: 'diagnosis', expectedFeatures: 30 },
  );
  const split = stratifiedSplit(bc, 0.2, 1);
  const stats = combineFeatureStats([featureStatsPartial(split.train)]);
  train = standardize(split.train, stats);
  test = standardize(split.test, stats);
});

afterEach(() => {
  vi.restoreAllMocks();
});

/** Gaussian features in `dim` dimensions, labels 0..classes-1 shifting the mean of one feature. */
function synthetic(numRows: number, dim: number, classes: number, seed: number): Dataset {
  const rng = seededRandom(seed);
  const features = new Float32Array(numRows * dim);
  const labels = new Float32Array(numRows);
  for (let r = 0; r < numRows; r++) {
    const c = r % classes;
    labels[r] = c;
    for (let j = 0; j < dim; j++)
      features[r * dim + j] = normalSample(rng) + (j % classes === c ? 1.5 : 0);
  }
  return {
    features,
    labels,
    numRows,
    numFeatures: dim,
    featureNames: Array.from({ length: dim }, (_, j) => `f${j}`),
    labelName: 'y',
  };
}

const seededNormal =
  (seed: number) =>
  (n: number): Float32Array => {
    const rng = seededRandom(seed);
    return Float32Array.from({ length: n }, () => normalSample(rng));
  };

/** A seeded stream of normals (a new draw every call), for reproducible noisy training. */
function normalStream(seed: number): (n: number) => Float32Array {
  const rng = seededRandom(seed);
  return (n) => Float32Array.from({ length: n }, () => normalSample(rng));
}

function uniformStream(seed: number): (n: number) => Float64Array {
  const rng = seededRandom(seed);
  return (n) => Float64Array.from({ length: n }, () => rng());
}

const noiseless = { noiseMultiplier: 0, clipNorm: 1e9, samplingRate: 1, epochs: 1 } as const;

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++)
    max = Math.max(max, Math.abs((a[i] as number) - (b[i] as number)));
  return max;
}

function l2(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += ((a[i] as number) - (b[i] as number)) ** 2;
  return Math.sqrt(s);
}

/** Weights after one DP-SGD call from `initialWeights(spec, seed)`. */
async function dpWeights(
  spec: ModelSpec,
  data: Dataset,
  opts: DpSgdOptions,
  seed = 1,
): Promise<{ before: Float32Array; after: Float32Array }> {
  const model = buildModel(spec);
  const before = initialWeights(spec, seed);
  setModelWeights(model, before);
  await trainModelDpSgd(model, spec, data, opts);
  const after = getModelWeights(model);
  model.dispose();
  return { before, after };
}

describe('trainModelDpSgd gradients', () => {
  const cases: [string, ModelSpec, () => Dataset][] = [
    ['logistic on breast cancer', logistic, () => train],
    [
      'tanh MLP, binary',
      { kind: 'mlp', inputDim: 6, hidden: [8, 5], activation: 'tanh', output: 'binary' },
      () => synthetic(64, 6, 2, 3),
    ],
    [
      'relu MLP, 3 classes',
      { kind: 'mlp', inputDim: 5, hidden: [7], activation: 'relu', output: { classes: 3 } },
      () => synthetic(60, 5, 3, 4),
    ],
  ];

  it.each(cases)(
    'with z = 0, huge C and q = 1 one step equals tf full-batch gradient descent (%s)',
    async (_, spec, data) => {
      const ds = data();
      const dp = await dpWeights(spec, ds, { ...noiseless, learningRate: 0.3 });
      const model = buildModel(spec);
      setModelWeights(model, initialWeights(spec, 1));
      await trainModel(model, spec, ds, {
        epochs: 1,
        batchSize: ds.numRows,
        learningRate: 0.3,
        optimizer: 'sgd',
      });
      const reference = getModelWeights(model);
      model.dispose();
      expect(maxAbsDiff(dp.after, dp.before)).toBeGreaterThan(1e-3); // it did move
      expect(maxAbsDiff(dp.after, reference)).toBeLessThan(1e-5);
    },
  );

  it.each(cases)(
    'ghost norms equal brute-force per-example gradient norms (%s)',
    (_, spec, data) => {
      const ds = data();
      const rows = Math.min(ds.numRows, 20);
      const model = buildModel(spec);
      setModelWeights(model, initialWeights(spec, 2));
      const ghost = perExampleGradientNorms(model, spec, {
        ...ds,
        numRows: rows,
        features: ds.features.subarray(0, rows * ds.numFeatures),
        labels: ds.labels.subarray(0, rows),
      });
      const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
      const binary = spec.output === undefined || spec.output === 'binary';
      for (let i = 0; i < rows; i++) {
        const brute = tf.tidy(() => {
          const x = tf.tensor2d(ds.features.slice(i * ds.numFeatures, (i + 1) * ds.numFeatures), [
            1,
            ds.numFeatures,
          ]);
          const label = ds.labels[i] as number;
          const { grads } = tf.variableGrads(() => {
            const p = model.apply(x) as tf.Tensor2D;
            return binary
              ? tf.neg(label === 1 ? tf.log(p) : tf.log(tf.sub(1, p))).sum()
              : tf.neg(tf.log(p.slice([0, label], [1, 1]))).sum();
          }, vars);
          return Math.sqrt(
            Object.values(grads).reduce(
              (s, g) => s + (tf.sum(tf.square(g)).dataSync()[0] as number),
              0,
            ),
          );
        });
        expect(ghost[i]).toBeCloseTo(brute, 4);
      }
      model.dispose();
    },
  );
});

describe('trainModelDpSgd clipping', () => {
  /** Row 0 becomes a huge example that the initial model gets confidently wrong. */
  const outlier = (ds: Dataset, spec: ModelSpec): Dataset => {
    const features = ds.features.slice();
    for (let j = 0; j < ds.numFeatures; j++) features[j] = 1e4 * (j % 2 === 0 ? 1 : -1);
    const labels = ds.labels.slice();
    const model = buildModel(spec);
    setModelWeights(model, initialWeights(spec, 1));
    const [score] = predictScores(model, { features, numRows: 1, numFeatures: ds.numFeatures });
    model.dispose();
    labels[0] = (score as number) < 0.5 ? 1 : 0;
    return { ...ds, features, labels };
  };

  it('moves a single huge example by exactly lr * C / (qN)', async () => {
    const one = outlier(
      {
        ...train,
        numRows: 1,
        features: train.features.slice(0, 30),
        labels: train.labels.slice(0, 1),
      },
      logistic,
    );
    const clipped = await dpWeights(logistic, one, {
      ...noiseless,
      clipNorm: 1,
      learningRate: 0.5,
    });
    expect(l2(clipped.after, clipped.before)).toBeCloseTo(0.5 * 1, 5);
    const unclipped = await dpWeights(logistic, one, { ...noiseless, learningRate: 0.5 });
    expect(l2(unclipped.after, unclipped.before)).toBeGreaterThan(1e3);
  });

  it("bounds one example's influence by lr * C / (qN) when it is replaced", async () => {
    const spec: ModelSpec = { kind: 'mlp', inputDim: 30, hidden: [16], output: 'binary' };
    const opts = { ...noiseless, clipNorm: 0.5, learningRate: 0.2 };
    const withOutlier = await dpWeights(spec, outlier(train, spec), opts);
    const replaced = { ...train, features: train.features.slice(), labels: train.labels.slice() };
    replaced.features.set(train.features.subarray(30, 60), 0);
    replaced.labels[0] = train.labels[1] as number;
    const neighbour = await dpWeights(spec, replaced, opts);
    const n = train.numRows;
    // Each of the two differing rows contributes at most lr * C / (qN).
    expect(l2(withOutlier.after, neighbour.after)).toBeLessThanOrEqual((2 * 0.2 * 0.5) / n + 1e-6);
    expect(l2(withOutlier.after, neighbour.after)).toBeGreaterThan((0.2 * 0.5) / n / 2);
  });
});

describe('trainModelDpSgd noise and sampling', () => {
  it('adds z*C*N(0,1) to the clipped sum, divided by qN, drawing one sample per parameter', async () => {
    const calls: number[] = [];
    const v = seededNormal(7);
    const noise = (n: number): Float32Array => {
      calls.push(n);
      return v(n);
    };
    const zeros = (n: number): Float32Array => new Float32Array(n);
    const base = {
      epochs: 1,
      samplingRate: 1,
      clipNorm: 0.7,
      noiseMultiplier: 1.3,
      learningRate: 0.1,
    };
    const spec: ModelSpec = { kind: 'mlp', inputDim: 30, hidden: [4], output: 'binary' };
    const noisy = await dpWeights(spec, train, { ...base, normal: noise });
    const clean = await dpWeights(spec, train, { ...base, normal: zeros });
    const count = parameterCount(spec);
    expect(calls).toEqual([count]);
    // Sample k lands on flat weight k (getModelWeights order).
    const expected = v(count);
    const factor = (-0.1 * 1.3 * 0.7) / train.numRows;
    for (let k = 0; k < count; k++) {
      expect((noisy.after[k] as number) - (clean.after[k] as number)).toBeCloseTo(
        factor * (expected[k] as number),
        6,
      );
    }
  });

  it('still adds noise on empty Poisson batches, and samples rows with u < q', async () => {
    const sizes: number[] = [];
    const v = seededNormal(8);
    const n = train.numRows;
    // Step 0: nobody (all u = 0.9); steps 1, 2: rows with u < 0.3, i.e. every third row.
    let call = 0;
    const uniform = (m: number): Float64Array =>
      call++ === 0
        ? new Float64Array(m).fill(0.9)
        : Float64Array.from({ length: m }, (_, r) => (r % 3 === 0 ? 0.1 : 0.5));
    const model = buildModel(logistic);
    const before = getModelWeights(model);
    const result = await trainModelDpSgd(model, logistic, train, {
      epochs: 1,
      samplingRate: 0.3,
      clipNorm: 1,
      noiseMultiplier: 2,
      learningRate: 0.1,
      normal: v,
      uniform,
      onStep: ({ batchSize, loss, step, steps }) => {
        sizes.push(batchSize);
        if (step === 0) {
          expect(loss).toBeNaN();
          // After the empty step the weights moved by exactly the noise.
          const moved = getModelWeights(model);
          const noise = v(31);
          for (let k = 0; k < 31; k++) {
            expect((moved[k] as number) - (before[k] as number)).toBeCloseTo(
              ((-0.1 * 2 * 1) / (0.3 * n)) * (noise[k] as number),
              6,
            );
          }
        } else expect(loss).toBeGreaterThan(0);
        expect(steps).toBe(3);
      },
    });
    model.dispose();
    expect(result).toMatchObject({ steps: 3, samplingRate: 0.3, numExamples: n });
    expect(sizes).toEqual([0, Math.ceil(n / 3), Math.ceil(n / 3)]);
  });

  it('draws default noise of std z*C from the CSPRNG', async () => {
    const spec: ModelSpec = { kind: 'mlp', inputDim: 100, hidden: [50], output: 'binary' };
    const data = synthetic(20, 100, 2, 5);
    const random = vi.spyOn(Math, 'random');
    const { before, after } = await dpWeights(spec, data, {
      epochs: 1,
      samplingRate: 1,
      clipNorm: 1e-6, // the data's contribution is negligible next to the noise
      noiseMultiplier: 1e6,
      learningRate: 1,
      uniform: () => new Float64Array(20).fill(0.5),
    });
    expect(random).not.toHaveBeenCalled();
    // One step: w' - w = -(lr / qN) * (clipped sum + N(0, (zC)^2)) with zC = 1.
    const z = Array.from(after, (w, k) => (w - (before[k] as number)) * -20);
    const mean = z.reduce((a, b) => a + b, 0) / z.length;
    const variance = z.reduce((a, b) => a + (b - mean) ** 2, 0) / z.length;
    expect(z.length).toBe(5101);
    expect(Math.abs(mean)).toBeLessThan(0.06);
    expect(Math.sqrt(variance)).toBeGreaterThan(0.95);
    expect(Math.sqrt(variance)).toBeLessThan(1.05);
  });

  it('has CSPRNG samplers with the right distributions', () => {
    const u = cryptoUniform(200_001);
    expect(u.length).toBe(200_001);
    expect(u.every((x) => x >= 0 && x < 1)).toBe(true);
    expect(Math.abs(u.reduce((a, b) => a + b, 0) / u.length - 0.5)).toBeLessThan(0.005);
    const z = cryptoNormal(200_001);
    expect(z.length).toBe(200_001);
    const mean = z.reduce((a, b) => a + b, 0) / z.length;
    const variance = z.reduce((a, b) => a + (b - mean) ** 2, 0) / z.length;
    const tails = z.filter((x) => Math.abs(x) > 1.959964).length / z.length;
    expect(Math.abs(mean)).toBeLessThan(0.01);
    expect(Math.abs(variance - 1)).toBeLessThan(0.015);
    expect(Math.abs(tails - 0.05)).toBeLessThan(0.003);
    expect(z[200_000]).not.toBe(0); // odd lengths fill the last sample too
  });
});

describe('trainModelDpSgd on the breast-cancer data', () => {
  it('reaches at least 0.90 test accuracy with a logistic model at z = 1, C = 1, q = 0.1', async () => {
    const model = buildModel(logistic);
    setModelWeights(model, initialWeights(logistic, 1));
    let steps = 0;
    const result = await trainModelDpSgd(model, logistic, train, {
      epochs: 5,
      samplingRate: 0.1,
      clipNorm: 1,
      noiseMultiplier: 1,
      learningRate: 0.5,
      normal: normalStream(11),
      uniform: uniformStream(12),
      onStep: () => steps++,
    });
    const after = await evaluateModel(model, logistic, test);
    model.dispose();
    expect(result).toMatchObject({ steps: 50, samplingRate: 0.1, numExamples: 455 });
    expect(steps).toBe(50);
    expect(result.loss).toBeLessThan(0.4);
    expect(after.accuracy).toBeGreaterThanOrEqual(0.9);
  });

  it('leaves no tensors behind (sgd and adam, binary and multiclass, CSPRNG defaults)', async () => {
    const mlp: ModelSpec = { kind: 'mlp', inputDim: 5, hidden: [6, 4], output: { classes: 3 } };
    const blobs = synthetic(40, 5, 3, 6);
    const models = [buildModel(logistic), buildModel(mlp)];
    const before = tf.memory().numTensors;
    for (const optimizer of ['sgd', 'adam'] as const) {
      const opts = {
        epochs: 2,
        samplingRate: 0.25,
        clipNorm: 1,
        noiseMultiplier: 1,
        learningRate: 0.05,
        optimizer,
      };
      await trainModelDpSgd(models[0] as tf.LayersModel, logistic, train, opts);
      await trainModelDpSgd(models[1] as tf.LayersModel, mlp, blobs, opts);
      perExampleGradientNorms(models[1] as tf.LayersModel, mlp, blobs);
    }
    expect(tf.memory().numTensors).toBe(before);
    models.forEach((m) => m.dispose());
  });
});

describe('trainModelDpSgd input checks', () => {
  const base: DpSgdOptions = {
    epochs: 1,
    samplingRate: 0.5,
    clipNorm: 1,
    noiseMultiplier: 1,
    learningRate: 0.1,
  };

  it.each<[string, Partial<DpSgdOptions>]>([
    ['samplingRate 0', { samplingRate: 0 }],
    ['samplingRate above 1', { samplingRate: 1.5 }],
    ['clipNorm 0', { clipNorm: 0 }],
    ['negative noise', { noiseMultiplier: -1 }],
    ['infinite noise', { noiseMultiplier: Infinity }],
    ['fractional epochs', { epochs: 1.5 }],
    ['a short normal()', { normal: (n) => new Float32Array(n - 1) }],
    ['a short uniform()', { uniform: (n) => new Float64Array(n - 1) }],
  ])('refuses %s', async (_, bad) => {
    const model = buildModel(logistic);
    const before = tf.memory().numTensors;
    await expect(
      trainModelDpSgd(model, logistic, train, { ...base, ...bad }),
    ).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
    expect(tf.memory().numTensors).toBe(before);
    model.dispose();
  });

  it('refuses a model that is not the dense model of the spec', async () => {
    const relu: ModelSpec = { kind: 'mlp', inputDim: 30, hidden: [4], output: 'binary' };
    const model = buildModel({ ...relu, activation: 'tanh' });
    await expect(trainModelDpSgd(model, relu, train, base)).rejects.toThrow(MlError);
    await expect(trainModelDpSgd(model, logistic, train, base)).rejects.toMatchObject({
      code: 'MODEL_MISMATCH',
    });
    model.dispose();
  });
});
