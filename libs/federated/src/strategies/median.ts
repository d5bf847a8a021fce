import { z } from 'zod';
import { bucketSizeField, RobustStrategy, type Vector } from './robust';
import type { StrategyDefinition, StrategyDeps } from './types';

const configSchema = z.object({ bucketSize: bucketSizeField }).strict();
/** Median's settings. */
export type MedianConfig = z.infer<typeof configSchema>;

/**
 * Coordinate-wise median (Yin et al. 2018): each weight moves by the median of the sites' updates
 * for it (the mean of the two middle values for an even count).
 */
export class Median extends RobustStrategy {
  readonly name = 'median';

  constructor(config: MedianConfig, deps?: StrategyDeps) {
    super(config.bucketSize, deps);
  }

  protected combine(vectors: readonly Vector[], length: number): Float64Array {
    const n = vectors.length;
    const column = new Float64Array(n);
    const out = new Float64Array(length);
    const mid = n >> 1;
    for (let i = 0; i < length; i++) {
      for (let k = 0; k < n; k++) column[k] = vectors[k]![i]!;
      column.sort();
      out[i] = n % 2 === 1 ? column[mid]! : (column[mid - 1]! + column[mid]!) / 2;
    }
    return out;
  }
}

/** The registry entry of `median`. */
export const medianDefinition: StrategyDefinition<MedianConfig> = {
  name: 'median',
  summary: 'Coordinate-wise median of the site updates (robust; needs unmasked updates).',
  needsIndividualUpdates: true,
  configSchema,
  create: (config, deps) => new Median(config, deps),
};
