import { z } from 'zod';
import { bucketSizeField, RobustStrategy, type Vector } from './robust';
import type { StrategyDefinition, StrategyDeps } from './types';

/** The number of Byzantine inputs Krum and Multi-Krum tolerate. */
export const byzantineField = z
  .number()
  .int()
  .min(0)
  .max(1000)
  .default(1)
  .describe('f: how many updates may be Byzantine; Krum needs n > 2f + 2 of them');

const configSchema = z.object({ byzantine: byzantineField, bucketSize: bucketSizeField }).strict();
/** Krum's settings. */
export type KrumConfig = z.infer<typeof configSchema>;

/**
 * Krum scores (Blanchard et al. 2017): for each vector, the sum of its squared distances to its
 * n - f - 2 nearest other vectors. Needs n > 2f + 2; the caller checks.
 *
 * @example
 * krumScores([a, b, c, d, e], 1); // five scores; the lowest is Krum's choice
 */
export function krumScores(vectors: readonly Vector[], byzantine: number): number[] {
  const n = vectors.length;
  const neighbours = n - byzantine - 2;
  const dist = Array.from({ length: n }, () => new Float64Array(n));
  for (let a = 0; a < n; a++) {
    for (let b = a + 1; b < n; b++) {
      const va = vectors[a]!;
      const vb = vectors[b]!;
      let s = 0;
      for (let i = 0; i < va.length; i++) {
        const d = va[i]! - vb[i]!;
        s += d * d;
      }
      dist[a]![b] = s;
      dist[b]![a] = s;
    }
  }
  return dist.map((row, a) => {
    const others = Array.from(row).filter((_, b) => b !== a);
    others.sort((x, y) => x - y);
    return others.slice(0, neighbours).reduce((s, d) => s + d, 0);
  });
}

/** The indices of the `m` lowest scores, lowest first (ties by position). */
export function lowestScores(scores: readonly number[], m: number): number[] {
  return scores
    .map((s, i) => ({ s, i }))
    .sort((x, y) => x.s - y.s || x.i - y.i)
    .slice(0, m)
    .map((x) => x.i);
}

/** Krum (Blanchard et al. 2017): the step is the one update closest to its n - f - 2 neighbours. */
export class Krum extends RobustStrategy {
  readonly name: string = 'krum';

  constructor(
    protected readonly byzantine: number,
    bucketSize: number | undefined,
    deps?: StrategyDeps,
  ) {
    super(bucketSize, deps);
  }

  /** The Krum scores, or STRATEGY_TOO_FEW_UPDATES when n <= 2f + 2 voids the guarantee. */
  protected scores(vectors: readonly Vector[]): number[] {
    const n = vectors.length;
    const f = this.byzantine;
    if (n <= 2 * f + 2) {
      throw this.tooFew(`with f = ${f} it needs more than 2f + 2 = ${2 * f + 2} inputs, got ${n}`);
    }
    return krumScores(vectors, f);
  }

  /** The indices of the vectors this rule keeps. */
  protected select(vectors: readonly Vector[]): number[] {
    return lowestScores(this.scores(vectors), 1);
  }

  protected combine(vectors: readonly Vector[], _length: number): ArrayLike<number> {
    return vectors[this.select(vectors)[0]!]!;
  }
}

/** The registry entry of `krum`. */
export const krumDefinition: StrategyDefinition<KrumConfig> = {
  name: 'krum',
  summary: 'Krum (Blanchard et al. 2017): the update nearest its neighbours (robust; unmasked).',
  needsIndividualUpdates: true,
  configSchema,
  create: (config, deps) => new Krum(config.byzantine, config.bucketSize, deps),
};
