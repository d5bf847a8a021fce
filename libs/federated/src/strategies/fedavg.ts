import { z } from 'zod';
import type { AggregateSum } from '../aggregation';
import { applyStep, BaseStrategy, weightedMeanUpdate } from './common';
import type { StrategyDefinition, StrategyState, TrainAggregate, TrainResult } from './types';

const configSchema = z.object({}).strict();
/** FedAvg takes no settings. */
export type FedAvgConfig = z.infer<typeof configSchema>;

/** FedAvg (McMahan et al. 2017): global + sample-weighted mean of the site updates. */
export class FedAvg extends BaseStrategy {
  readonly name: string = 'fedavg';
  readonly needsIndividualUpdates = false;

  aggregateTrain(
    global: Float32Array,
    aggregate: TrainAggregate,
    state: StrategyState,
  ): TrainResult {
    const mean = weightedMeanUpdate(this.name, global, aggregate);
    // The mean is rounded to float32 before the addition, as the aggregator always did.
    for (let i = 0; i < mean.length; i++) mean[i] = Math.fround(mean[i]!);
    return {
      weights: applyStep(this.name, global, mean),
      state: { steps: state.steps + 1, vectors: {} },
    };
  }

  /** The next global weights from a round's sum (the aggregator's call before strategies had state). */
  serverStep(global: Float32Array, aggregate: AggregateSum): Float32Array {
    return this.aggregateTrain(global, aggregate, this.initialState()).weights;
  }
}

/** The registry entry of `fedavg`. */
export const fedAvgDefinition: StrategyDefinition<FedAvgConfig> = {
  name: 'fedavg',
  summary: 'FedAvg (McMahan et al. 2017): the sample-weighted mean of the site updates.',
  needsIndividualUpdates: false,
  configSchema,
  create: () => new FedAvg(),
};
