import { z } from 'zod';
import { adaptiveFields, AdaptiveStrategy } from './adaptive';
import type { StrategyDefinition } from './types';

const configSchema = z.object({ ...adaptiveFields }).strict();
/** FedAdagrad's settings (it has no beta2). */
export type FedAdagradConfig = z.infer<typeof configSchema>;

/** FedAdagrad (Reddi et al. 2021): v_t = v_{t-1} + Delta^2. */
export class FedAdagrad extends AdaptiveStrategy {
  readonly name = 'fedadagrad';

  constructor(config: FedAdagradConfig) {
    super(config);
  }

  protected secondMoment(v: number, deltaSquared: number): number {
    return v + deltaSquared;
  }
}

/** The registry entry of `fedadagrad`. */
export const fedAdagradDefinition: StrategyDefinition<FedAdagradConfig> = {
  name: 'fedadagrad',
  summary: 'FedAdagrad (Reddi et al. 2021): Adagrad as the server optimizer on the mean update.',
  needsIndividualUpdates: false,
  configSchema,
  create: (config) => new FedAdagrad(config),
};
