import { MlError } from './errors';

/** The output layer: one sigmoid unit for 'binary', a softmax over `classes` units otherwise. */
export type OutputSpec = 'binary' | { classes: number };

/** A model every site builds identically: a single dense layer ('logistic') or a dense MLP. */
export type ModelSpec =
  | { kind: 'logistic'; inputDim: number; output?: OutputSpec }
  | {
      kind: 'mlp';
      inputDim: number;
      hidden: number[];
      activation?: 'relu' | 'tanh';
      output: OutputSpec;
    };

/** Limits enforced by {@link parseModelSpec}. */
export const MODEL_SPEC_LIMITS = {
  maxInputDim: 100_000,
  maxHiddenUnits: 100_000,
  maxHiddenLayers: 16,
  minClasses: 2,
  maxClasses: 10_000,
  /** 100M float32 parameters = 400 MB per copy of the weights. */
  maxParameters: 100_000_000,
} as const;

const fail = (path: string, what: string): never => {
  throw new MlError('INVALID_MODEL_SPEC', `${path}: ${what}`);
};

const show = (x: unknown): string => {
  if (x === undefined) return 'nothing';
  if (typeof x === 'bigint') return `${x}n`;
  try {
    return JSON.stringify(x) ?? typeof x; // functions and symbols stringify to undefined
  } catch {
    return typeof x; // cyclic
  }
};

const isRecord = (x: unknown): x is Record<string, unknown> =>
  typeof x === 'object' && x !== null && !Array.isArray(x);

function checkKeys(path: string, obj: Record<string, unknown>, allowed: readonly string[]): void {
  for (const key of Object.keys(obj)) {
    if (!allowed.includes(key)) {
      fail(`${path}.${key}`, `unknown field (allowed: ${allowed.join(', ')})`);
    }
  }
}

function intInRange(path: string, x: unknown, min: number, max: number): number {
  if (typeof x !== 'number' || !Number.isInteger(x) || x < min || x > max) {
    return fail(path, `must be an integer from ${min} to ${max}, got ${show(x)}`);
  }
  return x;
}

function parseOutput(path: string, x: unknown): OutputSpec {
  if (x === 'binary') return 'binary';
  if (isRecord(x)) {
    checkKeys(path, x, ['classes']);
    const { minClasses, maxClasses } = MODEL_SPEC_LIMITS;
    return { classes: intInRange(`${path}.classes`, x.classes, minClasses, maxClasses) };
  }
  return fail(path, `must be "binary" or { "classes": n } with n >= 2, got ${show(x)}`);
}

/**
 * Validates untrusted input (JSON from a config file or the wire) as a {@link ModelSpec}; throws
 * MlError('INVALID_MODEL_SPEC', '<path>: <what is wrong>') naming the first problem found.
 */
export function parseModelSpec(x: unknown): ModelSpec {
  if (!isRecord(x)) return fail('spec', `must be an object with a "kind" field, got ${show(x)}`);
  const { maxInputDim, maxHiddenUnits, maxHiddenLayers, maxParameters } = MODEL_SPEC_LIMITS;
  let spec: ModelSpec;
  switch (x.kind) {
    case 'logistic': {
      checkKeys('spec', x, ['kind', 'inputDim', 'output']);
      const inputDim = intInRange('spec.inputDim', x.inputDim, 1, maxInputDim);
      spec =
        x.output === undefined
          ? { kind: 'logistic', inputDim }
          : { kind: 'logistic', inputDim, output: parseOutput('spec.output', x.output) };
      break;
    }
    case 'mlp': {
      checkKeys('spec', x, ['kind', 'inputDim', 'hidden', 'activation', 'output']);
      const inputDim = intInRange('spec.inputDim', x.inputDim, 1, maxInputDim);
      if (!Array.isArray(x.hidden) || x.hidden.length < 1 || x.hidden.length > maxHiddenLayers) {
        return fail(
          'spec.hidden',
          `must be an array of 1 to ${maxHiddenLayers} layer sizes, e.g. [64, 32], got ${show(x.hidden)}` +
            (Array.isArray(x.hidden) && x.hidden.length === 0
              ? ' (for no hidden layer use kind "logistic")'
              : ''),
        );
      }
      const hidden = x.hidden.map((h: unknown, i) =>
        intInRange(`spec.hidden[${i}]`, h, 1, maxHiddenUnits),
      );
      if (x.activation !== undefined && x.activation !== 'relu' && x.activation !== 'tanh') {
        return fail('spec.activation', `must be "relu" or "tanh", got ${show(x.activation)}`);
      }
      if (x.output === undefined) {
        return fail('spec.output', 'is required for an mlp: "binary" or { "classes": n }');
      }
      const output = parseOutput('spec.output', x.output);
      spec =
        x.activation === undefined
          ? { kind: 'mlp', inputDim, hidden, output }
          : { kind: 'mlp', inputDim, hidden, activation: x.activation, output };
      break;
    }
    default:
      return fail('spec.kind', `must be "logistic" or "mlp", got ${show(x.kind)}`);
  }
  const count = parameterCount(spec);
  if (count > maxParameters) {
    fail('spec', `has ${count} parameters, more than the limit of ${maxParameters}`);
  }
  return spec;
}

/** Number of output units: 1 for 'binary', `classes` otherwise. */
export function outputUnits(spec: ModelSpec): number {
  const output = spec.output ?? 'binary';
  return output === 'binary' ? 1 : output.classes;
}

/** Sizes of the dense layers from input to output, e.g. [30, 64, 1]. */
export function layerSizes(spec: ModelSpec): number[] {
  const hidden = spec.kind === 'mlp' ? spec.hidden : [];
  return [spec.inputDim, ...hidden, outputUnits(spec)];
}

/** Weight shapes in the order tfjs `model.getWeights()` returns them: per dense layer kernel [in, out], then bias [out]. */
export function weightShapes(spec: ModelSpec): number[][] {
  const sizes = layerSizes(spec);
  const shapes: number[][] = [];
  for (let i = 0; i + 1 < sizes.length; i++) {
    const fanIn = sizes[i] as number;
    const fanOut = sizes[i + 1] as number;
    shapes.push([fanIn, fanOut], [fanOut]);
  }
  return shapes;
}

/** Total number of trainable parameters (length of the flat weight vector). */
export function parameterCount(spec: ModelSpec): number {
  return weightShapes(spec).reduce((sum, shape) => sum + shape.reduce((a, b) => a * b, 1), 0);
}
