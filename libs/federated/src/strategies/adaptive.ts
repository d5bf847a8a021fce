import { z } from 'zod';
import { applyStep, BaseStrategy, stateVector, weightedMeanUpdate } from './common';
import type { StrategyState, TrainAggregate, TrainResult } from './types';

/** The settings FedAdam, FedYogi and FedAdagrad share (defaults of Reddi et al. 2021). */
export const adaptiveFields = {
  serverLearningRate: z
    .number()
    .gt(0)
    .max(100)
    .default(0.1)
    .describe('eta: the server learning rate'),
  beta1: z
    .number()
    .min(0)
    .lt(1)
    .default(0.9)
    .describe('beta1: decay of the first moment (momentum) of the pseudo-gradient'),
  tau: z
    .number()
    .gt(0)
    .max(1)
    .default(1e-3)
    .describe('tau: the adaptivity floor added to sqrt(v); v starts at tau^2'),
};

/** beta2, the second-moment decay of FedAdam and FedYogi. */
export const beta2Field = z
  .number()
  .min(0)
  .lt(1)
  .default(0.99)
  .describe('beta2: decay of the second moment of the pseudo-gradient');

/** What the adaptive server step needs to know. */
export interface AdaptiveConfig {
  serverLearningRate: number;
  beta1: number;
  tau: number;
}

/**
 * Algorithm 2 of Reddi et al. 2021 ("Adaptive Federated Optimization"): with Delta the mean update,
 * m_t = beta1 m_{t-1} + (1 - beta1) Delta, v_t by the subclass's rule, and
 * x_{t+1} = x_t + eta m_t / (sqrt(v_t) + tau); m_{-1} = 0, v_{-1} = tau^2, no bias correction.
 * The moments m and v are the state, kept in float32; the step is computed from the stored values
 * so an aggregator restarted between rounds continues exactly.
 */
export abstract class AdaptiveStrategy extends BaseStrategy {
  readonly needsIndividualUpdates = false;
  protected override readonly stateVectors = ['m', 'v'];

  constructor(protected readonly adaptive: AdaptiveConfig) {
    super();
  }

  /** v_t for one coordinate from v_{t-1} and Delta^2. */
  protected abstract secondMoment(v: number, deltaSquared: number): number;

  aggregateTrain(
    global: Float32Array,
    aggregate: TrainAggregate,
    state: StrategyState,
  ): TrainResult {
    const { serverLearningRate: eta, beta1, tau } = this.adaptive;
    const delta = weightedMeanUpdate(this.name, global, aggregate);
    const m0 = stateVector(this.name, state, 'm', global.length, 0);
    const v0 = stateVector(this.name, state, 'v', global.length, tau * tau);
    const m = new Float32Array(global.length);
    const v = new Float32Array(global.length);
    const step = new Float64Array(global.length);
    for (let i = 0; i < step.length; i++) {
      const d = delta[i]!;
      m[i] = beta1 * m0[i]! + (1 - beta1) * d;
      v[i] = this.secondMoment(v0[i]!, d * d);
      step[i] = (eta * m[i]!) / (Math.sqrt(v[i]!) + tau);
    }
    return {
      weights: applyStep(this.name, global, step),
      state: { steps: state.steps + 1, vectors: { m, v } },
    };
  }
}
