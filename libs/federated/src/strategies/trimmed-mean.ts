import { z } from 'zod';
import { bucketSizeField, RobustStrategy, type Vector } from './robust';
import type { StrategyDefinition, StrategyDeps } from './types';

const configSchema = z
  .object({
    beta: z
      .number()
      .min(0)
      .lt(0.5)
      .default(0.1)
      .describe('beta: the fraction of values dropped at each end, per coordinate'),
    bucketSize: bucketSizeField,
  })
  .strict();
/** Trimmed mean's settings. */
export type TrimmedMeanConfig = z.infer<typeof configSchema>;

/**
 * Coordinate-wise trimmed mean (Yin et al. 2018): per weight, drop the floor(beta n) largest and
 * smallest of the n updates' values and average the rest.
 */
export class TrimmedMean extends RobustStrategy {
  readonly name = 'trimmed-mean';

  constructor(
    private readonly config: TrimmedMeanConfig,
    deps?: StrategyDeps,
  ) {
    super(config.bucketSize, deps);
  }

  protected combine(vectors: readonly Vector[], length: number): Float64Array {
    const n = vectors.length;
    // beta < 0.5 leaves at least one value.
    const trim = Math.floor(this.config.beta * n);
    const kept = n - 2 * trim;
    const column = new Float64Array(n);
    const out = new Float64Array(length);
    for (let i = 0; i < length; i++) {
      for (let k = 0; k < n; k++) column[k] = vectors[k]![i]!;
      column.sort();
      let s = 0;
      for (let k = trim; k < n - trim; k++) s += column[k]!;
      out[i] = s / kept;
    }
    return out;
  }
}

/** The registry entry of `trimmed-mean`. */
export const trimmedMeanDefinition: StrategyDefinition<TrimmedMeanConfig> = {
  name: 'trimmed-mean',
  summary:
    'Coordinate-wise trimmed mean, beta trimmed at each end (robust; needs unmasked updates).',
  needsIndividualUpdates: true,
  configSchema,
  create: (config, deps) => new TrimmedMean(config, deps),
};
