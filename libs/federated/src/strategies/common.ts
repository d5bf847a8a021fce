import { type AggregateSum, type SiteUpdate } from '../aggregation';
import { StrategyError, StrategyErrorCode } from './errors';
import { emptyState, parseStrategyState, serializeStrategyState } from './state';
import type {
  EvaluateAggregate,
  EvaluationMetrics,
  EvaluationSummary,
  SerializedStrategyState,
  Strategy,
  StrategyState,
  TrainAggregate,
  TrainInstructions,
  TrainResult,
} from './types';

/** True when the aggregate is the list of individual updates rather than their sum. */
export function isIndividualUpdates(agg: TrainAggregate): agg is readonly SiteUpdate[] {
  return Array.isArray(agg);
}

/**
 * The shared parts of a strategy: no per-site instructions, sample-weighted evaluation, and state
 * (de)serialisation for the vectors named in `stateVectors`. A strategy file implements
 * `aggregateTrain` and overrides what differs.
 */
export abstract class BaseStrategy implements Strategy {
  abstract readonly name: string;
  abstract readonly needsIndividualUpdates: boolean;
  /** The names of the vectors this strategy keeps in its state. */
  protected readonly stateVectors: readonly string[] = [];

  initialState(): StrategyState {
    return emptyState();
  }

  configureTrain(_round: number, _state: StrategyState): TrainInstructions {
    return {};
  }

  abstract aggregateTrain(
    global: Float32Array,
    aggregate: TrainAggregate,
    state: StrategyState,
  ): TrainResult;

  aggregateEvaluate(evaluations: EvaluateAggregate): EvaluationSummary | null {
    return combineEvaluations(evaluations);
  }

  serializeState(state: StrategyState): SerializedStrategyState {
    return serializeStrategyState(this.name, state);
  }

  parseState(json: unknown, modelLength: number): StrategyState {
    return parseStrategyState(json, {
      strategy: this.name,
      vectorNames: this.stateVectors,
      modelLength,
    });
  }
}

/**
 * The sample-weighted mean update in float64, from a sum or from individual updates (the
 * pseudo-gradient of Reddi et al. 2021 is this mean, as a descent direction).
 */
export function weightedMeanUpdate(
  strategy: string,
  global: Float32Array,
  agg: TrainAggregate,
): Float64Array {
  checkGlobal(strategy, global);
  const sum: AggregateSum = isIndividualUpdates(agg) ? sumOf(strategy, global.length, agg) : agg;
  if (sum.sum.length !== global.length) {
    throw inputError(
      strategy,
      `aggregate has ${sum.sum.length} values, the model ${global.length}`,
    );
  }
  if (!(sum.totalWeight > 0) || !Number.isFinite(sum.totalWeight)) {
    throw inputError(strategy, 'cannot average: the total weight is not a positive number');
  }
  const out = new Float64Array(global.length);
  for (let i = 0; i < out.length; i++) {
    const x = sum.sum[i]! / sum.totalWeight;
    if (!Number.isFinite(x)) throw inputError(strategy, `the mean update at ${i} is not finite`);
    out[i] = x;
  }
  return out;
}

/**
 * The individual updates, checked (at least one, each as long as the model, finite values, a
 * positive weight), or STRATEGY_NEEDS_INDIVIDUAL_UPDATES when only their sum is known.
 */
export function individualUpdates(
  strategy: string,
  global: Float32Array,
  agg: TrainAggregate,
): readonly SiteUpdate[] {
  checkGlobal(strategy, global);
  if (!isIndividualUpdates(agg)) {
    throw new StrategyError(
      StrategyErrorCode.STRATEGY_NEEDS_INDIVIDUAL_UPDATES,
      `${strategy} needs each site's update, but this round yielded only their sum`,
    );
  }
  if (agg.length === 0) throw inputError(strategy, 'no updates to aggregate');
  for (const u of agg) checkUpdate(strategy, global.length, u);
  return agg;
}

/** global + step, rounded to float32; refuses a step that makes a weight non-finite. */
export function applyStep(
  strategy: string,
  global: Float32Array,
  step: ArrayLike<number>,
): Float32Array {
  const out = new Float32Array(global.length);
  for (let i = 0; i < out.length; i++) {
    const x = global[i]! + step[i]!;
    out[i] = x;
    if (!Number.isFinite(out[i]!)) throw inputError(strategy, `the new weight ${i} is not finite`);
  }
  return out;
}

/**
 * The federation's metrics: the sample-weighted mean of the sites' (AUC over the sites that report
 * one), or the secure sum's summary as it is; null when no site reported.
 */
export function combineEvaluations(evaluations: EvaluateAggregate): EvaluationSummary | null {
  if (evaluations.kind === 'summed') return { ...evaluations.summary };
  const all = evaluations.metrics;
  const total = all.reduce((a, m) => a + m.numExamples, 0);
  if (!all.length || total === 0) return null;
  const mean = (f: (m: EvaluationMetrics) => number): number =>
    all.reduce((a, m) => a + f(m) * m.numExamples, 0) / total;
  const withAuc = all.filter((m) => m.auc !== null);
  const aucTotal = withAuc.reduce((a, m) => a + m.numExamples, 0);
  return {
    loss: mean((m) => m.loss),
    accuracy: mean((m) => m.accuracy),
    f1: mean((m) => m.f1),
    auc: aucTotal > 0 ? withAuc.reduce((a, m) => a + m.auc! * m.numExamples, 0) / aucTotal : null,
    numExamples: total,
    sites: all.length,
  };
}

/** A state vector of the model's length: the stored one, or `fill` before the first step. */
export function stateVector(
  strategy: string,
  state: StrategyState,
  key: string,
  length: number,
  fill: number,
): Float32Array {
  const v = state.vectors[key];
  if (v === undefined) return new Float32Array(length).fill(fill);
  if (v.length !== length) {
    throw new StrategyError(
      StrategyErrorCode.STRATEGY_STATE_INVALID,
      `${strategy}: state vector "${key}" has ${v.length} values, the model ${length}`,
    );
  }
  return v;
}

function sumOf(strategy: string, length: number, updates: readonly SiteUpdate[]): AggregateSum {
  if (updates.length === 0) throw inputError(strategy, 'no updates to aggregate');
  const sum = new Float64Array(length);
  let totalWeight = 0;
  for (const u of updates) {
    checkUpdate(strategy, length, u);
    for (let i = 0; i < length; i++) sum[i]! += u.weight * u.delta[i]!;
    totalWeight += u.weight;
  }
  return { sum, totalWeight, contributors: updates.map((u) => u.siteId) };
}

function checkUpdate(strategy: string, length: number, u: SiteUpdate): void {
  if (u.delta.length !== length) {
    throw inputError(
      strategy,
      `site ${u.siteId} sent ${u.delta.length} values, the model has ${length}`,
    );
  }
  if (!(u.weight > 0) || !Number.isFinite(u.weight)) {
    throw inputError(strategy, `site ${u.siteId}'s weight must be a positive finite number`);
  }
  for (let i = 0; i < length; i++) {
    if (!Number.isFinite(u.delta[i]!)) {
      throw inputError(strategy, `site ${u.siteId}'s update has a non-finite value at ${i}`);
    }
  }
}

function checkGlobal(strategy: string, global: Float32Array): void {
  if (global.length === 0) throw inputError(strategy, 'the model has no weights');
}

function inputError(strategy: string, why: string): StrategyError {
  return new StrategyError(StrategyErrorCode.STRATEGY_INPUT_INVALID, `${strategy}: ${why}`);
}
