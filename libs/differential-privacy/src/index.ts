/**
 * @confide/differential-privacy: clipping, CSPRNG noise (continuous and integer), and privacy
 * accounting (RDP as Opacus, PLD as dp_accounting) for DP-SGD and DP-FedAvg. Pure TypeScript.
 */
export { DpError, DpErrorCode } from './errors';
export { cryptoRandomSource, type RandomSource } from './random';
export { clipL2, clipFactors } from './clip';
export { gaussianNoise, addGaussianNoise } from './gaussian';
export { sampleDiscreteGaussian, sampleSkellam, distributedNoiseShare } from './discrete';
export {
  DEFAULT_ORDERS,
  rdpSubsampledGaussian,
  rdpToEpsilon,
  type EpsilonAtOrder,
  type RdpConversion,
} from './rdp';
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
export { PldAccountant, pldEpsilon, type GaussianEvent, type PldOptions } from './pld';
export { erfc, erfcx, logErfc, ndtr, logNdtr } from './special';
