import { z } from 'zod';
import {
  applyStep,
  BaseStrategy,
  weightedMeanUpdate,
  type StrategyDefinition,
  type StrategyState,
  type TrainAggregate,
  type TrainResult,
} from '@confide/federated';

/**
 * A strategy defined outside libs/federated, in one file, as a user would: it takes a configurable
 * fraction of FedAvg's step. Registering it (registerStrategy) is all it takes to run a federation.
 */
const schema = z
  .object({
    fraction: z.number().gt(0).max(1).default(0.5).describe('share of the mean update taken'),
  })
  .strict();

class PartialStep extends BaseStrategy {
  readonly name = 'partial-step';
  readonly needsIndividualUpdates = false;
  constructor(private readonly fraction: number) {
    super();
  }
  aggregateTrain(
    global: Float32Array,
    aggregate: TrainAggregate,
    state: StrategyState,
  ): TrainResult {
    const mean = weightedMeanUpdate(this.name, global, aggregate);
    return {
      weights: applyStep(
        this.name,
        global,
        mean.map((x) => x * this.fraction),
      ),
      state: { steps: state.steps + 1, vectors: {} },
    };
  }
}

export const partialStep: StrategyDefinition<z.infer<typeof schema>> = {
  name: 'partial-step',
  summary: 'Takes a fraction of the FedAvg step (a strategy defined in a test).',
  needsIndividualUpdates: false,
  configSchema: schema,
  create: (config) => new PartialStep(config.fraction),
};
