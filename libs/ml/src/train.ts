import * as tf from '@tensorflow/tfjs';
import { checkDataset, type Dataset } from './dataset';
import { MlError } from './errors';
import { binaryMetrics, multiclassMetrics, type Metrics } from './metrics';
import { outputUnits, weightShapes, type ModelSpec } from './model-spec';
import { permutation, seededRandom } from './random';

/** Local training settings for one call of {@link trainModel}. */
export interface TrainOptions {
  epochs: number;
  batchSize: number;
  learningRate: number;
  /** Default 'adam'. A fresh optimizer is created per call, as in FedAvg's local update. */
  optimizer?: 'sgd' | 'adam';
  /** Seed of the per-epoch row shuffle; default 0. */
  shuffleSeed?: number;
  /**
   * FedProx (Li et al. 2020): adds mu/2 * ||w - w_global||^2 to the loss, with w_global the weights
   * the model holds when training starts, so each gradient gains mu * (w - w_global). 0 or absent
   * trains exactly as without it. The reported loss is the data loss alone.
   */
  proximalMu?: number;
  onBatchEnd?: (info: {
    epoch: number;
    batch: number;
    batchesPerEpoch: number;
    loss: number;
  }) => void;
  onEpochEnd?: (info: { epoch: number; epochs: number; loss: number }) => void;
}

/** Let timers and sockets run between batches: tfjs on cpu/wasm resolves its promises as microtasks. */
const yieldToEventLoop = (): Promise<void> =>
  new Promise((resolve) => {
    if (typeof setImmediate === 'function') setImmediate(resolve);
    else setTimeout(resolve, 0);
  });

const YIELD_EVERY_MS = 20;

/** Checks that the data fits the spec: feature count and labels valid for the output layer. */
export function checkDataForSpec(spec: ModelSpec, data: Dataset): void {
  checkDataset(data);
  if (data.numFeatures !== spec.inputDim) {
    throw new MlError(
      'DATASET',
      `the data has ${data.numFeatures} features, the model expects inputDim ${spec.inputDim}`,
    );
  }
  if (data.numRows === 0) throw new MlError('DATASET', 'the dataset has no rows');
  const units = outputUnits(spec);
  const classes = units === 1 ? 2 : units;
  for (let r = 0; r < data.numRows; r++) {
    const label = data.labels[r] as number;
    if (!Number.isInteger(label) || label < 0 || label >= classes) {
      throw new MlError(
        'DATASET',
        `row ${r + 1}: label ${data.labels[r]} is not a class of this model (expected 0..${classes - 1}` +
          `${units === 1 ? ' for a binary model' : ''})`,
      );
    }
  }
}

/** Checks that the model was built for the spec (same weight shapes), so the right loss is used. */
export function checkModelForSpec(model: tf.LayersModel, spec: ModelSpec): void {
  const actual = JSON.stringify(model.weights.map((w) => w.shape));
  const expected = JSON.stringify(weightShapes(spec));
  if (actual !== expected) {
    throw new MlError(
      'MODEL_MISMATCH',
      `the model does not match the spec: its weight shapes are ${actual.slice(1, -1)}, ` +
        `the spec gives ${expected.slice(1, -1)} (build the model with buildModel(spec))`,
    );
  }
}

function checkTrainOptions(opts: TrainOptions): void {
  const bad = (what: string): never => {
    throw new MlError('INVALID_ARGUMENT', `training options: ${what}`);
  };
  if (!Number.isInteger(opts.epochs) || opts.epochs < 1)
    bad(`epochs must be an integer >= 1, got ${opts.epochs}`);
  if (!Number.isInteger(opts.batchSize) || opts.batchSize < 1) {
    bad(`batchSize must be an integer >= 1, got ${opts.batchSize}`);
  }
  if (!(opts.learningRate > 0) || !Number.isFinite(opts.learningRate)) {
    bad(`learningRate must be a positive number, got ${opts.learningRate}`);
  }
  const o = opts.optimizer;
  if (o !== undefined && o !== 'sgd' && o !== 'adam')
    bad(`optimizer must be "sgd" or "adam", got ${String(o)}`);
  const mu = opts.proximalMu;
  if (mu !== undefined && !(typeof mu === 'number' && mu >= 0 && Number.isFinite(mu))) {
    bad(`proximalMu must be a finite number >= 0, got ${String(mu)}`);
  }
}

/** Copies the given rows into a new features tensor [rows, d] and labels tensor [rows, 1]. */
function batchTensors(data: Dataset, rows: number[]): { x: tf.Tensor2D; y: tf.Tensor2D } {
  const d = data.numFeatures;
  // Fresh buffers per batch: the cpu backend keeps the array it is given instead of copying it.
  const xs = new Float32Array(rows.length * d);
  const ys = new Float32Array(rows.length);
  rows.forEach((r, i) => {
    xs.set(data.features.subarray(r * d, (r + 1) * d), i * d);
    ys[i] = data.labels[r] as number;
  });
  return { x: tf.tensor2d(xs, [rows.length, d]), y: tf.tensor2d(ys, [rows.length, 1]) };
}

/**
 * Compiles the model with the loss matching the spec (binary or sparse categorical cross-entropy) and
 * a fresh optimizer, and trains it in place on shuffled mini-batches. Returns the mean training loss
 * of the last epoch and the number of rows (the FedAvg weight). Leaves no tensors behind.
 */
export async function trainModel(
  model: tf.LayersModel,
  spec: ModelSpec,
  data: Dataset,
  opts: TrainOptions,
): Promise<{ loss: number; numExamples: number }> {
  checkModelForSpec(model, spec);
  checkDataForSpec(spec, data);
  checkTrainOptions(opts);
  const optimizer =
    (opts.optimizer ?? 'adam') === 'adam'
      ? tf.train.adam(opts.learningRate)
      : tf.train.sgd(opts.learningRate);
  const binary = outputUnits(spec) === 1;
  model.compile({
    optimizer,
    loss: binary ? 'binaryCrossentropy' : 'sparseCategoricalCrossentropy',
  });
  const rng = seededRandom(opts.shuffleSeed ?? 0);
  const n = data.numRows;
  const batchesPerEpoch = Math.ceil(n / opts.batchSize);
  let epochLoss = NaN;
  let lastYield = Date.now();
  const proximal = opts.proximalMu
    ? proximalTrainer(model, spec, optimizer, opts.proximalMu)
    : null;
  try {
    for (let epoch = 0; epoch < opts.epochs; epoch++) {
      const order = permutation(n, rng);
      let lossSum = 0;
      for (let batch = 0; batch < batchesPerEpoch; batch++) {
        const rows = order.slice(batch * opts.batchSize, (batch + 1) * opts.batchSize);
        const { x, y } = batchTensors(data, rows);
        let loss: number;
        try {
          if (proximal) {
            loss = await proximal.step(x, y);
          } else {
            const result = await model.trainOnBatch(x, y);
            loss = Array.isArray(result) ? (result[0] as number) : result;
          }
        } finally {
          tf.dispose([x, y]);
        }
        lossSum += loss * rows.length;
        opts.onBatchEnd?.({ epoch, batch, batchesPerEpoch, loss });
        if (Date.now() - lastYield >= YIELD_EVERY_MS) {
          await yieldToEventLoop();
          lastYield = Date.now();
        }
      }
      epochLoss = lossSum / n;
      opts.onEpochEnd?.({ epoch, epochs: opts.epochs, loss: epochLoss });
    }
  } finally {
    proximal?.dispose();
    optimizer.dispose();
  }
  return { loss: epochLoss, numExamples: n };
}

/**
 * One optimizer step on the compiled model's loss plus FedProx's proximal term, for
 * {@link trainModel}: `trainOnBatch` offers no way to change the gradient. The centre is a copy of
 * the weights at creation (the round's global model).
 */
function proximalTrainer(
  model: tf.LayersModel,
  spec: ModelSpec,
  optimizer: tf.Optimizer,
  mu: number,
): { step(x: tf.Tensor2D, y: tf.Tensor2D): Promise<number>; dispose(): void } {
  // LayerVariable.read() is the tf.Variable the optimizer updates (typed as a plain Tensor).
  const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const centres = vars.map((v) => v.clone());
  const units = outputUnits(spec);
  // The losses `trainModel` compiles: binary or sparse categorical cross-entropy, batch mean.
  const dataLoss = (x: tf.Tensor2D, y: tf.Tensor2D): tf.Scalar => {
    const p = model.apply(x, { training: true }) as tf.Tensor2D;
    const perRow =
      units === 1
        ? tf.metrics.binaryCrossentropy(y, p)
        : tf.metrics.categoricalCrossentropy(
            tf.oneHot(tf.cast(tf.reshape(y, [-1]), 'int32'), units),
            p,
          );
    return tf.mean(perRow);
  };
  return {
    async step(x, y) {
      const { value, grads } = tf.tidy(() => {
        const { value, grads } = tf.variableGrads(() => dataLoss(x, y), vars);
        const adjusted: tf.NamedTensorMap = {};
        vars.forEach((v, i) => {
          adjusted[v.name] = tf.add(grads[v.name]!, tf.mul(tf.sub(v, centres[i]!), mu));
        });
        return { value, grads: adjusted };
      });
      try {
        optimizer.applyGradients(grads);
        return (await value.data())[0]!;
      } finally {
        tf.dispose([value, ...Object.values(grads)]);
      }
    },
    dispose: () => tf.dispose(centres),
  };
}

/** Model outputs for every row, flattened row-major (numRows x output units), predicted in chunks. */
export function predictScores(
  model: tf.LayersModel,
  data: Pick<Dataset, 'features' | 'numRows' | 'numFeatures'>,
  chunkRows = 4096,
): Float32Array {
  const units = model.outputs[0]?.shape[1] ?? 1;
  const out = new Float32Array(data.numRows * units);
  const d = data.numFeatures;
  for (let start = 0; start < data.numRows; start += chunkRows) {
    const rows = Math.min(chunkRows, data.numRows - start);
    tf.tidy(() => {
      const x = tf.tensor2d(data.features.slice(start * d, (start + rows) * d), [rows, d]);
      out.set((model.predict(x) as tf.Tensor).dataSync(), start * units);
    });
  }
  return out;
}

/** Loss, accuracy, AUC (binary only) and F1 of the model on a dataset, computed with the pure metrics. */
export async function evaluateModel(
  model: tf.LayersModel,
  spec: ModelSpec,
  data: Dataset,
): Promise<Metrics> {
  checkModelForSpec(model, spec);
  checkDataForSpec(spec, data);
  const units = outputUnits(spec);
  const scores = predictScores(model, data);
  await yieldToEventLoop();
  const metrics =
    units === 1
      ? binaryMetrics(scores, data.labels)
      : multiclassMetrics(scores, data.labels, units);
  return { ...metrics, numExamples: data.numRows };
}
