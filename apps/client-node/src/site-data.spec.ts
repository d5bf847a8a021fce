import { mkdtemp, readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Dataset } from '@confide/ml';
import { declaredRows, HOLDOUT_SEED_FILE, holdoutSeed, splitSiteData } from './site-data';

/** 100 rows, 2 features, 30 of class 1: row r's first feature is r, so rows can be told apart. */
function rows(): Dataset {
  const n = 100;
  const features = new Float32Array(n * 2);
  const labels = new Float32Array(n);
  for (let r = 0; r < n; r++) {
    features[2 * r] = r;
    features[2 * r + 1] = r % 3;
    labels[r] = r < 30 ? 1 : 0;
  }
  return { features, labels, numRows: n, numFeatures: 2, featureNames: ['a', 'b'], labelName: 'y' };
}

const ids = (d: Dataset): number[] =>
  Array.from({ length: d.numRows }, (_, r) => d.features[r * d.numFeatures]!);

describe('the rows a site evaluates on', () => {
  it('are a stratified share of its rows, never one it trains on', () => {
    const { train, eval: held } = splitSiteData(rows(), undefined, 0.2, 7);
    expect(held!.numRows).toBe(20);
    expect(train.numRows).toBe(80);
    const heldIds = new Set(ids(held!));
    expect(ids(train).some((id) => heldIds.has(id))).toBe(false);
    // Stratified: 30% of class 1 in the data, 6 of the 20 held out.
    expect(Array.from(held!.labels).filter((l) => l === 1)).toHaveLength(6);
  });

  it('are the same in every run with the seed kept beside the key, created once with mode 0600', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'confide-holdout-'));
    const seed = await holdoutSeed(dir);
    expect(await holdoutSeed(dir)).toBe(seed);
    expect((await stat(join(dir, HOLDOUT_SEED_FILE))).mode & 0o777).toBe(0o600);
    expect(Number((await readFile(join(dir, HOLDOUT_SEED_FILE), 'utf8')).trim())).toBe(seed);
    const a = splitSiteData(rows(), undefined, 0.2, seed);
    const b = splitSiteData(rows(), undefined, 0.2, seed);
    expect(ids(a.eval!)).toEqual(ids(b.eval!));
  });

  it('refuses a seed file that holds no seed, naming it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'confide-holdout-'));
    await writeFile(join(dir, HOLDOUT_SEED_FILE), 'not a seed\n');
    await expect(holdoutSeed(dir)).rejects.toThrow(/holdout\.seed does not hold a seed/);
  });

  it('are --eval-data when given (all the rows are for training)', () => {
    const data = rows();
    const other = rows();
    expect(splitSiteData(data, other, 0.2, 1)).toEqual({ train: data, eval: other });
  });
});

describe('the record count a site reveals', () => {
  it('is exact, or the largest power of two not above it with rowCount "lowerBound"', () => {
    expect(declaredRows(300, 'exact')).toBe(300);
    expect(declaredRows(300, 'lowerBound')).toBe(256);
    expect(declaredRows(256, 'lowerBound')).toBe(256);
    expect(declaredRows(1, 'lowerBound')).toBe(1);
  });
});
