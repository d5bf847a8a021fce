import * as tf from '@tensorflow/tfjs';
import { MlError } from './errors';
import { layerSizes, outputUnits, type ModelSpec } from './model-spec';
import { initialWeights } from './weights';

/**
 * Builds the tfjs model for a spec: a `tf.sequential` of dense layers whose weights match
 * {@link weightShapes}, initialised to `initialWeights(spec, 0)`. Not compiled (see `trainModel`).
 */
export function buildModel(spec: ModelSpec): tf.LayersModel {
  const sizes = layerSizes(spec);
  const hiddenActivation = spec.kind === 'mlp' ? (spec.activation ?? 'relu') : 'linear';
  const outputActivation = outputUnits(spec) === 1 ? 'sigmoid' : 'softmax';
  const model = tf.sequential();
  for (let i = 1; i < sizes.length; i++) {
    const last = i === sizes.length - 1;
    model.add(
      tf.layers.dense({
        ...(i === 1 ? { inputShape: [sizes[0] as number] } : {}),
        units: sizes[i] as number,
        activation: last ? outputActivation : hiddenActivation,
        useBias: true,
        // Overwritten just below; 'zeros' avoids drawing unseeded random numbers first.
        kernelInitializer: 'zeros',
        biasInitializer: 'zeros',
      }),
    );
  }
  setModelWeights(model, initialWeights(spec, 0));
  return model;
}

/** Number of parameters the model holds, in `model.getWeights()` order. */
function modelParameterCount(model: tf.LayersModel): number {
  return model.weights.reduce(
    (sum, w) => sum + w.shape.reduce((a: number, b) => a * (b ?? 0), 1),
    0,
  );
}

/**
 * Loads a flat weight vector (in {@link weightShapes} order) into the model. Copies the values: the cpu
 * backend would otherwise keep views of the caller's buffer. Throws MlError('WEIGHTS_LENGTH').
 */
export function setModelWeights(model: tf.LayersModel, flat: Float32Array): void {
  const expected = modelParameterCount(model);
  if (flat.length !== expected) {
    throw new MlError(
      'WEIGHTS_LENGTH',
      `weight vector has ${flat.length} values, the model has ${expected} parameters ` +
        '(was it produced for a different model spec?)',
    );
  }
  let offset = 0;
  const tensors = model.weights.map((w) => {
    const shape = w.shape as number[];
    const size = shape.reduce((a, b) => a * b, 1);
    const t = tf.tensor(flat.slice(offset, offset + size), shape, 'float32');
    offset += size;
    return t;
  });
  try {
    model.setWeights(tensors);
  } finally {
    tf.dispose(tensors);
  }
}

/** One flat copy of the model's weights, in {@link weightShapes} order. */
export function getModelWeights(model: tf.LayersModel): Float32Array {
  const flat = new Float32Array(modelParameterCount(model));
  let offset = 0;
  // getWeights() returns the variables themselves: read them, never dispose them.
  for (const t of model.getWeights()) {
    const values = t.dataSync();
    flat.set(values, offset);
    offset += values.length;
  }
  return flat;
}
