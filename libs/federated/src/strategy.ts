import type { AggregateSum } from './aggregation';
import { FedAvg } from './strategies/fedavg';

/**
 * The strategies the aggregator's round engine runs today. The registry (`strategyNames()`) holds
 * more; a name joins this list when the engine runs strategies through the registry.
 */
export const STRATEGY_NAMES = ['fedavg'] as const;
export type StrategyName = (typeof STRATEGY_NAMES)[number];

/** A stateless server step on a round's sum: what the aggregator calls until it keeps strategy state. */
export interface ServerStep {
  readonly name: string;
  serverStep(global: Float32Array, aggregate: AggregateSum): Float32Array;
}

/** The server step for a name stored in a federation's configuration. */
export function createStrategy(name: StrategyName): ServerStep {
  switch (name) {
    case 'fedavg':
      return new FedAvg();
  }
}
