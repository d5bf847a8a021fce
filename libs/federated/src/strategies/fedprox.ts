import { z } from 'zod';
import { FedAvg } from './fedavg';
import type { StrategyDefinition, StrategyState, TrainInstructions } from './types';

const configSchema = z
  .object({
    proximalMu: z
      .number()
      .min(0)
      .max(1000)
      .default(0.01)
      .describe('mu: weight of the proximal term mu/2 * ||w - w_global||^2 in local training'),
  })
  .strict();
/** FedProx's settings. */
export type FedProxConfig = z.infer<typeof configSchema>;

/**
 * FedProx (Li et al. 2020): sites add a proximal term to their local loss, which keeps their weights
 * near the global ones under heterogeneous data; the server step is FedAvg's.
 */
export class FedProx extends FedAvg {
  override readonly name: string = 'fedprox';

  constructor(private readonly config: FedProxConfig) {
    super();
  }

  override configureTrain(_round: number, _state: StrategyState): TrainInstructions {
    return { proximalMu: this.config.proximalMu };
  }
}

/** The registry entry of `fedprox`. */
export const fedProxDefinition: StrategyDefinition<FedProxConfig> = {
  name: 'fedprox',
  summary: 'FedProx (Li et al. 2020): FedAvg with a proximal term mu in local training.',
  needsIndividualUpdates: false,
  configSchema,
  create: (config) => new FedProx(config),
};
