import { DEFAULT_ORDERS, rdpSubsampledGaussian, rdpToEpsilon } from '@confide/differential-privacy';
import type { LedgerAccountant, MechanismParams } from './mechanism';

/**
 * Confide's accountant for the ledger: RDP of the Poisson-subsampled Gaussian on Opacus's order grid,
 * a release's curve = steps x the one-step curve, converted with Balle et al. 2020 (as Opacus does).
 * Site-level releases under secure aggregation are accounted with the noise multiplier the sum
 * carries when `survivorsAssumed` honest sites add their shares.
 * @example confideAccountant.epsilon(confideAccountant.releaseRdp(mechanism), 1e-5).epsilon
 */
export const confideAccountant: LedgerAccountant = {
  orders: DEFAULT_ORDERS,
  releaseRdp(m: MechanismParams): number[] {
    const step = rdpSubsampledGaussian(m.samplingRate, m.noiseMultiplier, DEFAULT_ORDERS);
    return Array.from(step, (x) => x * m.steps);
  },
  epsilon(rdp: number[], delta: number): { epsilon: number; order: number } {
    const r = rdpToEpsilon(rdp, DEFAULT_ORDERS, delta);
    return { epsilon: r.epsilon, order: r.order ?? Number.NaN };
  },
};
