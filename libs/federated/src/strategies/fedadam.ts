import { z } from 'zod';
import { adaptiveFields, AdaptiveStrategy, beta2Field } from './adaptive';
import type { StrategyDefinition } from './types';

const configSchema = z.object({ ...adaptiveFields, beta2: beta2Field }).strict();
/** FedAdam's settings. */
export type FedAdamConfig = z.infer<typeof configSchema>;

/** FedAdam (Reddi et al. 2021): v_t = beta2 v_{t-1} + (1 - beta2) Delta^2. */
export class FedAdam extends AdaptiveStrategy {
  readonly name = 'fedadam';

  constructor(private readonly config: FedAdamConfig) {
    super(config);
  }

  protected secondMoment(v: number, deltaSquared: number): number {
    const { beta2 } = this.config;
    return beta2 * v + (1 - beta2) * deltaSquared;
  }
}

/** The registry entry of `fedadam`. */
export const fedAdamDefinition: StrategyDefinition<FedAdamConfig> = {
  name: 'fedadam',
  summary: 'FedAdam (Reddi et al. 2021): Adam as the server optimizer on the mean update.',
  needsIndividualUpdates: false,
  configSchema,
  create: (config) => new FedAdam(config),
};
