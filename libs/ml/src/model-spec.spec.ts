import { describe, expect, it } from 'vitest';
import { MlError } from './errors';
import { parameterCount, parseModelSpec, weightShapes, type ModelSpec } from './model-spec';

function specError(x: unknown): MlError {
  try {
    parseModelSpec(x);
  } catch (err) {
    expect(err).toBeInstanceOf(MlError);
    expect((err as MlError).code).toBe('INVALID_MODEL_SPEC');
    return err as MlError;
  }
  throw new Error(`parseModelSpec accepted ${JSON.stringify(x)}`);
}

describe('parseModelSpec', () => {
  it('accepts logistic and mlp specs and returns them unchanged', () => {
    const specs: ModelSpec[] = [
      { kind: 'logistic', inputDim: 30 },
      { kind: 'logistic', inputDim: 4, output: { classes: 3 } },
      {
        kind: 'mlp',
        inputDim: 784,
        hidden: [128, 64],
        activation: 'tanh',
        output: { classes: 10 },
      },
      { kind: 'mlp', inputDim: 30, hidden: [16], output: 'binary' },
    ];
    for (const spec of specs)
      expect(parseModelSpec(JSON.parse(JSON.stringify(spec)))).toEqual(spec);
  });

  it.each([
    [null, 'spec: must be an object with a "kind" field, got null'],
    [{ kind: 'cnn', inputDim: 3 }, 'spec.kind: must be "logistic" or "mlp", got "cnn"'],
    [{ kind: 'logistic' }, 'spec.inputDim: must be an integer from 1 to 100000, got nothing'],
    [
      { kind: 'logistic', inputDim: 0 },
      'spec.inputDim: must be an integer from 1 to 100000, got 0',
    ],
    [
      { kind: 'logistic', inputDim: 2.5 },
      'spec.inputDim: must be an integer from 1 to 100000, got 2.5',
    ],
    [{ kind: 'logistic', inputDim: 100_001 }, 'spec.inputDim: must be an integer from 1 to 100000'],
    [
      { kind: 'logistic', inputDim: 3, hiden: [2] },
      'spec.hiden: unknown field (allowed: kind, inputDim, output)',
    ],
    [
      { kind: 'logistic', inputDim: 3, output: 'multi' },
      'spec.output: must be "binary" or { "classes": n }',
    ],
    [
      { kind: 'logistic', inputDim: 3, output: { classes: 1 } },
      'spec.output.classes: must be an integer from 2 to 10000, got 1',
    ],
    [
      { kind: 'mlp', inputDim: 3, hidden: [], output: 'binary' },
      'for no hidden layer use kind "logistic"',
    ],
    [
      { kind: 'mlp', inputDim: 3, hidden: new Array(17).fill(4), output: 'binary' },
      'spec.hidden: must be an array of 1 to 16 layer sizes',
    ],
    [
      { kind: 'mlp', inputDim: 3, hidden: [8, 'x'], output: 'binary' },
      'spec.hidden[1]: must be an integer from 1 to 100000, got "x"',
    ],
    [
      { kind: 'mlp', inputDim: 3, hidden: [8], output: 'binary', activation: 'gelu' },
      'spec.activation: must be "relu" or "tanh", got "gelu"',
    ],
    [{ kind: 'mlp', inputDim: 3, hidden: [8] }, 'spec.output: is required for an mlp'],
    [
      { kind: 'mlp', inputDim: 100_000, hidden: [100_000], output: 'binary' },
      'more than the limit of 100000000',
    ],
  ])('rejects %j with an actionable message', (input, message) => {
    expect(specError(input).message).toContain(message);
  });
});

describe('weightShapes and parameterCount', () => {
  it('lists kernel then bias for each dense layer, input to output', () => {
    expect(weightShapes({ kind: 'logistic', inputDim: 30 })).toEqual([[30, 1], [1]]);
    expect(
      weightShapes({ kind: 'mlp', inputDim: 784, hidden: [128, 64], output: { classes: 10 } }),
    ).toEqual([[784, 128], [128], [128, 64], [64], [64, 10], [10]]);
  });

  it('counts every weight', () => {
    expect(parameterCount({ kind: 'logistic', inputDim: 30 })).toBe(31);
    expect(
      parameterCount({ kind: 'mlp', inputDim: 784, hidden: [128], output: { classes: 10 } }),
    ).toBe(784 * 128 + 128 + 128 * 10 + 10);
  });
});
