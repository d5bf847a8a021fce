import {
  DEFAULT_ORDERS,
  quantizedDdgMechanism,
  rdpDistributedDiscreteGaussian,
  rdpSubsampledGaussian,
  rdpToEpsilon,
} from '@confide/differential-privacy';
import { canonicalJson } from './canonical';
import type { LedgerAccountant, MechanismParams } from './mechanism';

const DDG_CACHE_LIMIT = 256;
const ddgCurves = new Map<string, Float64Array>();

/**
 * One release's curve of the distributed discrete Gaussian, memoised per parameter set: a ledger
 * holds a handful of distinct settings, and each costs a few thousand exp() calls.
 */
function ddgCurve(m: MechanismParams): Float64Array {
  const params = {
    q: m.samplingRate,
    noiseMultiplier: m.noiseMultiplier,
    clipNorm: m.clipNorm,
    scale: m.quantizationScale as number,
    dimension: m.dimension as number,
    survivors: m.survivorsAssumed as number,
  };
  const key = canonicalJson(params);
  let curve = ddgCurves.get(key);
  if (!curve) {
    const { q, ...release } = params;
    curve = rdpDistributedDiscreteGaussian(q, quantizedDdgMechanism(release), DEFAULT_ORDERS);
    if (ddgCurves.size >= DDG_CACHE_LIMIT) ddgCurves.clear();
    ddgCurves.set(key, curve);
  }
  return curve;
}

/**
 * Confide's accountant for the ledger, on Opacus's order grid, converted with Balle et al. 2020 (as
 * Opacus does); a release's curve is steps x the one-step curve of its mechanism:
 * - the continuous Gaussian (no `noise` field): RDP of the Poisson-subsampled Gaussian (Mironov,
 *   Talwar, Zhang 2019), with the noise multiplier the sum carries;
 * - the distributed discrete Gaussian (site level under secure aggregation): the bound of Kairouz,
 *   Liu, Steinke 2021 for `survivorsAssumed` noise-adding sites, with the integer-domain sensitivity
 *   of clipping to `clipNorm`, scaling by `quantizationScale` and stochastic rounding in `dimension`
 *   coordinates, subsampled with Zhu & Wang 2019 Theorem 5 (libs/differential-privacy/src/ddg.ts).
 * @example confideAccountant.epsilon(confideAccountant.releaseRdp(mechanism), 1e-5).epsilon
 */
export const confideAccountant: LedgerAccountant = {
  orders: DEFAULT_ORDERS,
  releaseRdp(m: MechanismParams): number[] {
    const step =
      m.noise === 'distributed-discrete-gaussian'
        ? ddgCurve(m)
        : rdpSubsampledGaussian(m.samplingRate, m.noiseMultiplier, DEFAULT_ORDERS);
    return Array.from(step, (x) => x * m.steps);
  },
  epsilon(rdp: number[], delta: number): { epsilon: number; order: number } {
    const r = rdpToEpsilon(rdp, DEFAULT_ORDERS, delta);
    return { epsilon: r.epsilon, order: r.order ?? Number.NaN };
  },
};
