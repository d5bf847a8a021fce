import { checkDataset, subsetRows, type Dataset } from './dataset';
import { MlError } from './errors';
import { dirichletSample, permutation, seededRandom, shuffleInPlace } from './random';

/** Row indices grouped by label value, in ascending label order. */
export function rowsByClass(ds: Dataset): number[][] {
  const groups = new Map<number, number[]>();
  for (let r = 0; r < ds.numRows; r++) {
    const label = ds.labels[r] as number;
    let group = groups.get(label);
    if (group === undefined) groups.set(label, (group = []));
    group.push(r);
  }
  return [...groups.entries()].sort((a, b) => a[0] - b[0]).map(([, rows]) => rows);
}

/** Splits `total` into integer shares proportional to `weights` (largest remainder, exact sum). */
export function apportion(total: number, weights: readonly number[]): number[] {
  const sum = weights.reduce((a, b) => a + b, 0);
  const exact = weights.map((w) => (total * w) / sum);
  const counts = exact.map(Math.floor);
  let left = total - counts.reduce((a, b) => a + b, 0);
  const byRemainder = exact
    .map((x, i) => [x - Math.floor(x), i] as const)
    .sort((a, b) => b[0] - a[0] || a[1] - b[1]);
  for (const [, i] of byRemainder) {
    if (left-- <= 0) break;
    counts[i] = (counts[i] as number) + 1;
  }
  return counts;
}

const ascending = (rows: number[]): number[] => rows.sort((a, b) => a - b);

function checkParts(ds: Dataset, parts: number, minRows: number): void {
  if (!Number.isInteger(parts) || parts < 1) {
    throw new MlError('INVALID_ARGUMENT', `parts must be a positive integer, got ${parts}`);
  }
  if (parts * minRows > ds.numRows) {
    throw new MlError(
      'PARTITION',
      `cannot give ${parts} parts at least ${minRows} rows each from ${ds.numRows} rows`,
    );
  }
}

/**
 * Seeded train/test split that keeps each class's share: round(numRows * testFraction) test rows,
 * apportioned over the classes by largest remainder. Rows keep their original order.
 */
export function stratifiedSplit(
  ds: Dataset,
  testFraction: number,
  seed: number,
): { train: Dataset; test: Dataset } {
  checkDataset(ds);
  if (!(testFraction > 0 && testFraction < 1)) {
    throw new MlError(
      'INVALID_ARGUMENT',
      `testFraction must be between 0 and 1, got ${testFraction}`,
    );
  }
  if (ds.numRows < 2) {
    throw new MlError('DATASET', `cannot split ${ds.numRows} row(s) into a train and a test set`);
  }
  const rng = seededRandom(seed);
  const groups = rowsByClass(ds).map((rows) => shuffleInPlace(rows, rng));
  const testSize = Math.min(ds.numRows - 1, Math.max(1, Math.round(ds.numRows * testFraction)));
  const perClass = apportion(
    testSize,
    groups.map((g) => g.length),
  );
  const train: number[] = [];
  const test: number[] = [];
  groups.forEach((rows, c) => {
    const k = perClass[c] as number;
    test.push(...rows.slice(0, k));
    train.push(...rows.slice(k));
  });
  return { train: subsetRows(ds, ascending(train)), test: subsetRows(ds, ascending(test)) };
}

/**
 * Seeded IID partition into `parts` sites: rows are shuffled within each class and dealt round-robin,
 * so part sizes differ by at most one and every part gets each class in (nearly) the same proportion.
 */
export function partitionIid(ds: Dataset, parts: number, seed: number): Dataset[] {
  checkDataset(ds);
  checkParts(ds, parts, 1);
  const rng = seededRandom(seed);
  const assigned = Array.from({ length: parts }, () => [] as number[]);
  let next = 0;
  for (const rows of rowsByClass(ds)) {
    for (const r of shuffleInPlace(rows, rng)) {
      (assigned[next % parts] as number[]).push(r);
      next++;
    }
  }
  // Which part receives the extra rows should not always be part 0.
  const order = permutation(parts, rng);
  return order.map((p) => subsetRows(ds, ascending(assigned[p] as number[])));
}

/**
 * Seeded label-skewed partition (Hsu et al. 2019): each class's rows are divided among the parts in
 * proportions drawn from Dirichlet(alpha); small alpha gives parts dominated by few classes. Parts left
 * with fewer than `minRows` rows are topped up with rows taken from the largest part.
 */
export function partitionDirichlet(
  ds: Dataset,
  parts: number,
  alpha: number,
  seed: number,
  minRows = 10,
): Dataset[] {
  checkDataset(ds);
  if (!(alpha > 0) || !Number.isFinite(alpha)) {
    throw new MlError('INVALID_ARGUMENT', `alpha must be a positive number, got ${alpha}`);
  }
  if (!Number.isInteger(minRows) || minRows < 1) {
    throw new MlError('INVALID_ARGUMENT', `minRows must be a positive integer, got ${minRows}`);
  }
  checkParts(ds, parts, minRows);
  const rng = seededRandom(seed);
  const assigned = Array.from({ length: parts }, () => [] as number[]);
  for (const rows of rowsByClass(ds)) {
    shuffleInPlace(rows, rng);
    const counts = apportion(rows.length, dirichletSample(parts, alpha, rng));
    let offset = 0;
    counts.forEach((k, p) => {
      (assigned[p] as number[]).push(...rows.slice(offset, offset + k));
      offset += k;
    });
  }
  // Top up small parts one row at a time from the currently largest part, taking a row of that part's
  // most common label: the donor's mix barely changes and the rest of the draw is kept as it is.
  for (;;) {
    const small = assigned.findIndex((rows) => rows.length < minRows);
    if (small < 0) break;
    let largest = 0;
    assigned.forEach((rows, p) => {
      if (rows.length > (assigned[largest] as number[]).length) largest = p;
    });
    const donor = assigned[largest] as number[];
    const counts = new Map<number, number>();
    for (const r of donor)
      counts.set(ds.labels[r] as number, (counts.get(ds.labels[r] as number) ?? 0) + 1);
    const common = [...counts.entries()].sort((a, b) => b[1] - a[1] || a[0] - b[0])[0]?.[0];
    const at = donor.findIndex((r) => ds.labels[r] === common);
    (assigned[small] as number[]).push(...donor.splice(at, 1));
  }
  return assigned.map((rows) => subsetRows(ds, ascending(rows)));
}
