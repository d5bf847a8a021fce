import * as tf from '@tensorflow/tfjs';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Dataset } from './dataset';
import { accuracy, binaryCrossEntropy, f1Score, multiclassMetrics, rocAuc } from './metrics';
import { buildModel, setModelWeights } from './model';
import type { ModelSpec } from './model-spec';
import { normalSample, seededRandom } from './random';
import { evaluateForSum } from './secure-evaluation';
import {
  evaluationLayoutFor,
  evaluationSensitivity,
  evaluationVector,
  evaluationVectorLength,
  metricsFromEvaluationSum,
  type EvaluationLayout,
} from './secure-metrics';
import { evaluateModel, predictScores } from './train';

const l2 = (v: ArrayLike<number>): number =>
  Math.sqrt(Array.from(v).reduce((a, x) => a + x * x, 0));

function sumVectors(vectors: Float64Array[]): Float64Array {
  const out = new Float64Array(vectors[0]?.length ?? 0);
  for (const v of vectors) v.forEach((x, i) => (out[i] = (out[i] as number) + x));
  return out;
}

/** Binary rows: score on a grid of thousandths, label, and the shard (site) holding the row. */
const binaryRows = fc.array(
  fc.tuple(
    fc.integer({ min: 0, max: 1000 }),
    fc.integer({ min: 0, max: 1 }),
    fc.integer({ min: 0, max: 3 }),
  ),
  { minLength: 1, maxLength: 80 },
);

/** The summed vectors of the shards, and the pooled scores and labels. */
function binaryShards(
  rows: [number, number, number][],
  layout: EvaluationLayout,
  perSite = false,
): { sum: Float64Array; scores: Float32Array; labels: Float32Array; sites: number } {
  const scores = Float32Array.from(rows.map(([s]) => s / 1000));
  const labels = Float32Array.from(rows.map(([, l]) => l));
  const vectors: Float64Array[] = [];
  for (let shard = 0; shard < 4; shard++) {
    const mine = rows.flatMap(([, , sh], i) => (sh === shard ? [i] : []));
    if (mine.length === 0) continue;
    vectors.push(
      evaluationVector(
        mine.map((i) => scores[i] as number),
        mine.map((i) => labels[i] as number),
        layout,
        { perSite },
      ),
    );
  }
  return { sum: sumVectors(vectors), scores, labels, sites: vectors.length };
}

function binaryHistograms(
  scores: ArrayLike<number>,
  labels: ArrayLike<number>,
  bins: number,
): { neg: number[]; pos: number[] } {
  const neg = new Array<number>(bins).fill(0);
  const pos = new Array<number>(bins).fill(0);
  for (let i = 0; i < labels.length; i++) {
    const b = Math.min(bins - 1, Math.floor((scores[i] as number) * bins));
    const h = labels[i] === 1 ? pos : neg;
    h[b] = (h[b] as number) + 1;
  }
  return { neg, pos };
}

const binaryLoss = (score: number, label: number): number => binaryCrossEntropy([score], [label]);

describe('metricsFromEvaluationSum of the summed binary vectors of the shards', () => {
  it("equals metrics.ts's accuracy, F1 and cross-entropy on the pooled predictions", () => {
    // lossClip above -ln(1e-7) = 16.1: no example is clipped.
    const layout: EvaluationLayout = { classes: 2, bins: 20, lossClip: 20 };
    fc.assert(
      fc.property(binaryRows, (rows) => {
        const { sum, scores, labels } = binaryShards(rows, layout);
        const metrics = metricsFromEvaluationSum(sum, layout);
        const predicted = scores.map((s) => (s >= 0.5 ? 1 : 0));
        expect(metrics.numExamples).toBe(rows.length);
        expect(metrics.accuracy).toBeCloseTo(accuracy(predicted, labels), 12);
        expect(metrics.f1).toBeCloseTo(f1Score(predicted, labels), 12);
        expect(metrics.loss).toBeCloseTo(binaryCrossEntropy(scores, labels), 10);
      }),
      { numRuns: 200 },
    );
  });

  it('clips each example loss at lossClip before averaging', () => {
    const layout: EvaluationLayout = { classes: 2, bins: 0, lossClip: 1 };
    fc.assert(
      fc.property(binaryRows, (rows) => {
        const { sum, scores, labels } = binaryShards(rows, layout);
        let clipped = 0;
        scores.forEach((s, i) => (clipped += Math.min(binaryLoss(s, labels[i] as number), 1)));
        expect(metricsFromEvaluationSum(sum, layout).loss).toBeCloseTo(clipped / rows.length, 10);
      }),
      { numRuns: 100 },
    );
  });

  it('gives an AUC within half the share of (positive, negative) pairs sharing a bin of the exact one', () => {
    // Pairs in different bins are ordered as their scores are; a pair in one bin counts one half
    // where the exact AUC counts 0, 1/2 or 1: |binned - exact| <= sum_b pos_b neg_b / (2 P N).
    fc.assert(
      fc.property(binaryRows, fc.integer({ min: 1, max: 50 }), (rows, bins) => {
        const layout: EvaluationLayout = { classes: 2, bins, lossClip: 10 };
        const { sum, scores, labels } = binaryShards(rows, layout);
        const exact = rocAuc(scores, labels);
        const binned = metricsFromEvaluationSum(sum, layout).auc;
        if (exact === null) {
          expect(binned).toBeNull();
          return;
        }
        const { neg, pos } = binaryHistograms(scores, labels, bins);
        const positives = pos.reduce((a, b) => a + b, 0);
        const negatives = neg.reduce((a, b) => a + b, 0);
        const sharedPairs = pos.reduce((a, p, b) => a + p * (neg[b] as number), 0);
        const tolerance = sharedPairs / (2 * positives * negatives);
        expect(binned).not.toBeNull();
        expect(Math.abs((binned as number) - exact)).toBeLessThanOrEqual(tolerance + 1e-12);
      }),
      { numRuns: 200 },
    );
  });

  it('gives exactly the exact AUC when every score sits at a bin centre (ties stay ties)', () => {
    const bins = 10;
    const layout: EvaluationLayout = { classes: 2, bins, lossClip: 10 };
    fc.assert(
      fc.property(
        fc.array(
          fc.tuple(
            fc.integer({ min: 0, max: bins - 1 }),
            fc.integer({ min: 0, max: 1 }),
            fc.integer({ min: 0, max: 3 }),
          ),
          { minLength: 1, maxLength: 80 },
        ),
        (rows) => {
          const centred = rows.map(
            ([b, l, sh]) => [((b + 0.5) / bins) * 1000, l, sh] as [number, number, number],
          );
          const { sum, scores, labels } = binaryShards(centred, layout);
          const exact = rocAuc(scores, labels);
          const binned = metricsFromEvaluationSum(sum, layout).auc;
          if (exact === null) expect(binned).toBeNull();
          else expect(binned).toBeCloseTo(exact, 12);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('has no AUC without bins', () => {
    const layout: EvaluationLayout = { classes: 2, bins: 0, lossClip: 10 };
    const v = evaluationVector([0.2, 0.9], [0, 1], layout, { perSite: false });
    expect(v).toHaveLength(5);
    expect(metricsFromEvaluationSum(v, layout).auc).toBeNull();
  });
});

/** Multiclass rows: k unnormalised probabilities, the label and the shard. */
function multiclassRows(k: number) {
  return fc.array(
    fc.tuple(
      fc.array(fc.integer({ min: 1, max: 1000 }), { minLength: k, maxLength: k }),
      fc.integer({ min: 0, max: k - 1 }),
      fc.integer({ min: 0, max: 3 }),
    ),
    { minLength: 1, maxLength: 60 },
  );
}

describe('metricsFromEvaluationSum of the summed multiclass vectors of the shards', () => {
  it("equals metrics.ts's accuracy, macro F1 and cross-entropy on the pooled predictions", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 3, max: 6 }).chain((k) => fc.tuple(fc.constant(k), multiclassRows(k))),
        ([k, rows]) => {
          const layout: EvaluationLayout = { classes: k, bins: 0, lossClip: 20 };
          const probabilities = Float32Array.from(
            rows.flatMap(([w]) => {
              const total = w.reduce((a, b) => a + b, 0);
              return w.map((x) => x / total);
            }),
          );
          const labels = Float32Array.from(rows.map(([, l]) => l));
          const vectors: Float64Array[] = [];
          for (let shard = 0; shard < 4; shard++) {
            const mine = rows.flatMap(([, , sh], i) => (sh === shard ? [i] : []));
            vectors.push(
              evaluationVector(
                mine.flatMap((i) => Array.from(probabilities.subarray(i * k, (i + 1) * k))),
                mine.map((i) => labels[i] as number),
                layout,
                { perSite: false },
              ),
            );
          }
          const metrics = metricsFromEvaluationSum(sumVectors(vectors), layout);
          const expected = multiclassMetrics(probabilities, labels, k);
          expect(metrics.numExamples).toBe(rows.length);
          expect(metrics.accuracy).toBeCloseTo(expected.accuracy, 12);
          expect(metrics.f1).toBeCloseTo(expected.f1, 12);
          expect(metrics.loss).toBeCloseTo(expected.loss, 10);
          expect(metrics.auc).toBeNull();
        },
      ),
      { numRuns: 100 },
    );
  });
});

describe('metricsFromEvaluationSum of per-site vectors', () => {
  it("gives the mean of the sites' accuracies and losses, and the number of sites", () => {
    const layout: EvaluationLayout = { classes: 2, bins: 10, lossClip: 20 };
    fc.assert(
      fc.property(binaryRows, (rows) => {
        const { sum, sites } = binaryShards(rows, layout, true);
        const accuracies: number[] = [];
        const losses: number[] = [];
        for (let shard = 0; shard < 4; shard++) {
          const mine = rows.filter(([, , sh]) => sh === shard);
          if (mine.length === 0) continue;
          const scores = mine.map(([s]) => Math.fround(s / 1000));
          const labels = mine.map(([, l]) => l);
          accuracies.push(
            accuracy(
              scores.map((s) => (s >= 0.5 ? 1 : 0)),
              labels,
            ),
          );
          losses.push(binaryCrossEntropy(scores, labels));
        }
        const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
        const metrics = metricsFromEvaluationSum(sum, layout, { sites });
        expect(metrics.numExamples).toBe(sites);
        expect(metrics.accuracy).toBeCloseTo(mean(accuracies), 12);
        expect(metrics.loss).toBeCloseTo(mean(losses), 10);
        expect(metricsFromEvaluationSum(sum, layout).numExamples).toBe(sites);
      }),
      { numRuns: 100 },
    );
  });
});

describe('evaluationSensitivity', () => {
  const binary: EvaluationLayout = { classes: 2, bins: 20, lossClip: 3 };
  const multiclass: EvaluationLayout = { classes: 4, bins: 0, lossClip: 3 };

  it('is sqrt(3) with AUC bins and sqrt(2) without, at both levels', () => {
    for (const perSite of [false, true]) {
      expect(evaluationSensitivity(binary, { perSite })).toBe(Math.sqrt(3));
      expect(evaluationSensitivity(multiclass, { perSite })).toBe(Math.sqrt(2));
      expect(evaluationSensitivity({ ...binary, bins: 0 }, { perSite })).toBe(Math.sqrt(2));
    }
  });

  it('bounds the L2 change of a binary vector when one example is added', () => {
    fc.assert(
      fc.property(
        binaryRows,
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.integer({ min: 0, max: 1 }),
        (rows, s, l) => {
          const scores = rows.map(([x]) => x / 1000);
          const labels = rows.map(([, y]) => y);
          const before = evaluationVector(scores, labels, binary, { perSite: false });
          const after = evaluationVector([...scores, s], [...labels, l], binary, {
            perSite: false,
          });
          const change = l2(after.map((x, i) => x - (before[i] as number)));
          expect(change).toBeLessThanOrEqual(
            evaluationSensitivity(binary, { perSite: false }) + 1e-12,
          );
        },
      ),
      { numRuns: 200 },
    );
  });

  it('bounds the L2 norm of a whole site vector at site level, binary and multiclass', () => {
    fc.assert(
      fc.property(binaryRows, (rows) => {
        const v = evaluationVector(
          rows.map(([x]) => x / 1000),
          rows.map(([, y]) => y),
          binary,
          { perSite: true },
        );
        expect(l2(v)).toBeLessThanOrEqual(evaluationSensitivity(binary, { perSite: true }) + 1e-12);
      }),
      { numRuns: 200 },
    );
    fc.assert(
      fc.property(multiclassRows(4), (rows) => {
        const v = evaluationVector(
          rows.flatMap(([w]) => w.map((x) => x / w.reduce((a, b) => a + b, 0))),
          rows.map(([, y]) => y),
          multiclass,
          { perSite: true },
        );
        expect(l2(v)).toBeLessThanOrEqual(
          evaluationSensitivity(multiclass, { perSite: true }) + 1e-12,
        );
      }),
      { numRuns: 100 },
    );
  });

  it('is reached by a confidently wrong example, at both levels', () => {
    for (const perSite of [false, true]) {
      const v = evaluationVector([0.999, 0.999], [0, 0], binary, { perSite });
      const expected = (perSite ? 1 : 2) * Math.sqrt(3);
      expect(l2(v)).toBeCloseTo(expected, 12);
    }
  });
});

describe('metricsFromEvaluationSum on noisy sums', () => {
  const layouts: EvaluationLayout[] = [
    { classes: 2, bins: 20, lossClip: 10 },
    { classes: 2, bins: 0, lossClip: 10 },
    { classes: 5, bins: 0, lossClip: 10 },
  ];

  function expectInRange(m: ReturnType<typeof metricsFromEvaluationSum>, layout: EvaluationLayout) {
    for (const x of [m.loss, m.accuracy, m.f1, m.numExamples])
      expect(Number.isFinite(x)).toBe(true);
    expect(m.loss).toBeGreaterThanOrEqual(0);
    expect(m.loss).toBeLessThanOrEqual(layout.lossClip);
    for (const x of [m.accuracy, m.f1]) {
      expect(x).toBeGreaterThanOrEqual(0);
      expect(x).toBeLessThanOrEqual(1);
    }
    if (m.auc !== null) {
      expect(m.auc).toBeGreaterThanOrEqual(0);
      expect(m.auc).toBeLessThanOrEqual(1);
    }
    if (layout.bins === 0) expect(m.auc).toBeNull();
    expect(Number.isInteger(m.numExamples) && m.numExamples >= 0).toBe(true);
  }

  it('never gives NaN or out-of-range metrics, whatever the Gaussian noise', () => {
    const rng = seededRandom(3);
    fc.assert(
      fc.property(
        fc.constantFrom(...layouts),
        fc.double({ min: 0, max: 1e6, noNaN: true }),
        fc.integer({ min: 0, max: 30 }),
        fc.integer(),
        (layout, sigma, rows, seed) => {
          const k = layout.classes;
          const scores = Array.from({ length: rows * k }, () => rng());
          const labels = Array.from({ length: rows }, () => Math.floor(rng() * k));
          const noise = seededRandom(seed);
          const sum = evaluationVector(scores, labels, layout, { perSite: false }).map(
            (x) => x + sigma * normalSample(noise),
          );
          expectInRange(metricsFromEvaluationSum(sum, layout), layout);
          expectInRange(metricsFromEvaluationSum(sum, layout, { sites: 3 }), layout);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('survives extreme finite sums', () => {
    for (const layout of layouts) {
      const n = evaluationVectorLength(layout);
      for (const fill of [0, -1e300, 1e300, 1.7e308, -1]) {
        const sum = new Float64Array(n).fill(fill);
        expectInRange(metricsFromEvaluationSum(sum, layout), layout);
        const alternating = sum.map((x, i) => (i % 2 === 0 ? x : -x));
        expectInRange(metricsFromEvaluationSum(alternating, layout), layout);
      }
    }
  });

  it('refuses non-finite values and sums of the wrong length', () => {
    const layout = layouts[0] as EvaluationLayout;
    const sum = new Float64Array(evaluationVectorLength(layout));
    sum[3] = NaN;
    expect(() => metricsFromEvaluationSum(sum, layout)).toThrow('value 3 is NaN');
    expect(() => metricsFromEvaluationSum([1, 2], layout)).toThrow('the layout needs 45');
  });
});

describe('evaluation layouts', () => {
  it('defaults to 20 bins and a loss clip of 10 for binary models, no bins for multiclass', () => {
    expect(evaluationLayoutFor({ kind: 'logistic', inputDim: 3 })).toEqual({
      classes: 2,
      bins: 20,
      lossClip: 10,
    });
    expect(
      evaluationLayoutFor(
        { kind: 'mlp', inputDim: 3, hidden: [4], output: { classes: 7 } },
        { bins: 30, lossClip: 5 },
      ),
    ).toEqual({ classes: 7, bins: 0, lossClip: 5 });
    expect(evaluationVectorLength({ classes: 2, bins: 20, lossClip: 10 })).toBe(1 + 4 + 40);
  });

  it('refuses bins for more than two classes and a non-positive loss clip', () => {
    expect(() => evaluationVectorLength({ classes: 3, bins: 4, lossClip: 10 })).toThrow(
      '0 for more',
    );
    expect(() => evaluationLayoutFor({ kind: 'logistic', inputDim: 3 }, { lossClip: 0 })).toThrow(
      'lossClip must be a positive number',
    );
  });
});

describe('evaluateForSum', () => {
  beforeAll(async () => {
    tf.env().set('IS_TEST', true);
    await tf.setBackend('cpu');
  });

  function data(numRows: number, classes: number, seed: number): Dataset {
    const rng = seededRandom(seed);
    return {
      features: Float32Array.from({ length: numRows * 3 }, () => rng() * 4 - 2),
      labels: Float32Array.from({ length: numRows }, () => Math.floor(rng() * classes)),
      numRows,
      numFeatures: 3,
      featureNames: ['a', 'b', 'c'],
      labelName: 'y',
    };
  }

  it("matches evaluateModel's accuracy, loss and F1 on a logistic model and leaks no tensors", async () => {
    const spec: ModelSpec = { kind: 'logistic', inputDim: 3 };
    const model = buildModel(spec);
    setModelWeights(model, Float32Array.from([1.5, -2, 0.5, 0.25]));
    const ds = data(64, 2, 11);
    const layout = evaluationLayoutFor(spec);
    const before = tf.memory().numTensors;
    const vector = await evaluateForSum(model, spec, ds, layout, { perSite: false });
    expect(tf.memory().numTensors).toBe(before);
    const secure = metricsFromEvaluationSum(vector, layout);
    const plain = await evaluateModel(model, spec, ds);
    expect(secure.numExamples).toBe(plain.numExamples);
    expect(secure.accuracy).toBeCloseTo(plain.accuracy, 12);
    expect(secure.f1).toBeCloseTo(plain.f1, 12);
    expect(secure.loss).toBeCloseTo(plain.loss, 6);
    const { neg, pos } = binaryHistograms(predictScores(model, ds), ds.labels, layout.bins);
    const shared = pos.reduce((a, p, b) => a + p * (neg[b] as number), 0);
    const pairs = pos.reduce((a, b) => a + b, 0) * neg.reduce((a, b) => a + b, 0);
    expect(Math.abs((secure.auc as number) - (plain.auc as number))).toBeLessThanOrEqual(
      shared / (2 * pairs) + 1e-12,
    );
    model.dispose();
  });

  it("matches evaluateModel's accuracy, loss and macro F1 on a multiclass model", async () => {
    const spec: ModelSpec = { kind: 'logistic', inputDim: 3, output: { classes: 3 } };
    const model = buildModel(spec);
    setModelWeights(model, Float32Array.from([1, -1, 0, 0.5, 0.5, -1, -1, 0, 1, 0.1, 0, -0.1]));
    const ds = data(50, 3, 5);
    const layout = evaluationLayoutFor(spec);
    const before = tf.memory().numTensors;
    const vector = await evaluateForSum(model, spec, ds, layout, { perSite: true });
    expect(tf.memory().numTensors).toBe(before);
    const secure = metricsFromEvaluationSum(vector, layout, { sites: 1 });
    const plain = await evaluateModel(model, spec, ds);
    expect(secure.accuracy).toBeCloseTo(plain.accuracy, 12);
    expect(secure.f1).toBeCloseTo(plain.f1, 12);
    expect(secure.loss).toBeCloseTo(plain.loss, 6);
    model.dispose();
  });

  it('refuses a layout built for another model', async () => {
    const spec: ModelSpec = { kind: 'logistic', inputDim: 3 };
    const model = buildModel(spec);
    await expect(
      evaluateForSum(
        model,
        spec,
        data(4, 2, 1),
        { classes: 3, bins: 0, lossClip: 10 },
        {
          perSite: false,
        },
      ),
    ).rejects.toThrow('the evaluation layout has 3 classes, the model 2');
    model.dispose();
  });
});
