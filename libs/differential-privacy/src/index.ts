/**
 * @confide/differential-privacy: L2 clipping, CSPRNG noise (continuous and integer-valued) and
 * privacy accounting (RDP as Opacus' RDPAccountant, PLD as dp_accounting's PLDAccountant) for
 * DP-SGD and DP-FedAvg. Pure TypeScript: typed arrays in, typed arrays and numbers out.
 *
 * @example
 * import { clipL2, addGaussianNoise, computeEpsilon } from '@confide/differential-privacy';
 * const { clipped } = clipL2(update, 1.0);                 // sensitivity 1
 * const noisy = addGaussianNoise(clipped, 1.1 * 1.0);      // noise multiplier 1.1
 * computeEpsilon({ q: 0.01, sigma: 1.1, steps: 1000 }, 1e-5); // { epsilon, order }
 */

/** Errors: `new DpError(DpErrorCode.INVALID_DELTA, ...)`; every public function throws these. */
export { DpError, DpErrorCode } from './errors';
/** Randomness: `gaussianNoise(n, s, cryptoRandomSource)` (the default). */
export { cryptoRandomSource, type RandomSource } from './random';
/** Clipping: `clipL2(update, c)`, `clipFactors(perExampleGrads, batchSize, c)`. */
export { clipL2, clipFactors } from './clip';
/** Continuous Gaussian noise: `gaussianNoise(n, sigma)`, `addGaussianNoise(v, sigma)`. */
export { gaussianNoise, addGaussianNoise } from './gaussian';
/** Integer noise for secure aggregation: `sampleSkellam(distributedNoiseShare({ sigma, t }).skellamMu, n)`. */
export { sampleDiscreteGaussian, sampleSkellam, distributedNoiseShare } from './discrete';
/** RDP of the subsampled Gaussian: `rdpToEpsilon(rdpSubsampledGaussian(q, s).map((r) => r * T), DEFAULT_ORDERS, 1e-5)`. */
export {
  DEFAULT_ORDERS,
  rdpSubsampledGaussian,
  rdpToEpsilon,
  type EpsilonAtOrder,
  type RdpConversion,
} from './rdp';
/** RDP of the distributed discrete Gaussian under secure aggregation: `rdpDistributedDiscreteGaussian(q, quantizedDdgMechanism({ noiseMultiplier, clipNorm, scale, dimension, survivors }))`. */
export {
  ddgTau,
  quantizedDdgMechanism,
  rdpDistributedDiscreteGaussian,
  rdpPoissonSubsampled,
  type DdgMechanism,
  type QuantizedRelease,
} from './ddg';
/** Accounting: `computeEpsilon({ history }, delta)`, `findNoiseMultiplier({ targetEpsilon, delta, q, steps })`. */
export {
  composeRdp,
  computeEpsilon,
  findNoiseMultiplier,
  type Accountant,
  type EpsilonOptions,
  type HistoryEntry,
  type NoiseSearch,
  type PrivacyInput,
} from './accountant';
/** Budget shares through zCDP: `shareNoiseMultiplier({ epsilon: 1, delta: 1e-5, share: 0.1, releases: 11 })`. */
export { gaussianZcdp, shareNoiseMultiplier, zcdpOfBudget } from './budget-share';
/** PLD accounting: `new PldAccountant().compose({ q, sigma, steps }).getEpsilon(1e-5)`. */
export { PldAccountant, pldEpsilon, type GaussianEvent, type PldOptions } from './pld';
/** Special functions the accountants use: `logErfc(30)`, `logNdtr(-40)`. */
export { erfc, erfcx, logErfc, ndtr, logNdtr } from './special';
