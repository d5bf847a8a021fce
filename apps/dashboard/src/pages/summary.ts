import type { DpConfig, Federation, SecureAggregationConfig } from '../types';

/** "MLP 30 → 16 → 1" */
export function modelSummary(f: Pick<Federation, 'modelSpec'>): string {
  const m = f.modelSpec;
  const out = (m.output ?? 'binary') === 'binary' ? 1 : (m.output as { classes: number }).classes;
  if (m.kind === 'logistic') return `Logistic ${m.inputDim} → ${out}`;
  return `MLP ${[m.inputDim, ...m.hidden, out].join(' → ')}`;
}

export function dpOf(f: Federation): DpConfig | undefined {
  return f.dp ?? f.config.dp;
}

export function secAggOf(f: Federation): SecureAggregationConfig | undefined {
  return f.secureAggregation ?? f.config.secureAggregation;
}

/** "fedadam (beta1 0.9, serverLearningRate 0.05)": the strategy and its stored settings. */
export function strategyText(f: Federation): string {
  const name = f.strategy === 'fedavg' ? 'FedAvg' : f.strategy;
  const config = f.config.strategyConfig;
  if (typeof config !== 'object' || config === null || Array.isArray(config)) return name;
  const parts = Object.entries(config as Record<string, unknown>)
    .filter(([, v]) => typeof v === 'number' || typeof v === 'boolean' || typeof v === 'string')
    // Sorted: the database's JSON does not keep the order the settings were written in.
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .slice(0, 12)
    .map(([k, v]) => `${k.slice(0, 40)} ${String(v).slice(0, 40)}`);
  return parts.length ? `${name} (${parts.join(', ')})` : name;
}
