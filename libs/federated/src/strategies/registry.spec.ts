import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { applyStep, BaseStrategy, weightedMeanUpdate } from './common';
import { StrategyErrorCode } from './errors';
import { FedAvgM } from './fedavgm';
import {
  buildStrategy,
  checkStrategyCompatible,
  parseStrategyConfig,
  registerStrategy,
  STRATEGIES,
  strategyCatalog,
  strategyConfigJsonSchema,
  strategyNames,
} from './registry';
import type { StrategyDefinition, StrategyState, TrainAggregate, TrainResult } from './types';

const BUILT_IN = [
  'fedavg',
  'fedavgm',
  'fedprox',
  'fedadam',
  'fedyogi',
  'fedadagrad',
  'median',
  'trimmed-mean',
  'krum',
  'multi-krum',
];
const ROBUST = ['median', 'trimmed-mean', 'krum', 'multi-krum'];

const code = (c: StrategyErrorCode) => expect.objectContaining({ code: c });

describe('strategy registry', () => {
  it('holds the built-in strategies, robust ones marked as needing individual updates', () => {
    expect(strategyNames().slice(0, BUILT_IN.length)).toEqual(BUILT_IN);
    for (const name of BUILT_IN) {
      const d = STRATEGIES.get(name)!;
      expect(d.needsIndividualUpdates, name).toBe(ROBUST.includes(name));
      expect(d.summary.length, name).toBeGreaterThan(10);
      const s = buildStrategy(name);
      expect(s.name).toBe(name);
      expect(s.needsIndividualUpdates).toBe(d.needsIndividualUpdates);
    }
  });

  it('refuses an unknown name, listing the known ones', () => {
    expect(() => buildStrategy('fedsgd')).toThrow(code(StrategyErrorCode.UNKNOWN_STRATEGY));
    expect(() => parseStrategyConfig('toString', {})).toThrow(
      /unknown strategy "toString"; the strategies are fedavg, /,
    );
    expect(() => checkStrategyCompatible('__proto__', { secureAggregation: false })).toThrow(
      code(StrategyErrorCode.UNKNOWN_STRATEGY),
    );
  });

  it('fills in defaults and refuses a bad configuration, naming the field', () => {
    expect(parseStrategyConfig('fedavgm', undefined)).toEqual({
      serverLearningRate: 1,
      momentum: 0.9,
    });
    expect(parseStrategyConfig('krum', { byzantine: 2 })).toEqual({ byzantine: 2 });
    const bad = (name: string, json: unknown, why: RegExp) =>
      expect(() => parseStrategyConfig(name, json)).toThrow(
        expect.objectContaining({
          code: StrategyErrorCode.STRATEGY_CONFIG_INVALID,
          message: expect.stringMatching(why),
        }),
      );
    bad('fedadam', { beta1: 1 }, /strategy "fedadam": beta1:/);
    bad('fedadam', { serverLearningRate: -0.1 }, /serverLearningRate/);
    bad('fedavgm', { momentom: 0.5 }, /momentom/);
    bad('trimmed-mean', { beta: 0.5 }, /beta/);
    bad('krum', { byzantine: 1.5 }, /byzantine/);
    bad('median', { bucketSize: 0 }, /bucketSize/);
    bad('fedprox', 'mu=1', /\(config\)/);
    bad('fedavg', { anything: 1 }, /anything/);
  });

  it('refuses a robust strategy with secure aggregation on, saying why', () => {
    for (const name of ROBUST) {
      expect(() => checkStrategyCompatible(name, { secureAggregation: true })).toThrow(
        expect.objectContaining({
          code: StrategyErrorCode.STRATEGY_NEEDS_INDIVIDUAL_UPDATES,
          message: expect.stringMatching(
            /secure aggregation shows the aggregator only their sum.*secureAggregation\.required: false.*fedavg, fedavgm/,
          ),
        }),
      );
      expect(() => checkStrategyCompatible(name, { secureAggregation: false })).not.toThrow();
    }
    for (const name of BUILT_IN.filter((n) => !ROBUST.includes(n))) {
      expect(() => checkStrategyCompatible(name, { secureAggregation: true })).not.toThrow();
    }
  });

  it('exports each configuration as JSON Schema with its defaults and bounds', () => {
    const schema = strategyConfigJsonSchema('fedadam') as {
      properties: Record<string, { default?: number; description?: string }>;
      additionalProperties: boolean;
      required?: string[];
    };
    expect(Object.keys(schema.properties)).toEqual(['serverLearningRate', 'beta1', 'tau', 'beta2']);
    expect(schema.properties.beta2!.default).toBe(0.99);
    expect(schema.properties.tau!.description).toMatch(/tau/);
    expect(schema.additionalProperties).toBe(false);
    expect(schema.required ?? []).toEqual([]);
    const catalog = strategyCatalog();
    expect(catalog.map((c) => c.name).slice(0, BUILT_IN.length)).toEqual(BUILT_IN);
    expect(catalog.find((c) => c.name === 'krum')!.needsIndividualUpdates).toBe(true);
    // JSON all the way down, so the API can serve it as it is.
    expect(JSON.parse(JSON.stringify(catalog))).toEqual(catalog);
  });

  it('passes injected randomness to the strategy it builds', () => {
    let calls = 0;
    const s = buildStrategy('median', { bucketSize: 2 }, { random: () => (calls++, 0.5) });
    const ups = [1, 2, 3, 4].map((x, k) => ({
      siteId: `${k}`,
      delta: Float32Array.of(x),
      weight: 1,
    }));
    s.aggregateTrain(Float32Array.of(0), ups, s.initialState());
    expect(calls).toBeGreaterThan(0);
  });

  it('gives the typed class for a name', () => {
    expect(buildStrategy('fedavgm', { momentum: 0.5 })).toBeInstanceOf(FedAvgM);
  });
});

// A new strategy in one file: a definition and one registerStrategy call.
const halfStepSchema = z
  .object({
    fraction: z.number().gt(0).max(1).default(0.5).describe('share of the mean update taken'),
  })
  .strict();
class PartialStep extends BaseStrategy {
  readonly name = 'partial-step';
  readonly needsIndividualUpdates = false;
  constructor(private readonly fraction: number) {
    super();
  }
  aggregateTrain(
    global: Float32Array,
    aggregate: TrainAggregate,
    state: StrategyState,
  ): TrainResult {
    const mean = weightedMeanUpdate(this.name, global, aggregate);
    return {
      weights: applyStep(
        this.name,
        global,
        mean.map((x) => x * this.fraction),
      ),
      state: { steps: state.steps + 1, vectors: {} },
    };
  }
}
const partialStep: StrategyDefinition<z.infer<typeof halfStepSchema>> = {
  name: 'partial-step',
  summary: 'Takes a fraction of the FedAvg step (a test strategy).',
  needsIndividualUpdates: false,
  configSchema: halfStepSchema,
  create: (config) => new PartialStep(config.fraction),
};

describe('registering a strategy', () => {
  it('makes a new strategy available by name, with its schema, through every helper', () => {
    registerStrategy(partialStep);
    expect(strategyNames()).toContain('partial-step');
    expect(parseStrategyConfig('partial-step', {})).toEqual({ fraction: 0.5 });
    expect(() => parseStrategyConfig('partial-step', { fraction: 2 })).toThrow(
      code(StrategyErrorCode.STRATEGY_CONFIG_INVALID),
    );
    expect(strategyConfigJsonSchema('partial-step')).toMatchObject({
      properties: { fraction: { default: 0.5 } },
    });
    checkStrategyCompatible('partial-step', { secureAggregation: true });
    const s = buildStrategy('partial-step', { fraction: 0.25 });
    let global: Float32Array = Float32Array.of(0, 0);
    let state = s.initialState();
    for (let round = 1; round <= 2; round++) {
      expect(s.configureTrain(round, state)).toEqual({});
      ({ weights: global, state } = s.aggregateTrain(
        global,
        [{ siteId: 'a', delta: Float32Array.of(4, -8), weight: 1 }],
        state,
      ));
    }
    expect(Array.from(global)).toEqual([2, -4]);
    expect(s.parseState(JSON.parse(JSON.stringify(s.serializeState(state))), 2).steps).toBe(2);
  });

  it('refuses a taken or malformed name', () => {
    expect(() => registerStrategy({ ...partialStep, name: 'fedavg' })).toThrow(
      expect.objectContaining({
        code: StrategyErrorCode.STRATEGY_DEFINITION_INVALID,
        message: expect.stringMatching(/already registered/),
      }),
    );
    expect(() => registerStrategy({ ...partialStep, name: 'Fed Avg' })).toThrow(/must match/);
    expect(() => registerStrategy({ ...partialStep, name: 'x'.repeat(41) })).toThrow(/must match/);
    expect(() =>
      registerStrategy({ ...partialStep, name: 'no-schema', configSchema: {} as never }),
    ).toThrow(/zod configSchema/);
  });
});
