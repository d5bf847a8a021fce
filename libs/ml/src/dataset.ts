import { MlError } from './errors';

/** A labelled table in memory: row-major float32 features and one label per row. */
export interface Dataset {
  /** numRows x numFeatures, row-major. */
  features: Float32Array;
  labels: Float32Array;
  numRows: number;
  numFeatures: number;
  featureNames: string[];
  labelName: string;
}

/** Throws MlError('DATASET') when the arrays and counts of a dataset disagree. */
export function checkDataset(ds: Dataset): void {
  const { numRows, numFeatures } = ds;
  if (
    !Number.isInteger(numRows) ||
    numRows < 0 ||
    !Number.isInteger(numFeatures) ||
    numFeatures < 1
  ) {
    throw new MlError(
      'DATASET',
      `dataset has ${numRows} rows and ${numFeatures} features; need integers, at least one feature`,
    );
  }
  if (ds.features.length !== numRows * numFeatures) {
    throw new MlError(
      'DATASET',
      `dataset features hold ${ds.features.length} values, expected ${numRows} rows x ${numFeatures} features`,
    );
  }
  if (ds.labels.length !== numRows) {
    throw new MlError('DATASET', `dataset has ${ds.labels.length} labels for ${numRows} rows`);
  }
  if (ds.featureNames.length !== numFeatures) {
    throw new MlError(
      'DATASET',
      `dataset names ${ds.featureNames.length} features but has ${numFeatures} feature columns`,
    );
  }
}

/** A new dataset holding copies of the given rows, in the given order (repeats allowed). */
export function subsetRows(ds: Dataset, rows: number[]): Dataset {
  checkDataset(ds);
  const d = ds.numFeatures;
  const features = new Float32Array(rows.length * d);
  const labels = new Float32Array(rows.length);
  rows.forEach((r, i) => {
    if (!Number.isInteger(r) || r < 0 || r >= ds.numRows) {
      throw new MlError('INVALID_ARGUMENT', `row index ${r} is outside 0..${ds.numRows - 1}`);
    }
    features.set(ds.features.subarray(r * d, (r + 1) * d), i * d);
    labels[i] = ds.labels[r] as number;
  });
  return {
    features,
    labels,
    numRows: rows.length,
    numFeatures: d,
    featureNames: [...ds.featureNames],
    labelName: ds.labelName,
  };
}

/** Stacks datasets with the same columns (names and order) into one. */
export function concatDatasets(parts: Dataset[]): Dataset {
  const first = parts[0];
  if (first === undefined)
    throw new MlError('INVALID_ARGUMENT', 'concatDatasets needs at least one dataset');
  const names = [...first.featureNames, first.labelName].join('\u0000');
  let numRows = 0;
  parts.forEach((p, i) => {
    checkDataset(p);
    if ([...p.featureNames, p.labelName].join('\u0000') !== names) {
      throw new MlError(
        'DATASET',
        `dataset ${i} has columns ${[...p.featureNames, p.labelName].join(', ')}; ` +
          `dataset 0 has ${[...first.featureNames, first.labelName].join(', ')}`,
      );
    }
    numRows += p.numRows;
  });
  const features = new Float32Array(numRows * first.numFeatures);
  const labels = new Float32Array(numRows);
  let row = 0;
  for (const p of parts) {
    features.set(p.features, row * first.numFeatures);
    labels.set(p.labels, row);
    row += p.numRows;
  }
  return {
    features,
    labels,
    numRows,
    numFeatures: first.numFeatures,
    featureNames: [...first.featureNames],
    labelName: first.labelName,
  };
}
