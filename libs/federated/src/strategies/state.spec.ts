import { describe, expect, it } from 'vitest';
import { StrategyErrorCode } from './errors';
import { buildStrategy } from './registry';
import {
  base64ToFloat32,
  float32ToBase64,
  parseStrategyState,
  serializeStrategyState,
  STATE_FORMAT,
} from './state';
import type { SerializedStrategyState } from './types';

const expectation = { strategy: 'fedadam', vectorNames: ['m', 'v'], modelLength: 3 };
const state = {
  steps: 4,
  vectors: { m: Float32Array.from([0.1, -2, 3e-30]), v: Float32Array.from([1e-6, 5, 0]) },
};

describe('strategy state', () => {
  it('round-trips through JSON text bit for bit', () => {
    const json = JSON.parse(JSON.stringify(serializeStrategyState('fedadam', state))) as unknown;
    expect(json).toMatchObject({ format: STATE_FORMAT, strategy: 'fedadam', steps: 4 });
    const back = parseStrategyState(json, expectation);
    expect(back.steps).toBe(4);
    expect(Array.from(back.vectors.m!)).toEqual(Array.from(state.vectors.m));
    expect(Array.from(back.vectors.v!)).toEqual(Array.from(state.vectors.v));
  });

  it('round-trips a stateless strategy’s empty state', () => {
    const s = buildStrategy('median');
    const back = s.parseState(
      JSON.parse(JSON.stringify(s.serializeState({ steps: 2, vectors: {} }))),
      9,
    );
    expect(back).toEqual({ steps: 2, vectors: {} });
  });

  it('round-trips each built-in strategy’s state after a step', () => {
    for (const name of ['fedavg', 'fedavgm', 'fedprox', 'fedadam', 'fedyogi', 'fedadagrad']) {
      const s = buildStrategy(name);
      const global = Float32Array.from([0.5, -0.5]);
      const update = { siteId: 'a', delta: Float32Array.from([0.25, 0.125]), weight: 1 };
      const r = s.aggregateTrain(global, [update], s.initialState());
      const back = s.parseState(JSON.parse(JSON.stringify(s.serializeState(r.state))), 2);
      expect(back.steps, name).toBe(1);
      for (const [k, v] of Object.entries(r.state.vectors)) {
        expect(Array.from(back.vectors[k]!), `${name}.${k}`).toEqual(Array.from(v));
      }
    }
  });

  const serialized = () =>
    JSON.parse(JSON.stringify(serializeStrategyState('fedadam', state))) as Omit<
      SerializedStrategyState,
      'vectors'
    > & { vectors: Record<string, Record<string, unknown>> };
  const refuses = (json: unknown, why: RegExp) =>
    expect(() => parseStrategyState(json, expectation)).toThrow(
      expect.objectContaining({
        code: StrategyErrorCode.STRATEGY_STATE_INVALID,
        message: expect.stringMatching(why),
      }),
    );

  it('refuses another strategy’s state', () => {
    refuses({ ...serialized(), strategy: 'fedyogi' }, /belongs to strategy "fedyogi"/);
  });

  it('refuses state for a model of another size', () => {
    expect(() => parseStrategyState(serialized(), { ...expectation, modelLength: 4 })).toThrow(
      /has 3 values, the model 4/,
    );
  });

  it('refuses malformed state with a reason', () => {
    refuses(null, /not a JSON object/);
    refuses([], /not a JSON object/);
    refuses({ ...serialized(), format: 'v0' }, /format/);
    refuses({ ...serialized(), steps: -1 }, /steps/);
    refuses({ ...serialized(), steps: 1.5 }, /steps/);
    const j = serialized();
    delete j.vectors['v'];
    refuses(j, /all of m, v or none/);
    refuses({ ...serialized(), vectors: { ...serialized().vectors, w: {} } }, /unknown vector "w"/);
    const bad = serialized();
    bad.vectors['m']!.base64 = '*' + String(bad.vectors['m']!.base64).slice(1);
    refuses(bad, /vector "m": not valid base64/);
    const f64 = serialized();
    f64.vectors['m']!.dtype = 'float64';
    refuses(f64, /dtype/);
  });

  it('refuses non-finite values and non-canonical base64', () => {
    expect(() => base64ToFloat32(float32ToBase64(Float32Array.from([1, NaN])), 2)).toThrow(
      /value 1 is not finite/,
    );
    // "AAAAAB==" has non-zero padding bits: a second spelling of the same bytes.
    expect(() => base64ToFloat32('AAAAAB==', 1)).toThrow();
    expect(() => base64ToFloat32('AAAAAA==', 2)).toThrow(/expected base64 of 8 bytes/);
  });
});
