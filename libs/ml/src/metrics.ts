import { MlError } from './errors';

/** Evaluation results reported by a site for one model. */
export interface Metrics {
  /** Mean cross-entropy (binary or categorical). */
  loss: number;
  accuracy: number;
  /** ROC AUC of class 1; null when only one class is present or the model is multiclass. */
  auc: number | null;
  /** Binary F1 of class 1, or macro-F1 over the classes present for a multiclass model. */
  f1: number;
  numExamples: number;
}

/** Probabilities are clipped to [EPSILON, 1 - EPSILON] before taking logs, as Keras does. */
export const PROBABILITY_EPSILON = 1e-7;

function checkSameLength(a: ArrayLike<number>, b: ArrayLike<number>, what: string): void {
  if (a.length !== b.length) {
    throw new MlError(
      'INVALID_ARGUMENT',
      `${what}: got ${a.length} predictions for ${b.length} labels`,
    );
  }
  if (a.length === 0) throw new MlError('INVALID_ARGUMENT', `${what}: no examples`);
}

function checkBinaryLabel(label: number, i: number): void {
  if (label !== 0 && label !== 1) {
    throw new MlError('INVALID_ARGUMENT', `label ${i} is ${label}; binary labels must be 0 or 1`);
  }
}

/** Fraction of predicted classes that equal the labels. */
export function accuracy(predicted: ArrayLike<number>, labels: ArrayLike<number>): number {
  checkSameLength(predicted, labels, 'accuracy');
  let correct = 0;
  for (let i = 0; i < labels.length; i++) if (predicted[i] === labels[i]) correct++;
  return correct / labels.length;
}

/** F1 score of one class (default: class 1) from predicted classes; 0 when it is never predicted nor present. */
export function f1Score(
  predicted: ArrayLike<number>,
  labels: ArrayLike<number>,
  positive = 1,
): number {
  checkSameLength(predicted, labels, 'f1Score');
  let tp = 0;
  let fp = 0;
  let fn = 0;
  for (let i = 0; i < labels.length; i++) {
    const p = predicted[i] === positive;
    const l = labels[i] === positive;
    if (p && l) tp++;
    else if (p) fp++;
    else if (l) fn++;
  }
  return tp === 0 ? 0 : (2 * tp) / (2 * tp + fp + fn);
}

/** Unweighted mean of the per-class F1 over the classes that occur in the labels or the predictions. */
export function macroF1(predicted: ArrayLike<number>, labels: ArrayLike<number>): number {
  checkSameLength(predicted, labels, 'macroF1');
  const classes = new Set<number>();
  for (let i = 0; i < labels.length; i++) {
    classes.add(labels[i] as number);
    classes.add(predicted[i] as number);
  }
  let sum = 0;
  for (const c of classes) sum += f1Score(predicted, labels, c);
  return sum / classes.size;
}

/**
 * Exact ROC AUC of class 1 (Mann-Whitney U with average ranks, so tied scores count one half).
 * Null when the labels contain only one class. Labels must be 0 or 1.
 */
export function rocAuc(scores: ArrayLike<number>, labels: ArrayLike<number>): number | null {
  checkSameLength(scores, labels, 'rocAuc');
  const n = labels.length;
  let positives = 0;
  for (let i = 0; i < n; i++) {
    const l = labels[i] as number;
    checkBinaryLabel(l, i);
    if (Number.isNaN(scores[i])) {
      throw new MlError('INVALID_ARGUMENT', `rocAuc: score ${i} is NaN`);
    }
    positives += l;
  }
  const negatives = n - positives;
  if (positives === 0 || negatives === 0) return null;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => {
    const sa = scores[a] as number;
    const sb = scores[b] as number;
    return sa < sb ? -1 : sa > sb ? 1 : 0; // not sa - sb: Infinity - Infinity is NaN
  });
  let positiveRankSum = 0;
  for (let start = 0; start < n;) {
    let end = start + 1;
    const s = scores[order[start] as number];
    while (end < n && scores[order[end] as number] === s) end++;
    const averageRank = (start + 1 + end) / 2; // ranks start..end-1, 1-based
    for (let k = start; k < end; k++) {
      if (labels[order[k] as number] === 1) positiveRankSum += averageRank;
    }
    start = end;
  }
  return (positiveRankSum - (positives * (positives + 1)) / 2) / (positives * negatives);
}

/** Mean binary cross-entropy of probabilities of class 1, clipped to [1e-7, 1 - 1e-7]. */
export function binaryCrossEntropy(scores: ArrayLike<number>, labels: ArrayLike<number>): number {
  checkSameLength(scores, labels, 'binaryCrossEntropy');
  let sum = 0;
  for (let i = 0; i < labels.length; i++) {
    const p = Math.min(Math.max(scores[i] as number, PROBABILITY_EPSILON), 1 - PROBABILITY_EPSILON);
    const y = labels[i] as number;
    sum -= y * Math.log(p) + (1 - y) * Math.log(1 - p);
  }
  return sum / labels.length;
}

/** Loss, accuracy, AUC and F1 of class 1 for probabilities of class 1 (threshold 0.5). */
export function binaryMetrics(
  scores: Float32Array,
  labels: Float32Array,
): Omit<Metrics, 'numExamples'> {
  checkSameLength(scores, labels, 'binaryMetrics');
  labels.forEach(checkBinaryLabel);
  const predicted = scores.map((s) => (s >= 0.5 ? 1 : 0));
  return {
    loss: binaryCrossEntropy(scores, labels),
    accuracy: accuracy(predicted, labels),
    auc: rocAuc(scores, labels),
    f1: f1Score(predicted, labels),
  };
}

/**
 * Loss, accuracy and macro-F1 for row-major class probabilities (numRows x classes); auc is null.
 * Labels must be integers in [0, classes).
 */
export function multiclassMetrics(
  probabilities: Float32Array,
  labels: Float32Array,
  classes: number,
): Omit<Metrics, 'numExamples'> {
  const n = labels.length;
  if (probabilities.length !== n * classes || n === 0) {
    throw new MlError(
      'INVALID_ARGUMENT',
      `multiclassMetrics: ${probabilities.length} probabilities for ${n} labels and ${classes} classes`,
    );
  }
  const predicted = new Float32Array(n);
  let loss = 0;
  for (let i = 0; i < n; i++) {
    const label = labels[i] as number;
    if (!Number.isInteger(label) || label < 0 || label >= classes) {
      throw new MlError('INVALID_ARGUMENT', `label ${i} is ${label}; expected 0..${classes - 1}`);
    }
    let best = 0;
    for (let c = 1; c < classes; c++) {
      if (
        (probabilities[i * classes + c] as number) > (probabilities[i * classes + best] as number)
      ) {
        best = c;
      }
    }
    predicted[i] = best;
    const p = probabilities[i * classes + label] as number;
    loss -= Math.log(Math.min(Math.max(p, PROBABILITY_EPSILON), 1 - PROBABILITY_EPSILON));
  }
  return {
    loss: loss / n,
    accuracy: accuracy(predicted, labels),
    auc: null,
    f1: macroF1(predicted, labels),
  };
}
