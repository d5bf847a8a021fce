import { StrategyError, StrategyErrorCode } from './errors';
import type { SerializedStrategyState, SerializedVector, StrategyState } from './types';

/** The format tag of serialised strategy state; a reader refuses any other. */
export const STATE_FORMAT = 'confide.strategy-state/1';

/** The most values one state vector may hold (512 MiB of float32). */
export const MAX_STATE_VECTOR_LENGTH = 2 ** 27;

/** A state with no memory yet. */
export function emptyState(): StrategyState {
  return { steps: 0, vectors: {} };
}

/**
 * `state` as JSON: each vector as base64 of its little-endian float32 bytes.
 *
 * @example
 * JSON.stringify(serializeStrategyState('fedadam', state));
 */
export function serializeStrategyState(
  strategy: string,
  state: StrategyState,
): SerializedStrategyState {
  const vectors: Record<string, SerializedVector> = {};
  for (const [key, v] of Object.entries(state.vectors)) {
    vectors[key] = { dtype: 'float32', length: v.length, base64: float32ToBase64(v) };
  }
  return { format: STATE_FORMAT, strategy, steps: state.steps, vectors };
}

/** What `parseStrategyState` checks the JSON against. */
export interface StateExpectation {
  strategy: string;
  /** The vectors the strategy keeps: all of them, or none before its first step. */
  vectorNames: readonly string[];
  /** The model's parameter count; every vector must have it. */
  modelLength: number;
}

/**
 * Reads state back from `serializeStrategyState`'s JSON, or throws STRATEGY_STATE_INVALID saying
 * what does not match (another strategy's state, a vector of the wrong length, non-finite values).
 *
 * @example
 * const state = parseStrategyState(JSON.parse(text), { strategy: 'fedavgm', vectorNames: ['momentum'], modelLength: 10 });
 */
export function parseStrategyState(json: unknown, expect: StateExpectation): StrategyState {
  const fail = (why: string): never => {
    throw new StrategyError(
      StrategyErrorCode.STRATEGY_STATE_INVALID,
      `state of strategy "${expect.strategy}": ${why}`,
    );
  };
  if (!isRecord(json)) return fail('not a JSON object');
  if (json.format !== STATE_FORMAT) return fail(`format must be "${STATE_FORMAT}"`);
  if (json.strategy !== expect.strategy) {
    return fail(`it belongs to strategy ${JSON.stringify(json.strategy)}`);
  }
  const steps = json.steps;
  if (typeof steps !== 'number' || !Number.isSafeInteger(steps) || steps < 0) {
    return fail('steps must be a non-negative integer');
  }
  if (!isRecord(json.vectors)) return fail('vectors must be an object');
  const keys = Object.keys(json.vectors);
  const unknown = keys.filter((k) => !expect.vectorNames.includes(k));
  if (unknown.length) return fail(`unknown vector ${JSON.stringify(unknown[0])}`);
  if (keys.length !== 0 && keys.length !== expect.vectorNames.length) {
    return fail(`vectors must be all of ${expect.vectorNames.join(', ')} or none`);
  }
  const vectors: Record<string, Float32Array> = {};
  for (const key of keys) {
    const v: unknown = json.vectors[key];
    if (!isRecord(v) || v.dtype !== 'float32' || typeof v.base64 !== 'string') {
      return fail(`vector "${key}" must be { dtype: "float32", length, base64 }`);
    }
    if (v.length !== expect.modelLength) {
      return fail(
        `vector "${key}" has ${String(v.length)} values, the model ${expect.modelLength}`,
      );
    }
    try {
      vectors[key] = base64ToFloat32(v.base64, expect.modelLength);
    } catch (e) {
      return fail(`vector "${key}": ${(e as Error).message}`);
    }
  }
  return { steps, vectors };
}

/** Standard base64 of a float32 vector's little-endian bytes. */
export function float32ToBase64(v: Float32Array): string {
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64');
}

/** A fresh float32 vector of `length` finite values from canonical base64, or throws. */
export function base64ToFloat32(text: string, length: number): Float32Array {
  if (!Number.isSafeInteger(length) || length < 0 || length > MAX_STATE_VECTOR_LENGTH) {
    throw new Error(`length must be an integer in [0, ${MAX_STATE_VECTOR_LENGTH}]`);
  }
  // Checked before decoding so an oversized string costs nothing.
  if (text.length !== 4 * Math.ceil((length * 4) / 3)) {
    throw new Error(`expected base64 of ${length * 4} bytes`);
  }
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text)) throw new Error('not valid base64');
  const bytes = Buffer.from(text, 'base64');
  if (bytes.length !== length * 4 || bytes.toString('base64') !== text) {
    throw new Error('not canonical base64');
  }
  const out = new Float32Array(length);
  new Uint8Array(out.buffer).set(bytes);
  for (let i = 0; i < length; i++) {
    if (!Number.isFinite(out[i]!)) throw new Error(`value ${i} is not finite`);
  }
  return out;
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}
