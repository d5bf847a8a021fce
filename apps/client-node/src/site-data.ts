import { randomInt } from 'node:crypto';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  combineFeatureStats,
  featureStatsPartial,
  standardize,
  stratifiedSplit,
  type Dataset,
  type FeatureStats,
} from '@confide/ml';

/** The file beside a site's key that holds the seed of its held-out split. */
export const HOLDOUT_SEED_FILE = 'holdout.seed';

/** Default share of a site's rows held out for evaluation when it has no --eval-data. */
export const DEFAULT_EVAL_FRACTION = 0.2;

/**
 * The seed of this site's held-out split, created once (CSPRNG) and kept beside its key, so the
 * rows it evaluates on are the same in every run and never the rows it trains on.
 */
export async function holdoutSeed(keyDir: string): Promise<number> {
  const path = join(keyDir, HOLDOUT_SEED_FILE);
  try {
    const text = (await readFile(path, 'utf8')).trim();
    const seed = Number(text);
    if (!Number.isSafeInteger(seed) || seed < 0 || seed > 2 ** 31 - 1) {
      throw new Error(`${path} does not hold a seed (an integer in [0, 2^31 - 1]): "${text}"`);
    }
    return seed;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const seed = randomInt(0, 2 ** 31 - 1);
  await writeFile(path, `${seed}\n`, { mode: 0o600, flag: 'wx' });
  await chmod(path, 0o600);
  return seed;
}

/**
 * The rows a site trains on and the rows it evaluates on: its --eval-data when given, else a
 * stratified `evalFraction` of its rows held out with its own seed. A site with too few rows to
 * hold any out evaluates on none (it declines evaluations) rather than on its training rows.
 */
export function splitSiteData(
  data: Dataset,
  evalData: Dataset | undefined,
  evalFraction: number,
  seed: number,
): { train: Dataset; eval: Dataset | null } {
  if (evalData) return { train: data, eval: evalData };
  if (data.numRows < 2) return { train: data, eval: null };
  const { train, test } = stratifiedSplit(data, evalFraction, seed);
  return { train, eval: test };
}

/**
 * The record count a site reveals through its weight and its receipts' sampling rate: the exact
 * count, or (policy rowCount "lowerBound") the largest power of two not above it, which then also
 * sets its accounting (q = batch / that bound over-charges, never under-charges).
 * @example declaredRows(300, 'lowerBound') // 256
 */
export function declaredRows(rows: number, rowCount: 'exact' | 'lowerBound'): number {
  if (rowCount === 'exact' || rows < 1) return rows;
  return 2 ** Math.floor(Math.log2(rows));
}

/**
 * Standardises a site's training and evaluation rows with the federation's statistics, or with its
 * own training rows' statistics when the federation standardises locally (null).
 */
export function standardizeSite(
  split: { train: Dataset; eval: Dataset | null },
  stats: FeatureStats | null,
): { train: Dataset; eval: Dataset | null } {
  const s = stats ?? combineFeatureStats([featureStatsPartial(split.train)]);
  return {
    train: standardize(split.train, s),
    eval: split.eval ? standardize(split.eval, s) : null,
  };
}
