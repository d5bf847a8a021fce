import { checkDataset, type Dataset } from './dataset';
import { MlError } from './errors';

/** What one site shares in the standardisation pre-round: row count and per-feature sums. */
export interface FeatureStatsPartial {
  count: number;
  sum: number[];
  sumSq: number[];
}

/** Per-feature mean and (population) standard deviation agreed by all sites. */
export interface FeatureStats {
  mean: number[];
  std: number[];
}

/** Row count, per-feature sum and sum of squares of one site's data (float64 accumulation). */
export function featureStatsPartial(ds: Dataset): FeatureStatsPartial {
  checkDataset(ds);
  const d = ds.numFeatures;
  const sum = new Array<number>(d).fill(0);
  const sumSq = new Array<number>(d).fill(0);
  for (let r = 0; r < ds.numRows; r++) {
    for (let j = 0; j < d; j++) {
      const x = ds.features[r * d + j] as number;
      sum[j] = (sum[j] as number) + x;
      sumSq[j] = (sumSq[j] as number) + x * x;
    }
  }
  return { count: ds.numRows, sum, sumSq };
}

/**
 * Combines the sites' partials into mean and population std. A feature with (numerically) zero
 * variance gets std 1 so that standardising it yields zeros rather than NaN.
 */
export function combineFeatureStats(parts: FeatureStatsPartial[]): FeatureStats {
  const first = parts[0];
  if (first === undefined) {
    throw new MlError('STATS_MISMATCH', 'combineFeatureStats needs at least one partial');
  }
  const d = first.sum.length;
  const sum = new Array<number>(d).fill(0);
  const sumSq = new Array<number>(d).fill(0);
  let count = 0;
  parts.forEach((p, i) => {
    if (p.sum.length !== d || p.sumSq.length !== d) {
      throw new MlError(
        'STATS_MISMATCH',
        `partial ${i} has ${p.sum.length} sums and ${p.sumSq.length} sums of squares; ` +
          `partial 0 has ${d} features`,
      );
    }
    if (!Number.isInteger(p.count) || p.count < 0) {
      throw new MlError('STATS_MISMATCH', `partial ${i} has an invalid row count ${p.count}`);
    }
    count += p.count;
    for (let j = 0; j < d; j++) {
      sum[j] = (sum[j] as number) + (p.sum[j] as number);
      sumSq[j] = (sumSq[j] as number) + (p.sumSq[j] as number);
    }
  });
  if (count === 0) throw new MlError('STATS_MISMATCH', 'the partials hold no rows');
  const mean = sum.map((s) => s / count);
  const std = sumSq.map((sq, j) => {
    const m = mean[j] as number;
    const variance = sq / count - m * m;
    if (!Number.isFinite(variance)) {
      throw new MlError('STATS_MISMATCH', `feature ${j}: the sums are not finite numbers`);
    }
    // E[x^2] - E[x]^2 cancels badly for constant features: treat tiny relative variance as zero.
    return variance > 1e-12 * m * m && variance > 0 ? Math.sqrt(variance) : 1;
  });
  return { mean, std };
}

/** A new dataset with every feature mapped to (x - mean) / std. */
export function standardize(ds: Dataset, stats: FeatureStats): Dataset {
  checkDataset(ds);
  const d = ds.numFeatures;
  if (stats.mean.length !== d || stats.std.length !== d) {
    throw new MlError(
      'STATS_MISMATCH',
      `the statistics cover ${stats.mean.length} means and ${stats.std.length} standard deviations; ` +
        `the dataset has ${d} features`,
    );
  }
  stats.std.forEach((s, j) => {
    if (!(s > 0) || !Number.isFinite(s)) {
      throw new MlError(
        'STATS_MISMATCH',
        `std of feature ${JSON.stringify(ds.featureNames[j])} is ${s}; it must be a positive number`,
      );
    }
  });
  const features = new Float32Array(ds.features.length);
  for (let r = 0; r < ds.numRows; r++) {
    for (let j = 0; j < d; j++) {
      const i = r * d + j;
      features[i] =
        ((ds.features[i] as number) - (stats.mean[j] as number)) / (stats.std[j] as number);
    }
  }
  return { ...ds, features, labels: ds.labels.slice(), featureNames: [...ds.featureNames] };
}
