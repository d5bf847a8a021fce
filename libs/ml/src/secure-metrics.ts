import { MlError } from './errors';
import { PROBABILITY_EPSILON, type Metrics } from './metrics';
import { outputUnits, type ModelSpec } from './model-spec';

// Evaluation metrics through secure aggregation: each site turns its predictions into a vector of
// counts, the aggregator sees only the element-wise sum over the sites (plus Gaussian noise under
// differential privacy) and decodes federation-wide loss, accuracy, F1 and AUC from it.
//
// Vector layout, k = classes, B = bins (0 unless k = 2):
//   [0]                         sum over rows of min(loss, lossClip) / lossClip   (each term in [0, 1])
//   [1, 1 + k^2)                confusion counts, row-major: row = true class, column = predicted
//   [1 + k^2, 1 + k^2 + B)      histogram of the class-1 score of the true negatives (label 0)
//   [1 + k^2 + B, 1 + k^2 + 2B) histogram of the class-1 score of the true positives (label 1)
// Histogram bin b holds scores in [b / B, (b + 1) / B), the last bin includes 1. With perSite every
// coordinate is divided by the site's row count, so each site adds one unit of "examples".

/**
 * What an evaluation vector holds. classes = 2: binary metrics (F1 of class 1) and, when bins > 0, a
 * binned ROC AUC. classes > 2: multiclass metrics (macro F1, no AUC), bins must be 0.
 */
export interface EvaluationLayout {
  classes: number;
  /** Equal-width bins of the class-1 score on [0, 1] per true class, for the AUC; 0 = no AUC. */
  bins: number;
  /** Per-example loss is clipped at this value, which bounds one example's effect on the sum. */
  lossClip: number;
}

/**
 * Default score bins. The binned AUC differs from the exact one only through (positive, negative)
 * pairs that share a bin, each off by at most one half; with width 0.05 and scores spread over
 * [0, 1] that is a small share of the pairs, while the vector stays short (40 histogram values,
 * each carrying its own noise under differential privacy; the sensitivity does not depend on B).
 */
const DEFAULT_BINS = 20;

/**
 * Default loss clip. Clipping only touches examples whose true class gets a probability under
 * e^-10 (about 4.5e-5): confidently wrong ones. It sits above the loss of an uninformed model for
 * every allowed class count (ln 10000 = 9.2) and below the largest loss (-ln 1e-7 = 16.1); the
 * noise on the decoded loss grows with the clip, so no higher than needed.
 */
const DEFAULT_LOSS_CLIP = 10;

function checkLayout(layout: EvaluationLayout): void {
  const { classes, bins, lossClip } = layout;
  if (!Number.isInteger(classes) || classes < 2) {
    throw new MlError(
      'INVALID_ARGUMENT',
      `evaluation layout: classes must be an integer >= 2, got ${classes}`,
    );
  }
  if (!Number.isInteger(bins) || bins < 0 || (classes > 2 && bins !== 0)) {
    throw new MlError(
      'INVALID_ARGUMENT',
      `evaluation layout: bins must be an integer >= 0 for 2 classes and 0 for more, got ${bins} ` +
        `for ${classes} classes`,
    );
  }
  if (!(lossClip > 0) || !Number.isFinite(lossClip)) {
    throw new MlError(
      'INVALID_ARGUMENT',
      `evaluation layout: lossClip must be a positive number, got ${lossClip}`,
    );
  }
}

/** Length of an evaluation vector: 1 + classes^2 + 2 bins. */
export function evaluationVectorLength(layout: EvaluationLayout): number {
  checkLayout(layout);
  return 1 + layout.classes * layout.classes + 2 * layout.bins;
}

/**
 * The layout for a model spec: 2 classes with `bins` (default 20) for a binary output, or for a
 * 2-class softmax (then decoded as binary: F1 of class 1 and AUC, where evaluateModel gives macro F1
 * and no AUC); `classes` with no bins otherwise (`bins` ignored). lossClip defaults to 10.
 * @example evaluationLayoutFor({ kind: 'logistic', inputDim: 30 }) // { classes: 2, bins: 20, lossClip: 10 }
 */
export function evaluationLayoutFor(
  spec: ModelSpec,
  options: { bins?: number; lossClip?: number } = {},
): EvaluationLayout {
  const units = outputUnits(spec);
  const classes = units === 1 ? 2 : units;
  const layout = {
    classes,
    bins: classes === 2 ? (options.bins ?? DEFAULT_BINS) : 0,
    lossClip: options.lossClip ?? DEFAULT_LOSS_CLIP,
  };
  checkLayout(layout);
  return layout;
}

const clipProbability = (p: number): number =>
  Math.min(Math.max(p, PROBABILITY_EPSILON), 1 - PROBABILITY_EPSILON);

/**
 * A site's evaluation vector (layout above) from its predictions, as predictScores returns them:
 * one probability of class 1 per row (sigmoid output, 2 classes only, predicted class 1 when
 * >= 0.5), or a row-major numRows x classes probability matrix (predicted class: the first largest).
 * Losses are cross-entropies with probabilities clipped to [1e-7, 1 - 1e-7], as in metrics.ts.
 * With perSite every coordinate is divided by the row count; no rows give the zero vector.
 * @example evaluationVector(predictScores(model, ds), ds.labels, layout, { perSite: false })
 */
export function evaluationVector(
  scores: ArrayLike<number>,
  labels: ArrayLike<number>,
  layout: EvaluationLayout,
  options: { perSite: boolean },
): Float64Array {
  const out = new Float64Array(evaluationVectorLength(layout));
  const { classes: k, bins, lossClip } = layout;
  const n = labels.length;
  const single = k === 2 && scores.length === n;
  if (!single && scores.length !== n * k) {
    throw new MlError(
      'INVALID_ARGUMENT',
      `evaluationVector: ${scores.length} scores for ${n} labels and ${k} classes ` +
        `(expected ${n * k}${k === 2 ? ` or ${n}` : ''})`,
    );
  }
  const histograms = 1 + k * k;
  for (let i = 0; i < n; i++) {
    const label = labels[i] as number;
    if (!Number.isInteger(label) || label < 0 || label >= k) {
      throw new MlError('INVALID_ARGUMENT', `label ${i} is ${label}; expected 0..${k - 1}`);
    }
    let predicted: number;
    let loss: number;
    let positiveScore: number;
    if (single) {
      positiveScore = scores[i] as number;
      if (Number.isNaN(positiveScore)) {
        throw new MlError('INVALID_ARGUMENT', `evaluationVector: score ${i} is NaN`);
      }
      predicted = positiveScore >= 0.5 ? 1 : 0;
      const p = clipProbability(positiveScore);
      loss = -Math.log(label === 1 ? p : 1 - p);
    } else {
      predicted = 0;
      for (let c = 0; c < k; c++) {
        const p = scores[i * k + c] as number;
        if (Number.isNaN(p)) {
          throw new MlError(
            'INVALID_ARGUMENT',
            `evaluationVector: row ${i}, class ${c} score is NaN`,
          );
        }
        if (p > (scores[i * k + predicted] as number)) predicted = c;
      }
      positiveScore = k === 2 ? (scores[i * k + 1] as number) : 0;
      loss = -Math.log(clipProbability(scores[i * k + label] as number));
    }
    out[0] = (out[0] as number) + Math.min(loss, lossClip) / lossClip;
    const cell = 1 + label * k + predicted;
    out[cell] = (out[cell] as number) + 1;
    if (bins > 0) {
      const s = Math.min(Math.max(positiveScore, 0), 1);
      const bin = histograms + (label === 1 ? bins : 0) + Math.min(bins - 1, Math.floor(s * bins));
      out[bin] = (out[bin] as number) + 1;
    }
  }
  if (options.perSite && n > 0) {
    for (let i = 0; i < out.length; i++) out[i] = (out[i] as number) / n;
  }
  return out;
}

/**
 * L2 sensitivity of {@link evaluationVector}: sqrt(3) with AUC bins, sqrt(2) without, at record and
 * site level.
 *
 * Record level (add or remove one example): the loss coordinate moves by min(loss, clip) / clip
 * <= 1, one confusion cell by 1 and (with bins) one histogram bin by 1: sqrt(1 + 1 + 1). Replacing
 * an example instead would move two cells and two bins: sqrt(5), so the accountant must use
 * add/remove adjacency.
 * Site level (add or remove one site): the loss coordinate is a mean in [0, 1]; the confusion block
 * and the histogram block are each non-negative and sum to 1, so each has L2 norm <= its L1 norm
 * = 1: again sqrt(3) or sqrt(2), reached by a site whose examples all fall in one cell and one bin
 * with losses at the clip.
 * @example evaluationSensitivity({ classes: 2, bins: 20, lossClip: 10 }, { perSite: false }) // sqrt(3)
 */
export function evaluationSensitivity(
  layout: EvaluationLayout,
  _options: { perSite: boolean },
): number {
  checkLayout(layout);
  return Math.sqrt(layout.bins > 0 ? 3 : 2);
}

/** x clamped to [0, hi]; NaN (from overflowing sums of absurd values) becomes 0. */
const clampNonNegative = (x: number, hi = Infinity): number => (x > 0 ? Math.min(x, hi) : 0);

/** F1 from (clamped, non-negative) counts, 0 without true positives, as metrics.ts defines it. */
const f1FromCounts = (tp: number, fp: number, fn: number): number =>
  tp > 0 ? clampNonNegative((2 * tp) / (2 * tp + fp + fn), 1) : 0;

/**
 * Binned ROC AUC from the class-1 score histograms of the negatives and positives: each positive
 * beats the negatives in lower bins and ties (one half) with those in its bin, i.e. the trapezoidal
 * AUC of the ROC swept from the top bin down. Null when either class has no mass.
 */
function binnedAuc(negatives: number[], positives: number[]): number | null {
  const totalNegative = negatives.reduce((a, b) => a + b, 0);
  const totalPositive = positives.reduce((a, b) => a + b, 0);
  if (!(totalNegative > 0 && totalPositive > 0)) return null;
  let auc = 0;
  let negativesBelow = 0;
  negatives.forEach((neg, b) => {
    const pos = positives[b] as number;
    auc += (pos / totalPositive) * ((negativesBelow + 0.5 * neg) / totalNegative);
    negativesBelow += neg;
  });
  return clampNonNegative(auc, 1);
}

/**
 * Federation-wide metrics from the sum of the sites' {@link evaluationVector}s; robust to noise
 * (never NaN, never out of range). Every count is clamped at 0 first. The divisor is the confusion
 * total (rows; sites for perSite), or `sites` when given, clamped to >= 1: accuracy = trace /
 * divisor and loss = lossClip x loss sum / divisor, each clamped to [0, 1] and [0, lossClip]. F1 is
 * that of class 1 (2 classes) or the mean over the classes with any true or predicted mass. AUC is
 * the binned one (see binnedAuc), null without bins. numExamples: round(confusion total), or `sites`.
 * @param options.sites for perSite vectors, the number of sites summed (known exactly to the
 *   aggregator, unlike the noisy confusion total).
 * @example metricsFromEvaluationSum(summed, evaluationLayoutFor(spec))
 */
export function metricsFromEvaluationSum(
  sum: ArrayLike<number>,
  layout: EvaluationLayout,
  options: { sites?: number } = {},
): Metrics {
  const length = evaluationVectorLength(layout);
  if (sum.length !== length) {
    throw new MlError(
      'INVALID_ARGUMENT',
      `the summed evaluation holds ${sum.length} values; the layout needs ${length}`,
    );
  }
  for (let i = 0; i < length; i++) {
    if (!Number.isFinite(sum[i])) {
      throw new MlError(
        'INVALID_ARGUMENT',
        `summed evaluation value ${i} is ${sum[i]}, not a finite number`,
      );
    }
  }
  const { sites } = options;
  if (sites !== undefined && (!Number.isInteger(sites) || sites < 1)) {
    throw new MlError('INVALID_ARGUMENT', `sites must be an integer >= 1, got ${sites}`);
  }
  const { classes: k, bins, lossClip } = layout;
  const count = (i: number): number => clampNonNegative(sum[i] as number);
  const cell = (truth: number, predicted: number): number => count(1 + truth * k + predicted);
  const trueMass = new Array<number>(k).fill(0);
  const predictedMass = new Array<number>(k).fill(0);
  let total = 0;
  let trace = 0;
  for (let t = 0; t < k; t++) {
    for (let p = 0; p < k; p++) {
      const c = cell(t, p);
      trueMass[t] = (trueMass[t] as number) + c;
      predictedMass[p] = (predictedMass[p] as number) + c;
      total += c;
      if (t === p) trace += c;
    }
  }
  const divisor = Math.max(1, sites ?? total);
  let f1: number;
  if (k === 2) {
    f1 = f1FromCounts(cell(1, 1), cell(0, 1), cell(1, 0));
  } else {
    let f1Sum = 0;
    let present = 0;
    for (let c = 0; c < k; c++) {
      const tp = cell(c, c);
      if (!((trueMass[c] as number) > 0 || (predictedMass[c] as number) > 0)) continue;
      present++;
      f1Sum += f1FromCounts(tp, (predictedMass[c] as number) - tp, (trueMass[c] as number) - tp);
    }
    f1 = present === 0 ? 0 : clampNonNegative(f1Sum / present, 1);
  }
  const histograms = 1 + k * k;
  const histogram = (offset: number): number[] =>
    Array.from({ length: bins }, (_, b) => count(histograms + offset + b));
  return {
    loss: clampNonNegative((lossClip * (sum[0] as number)) / divisor, lossClip),
    accuracy: clampNonNegative(trace / divisor, 1),
    auc: bins > 0 ? binnedAuc(histogram(0), histogram(bins)) : null,
    f1,
    numExamples: sites ?? Math.round(Math.min(total, Number.MAX_SAFE_INTEGER)),
  };
}
