import type * as tf from '@tensorflow/tfjs';
import type { Dataset } from './dataset';
import { MlError } from './errors';
import { outputUnits, type ModelSpec } from './model-spec';
import { evaluationVector, type EvaluationLayout } from './secure-metrics';
import { checkDataForSpec, checkModelForSpec, predictScores } from './train';

// The tfjs half of secure-metrics.ts, in its own file so that '@confide/ml/spec' (which exports the
// pure half to the aggregator) never loads tfjs.

/** Let timers and sockets run after the prediction, as evaluateModel does. */
const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * The site's evaluation vector (see evaluationVector) for a model on its data, to be summed by
 * secure aggregation. Checks the model, data and layout against the spec; leaves no tensors behind.
 * @example const v = await evaluateForSum(model, spec, test, evaluationLayoutFor(spec), { perSite: false })
 */
export async function evaluateForSum(
  model: tf.LayersModel,
  spec: ModelSpec,
  ds: Dataset,
  layout: EvaluationLayout,
  options: { perSite: boolean },
): Promise<Float64Array> {
  checkModelForSpec(model, spec);
  const units = outputUnits(spec);
  const classes = units === 1 ? 2 : units;
  if (layout.classes !== classes) {
    throw new MlError(
      'INVALID_ARGUMENT',
      `the evaluation layout has ${layout.classes} classes, the model ${classes} ` +
        '(build the layout with evaluationLayoutFor(spec))',
    );
  }
  checkDataForSpec(spec, ds);
  const scores = predictScores(model, ds);
  await yieldToEventLoop();
  return evaluationVector(scores, ds.labels, layout, options);
}
