import { meanUpdate, type AggregateSum } from './aggregation';

/** Names of the server strategies a federation can use. */
export const STRATEGY_NAMES = ['fedavg'] as const;
export type StrategyName = (typeof STRATEGY_NAMES)[number];

/**
 * A strategy's server step: from the global weights and the round's aggregate, the next global weights.
 * Pure: it never touches the network or the database (Flower's `aggregateTrain`).
 */
export interface Strategy {
  readonly name: StrategyName;
  serverStep(global: Float32Array, aggregate: AggregateSum): Float32Array;
}

/** FedAvg (McMahan et al. 2017): global + sample-weighted mean of the site updates. */
export class FedAvg implements Strategy {
  readonly name = 'fedavg' as const;
  serverStep(global: Float32Array, aggregate: AggregateSum): Float32Array {
    const mean = meanUpdate(aggregate);
    if (mean.length !== global.length) {
      throw new Error(`aggregate has ${mean.length} values, the model ${global.length}`);
    }
    const out = new Float32Array(global.length);
    for (let i = 0; i < out.length; i++) out[i] = global[i]! + mean[i]!;
    return out;
  }
}

/** The strategy for a name stored in a federation's configuration. */
export function createStrategy(name: StrategyName): Strategy {
  switch (name) {
    case 'fedavg':
      return new FedAvg();
  }
}
