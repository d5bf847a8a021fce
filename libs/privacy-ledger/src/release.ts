import type { MechanismParams } from './mechanism';

/**
 * The mechanism of a record-level (DP-SGD) release: Poisson sampling rate q = batch / local records,
 * `epochs * round(1 / q)` noisy steps, as `trainModelDpSgd` runs them.
 * @example recordLevelRelease({ batchSize: 32, epochs: 2, numExamples: 152, noiseMultiplier: 1.1, clipNorm: 1 })
 */
export function recordLevelRelease(p: {
  batchSize: number;
  epochs: number;
  numExamples: number;
  noiseMultiplier: number;
  clipNorm: number;
}): MechanismParams {
  const q = Math.min(1, p.batchSize / p.numExamples);
  return {
    level: 'record',
    samplingRate: q,
    noiseMultiplier: p.noiseMultiplier,
    steps: p.epochs * Math.round(1 / q),
    clipNorm: p.clipNorm,
    survivorsAssumed: null,
    accountant: 'rdp',
  };
}

/**
 * The mechanism of a site-level (DP-FedAvg) release: one release of the clipped update with sampling
 * rate q = sampled sites / approved sites. Without `integerNoise`, continuous Gaussian noise; with it
 * (secure aggregation), the distributed discrete Gaussian that `survivorsAssumed` sites add after
 * quantising with the round's `scale`, over the model's `dimension` coordinates.
 * @example siteLevelRelease({ siteSamplingRate: 1, noiseMultiplier: 1, clipNorm: 0.5, survivorsAssumed: 2, integerNoise: { scale: 2 ** 20, dimension: 513 } })
 */
export function siteLevelRelease(p: {
  siteSamplingRate: number;
  noiseMultiplier: number;
  clipNorm: number;
  survivorsAssumed: number | null;
  integerNoise?: { scale: number; dimension: number } | null;
}): MechanismParams {
  const m: MechanismParams = {
    level: 'site',
    samplingRate: p.siteSamplingRate,
    noiseMultiplier: p.noiseMultiplier,
    steps: 1,
    clipNorm: p.clipNorm,
    survivorsAssumed: p.survivorsAssumed,
    accountant: 'rdp',
  };
  if (!p.integerNoise) return m;
  return {
    ...m,
    noise: 'distributed-discrete-gaussian',
    quantizationScale: p.integerNoise.scale,
    dimension: p.integerNoise.dimension,
  };
}

/**
 * The mechanism of a statistics or evaluation release: the site's summed vector, of L2 sensitivity
 * `sensitivity`, released once with Gaussian noise of standard deviation noiseMultiplier x sensitivity
 * (each site adds all of it itself, so no assumption about other sites is made).
 * @example sumRelease({ release: 'evaluation', level: 'record', noiseMultiplier: 40, sensitivity: Math.sqrt(3) })
 */
export function sumRelease(p: {
  release: 'statistics' | 'evaluation';
  level: 'record' | 'site';
  noiseMultiplier: number;
  sensitivity: number;
}): MechanismParams {
  return {
    level: p.level,
    samplingRate: 1,
    noiseMultiplier: p.noiseMultiplier,
    steps: 1,
    clipNorm: p.sensitivity,
    survivorsAssumed: null,
    accountant: 'rdp',
    release: p.release,
  };
}
