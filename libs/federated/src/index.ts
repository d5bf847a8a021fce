export * from './vector';
export * from './aggregation';
export * from './transforms';

/**
 * Strategies (Flower's shape): `buildStrategy(name, json, deps)` from the registry, then per round
 * `configureTrain(round, state)`, `aggregateTrain(global, sumOrUpdates, state)`,
 * `aggregateEvaluate(...)`; state persists as `serializeState(state)` / `parseState(json, n)`.
 *
 * @example
 * checkStrategyCompatible('fedadam', { secureAggregation: true });
 * const s = buildStrategy('fedadam', { serverLearningRate: 0.01 });
 * const { weights, state } = s.aggregateTrain(global, collector.result(), s.initialState());
 */
export type {
  EvaluateAggregate,
  EvaluationMetrics,
  EvaluationSummary,
  SerializedStrategyState,
  SerializedVector,
  Strategy,
  StrategyDefinition,
  StrategyDeps,
  StrategyState,
  TrainAggregate,
  TrainInstructions,
  TrainResult,
  UniformRandom,
} from './strategies/types';
/** Errors: every strategy and registry function throws `StrategyError` with a `StrategyErrorCode`. */
export { StrategyError, StrategyErrorCode } from './strategies/errors';
/** The registry: names, configurations (zod and JSON Schema), compatibility, registration. */
export {
  STRATEGIES,
  STRATEGY_NAME_PATTERN,
  buildStrategy,
  checkStrategyCompatible,
  parseStrategyConfig,
  registerStrategy,
  strategyCatalog,
  strategyConfigJsonSchema,
  strategyDefinition,
  strategyNames,
  type StrategyCatalogEntry,
} from './strategies/registry';
/** Building blocks for a new strategy file. */
export {
  BaseStrategy,
  applyStep,
  combineEvaluations,
  individualUpdates,
  isIndividualUpdates,
  stateVector,
  weightedMeanUpdate,
} from './strategies/common';
export {
  MAX_STATE_VECTOR_LENGTH,
  STATE_FORMAT,
  emptyState,
  parseStrategyState,
  serializeStrategyState,
} from './strategies/state';
export { cryptoUniformRandom, seededUniformRandom, shuffled } from './strategies/random';
export { RobustStrategy, bucketMeans, plainMean } from './strategies/robust';
/** The built-in strategies, one file each. */
export { FedAvg, type FedAvgConfig } from './strategies/fedavg';
export { FedAvgM, type FedAvgMConfig } from './strategies/fedavgm';
export { FedProx, type FedProxConfig } from './strategies/fedprox';
export { AdaptiveStrategy } from './strategies/adaptive';
export { FedAdam, type FedAdamConfig } from './strategies/fedadam';
export { FedYogi, type FedYogiConfig } from './strategies/fedyogi';
export { FedAdagrad, type FedAdagradConfig } from './strategies/fedadagrad';
export { Median, type MedianConfig } from './strategies/median';
export { TrimmedMean, type TrimmedMeanConfig } from './strategies/trimmed-mean';
export { Krum, krumScores, type KrumConfig } from './strategies/krum';
export { MultiKrum, type MultiKrumConfig } from './strategies/multi-krum';

/**
 * The Grid: the round engine's port to the sites (who is connected, send, collect by a deadline),
 * with an in-memory Grid and a fake clock for tests and simulation.
 *
 * @example
 * const grid = new InMemoryGrid<Msg>(new FakeClock());
 * const answers = grid.collect({ from, accept, until: grid.clock.now() + 30_000 });
 * grid.broadcast(from, jsonMessage(train));
 */
export {
  binaryMessage,
  jsonMessage,
  runCollect,
  systemClock,
  type Clock,
  type CollectOptions,
  type CollectResult,
  type CollectSink,
  type ConnectionChange,
  type Grid,
  type Inbound,
  type Outbound,
  type Verdict,
} from './grid/grid';
export { InMemoryGrid, InMemorySite } from './grid/in-memory-grid';
export { FakeClock } from './grid/fake-clock';

/**
 * The round engine: `RoundRunner` composes workflows (selection, plain training, evaluation)
 * over a Grid with a strategy and a `RoundStore`.
 *
 * @example
 * const runner = new RoundRunner({ grid, store: new MemoryRoundStore(initial), strategy, minSites: 3, roundTimeoutMs: 30_000 });
 * await runner.run(10);
 */
export * from './engine/index';
