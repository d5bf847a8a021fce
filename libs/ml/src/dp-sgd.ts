import { randomFillSync } from 'node:crypto';
import * as tf from '@tensorflow/tfjs';
import type { Dataset } from './dataset';
import { checkDataForSpec } from './train';
import { MlError } from './errors';
import { layerSizes, outputUnits, weightShapes, type ModelSpec } from './model-spec';

/** Record-level DP-SGD settings for one call of {@link trainModelDpSgd} (DESIGN.md section 6). */
export interface DpSgdOptions {
  /** Local epochs; the number of steps is `epochs * round(1 / samplingRate)`. */
  epochs: number;
  /** q in (0, 1]: each row enters each step's batch independently with probability q (Poisson sampling). */
  samplingRate: number;
  learningRate: number;
  /** C: per-example L2 clip of the whole gradient (all layers together). */
  clipNorm: number;
  /** z: Gaussian noise of std z*C is added to the sum of clipped per-example gradients each step. */
  noiseMultiplier: number;
  /** Default 'sgd'. A fresh optimizer is created per call, as in FedAvg's local update. */
  optimizer?: 'sgd' | 'adam';
  /** Standard-normal samples for the noise (default: CSPRNG-based, from node:crypto). Never Math.random or tf.random*. */
  normal?: (n: number) => Float32Array;
  /** Uniform [0,1) samples for Poisson sampling (default: CSPRNG from node:crypto). */
  uniform?: (n: number) => Float64Array;
  onStep?: (info: { step: number; steps: number; batchSize: number; loss: number }) => void;
}

/** What {@link trainModelDpSgd} ran: the parameters an RDP accountant needs, and the training loss. */
export interface DpSgdResult {
  /**
   * Mean per-example training loss over the rows sampled in the last epoch (NaN if none were). It is
   * computed from the private data without noise: releasing it is not covered by the DP guarantee.
   */
  loss: number;
  numExamples: number;
  steps: number;
  samplingRate: number;
}

// ------------------------------------------------------------------------------------------------
// CSPRNG defaults

const CHUNK = 1 << 16;
const TWO_POW_26 = 67_108_864;
const TWO_POW_53 = 9_007_199_254_740_992;

/** Uniform [0, 1) doubles with 53 random bits each, from node:crypto. */
export function cryptoUniform(n: number): Float64Array {
  const out = new Float64Array(n);
  const words = new Uint32Array(2 * Math.min(n, CHUNK));
  for (let start = 0; start < n; start += CHUNK) {
    const count = Math.min(CHUNK, n - start);
    randomFillSync(words, 0, 2 * count);
    for (let i = 0; i < count; i++) {
      const hi = (words[2 * i] as number) >>> 5; // 27 bits
      const lo = (words[2 * i + 1] as number) >>> 6; // 26 bits
      out[start + i] = (hi * TWO_POW_26 + lo) / TWO_POW_53;
    }
  }
  return out;
}

/**
 * Standard-normal float32 samples from node:crypto uniforms, by Marsaglia's polar method (about twice
 * as fast as Box-Muller: no trigonometry; 1.27 uniforms per sample).
 */
export function cryptoNormal(n: number): Float32Array {
  const out = new Float32Array(n);
  let u: Float64Array = new Float64Array(0);
  let j = 0;
  for (let i = 0; i < n;) {
    if (j + 2 > u.length) {
      // Enough for the rest with high probability; refilled if the rejections run long.
      u = cryptoUniform(Math.min(2 * CHUNK, 2 * Math.ceil(0.65 * (n - i)) + 64));
      j = 0;
    }
    const a = 2 * (u[j] as number) - 1;
    const b = 2 * (u[j + 1] as number) - 1;
    j += 2;
    const s = a * a + b * b;
    if (s >= 1 || s === 0) continue;
    const m = Math.sqrt((-2 * Math.log(s)) / s);
    out[i++] = a * m;
    if (i < n) out[i++] = b * m;
  }
  return out;
}

// ------------------------------------------------------------------------------------------------
// Checks (the same rules as trainModel's)

const bad = (what: string): never => {
  throw new MlError('INVALID_ARGUMENT', `DP-SGD options: ${what}`);
};

function checkOptions(opts: DpSgdOptions): void {
  if (!Number.isInteger(opts.epochs) || opts.epochs < 1) {
    bad(`epochs must be an integer >= 1, got ${opts.epochs}`);
  }
  const q = opts.samplingRate;
  if (!(q > 0 && q <= 1)) bad(`samplingRate must be in (0, 1], got ${q}`);
  if (!(opts.learningRate > 0) || !Number.isFinite(opts.learningRate)) {
    bad(`learningRate must be a positive number, got ${opts.learningRate}`);
  }
  if (!(opts.clipNorm > 0) || !Number.isFinite(opts.clipNorm)) {
    bad(`clipNorm must be a positive number, got ${opts.clipNorm}`);
  }
  if (!(opts.noiseMultiplier >= 0) || !Number.isFinite(opts.noiseMultiplier)) {
    bad(`noiseMultiplier must be a number >= 0, got ${opts.noiseMultiplier}`);
  }
  const o = opts.optimizer;
  if (o !== undefined && o !== 'sgd' && o !== 'adam') {
    bad(`optimizer must be "sgd" or "adam", got ${String(o)}`);
  }
}

// ------------------------------------------------------------------------------------------------
// Dense forward and backward pass by hand

/** The model's dense layers as tf variables, with the activations the spec gives them. */
interface DenseStack {
  kernels: tf.Variable[];
  biases: tf.Variable[];
  hidden: 'relu' | 'tanh';
  binary: boolean;
  classes: number;
}

/**
 * Reads the variables of a model built by `buildModel(spec)`. The hand-written backward pass below
 * assumes exactly those layers, so the weight shapes and activations are checked against the spec.
 */
function denseStack(model: tf.LayersModel, spec: ModelSpec): DenseStack {
  const actual = JSON.stringify(model.weights.map((w) => w.shape));
  const expected = JSON.stringify(weightShapes(spec));
  const binary = outputUnits(spec) === 1;
  const hidden = spec.kind === 'mlp' ? (spec.activation ?? 'relu') : 'relu';
  const activations = model.layers.map(
    (l) => (l.getConfig() as { activation?: unknown }).activation,
  );
  const expectedActivations = [
    ...Array<string>(layerSizes(spec).length - 2).fill(hidden),
    binary ? 'sigmoid' : 'softmax',
  ];
  if (
    actual !== expected ||
    JSON.stringify(activations) !== JSON.stringify(expectedActivations) ||
    model.trainableWeights.length !== model.weights.length
  ) {
    throw new MlError(
      'MODEL_MISMATCH',
      `DP-SGD needs the dense model that buildModel(spec) builds: weight shapes ` +
        `${expected.slice(1, -1)} and activations ${expectedActivations.join(', ')}; the model has ` +
        `${actual.slice(1, -1)} and ${activations.map(String).join(', ')}`,
    );
  }
  // LayerVariable.read() returns the underlying tf.Variable itself, registered under the same name.
  const vars = model.weights.map((w) => w.read() as tf.Variable);
  return {
    kernels: vars.filter((_, i) => i % 2 === 0),
    biases: vars.filter((_, i) => i % 2 === 1),
    hidden,
    binary,
    classes: outputUnits(spec),
  };
}

/**
 * For each dense layer l: its input A_l (batch x in) and the gradient D_l (batch x out) of each
 * example's own loss with respect to the layer's pre-activation, plus each example's loss. Example
 * i's gradient is then a_{l,i} d_{l,i}^T for the kernel and d_{l,i} for the bias. Call inside tidy.
 */
function denseBackprop(
  stack: DenseStack,
  x: tf.Tensor2D,
  target: tf.Tensor2D,
): { inputs: tf.Tensor2D[]; deltas: tf.Tensor2D[]; losses: tf.Tensor1D } {
  const layers = stack.kernels.length;
  const inputs: tf.Tensor2D[] = [];
  const slopes: tf.Tensor2D[] = []; // activation derivatives of the hidden layers
  let a = x;
  let logits: tf.Tensor2D | undefined;
  for (let l = 0; l < layers; l++) {
    inputs.push(a);
    const z = tf.add(tf.matMul(a, stack.kernels[l] as tf.Variable), stack.biases[l] as tf.Variable);
    if (l === layers - 1) {
      logits = z as tf.Tensor2D;
    } else if (stack.hidden === 'relu') {
      a = tf.relu(z) as tf.Tensor2D;
      slopes.push(tf.step(z) as tf.Tensor2D); // tfjs's own relu gradient: 0 at z = 0
    } else {
      a = tf.tanh(z) as tf.Tensor2D;
      slopes.push(tf.sub(1, tf.square(a)));
    }
  }
  const z = logits as tf.Tensor2D;
  let delta: tf.Tensor2D;
  let losses: tf.Tensor1D;
  if (stack.binary) {
    // Sigmoid + binary cross-entropy: dL/dz = p - y; the loss in its overflow-free form.
    delta = tf.sub(tf.sigmoid(z), target);
    losses = tf
      .add(tf.sub(tf.relu(z), tf.mul(z, target)), tf.log1p(tf.exp(tf.neg(tf.abs(z)))))
      .reshape([-1]);
  } else {
    // Softmax + categorical cross-entropy on one-hot targets: dL/dz = p - onehot(y).
    const logp = tf.logSoftmax(z);
    delta = tf.sub(tf.exp(logp), target);
    losses = tf.neg(tf.sum(tf.mul(target, logp), 1)) as tf.Tensor1D;
  }
  const deltas: tf.Tensor2D[] = new Array<tf.Tensor2D>(layers);
  deltas[layers - 1] = delta;
  for (let l = layers - 1; l > 0; l--) {
    // Transpose first: on tfjs-backend-wasm a matMul with a transposed operand is ~10x slower.
    const back = tf.matMul(delta, tf.transpose(stack.kernels[l] as tf.Variable));
    delta = tf.mul(back, slopes[l - 1] as tf.Tensor2D);
    deltas[l - 1] = delta;
  }
  return { inputs, deltas, losses };
}

/** Per-example squared L2 norms of the full gradient: sum_l (|a_l|^2 + 1) |d_l|^2 (kernel + bias). */
function squaredNorms(inputs: tf.Tensor2D[], deltas: tf.Tensor2D[]): tf.Tensor1D {
  let total: tf.Tensor1D | undefined;
  inputs.forEach((a, l) => {
    const d = deltas[l] as tf.Tensor2D;
    const term: tf.Tensor1D = tf.mul(tf.add(tf.sum(tf.square(a), 1), 1), tf.sum(tf.square(d), 1));
    total = total === undefined ? term : tf.add<tf.Tensor1D>(total, term);
  });
  return total as tf.Tensor1D;
}

/** Copies rows into a features tensor [b, d] and a target tensor ([b, 1] labels or [b, k] one-hot). */
function batchTensors(
  data: Dataset,
  rows: number[],
  stack: DenseStack,
): { x: tf.Tensor2D; target: tf.Tensor2D } {
  const d = data.numFeatures;
  const width = stack.binary ? 1 : stack.classes;
  // Fresh buffers per batch: the cpu backend keeps the array it is given instead of copying it.
  const xs = new Float32Array(rows.length * d);
  const ys = new Float32Array(rows.length * width);
  rows.forEach((r, i) => {
    xs.set(data.features.subarray(r * d, (r + 1) * d), i * d);
    const label = data.labels[r] as number;
    if (stack.binary) ys[i] = label;
    else ys[i * width + label] = 1;
  });
  return {
    x: tf.tensor2d(xs, [rows.length, d]),
    target: tf.tensor2d(ys, [rows.length, width]),
  };
}

/**
 * Each row's L2 norm of its own loss gradient over all weights (kernels and biases), computed without
 * per-example gradients (ghost norms). For tests and diagnostics: the norms are not private.
 */
export function perExampleGradientNorms(
  model: tf.LayersModel,
  spec: ModelSpec,
  data: Dataset,
): Float32Array {
  checkDataForSpec(spec, data);
  const stack = denseStack(model, spec);
  const rows = Array.from({ length: data.numRows }, (_, i) => i);
  return tf.tidy(() => {
    const { x, target } = batchTensors(data, rows, stack);
    const { inputs, deltas } = denseBackprop(stack, x, target);
    return tf.sqrt(squaredNorms(inputs, deltas)).dataSync() as Float32Array;
  });
}

// ------------------------------------------------------------------------------------------------
// Training

const yieldToEventLoop = (): Promise<void> =>
  new Promise((resolve) => {
    if (typeof setImmediate === 'function') setImmediate(resolve);
    else setTimeout(resolve, 0);
  });

const YIELD_EVERY_MS = 20;

/**
 * Trains the model in place with record-level DP-SGD (Abadi et al. 2016): Poisson-sampled batches,
 * each example's whole gradient clipped to `clipNorm`, Gaussian noise of std `noiseMultiplier *
 * clipNorm` added to the clipped sum every step (empty batches included), divided by the expected
 * batch size q*N as Opacus does. Dense layers only: per-example norms come from the ghost-norm identity
 * and the clipped sum from one matmul per layer, never one backward pass per example. Account the
 * release as a subsampled Gaussian with the returned `samplingRate`, `steps` and the noise multiplier.
 */
export async function trainModelDpSgd(
  model: tf.LayersModel,
  spec: ModelSpec,
  data: Dataset,
  opts: DpSgdOptions,
): Promise<DpSgdResult> {
  checkOptions(opts);
  checkDataForSpec(spec, data);
  const stack = denseStack(model, spec);
  const normal = opts.normal ?? cryptoNormal;
  const uniform = opts.uniform ?? cryptoUniform;
  const n = data.numRows;
  const q = opts.samplingRate;
  const clip = opts.clipNorm;
  const sigma = opts.noiseMultiplier * clip;
  const scale = 1 / (q * n);
  const noiseScale = sigma * scale;
  const stepsPerEpoch = Math.round(1 / q);
  const steps = opts.epochs * stepsPerEpoch;
  // In model.getWeights() order (kernel, bias per layer), so noise sample k lands on flat weight k.
  const vars = stack.kernels.flatMap((k, l) => [k, stack.biases[l] as tf.Variable]);
  const totalParams = vars.reduce((sum, v) => sum + v.size, 0);

  /** Noise of std sigma / qN, one tensor per variable (in `vars` order), from one call of `normal`. */
  const noiseTensors = (): tf.Tensor[] => {
    const samples = normal(totalParams);
    if (!(samples instanceof Float32Array) || samples.length !== totalParams) {
      bad(`normal(${totalParams}) must return a Float32Array of ${totalParams} samples`);
    }
    let offset = 0;
    return vars.map((v) => {
      const part = new Float32Array(v.size);
      for (let k = 0; k < part.length; k++) part[k] = (samples[offset + k] as number) * noiseScale;
      offset += v.size;
      return tf.tensor(part, v.shape);
    });
  };

  const optimizer =
    (opts.optimizer ?? 'sgd') === 'adam'
      ? tf.train.adam(opts.learningRate)
      : tf.train.sgd(opts.learningRate);
  let epochLossSum = 0;
  let epochCount = 0;
  let lastYield = Date.now();
  try {
    for (let step = 0; step < steps; step++) {
      if (step % stepsPerEpoch === 0) {
        epochLossSum = 0;
        epochCount = 0;
      }
      const u = uniform(n);
      if (u.length !== n) bad(`uniform(${n}) must return ${n} samples, got ${u.length}`);
      const rows: number[] = [];
      for (let r = 0; r < n; r++) if ((u[r] as number) < q) rows.push(r);

      const { grads, lossSum } = tf.tidy(() => {
        // (sum of clipped gradients + noise) / qN, in `vars` order. The 1/qN is folded into the clip
        // factors and the noise scale, which saves a pass over every parameter.
        const noise = sigma > 0 ? noiseTensors() : undefined;
        let updates: tf.Tensor[];
        let total: tf.Scalar | undefined;
        if (rows.length === 0) {
          updates = noise ?? vars.map((v) => tf.zeros(v.shape));
        } else {
          const { x, target } = batchTensors(data, rows, stack);
          const { inputs, deltas, losses } = denseBackprop(stack, x, target);
          const norms = tf.sqrt(squaredNorms(inputs, deltas));
          // c_i = min(1, C / |g_i|); a zero gradient keeps c_i = 1.
          const factors = tf
            .mul(tf.minimum(1, tf.div(clip, tf.maximum(norms, 1e-30))), scale)
            .reshape([-1, 1]);
          const scaled = deltas.map((d) => tf.mul(d, factors));
          const sums = scaled.flatMap((d, l) => [
            tf.matMul(tf.transpose(inputs[l] as tf.Tensor2D), d), // kernel: A_l^T diag(c) D_l
            tf.sum(d, 0), // bias: sum_i c_i d_i
          ]);
          updates =
            noise === undefined ? sums : sums.map((g, i) => tf.add(g, noise[i] as tf.Tensor));
          total = tf.sum<tf.Scalar>(losses);
        }
        return { grads: updates, lossSum: total ?? tf.scalar(NaN) };
      });
      let batchLoss: number;
      try {
        optimizer.applyGradients(
          vars.map((v, i) => ({ name: v.name, tensor: grads[i] as tf.Tensor })),
        );
        batchLoss = ((await lossSum.data())[0] as number) / rows.length;
      } finally {
        tf.dispose([...grads, lossSum]);
      }
      if (rows.length > 0) {
        epochLossSum += batchLoss * rows.length;
        epochCount += rows.length;
      }
      opts.onStep?.({ step, steps, batchSize: rows.length, loss: batchLoss });
      if (Date.now() - lastYield >= YIELD_EVERY_MS) {
        await yieldToEventLoop();
        lastYield = Date.now();
      }
    }
  } finally {
    optimizer.dispose();
  }
  return {
    loss: epochCount > 0 ? epochLossSum / epochCount : NaN,
    numExamples: n,
    steps,
    samplingRate: q,
  };
}
