import {
  apportion,
  combineFeatureStats,
  dirichletSample,
  featureStatsPartial,
  standardize,
  stratifiedSplit,
  partitionIid,
  rowsByClass,
  seededRandom,
  shuffleInPlace as shuffle,
  subsetRows,
  type Dataset,
} from '@confide/ml';
import { SimulationError } from './errors';
import { MIN_SITE_ROWS, type PartitionKind } from './settings';

/** How many Dirichlet draws are tried before the partition is given up. */
export const MAX_DIRICHLET_DRAWS = 100_000;

export interface PartitionOptions {
  kind: PartitionKind;
  sites: number;
  /** Dirichlet concentration (dirichlet only). */
  alpha: number;
  seed: number;
  minRows?: number;
  /** Dirichlet draws tried before giving up (default MAX_DIRICHLET_DRAWS). */
  maxDraws?: number;
}

/** The share of the rows held out, stratified, as the global test set. */
export const TEST_FRACTION = 0.2;

/**
 * The global test set: a stratified TEST_FRACTION of the rows, held out before the rest is dealt to
 * the sites; both parts standardised with the training rows' statistics, so the test rows tell the
 * model nothing it could not have seen.
 *
 * @example
 * const { train, test } = holdOutTestSet(all, 1);
 */
export function holdOutTestSet(all: Dataset, seed: number): { train: Dataset; test: Dataset } {
  const split = stratifiedSplit(all, TEST_FRACTION, seed);
  const stats = combineFeatureStats([featureStatsPartial(split.train)]);
  return { train: standardize(split.train, stats), test: standardize(split.test, stats) };
}

/**
 * Deals the training rows to `sites` virtual sites:
 * - `iid`: each class shuffled and dealt round-robin (sizes within one, class mix alike);
 * - `dirichlet`: each class divided among the sites in Dirichlet(alpha) proportions (Hsu et al.
 *   2019), the whole draw repeated until every site holds at least `minRows` rows (up to
 *   MAX_DIRICHLET_DRAWS draws), so that no site is topped up by hand and the label skew stays the
 *   Dirichlet's;
 * - `shards`: rows sorted by label, cut into 2 x sites equal shards, two random shards per site
 *   (McMahan et al. 2017): most sites see one or two classes.
 * SimulationError('input') when the rows cannot give every site `minRows`.
 *
 * @example
 * const parts = partitionSites(train, { kind: 'dirichlet', sites: 10, alpha: 0.5, seed: 1 });
 */
export function partitionSites(train: Dataset, o: PartitionOptions): Dataset[] {
  const minRows = o.minRows ?? MIN_SITE_ROWS;
  if (o.sites * minRows > train.numRows) {
    throw new SimulationError(
      'input',
      `--sites ${o.sites}: the ${train.numRows} training rows cannot give every site at least ` +
        `${minRows} rows; use at most ${Math.floor(train.numRows / minRows)} sites`,
    );
  }
  switch (o.kind) {
    case 'iid':
      return partitionIid(train, o.sites, o.seed);
    case 'dirichlet':
      return dirichletPartition(train, o.sites, o.alpha, o.seed, minRows, o.maxDraws);
    case 'shards':
      return shardPartition(train, o.sites, o.seed, minRows);
  }
}

function dirichletPartition(
  train: Dataset,
  sites: number,
  alpha: number,
  seed: number,
  minRows: number,
  maxDraws = MAX_DIRICHLET_DRAWS,
): Dataset[] {
  if (!(alpha > 0) || !Number.isFinite(alpha)) {
    throw new SimulationError('input', `--alpha must be a positive number, got ${alpha}`);
  }
  const rng = seededRandom(seed);
  const classes = rowsByClass(train);
  for (let draw = 0; draw < maxDraws; draw++) {
    // Only the counts are drawn until they hold: rows are dealt once, for the draw that is kept.
    const counts = classes.map((rows) =>
      apportion(rows.length, dirichletSample(sites, alpha, rng)),
    );
    const sizes = Array.from({ length: sites }, (_, s) =>
      counts.reduce((sum, c) => sum + c[s]!, 0),
    );
    if (sizes.some((n) => n < minRows)) continue;
    const assigned = Array.from({ length: sites }, () => [] as number[]);
    classes.forEach((rows, c) => {
      const shuffled = shuffle([...rows], rng);
      let offset = 0;
      counts[c]!.forEach((k, s) => {
        assigned[s]!.push(...shuffled.slice(offset, offset + k));
        offset += k;
      });
    });
    return assigned.map((rows) =>
      subsetRows(
        train,
        rows.sort((a, b) => a - b),
      ),
    );
  }
  throw new SimulationError(
    'input',
    `--partition dirichlet --alpha ${alpha}: none of ${maxDraws} draws gave each of the ` +
      `${sites} sites at least ${minRows} of the ${train.numRows} training rows; raise --alpha ` +
      'or lower --sites',
  );
}

function shardPartition(train: Dataset, sites: number, seed: number, minRows: number): Dataset[] {
  const rng = seededRandom(seed);
  // Sorted by label (rows of one class shuffled), so that a shard holds one class or two.
  const order = rowsByClass(train).flatMap((rows) => shuffle([...rows], rng));
  const shardCount = 2 * sites;
  const sizes = apportion(order.length, new Array<number>(shardCount).fill(1));
  const shards: number[][] = [];
  let offset = 0;
  for (const size of sizes) {
    shards.push(order.slice(offset, offset + size));
    offset += size;
  }
  const dealt = shuffle(
    Array.from({ length: shardCount }, (_, i) => i),
    rng,
  );
  const parts = Array.from({ length: sites }, (_, s) =>
    [...shards[dealt[2 * s]!]!, ...shards[dealt[2 * s + 1]!]!].sort((a, b) => a - b),
  );
  const smallest = Math.min(...parts.map((p) => p.length));
  if (smallest < minRows) {
    throw new SimulationError(
      'input',
      `--partition shards: ${sites} sites get two shards of ${train.numRows} rows each, ` +
        `${smallest} rows for the smallest, fewer than ${minRows}; lower --sites`,
    );
  }
  return parts.map((rows) => subsetRows(train, rows));
}
