import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadCsv, type Dataset } from '@confide/ml';
import { SimulationError } from './errors';
import { holdOutTestSet, partitionSites } from './partition';

let wdbc: Dataset;
let train: Dataset;
beforeAll(async () => {
  wdbc = await loadCsv(
    join(import.meta.dirname, '../../../../datasets/breast-cancer-wisconsin.csv'),
    {
      label: 'diagnosis',
    },
  );
  train = holdOutTestSet(wdbc, 1).train;
});

/** A dataset whose single feature is the row index, so rows can be traced through a partition. */
function indexed(labels: number[]): Dataset {
  return {
    features: Float32Array.from(labels, (_, i) => i),
    labels: Float32Array.from(labels),
    numRows: labels.length,
    numFeatures: 1,
    featureNames: ['row'],
    labelName: 'y',
  };
}

const positives = (ds: Dataset): number => ds.labels.reduce((a, b) => a + b, 0);
const classes = (ds: Dataset): number => new Set(ds.labels).size;

function expectDisjointCover(parts: Dataset[], numRows: number): void {
  const rows = parts.flatMap((p) => [...p.features]).sort((a, b) => a - b);
  expect(rows).toEqual(Array.from({ length: numRows }, (_, i) => i));
}

describe('holdOutTestSet', () => {
  it("holds out a stratified 20% that keeps the data's class ratio", () => {
    for (const seed of [1, 2, 3]) {
      const { train: tr, test } = holdOutTestSet(wdbc, seed);
      expect(test.numRows).toBe(114);
      expect(tr.numRows).toBe(455);
      // 212 of 569 rows are malignant: 42.47 of 114, 169.5 of 455.
      expect(positives(test)).toBe(42);
      expect(positives(tr)).toBe(170);
    }
  });

  it("standardises both parts with the training rows' statistics", () => {
    const { train: tr, test } = holdOutTestSet(wdbc, 1);
    const column = (ds: Dataset, j: number): number[] =>
      Array.from({ length: ds.numRows }, (_, r) => ds.features[r * ds.numFeatures + j]!);
    for (const j of [0, 7, 29]) {
      const x = column(tr, j);
      const mean = x.reduce((a, b) => a + b, 0) / x.length;
      const sd = Math.sqrt(x.reduce((a, b) => a + (b - mean) ** 2, 0) / x.length);
      expect(mean).toBeCloseTo(0, 5);
      expect(sd).toBeCloseTo(1, 4);
    }
    // The test rows were not used: their mean is not forced to 0.
    const t = column(test, 0);
    expect(Math.abs(t.reduce((a, b) => a + b, 0) / t.length)).toBeGreaterThan(1e-3);
  });
});

describe('partitionSites', () => {
  it('iid: disjoint parts covering every row, sizes within one, class mix alike', () => {
    const ds = indexed([...train.labels]);
    const parts = partitionSites(ds, { kind: 'iid', sites: 10, alpha: 0.5, seed: 3 });
    expectDisjointCover(parts, ds.numRows);
    const sizes = parts.map((p) => p.numRows);
    expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
    for (const p of parts)
      expect(Math.abs(positives(p) / p.numRows - 170 / 455)).toBeLessThan(0.05);
  });

  it('dirichlet: every site gets at least 10 rows, even at alpha 0.1, with strong label skew', () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const ds = indexed([...train.labels]);
      const parts = partitionSites(ds, { kind: 'dirichlet', sites: 10, alpha: 0.1, seed });
      expectDisjointCover(parts, ds.numRows);
      expect(Math.min(...parts.map((p) => p.numRows))).toBeGreaterThanOrEqual(10);
      // Redrawn, not topped up: at alpha 0.1 most sites hold (nearly) one class.
      const skewed = parts.filter((p) => Math.min(positives(p), p.numRows - positives(p)) <= 2);
      expect(skewed.length).toBeGreaterThanOrEqual(4);
    }
  });

  it('dirichlet: the same seed deals the same rows, another seed others', () => {
    const ds = indexed([...train.labels]);
    const deal = (seed: number): number[][] =>
      partitionSites(ds, { kind: 'dirichlet', sites: 10, alpha: 0.5, seed }).map((p) => [
        ...p.features,
      ]);
    expect(deal(7)).toEqual(deal(7));
    expect(deal(7)).not.toEqual(deal(8));
  });

  it('dirichlet: gives up after its draws with an error that says what to change', () => {
    const ds = indexed([...train.labels]);
    const attempt = (): Dataset[] =>
      partitionSites(ds, { kind: 'dirichlet', sites: 40, alpha: 0.01, seed: 1, maxDraws: 200 });
    expect(attempt).toThrow(SimulationError);
    expect(attempt).toThrow(
      '--partition dirichlet --alpha 0.01: none of 200 draws gave each of the 40 sites at least 10 of the 455 training rows; raise --alpha or lower --sites',
    );
  });

  it('refuses more sites than the rows can give 10 each', () => {
    expect(() => partitionSites(train, { kind: 'iid', sites: 46, alpha: 1, seed: 1 })).toThrow(
      '--sites 46: the 455 training rows cannot give every site at least 10 rows; use at most 45 sites',
    );
  });

  it('shards: two label-sorted shards per site, so a site sees at most two classes', () => {
    // 10 classes of 40 rows: 20 shards of 20 rows, each of a single class.
    const labels = Array.from({ length: 400 }, (_, i) => Math.floor(i / 40));
    const ds = indexed(labels);
    const parts = partitionSites(ds, { kind: 'shards', sites: 10, alpha: 1, seed: 2 });
    expectDisjointCover(parts, 400);
    for (const p of parts) {
      expect(p.numRows).toBe(40);
      expect(classes(p)).toBeLessThanOrEqual(2);
    }
    // Not every site got both of its shards from one class.
    expect(parts.filter((p) => classes(p) === 2).length).toBeGreaterThan(0);
  });
});
