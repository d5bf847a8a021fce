import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  accuracy,
  binaryCrossEntropy,
  binaryMetrics,
  f1Score,
  macroF1,
  multiclassMetrics,
  rocAuc,
} from './metrics';

/** AUC as the share of (positive, negative) pairs ranked correctly, ties counting one half. */
function bruteForceAuc(scores: number[], labels: number[]): number | null {
  let wins = 0;
  let pairs = 0;
  scores.forEach((sp, i) => {
    if (labels[i] !== 1) return;
    scores.forEach((sn, j) => {
      if (labels[j] !== 0) return;
      pairs++;
      wins += sp > sn ? 1 : sp === sn ? 0.5 : 0;
    });
  });
  return pairs === 0 ? null : wins / pairs;
}

describe('rocAuc', () => {
  it('matches hand-computed values', () => {
    expect(rocAuc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])).toBe(0.75); // sklearn's docstring example
    expect(rocAuc([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0])).toBe(1);
    expect(rocAuc([0.1, 0.2, 0.9, 0.8], [1, 1, 0, 0])).toBe(0);
  });

  it('counts tied scores as one half', () => {
    expect(rocAuc([0.5, 0.5], [0, 1])).toBe(0.5);
    // positives {0.5, 0.7}, negatives {0.5, 0.2}: pairs 0.5|0.5 = 0.5, 0.5|0.2 = 1, 0.7|0.5 = 1, 0.7|0.2 = 1
    expect(rocAuc([0.5, 0.7, 0.5, 0.2], [1, 1, 0, 0])).toBe(3.5 / 4);
    expect(rocAuc([1, 1, 1, 1, 1], [0, 1, 0, 1, 1])).toBe(0.5);
  });

  it('is null when only one class is present', () => {
    expect(rocAuc([0.2, 0.9], [1, 1])).toBeNull();
    expect(rocAuc([0.2, 0.9], [0, 0])).toBeNull();
  });

  it('equals the brute-force pair count', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 6 }), fc.integer({ min: 0, max: 1 })), {
          minLength: 1,
          maxLength: 60,
        }),
        (rows) => {
          const scores = rows.map(([s]) => s / 6); // few distinct values: many ties
          const labels = rows.map(([, l]) => l);
          const expected = bruteForceAuc(scores, labels);
          const actual = rocAuc(Float32Array.from(scores), Float32Array.from(labels));
          if (expected === null) expect(actual).toBeNull();
          else expect(actual).toBeCloseTo(expected, 12);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('rejects labels other than 0 and 1', () => {
    expect(() => rocAuc([0.1, 0.2], [0, 2])).toThrow('label 1 is 2; binary labels must be 0 or 1');
  });
});

describe('accuracy and F1', () => {
  it('computes accuracy and binary F1 of class 1', () => {
    const predicted = [1, 1, 0, 0, 1, 0];
    const labels = [1, 0, 0, 1, 1, 0];
    expect(accuracy(predicted, labels)).toBeCloseTo(4 / 6, 12);
    // tp = 2, fp = 1, fn = 1
    expect(f1Score(predicted, labels)).toBeCloseTo(4 / 6, 12);
    expect(f1Score([0, 0], [0, 0])).toBe(0);
  });

  it('averages F1 over the classes present for macro-F1', () => {
    // class 0: tp 1 fp 0 fn 1 -> 2/3; class 1: tp 1 fp 1 fn 0 -> 2/3; class 2: tp 1 -> 1
    expect(macroF1([0, 1, 1, 2], [0, 0, 1, 2])).toBeCloseTo((2 / 3 + 2 / 3 + 1) / 3, 12);
  });
});

describe('binaryMetrics', () => {
  it('reports clipped mean cross-entropy, accuracy at 0.5, AUC and F1', () => {
    const scores = Float32Array.from([0.9, 0.2, 0.6, 0.4]);
    const labels = Float32Array.from([1, 0, 0, 1]);
    const m = binaryMetrics(scores, labels);
    const expectedLoss =
      -(
        Math.log(Math.fround(0.9)) +
        Math.log(1 - Math.fround(0.2)) +
        Math.log(1 - Math.fround(0.6)) +
        Math.log(Math.fround(0.4))
      ) / 4;
    expect(m.loss).toBeCloseTo(expectedLoss, 6);
    expect(m.accuracy).toBe(0.5);
    expect(m.auc).toBe(0.75);
    expect(m.f1).toBe(0.5);
  });

  it('stays finite for confident wrong predictions', () => {
    expect(binaryCrossEntropy([0, 1], [1, 0])).toBeCloseTo(-Math.log(1e-7), 5);
  });
});

describe('multiclassMetrics', () => {
  it('uses argmax for accuracy and the probability of the true class for the loss', () => {
    const probs = Float32Array.from([0.7, 0.2, 0.1, 0.1, 0.3, 0.6, 0.2, 0.5, 0.3]);
    const labels = Float32Array.from([0, 2, 2]);
    const m = multiclassMetrics(probs, labels, 3);
    expect(m.accuracy).toBeCloseTo(2 / 3, 12);
    expect(m.loss).toBeCloseTo(-(Math.log(0.7) + Math.log(0.6) + Math.log(0.3)) / 3, 6);
    expect(m.auc).toBeNull();
    expect(m.f1).toBeCloseTo(macroF1([0, 2, 1], [0, 2, 2]), 12);
  });
});
