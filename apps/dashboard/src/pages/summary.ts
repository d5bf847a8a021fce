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
