import fc from 'fast-check';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadCsv } from './csv';
import { concatDatasets, subsetRows, type Dataset } from './dataset';
import { partitionDirichlet, partitionIid, stratifiedSplit } from './split';

let bc: Dataset;
beforeAll(async () => {
  bc = await loadCsv(join(import.meta.dirname, '../../../datasets/breast-cancer-wisconsin.csv'), {
    label: 'diagnosis',
  });
});

/** A dataset whose single feature is the row index, so rows can be traced through splits. */
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

const rowIds = (ds: Dataset): number[] => [...ds.features];
const positives = (ds: Dataset): number => ds.labels.reduce((a, b) => a + b, 0);

function expectDisjointCover(parts: Dataset[], numRows: number): void {
  const all = parts.flatMap(rowIds).sort((a, b) => a - b);
  expect(all).toEqual(Array.from({ length: numRows }, (_, i) => i));
}

describe('stratifiedSplit', () => {
  it('keeps the class ratio of the breast-cancer data in both halves', () => {
    const { train, test } = stratifiedSplit(bc, 0.2, 1);
    expect(test.numRows).toBe(114);
    expect(train.numRows).toBe(455);
    expect(positives(test)).toBe(42); // 212 * 114 / 569 = 42.47
    expect(positives(train)).toBe(170);
  });

  it('is deterministic for a seed and partitions the rows', () => {
    const ds = indexed(Array.from({ length: 50 }, (_, i) => i % 3));
    const a = stratifiedSplit(ds, 0.3, 7);
    expect(rowIds(a.test)).toEqual(rowIds(stratifiedSplit(ds, 0.3, 7).test));
    expect(rowIds(a.test)).not.toEqual(rowIds(stratifiedSplit(ds, 0.3, 8).test));
    expectDisjointCover([a.train, a.test], 50);
  });
});

describe('partitionIid', () => {
  it('gives disjoint parts that cover all rows, sizes within one, both classes in each', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 1 }), { minLength: 10, maxLength: 200 }),
        fc.integer({ min: 1, max: 10 }),
        fc.integer(),
        (labels, parts, seed) => {
          const ds = indexed(labels);
          const out = partitionIid(ds, parts, seed);
          expect(out).toHaveLength(parts);
          expectDisjointCover(out, labels.length);
          const sizes = out.map((p) => p.numRows);
          expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
          const ones = positives(ds);
          for (const p of out) {
            expect(Math.abs(positives(p) - ones / parts)).toBeLessThanOrEqual(1);
          }
        },
      ),
      { numRuns: 100 },
    );
  });
});

describe('partitionDirichlet', () => {
  it('gives disjoint parts that cover all rows with at least minRows each', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 8 }),
        fc.double({ min: 0.05, max: 100, noNaN: true }),
        fc.integer(),
        (parts, alpha, seed) => {
          const out = partitionDirichlet(
            indexed(Array.from({ length: 120 }, (_, i) => i % 3)),
            parts,
            alpha,
            seed,
            10,
          );
          expectDisjointCover(out, 120);
          for (const p of out) expect(p.numRows).toBeGreaterThanOrEqual(10);
        },
      ),
      { numRuns: 100 },
    );
  });

  it('is skewed for small alpha and close to the global ratio for large alpha', () => {
    const global = 212 / 569;
    const spread = (alpha: number): number => {
      const deviations = [1, 2, 3, 4, 5].flatMap((seed) =>
        partitionDirichlet(bc, 5, alpha, seed).map((p) =>
          Math.abs(positives(p) / p.numRows - global),
        ),
      );
      return deviations.reduce((a, b) => a + b, 0) / deviations.length;
    };
    expect(spread(0.1)).toBeGreaterThan(0.25);
    expect(spread(1000)).toBeLessThan(0.05);
  });

  it('fails clearly when the parts cannot all get minRows rows', () => {
    expect(() => partitionDirichlet(bc, 60, 0.5, 1)).toThrow(
      'cannot give 60 parts at least 10 rows each from 569 rows',
    );
  });
});

describe('subsetRows and concatDatasets', () => {
  it('take rows in the given order and stack datasets back', () => {
    const ds = indexed([0, 1, 0, 1, 1]);
    const a = subsetRows(ds, [4, 0]);
    expect(rowIds(a)).toEqual([4, 0]);
    expect([...a.labels]).toEqual([1, 0]);
    const b = concatDatasets([a, subsetRows(ds, [2])]);
    expect(rowIds(b)).toEqual([4, 0, 2]);
    expect(() => subsetRows(ds, [5])).toThrow('row index 5 is outside 0..4');
    expect(() => concatDatasets([ds, { ...ds, labelName: 'z' }])).toThrow(
      'dataset 1 has columns row, z',
    );
  });
});
