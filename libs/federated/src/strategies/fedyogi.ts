import { z } from 'zod';
import { adaptiveFields, AdaptiveStrategy, beta2Field } from './adaptive';
import type { StrategyDefinition } from './types';

const configSchema = z.object({ ...adaptiveFields, beta2: beta2Field }).strict();
/** FedYogi's settings. */
export type FedYogiConfig = z.infer<typeof configSchema>;

/**
 * FedYogi (Reddi et al. 2021): v_t = v_{t-1} - (1 - beta2) Delta^2 sign(v_{t-1} - Delta^2), which
 * grows v as Adam does but shrinks it only additively.
 */
export class FedYogi extends AdaptiveStrategy {
  readonly name = 'fedyogi';

  constructor(private readonly config: FedYogiConfig) {
    super(config);
  }

  protected secondMoment(v: number, deltaSquared: number): number {
    return v - (1 - this.config.beta2) * deltaSquared * Math.sign(v - deltaSquared);
  }
}

/** The registry entry of `fedyogi`. */
export const fedYogiDefinition: StrategyDefinition<FedYogiConfig> = {
  name: 'fedyogi',
  summary: 'FedYogi (Reddi et al. 2021): Yogi as the server optimizer on the mean update.',
  needsIndividualUpdates: false,
  configSchema,
  create: (config) => new FedYogi(config),
};
