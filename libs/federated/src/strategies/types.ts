import type { z } from 'zod';
import type { AggregateSum, SiteUpdate } from '../aggregation';

/**
 * What a strategy aggregates: the weighted sum of the round's updates (all that secure aggregation
 * reveals), or, for a strategy with `needsIndividualUpdates`, each site's update and weight.
 */
export type TrainAggregate = AggregateSum | readonly SiteUpdate[];

/** The instructions a strategy sends every site for a round's local training. */
export interface TrainInstructions {
  /** FedProx: train on loss + mu/2 * ||w - w_global||^2. */
  proximalMu?: number;
}

/**
 * A strategy's memory between rounds (momentum, Adam moments), persisted with the model version so
 * an aggregator restarted between rounds continues exactly. Vectors are float32, one value per
 * model parameter; a strategy with no memory keeps `vectors` empty.
 */
export interface StrategyState {
  /** Server steps taken so far. */
  steps: number;
  vectors: Readonly<Record<string, Float32Array>>;
}

/** The new global weights and the strategy's new state after a round. */
export interface TrainResult {
  weights: Float32Array;
  state: StrategyState;
}

/** Held-out metrics of one site, or of several summed into one (structurally the protocol's). */
export interface EvaluationMetrics {
  loss: number;
  accuracy: number;
  f1: number;
  auc: number | null;
  numExamples: number;
}

/** Held-out metrics for the federation: the sites' combined metrics and how many sites reported. */
export interface EvaluationSummary extends EvaluationMetrics {
  sites: number;
}

/**
 * What a round's evaluation yields: each site's metrics (plain rounds), or metrics already combined
 * by a secure sum.
 */
export type EvaluateAggregate =
  | { kind: 'by-site'; metrics: readonly EvaluationMetrics[] }
  | { kind: 'summed'; summary: EvaluationSummary };

/**
 * A server strategy in Flower's shape. Pure: it never touches the network, the database or the
 * clock, and it never mutates its inputs; randomness comes from `StrategyDeps`.
 */
export interface Strategy {
  readonly name: string;
  /** True when `aggregateTrain` needs each site's update (it cannot run on a secure sum). */
  readonly needsIndividualUpdates: boolean;
  /** The state before the first round. */
  initialState(): StrategyState;
  /** What every site is told for local training in `round`. */
  configureTrain(round: number, state: StrategyState): TrainInstructions;
  /** The next global weights from the current ones and the round's updates. */
  aggregateTrain(
    global: Float32Array,
    aggregate: TrainAggregate,
    state: StrategyState,
  ): TrainResult;
  /** The federation's metrics from the sites' evaluations; null when no site reported. */
  aggregateEvaluate(evaluations: EvaluateAggregate): EvaluationSummary | null;
  /** The state as JSON (vectors as base64 float32), for the model version's record. */
  serializeState(state: StrategyState): SerializedStrategyState;
  /** State read back from `serializeState`'s JSON, checked against this strategy and model size. */
  parseState(json: unknown, modelLength: number): StrategyState;
}

/** A float32 vector in JSON: little-endian bytes in standard base64. */
export interface SerializedVector {
  dtype: 'float32';
  length: number;
  base64: string;
}

/** `StrategyState` as JSON. */
export interface SerializedStrategyState {
  format: 'confide.strategy-state/1';
  strategy: string;
  steps: number;
  vectors: Record<string, SerializedVector>;
}

/** Where a strategy draws randomness (bucketing); a uniform number in [0, 1). */
export type UniformRandom = () => number;

/** What a strategy may be given at creation besides its configuration. */
export interface StrategyDeps {
  /** Defaults to a CSPRNG; tests and the simulator pass `seededUniformRandom(seed)`. */
  random?: UniformRandom;
}

/**
 * A registry entry: one per strategy file. `configSchema` parses the user's JSON (applying
 * defaults); the REST schema, the CLI and the dashboard derive from it.
 */
export interface StrategyDefinition<C = unknown> {
  readonly name: string;
  /** One line for `--help`, the API's listing and the dashboard. */
  readonly summary: string;
  readonly needsIndividualUpdates: boolean;
  readonly configSchema: z.ZodType<C>;
  create(config: C, deps?: StrategyDeps): Strategy;
}
