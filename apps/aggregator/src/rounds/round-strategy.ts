import {
  buildStrategy,
  checkStrategyCompatible,
  IndividualUpdatesCollector,
  PlainSumCollector,
  StrategyError,
  type AggregateSum,
  type Strategy,
  type StrategyState,
  type TrainInstructions,
  type TrainResult,
  type UpdateCollector,
} from '@confide/federated';
import type { TrainConfig } from '@confide/protocol';
import type { FederationRow } from '../database/rows';

/** A round's strategy and the state it continues from. */
export interface RoundStrategy {
  strategy: Strategy;
  state: StrategyState;
}

/**
 * The federation's strategy, built from its stored configuration, with the state stored with the
 * round's base model version (null: the initial version, or one from before strategies kept state,
 * so the strategy starts afresh). A string says why the round cannot run.
 */
export function roundStrategy(
  fed: FederationRow,
  storedState: unknown,
  modelLength: number,
): RoundStrategy | string {
  try {
    const secure = fed.config.secureAggregation?.enabled ?? false;
    checkStrategyCompatible(fed.strategy, { secureAggregation: secure });
    const strategy = buildStrategy(fed.strategy, fed.config.strategyConfig);
    const state =
      storedState === null || storedState === undefined
        ? strategy.initialState()
        : strategy.parseState(storedState, modelLength);
    return { strategy, state };
  } catch (e) {
    if (e instanceof StrategyError) return `strategy "${fed.strategy}": ${e.message}`;
    throw e;
  }
}

/** The plain collector the strategy needs: each site's update kept, or only their running sum. */
export function plainCollector(s: RoundStrategy, length: number): UpdateCollector {
  return s.strategy.needsIndividualUpdates
    ? new IndividualUpdatesCollector(length)
    : new PlainSumCollector(length);
}

/** The round's training settings with the strategy's instructions (FedProx's mu) added. */
export function trainInstructions(
  s: RoundStrategy,
  round: number,
  train: TrainConfig,
): TrainConfig {
  const extra: TrainInstructions = s.strategy.configureTrain(round, s.state);
  // Only what the strategy asks for is added, so a FedAvg round's frame is what it always was.
  return extra.proximalMu === undefined ? train : { ...train, proximalMu: extra.proximalMu };
}

/**
 * The strategy's step: on each site's update when it needs them (and the collector kept them), else
 * on the sum. A string says why the strategy could not aggregate (e.g. too few updates for Krum).
 */
export function aggregateRound(
  s: RoundStrategy,
  global: Float32Array,
  aggregate: AggregateSum,
  collector: UpdateCollector | null,
): TrainResult | string {
  try {
    const input =
      s.strategy.needsIndividualUpdates && collector instanceof IndividualUpdatesCollector
        ? collector.updates()
        : aggregate;
    return s.strategy.aggregateTrain(global, input, s.state);
  } catch (e) {
    if (e instanceof StrategyError) {
      return `strategy "${s.strategy.name}" cannot aggregate: ${e.message}`;
    }
    throw e;
  }
}
