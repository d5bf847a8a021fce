import { z } from 'zod';
import { byzantineField, Krum, lowestScores } from './krum';
import { bucketSizeField, plainMean, type Vector } from './robust';
import type { StrategyDefinition, StrategyDeps } from './types';

const configSchema = z
  .object({
    byzantine: byzantineField,
    selected: z
      .number()
      .int()
      .min(1)
      .max(10_000)
      .optional()
      .describe('m: how many of the best-scored updates are averaged; absent means n - f'),
    bucketSize: bucketSizeField,
  })
  .strict();
/** Multi-Krum's settings. */
export type MultiKrumConfig = z.infer<typeof configSchema>;

/**
 * Multi-Krum (Blanchard et al. 2017): the plain mean of the m updates with the lowest Krum scores,
 * scored once; m = n - f unless configured.
 */
export class MultiKrum extends Krum {
  override readonly name: string = 'multi-krum';

  constructor(
    private readonly config: MultiKrumConfig,
    deps?: StrategyDeps,
  ) {
    super(config.byzantine, config.bucketSize, deps);
  }

  protected override select(vectors: readonly Vector[]): number[] {
    const scores = this.scores(vectors);
    const n = vectors.length;
    const m = this.config.selected ?? n - this.byzantine;
    if (m > n) throw this.tooFew(`it averages m = ${m} inputs, got ${n}`);
    return lowestScores(scores, m);
  }

  protected override combine(vectors: readonly Vector[], length: number): Float64Array {
    return plainMean(
      this.select(vectors).map((i) => vectors[i]!),
      length,
    );
  }
}

/** The registry entry of `multi-krum`. */
export const multiKrumDefinition: StrategyDefinition<MultiKrumConfig> = {
  name: 'multi-krum',
  summary: 'Multi-Krum (Blanchard et al. 2017): mean of the m best Krum-scored updates (robust).',
  needsIndividualUpdates: true,
  configSchema,
  create: (config, deps) => new MultiKrum(config, deps),
};
