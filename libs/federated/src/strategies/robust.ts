import { z } from 'zod';
import { applyStep, BaseStrategy, individualUpdates } from './common';
import { StrategyError, StrategyErrorCode } from './errors';
import { cryptoUniformRandom, shuffled } from './random';
import type {
  StrategyDeps,
  StrategyState,
  TrainAggregate,
  TrainResult,
  UniformRandom,
} from './types';

/** A vector the robust rules read: a site's update (float32) or a bucket's mean (float64). */
export type Vector = Float32Array | Float64Array;

/** The bucketing setting every robust strategy takes. */
export const bucketSizeField = z
  .number()
  .int()
  .min(1)
  .max(1000)
  .optional()
  .describe(
    's: average the updates in random buckets of s before the robust rule (Karimireddy et al. ' +
      '2022), for heterogeneous data; absent or 1 means no bucketing',
  );

/**
 * Karimireddy, He and Jaggi 2022 ("Byzantine-robust learning on heterogeneous datasets via
 * bucketing"): shuffle the vectors, split them into buckets of `size` (the last may be smaller) and
 * average each, so a robust rule sees fewer, less heterogeneous inputs.
 *
 * @example
 * bucketMeans(updates, 2, seededUniformRandom(7)); // ceil(n / 2) means
 */
export function bucketMeans(
  vectors: readonly Vector[],
  size: number,
  random: UniformRandom,
): Float64Array[] {
  if (!Number.isSafeInteger(size) || size < 1)
    throw new Error('bucket size must be an integer >= 1');
  const order = shuffled(vectors, random);
  const out: Float64Array[] = [];
  for (let start = 0; start < order.length; start += size) {
    const bucket = order.slice(start, start + size);
    const mean = new Float64Array(bucket[0]!.length);
    for (const v of bucket) for (let i = 0; i < mean.length; i++) mean[i]! += v[i]!;
    for (let i = 0; i < mean.length; i++) mean[i]! /= bucket.length;
    out.push(mean);
  }
  return out;
}

/**
 * The shared parts of the robust strategies: they need each site's update (so never run under
 * secure aggregation), optionally bucket them, and combine them without the sites' weights, since
 * a Byzantine site could claim any weight. They keep no state.
 */
export abstract class RobustStrategy extends BaseStrategy {
  readonly needsIndividualUpdates = true;
  private readonly random: UniformRandom;

  constructor(
    private readonly bucketSize: number | undefined,
    deps: StrategyDeps | undefined,
  ) {
    super();
    this.random = deps?.random ?? cryptoUniformRandom;
  }

  /** The robust combination of the (bucketed) updates: the step added to the global weights. */
  protected abstract combine(vectors: readonly Vector[], length: number): ArrayLike<number>;

  aggregateTrain(
    global: Float32Array,
    aggregate: TrainAggregate,
    state: StrategyState,
  ): TrainResult {
    const updates = individualUpdates(this.name, global, aggregate);
    const deltas = updates.map((u) => u.delta);
    const inputs =
      this.bucketSize && this.bucketSize > 1
        ? bucketMeans(deltas, this.bucketSize, this.random)
        : deltas;
    return {
      weights: applyStep(this.name, global, this.combine(inputs, global.length)),
      state: { steps: state.steps + 1, vectors: {} },
    };
  }

  /** STRATEGY_TOO_FEW_UPDATES, saying whether the count is of updates or of buckets. */
  protected tooFew(why: string): StrategyError {
    const what =
      this.bucketSize && this.bucketSize > 1 ? `buckets of ${this.bucketSize}` : 'updates';
    return new StrategyError(
      StrategyErrorCode.STRATEGY_TOO_FEW_UPDATES,
      `${this.name}: ${why} (${what})`,
    );
  }
}

/** The mean of a set of vectors in float64, each counted once. */
export function plainMean(vectors: readonly Vector[], length: number): Float64Array {
  const out = new Float64Array(length);
  for (const v of vectors) for (let i = 0; i < length; i++) out[i]! += v[i]!;
  for (let i = 0; i < length; i++) out[i]! /= vectors.length;
  return out;
}
