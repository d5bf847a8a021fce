/**
 * The strategy part of the federation form, derived from the registry's entries: the settings a
 * strategy takes (from the JSON Schema of its config), client-side checks of the settings typed as
 * JSON, and whether the strategy can run with secure aggregation. Pure; the server stays the authority.
 */
import type { StrategyInfo } from '../api';

/** One setting of a strategy, read from its config schema. */
export interface StrategySetting {
  name: string;
  type: 'number' | 'integer' | 'boolean' | 'string' | 'other';
  description: string;
  default?: unknown;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
}

const num = (x: unknown): number | undefined =>
  typeof x === 'number' && Number.isFinite(x) ? x : undefined;

/** The settings `info`'s config schema declares, in its order. */
export function strategySettings(info: StrategyInfo): StrategySetting[] {
  const props = info.configSchema['properties'];
  if (typeof props !== 'object' || props === null || Array.isArray(props)) return [];
  return Object.entries(props as Record<string, unknown>).map(([name, raw]) => {
    const p = (typeof raw === 'object' && raw !== null ? raw : {}) as Record<string, unknown>;
    const t = p['type'];
    return {
      name,
      type: t === 'number' || t === 'integer' || t === 'boolean' || t === 'string' ? t : 'other',
      description: typeof p['description'] === 'string' ? p['description'] : '',
      ...('default' in p ? { default: p['default'] } : {}),
      minimum: num(p['minimum']),
      maximum: num(p['maximum']),
      exclusiveMinimum: num(p['exclusiveMinimum']),
      exclusiveMaximum: num(p['exclusiveMaximum']),
    };
  });
}

/** `{ "serverLearningRate": 0.1, ... }`: the settings that have defaults, as a starting point. */
export function strategyConfigExample(info: StrategyInfo): string {
  const example: Record<string, unknown> = {};
  for (const s of strategySettings(info)) if ('default' in s) example[s.name] = s.default;
  return Object.keys(example).length ? JSON.stringify(example) : '';
}

/**
 * What is wrong with the settings typed for `info` (blank means its defaults), or null. Checks
 * what the schemas in the registry use: unknown names, types and bounds.
 */
export function strategyConfigProblem(text: string, info: StrategyInfo): string | null {
  if (!text.trim()) return null;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return `not valid JSON: ${(err as Error).message}`;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return 'must be a JSON object, e.g. { "serverLearningRate": 0.05 }';
  }
  const settings = strategySettings(info);
  const closed = info.configSchema['additionalProperties'] === false;
  for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
    const s = settings.find((x) => x.name === key);
    if (!s) {
      if (!closed) continue;
      return settings.length
        ? `${info.name} has no setting "${key}"; its settings are ${settings.map((x) => x.name).join(', ')}`
        : `${info.name} takes no settings`;
    }
    const problem = settingProblem(s, v);
    if (problem) return `${key}: ${problem}`;
  }
  return null;
}

function settingProblem(s: StrategySetting, v: unknown): string | null {
  switch (s.type) {
    case 'number':
    case 'integer': {
      if (typeof v !== 'number' || !Number.isFinite(v)) return 'must be a number';
      if (s.type === 'integer' && !Number.isInteger(v)) return 'must be a whole number';
      if (s.minimum !== undefined && v < s.minimum) return `must be at least ${s.minimum}`;
      if (s.exclusiveMinimum !== undefined && v <= s.exclusiveMinimum) {
        return `must be greater than ${s.exclusiveMinimum}`;
      }
      if (s.maximum !== undefined && v > s.maximum) return `must be at most ${s.maximum}`;
      if (s.exclusiveMaximum !== undefined && v >= s.exclusiveMaximum) {
        return `must be less than ${s.exclusiveMaximum}`;
      }
      return null;
    }
    case 'boolean':
      return typeof v === 'boolean' ? null : 'must be true or false';
    case 'string':
      return typeof v === 'string' ? null : 'must be a string';
    case 'other':
      return null;
  }
}

/** Why `info` cannot run with secure aggregation on, or null when it can. */
export function secureAggregationConflict(info: StrategyInfo, secAggOn: boolean): string | null {
  if (!secAggOn || !info.needsIndividualUpdates) return null;
  return (
    `${info.name} compares each site's update with the others', but secure aggregation shows the ` +
    "aggregator only their sum: turn secure aggregation off (the sites' policies must allow it) " +
    'or choose a strategy that works on the sum'
  );
}
