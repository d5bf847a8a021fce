import { z } from 'zod';
import { StrategyError, StrategyErrorCode } from './errors';
import { fedAdagradDefinition } from './fedadagrad';
import { fedAdamDefinition } from './fedadam';
import { fedAvgDefinition } from './fedavg';
import { fedAvgMDefinition } from './fedavgm';
import { fedProxDefinition } from './fedprox';
import { fedYogiDefinition } from './fedyogi';
import { krumDefinition } from './krum';
import { medianDefinition } from './median';
import { multiKrumDefinition } from './multi-krum';
import { trimmedMeanDefinition } from './trimmed-mean';
import type { Strategy, StrategyDefinition, StrategyDeps } from './types';

/** What a strategy name may look like: it travels in URLs, CLI flags and database rows. */
export const STRATEGY_NAME_PATTERN = /^[a-z][a-z0-9-]{0,39}$/;

const registry = new Map<string, StrategyDefinition>();

/** Every registered strategy by name, in registration order (the built-in ones first). */
export const STRATEGIES: ReadonlyMap<string, StrategyDefinition> = registry;

/**
 * Adds a strategy to the registry; STRATEGY_DEFINITION_INVALID for a malformed name or one taken.
 *
 * @example
 * registerStrategy({ name: 'my-rule', summary: '...', needsIndividualUpdates: false,
 *   configSchema: z.object({}).strict(), create: () => new MyRule() });
 */
export function registerStrategy<C>(definition: StrategyDefinition<C>): void {
  const bad = (why: string): never => {
    throw new StrategyError(StrategyErrorCode.STRATEGY_DEFINITION_INVALID, why);
  };
  const { name } = definition;
  if (typeof name !== 'string' || !STRATEGY_NAME_PATTERN.test(name)) {
    return bad(`strategy name ${quote(name)} must match ${String(STRATEGY_NAME_PATTERN)}`);
  }
  if (registry.has(name)) return bad(`a strategy named "${name}" is already registered`);
  if (typeof definition.needsIndividualUpdates !== 'boolean') {
    return bad(`strategy "${name}" must say whether it needs individual updates`);
  }
  if (!(definition.configSchema instanceof z.ZodType)) {
    return bad(`strategy "${name}" must have a zod configSchema`);
  }
  registry.set(name, definition);
}

const BUILT_IN: readonly StrategyDefinition[] = [
  fedAvgDefinition,
  fedAvgMDefinition,
  fedProxDefinition,
  fedAdamDefinition,
  fedYogiDefinition,
  fedAdagradDefinition,
  medianDefinition,
  trimmedMeanDefinition,
  krumDefinition,
  multiKrumDefinition,
];
for (const definition of BUILT_IN) registerStrategy(definition);

/** The registered strategy names, in registration order. */
export function strategyNames(): string[] {
  return [...registry.keys()];
}

/** The registry entry for `name`, or UNKNOWN_STRATEGY listing the names there are. */
export function strategyDefinition(name: string): StrategyDefinition {
  const definition = typeof name === 'string' ? registry.get(name) : undefined;
  if (!definition) {
    throw new StrategyError(
      StrategyErrorCode.UNKNOWN_STRATEGY,
      `unknown strategy ${quote(name)}; the strategies are ${strategyNames().join(', ')}`,
    );
  }
  return definition;
}

/**
 * The strategy's configuration from the user's JSON value (absent means all defaults), with
 * defaults applied; STRATEGY_CONFIG_INVALID says which field is wrong and why.
 *
 * @example
 * parseStrategyConfig('fedadam', { serverLearningRate: 0.01 }); // { serverLearningRate: 0.01, beta1: 0.9, ... }
 */
export function parseStrategyConfig(name: string, json: unknown): unknown {
  const definition = strategyDefinition(name);
  const parsed = definition.configSchema.safeParse(json === undefined ? {} : json);
  if (!parsed.success) {
    const why = parsed.error.issues
      .map((i) => `${i.path.length ? i.path.join('.') : '(config)'}: ${i.message}`)
      .join('; ');
    throw new StrategyError(
      StrategyErrorCode.STRATEGY_CONFIG_INVALID,
      `invalid configuration for strategy "${name}": ${why}`,
    );
  }
  return parsed.data;
}

/**
 * A strategy from its name and the user's JSON configuration (checked as `parseStrategyConfig`).
 *
 * @example
 * const krum = buildStrategy('krum', { byzantine: 2 }, { random: seededUniformRandom(1) });
 */
export function buildStrategy(name: string, json?: unknown, deps?: StrategyDeps): Strategy {
  const config = parseStrategyConfig(name, json);
  return strategyDefinition(name).create(config, deps);
}

/**
 * Refuses a strategy that needs individual updates in a federation with secure aggregation on
 * (STRATEGY_NEEDS_INDIVIDUAL_UPDATES), when the federation is created rather than at its first round.
 *
 * @example
 * checkStrategyCompatible('median', { secureAggregation: true }); // throws
 */
export function checkStrategyCompatible(
  name: string,
  federation: { secureAggregation: boolean },
): void {
  const definition = strategyDefinition(name);
  if (definition.needsIndividualUpdates && federation.secureAggregation) {
    const sumStrategies = strategyNames().filter((n) => !registry.get(n)!.needsIndividualUpdates);
    throw new StrategyError(
      StrategyErrorCode.STRATEGY_NEEDS_INDIVIDUAL_UPDATES,
      `strategy "${name}" compares each site's update with the others', but secure aggregation ` +
        'shows the aggregator only their sum. Turn secure aggregation off for this federation ' +
        "(its sites' policies must then allow it: secureAggregation.required: false) or choose a " +
        `strategy that works on the sum: ${sumStrategies.join(', ')}`,
    );
  }
}

/** The JSON Schema of a strategy's configuration as the user writes it (defaults optional). */
export function strategyConfigJsonSchema(name: string): Record<string, unknown> {
  return z.toJSONSchema(strategyDefinition(name).configSchema, { io: 'input' });
}

/** One registered strategy as the API, the CLI and the dashboard list it. */
export interface StrategyCatalogEntry {
  name: string;
  summary: string;
  needsIndividualUpdates: boolean;
  /** JSON Schema of its configuration. */
  configSchema: Record<string, unknown>;
}

/** Every registered strategy with its configuration's JSON Schema, in registration order. */
export function strategyCatalog(): StrategyCatalogEntry[] {
  return strategyNames().map((name) => {
    const d = registry.get(name)!;
    return {
      name,
      summary: d.summary,
      needsIndividualUpdates: d.needsIndividualUpdates,
      configSchema: strategyConfigJsonSchema(name),
    };
  });
}

function quote(name: unknown): string {
  return (JSON.stringify(name) ?? String(name)).slice(0, 60);
}
