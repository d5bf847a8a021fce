import { z } from 'zod';
import { applyStep, BaseStrategy, stateVector, weightedMeanUpdate } from './common';
import type { StrategyDefinition, StrategyState, TrainAggregate, TrainResult } from './types';

const configSchema = z
  .object({
    serverLearningRate: z
      .number()
      .gt(0)
      .max(100)
      .default(1)
      .describe('eta: the server step size applied to the momentum buffer'),
    momentum: z
      .number()
      .min(0)
      .lt(1)
      .default(0.9)
      .describe('beta: the share of the previous momentum kept each round'),
  })
  .strict();
/** FedAvgM's settings. */
export type FedAvgMConfig = z.infer<typeof configSchema>;

/**
 * FedAvg with server momentum (Hsu et al. 2019): u_t = beta u_{t-1} + mean update,
 * x_{t+1} = x_t + eta u_t. The momentum buffer u is the state.
 */
export class FedAvgM extends BaseStrategy {
  readonly name = 'fedavgm';
  readonly needsIndividualUpdates = false;
  protected override readonly stateVectors = ['momentum'];

  constructor(private readonly config: FedAvgMConfig) {
    super();
  }

  aggregateTrain(
    global: Float32Array,
    aggregate: TrainAggregate,
    state: StrategyState,
  ): TrainResult {
    const { serverLearningRate: eta, momentum: beta } = this.config;
    const delta = weightedMeanUpdate(this.name, global, aggregate);
    const previous = stateVector(this.name, state, 'momentum', global.length, 0);
    const momentum = new Float32Array(global.length);
    const step = new Float64Array(global.length);
    for (let i = 0; i < step.length; i++) {
      momentum[i] = beta * previous[i]! + delta[i]!;
      // The step uses the stored (float32) buffer so a restarted aggregator computes the same.
      step[i] = eta * momentum[i]!;
    }
    return {
      weights: applyStep(this.name, global, step),
      state: { steps: state.steps + 1, vectors: { momentum } },
    };
  }
}

/** The registry entry of `fedavgm`. */
export const fedAvgMDefinition: StrategyDefinition<FedAvgMConfig> = {
  name: 'fedavgm',
  summary: 'FedAvgM (Hsu et al. 2019): FedAvg with server momentum.',
  needsIndividualUpdates: false,
  configSchema,
  create: (config) => new FedAvgM(config),
};
