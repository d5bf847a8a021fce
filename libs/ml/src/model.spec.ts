import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { MlError } from './errors';
import { buildModel, getModelWeights, setModelWeights } from './model';
import { parameterCount, weightShapes, type ModelSpec } from './model-spec';
import { initialWeights } from './weights';

beforeAll(async () => {
  tf.env().set('IS_TEST', true); // silences the "install tfjs-node" banner
  await tf.setBackend('cpu');
});

const specs: ModelSpec[] = [
  { kind: 'logistic', inputDim: 30 },
  { kind: 'logistic', inputDim: 4, output: { classes: 3 } },
  { kind: 'mlp', inputDim: 10, hidden: [8], output: 'binary' },
  { kind: 'mlp', inputDim: 16, hidden: [12, 7, 5], activation: 'tanh', output: { classes: 4 } },
];

describe('buildModel', () => {
  it.each(specs)('has weights in weightShapes order for %j', (spec) => {
    const model = buildModel(spec);
    const weights = model.getWeights();
    expect(weights.map((w) => w.shape)).toEqual(weightShapes(spec));
    expect(model.outputs[0]?.shape).toEqual([null, weightShapes(spec).at(-1)?.[0]]);
    model.dispose();
  });

  it('starts from initialWeights(spec, 0)', () => {
    const spec = specs[3] as ModelSpec;
    const model = buildModel(spec);
    expect(getModelWeights(model)).toEqual(initialWeights(spec, 0));
    model.dispose();
  });

  it('uses sigmoid for a binary output and softmax for classes', () => {
    const binary = buildModel({ kind: 'logistic', inputDim: 2 });
    const multi = buildModel({ kind: 'logistic', inputDim: 2, output: { classes: 3 } });
    const x = tf.tensor2d([[1, -2]]);
    const p = multi.predict(x) as tf.Tensor;
    expect(p.sum().arraySync()).toBeCloseTo(1, 6);
    const s = (binary.predict(x) as tf.Tensor).dataSync()[0] as number;
    expect(s).toBeGreaterThan(0);
    expect(s).toBeLessThan(1);
    tf.dispose([x, p]);
    binary.dispose();
    multi.dispose();
  });
});

describe('setModelWeights / getModelWeights', () => {
  it('round-trips a flat vector and leaves no tensors behind', () => {
    const spec = specs[2] as ModelSpec;
    const model = buildModel(spec);
    const flat = Float32Array.from({ length: parameterCount(spec) }, (_, i) => Math.sin(i));
    const before = tf.memory().numTensors;
    setModelWeights(model, flat);
    const back = getModelWeights(model);
    expect(tf.memory().numTensors).toBe(before);
    expect(back).toEqual(flat);
    expect(back).not.toBe(flat);
    model.dispose();
  });

  it('copies the values, so later changes to the caller buffer do not reach the model', () => {
    const spec = specs[0] as ModelSpec;
    const model = buildModel(spec);
    const buffer = new Float32Array(parameterCount(spec) + 10).fill(0.5);
    setModelWeights(model, buffer.subarray(5, 5 + parameterCount(spec)));
    buffer.fill(9);
    expect([...new Set(getModelWeights(model))]).toEqual([0.5]);
    const out = getModelWeights(model);
    out.fill(3);
    expect([...new Set(getModelWeights(model))]).toEqual([0.5]);
    model.dispose();
  });

  it('refuses a vector of the wrong length', () => {
    const model = buildModel(specs[0] as ModelSpec);
    expect(() => setModelWeights(model, new Float32Array(30))).toThrow(
      expect.objectContaining({
        code: 'WEIGHTS_LENGTH',
        message: expect.stringContaining(
          'weight vector has 30 values, the model has 31 parameters',
        ) as string,
      }) as MlError,
    );
    model.dispose();
  });
});
