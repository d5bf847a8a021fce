// Public API of @confide/ml: model specs, flat weights, training and evaluation with tfjs (backend
// chosen by the caller), pure metrics, CSV datasets, federated standardisation and simulation splits.
// Each export carries its one-line doc comment where it is defined.

// The tfjs-free part (specs, initial weights, standardisation, seeded PRNG), also importable alone.
export * from './spec';
export { buildModel, getModelWeights, setModelWeights } from './model';
export { evaluateModel, predictScores, trainModel, type TrainOptions } from './train';
export { trainModelDpSgd, type DpSgdOptions, type DpSgdResult } from './dp-sgd';
export { evaluateForSum } from './secure-evaluation';
export {
  PROBABILITY_EPSILON,
  accuracy,
  binaryCrossEntropy,
  binaryMetrics,
  f1Score,
  macroF1,
  multiclassMetrics,
  rocAuc,
  type Metrics,
} from './metrics';
export { checkDataset, concatDatasets, subsetRows, type Dataset } from './dataset';
export { datasetToCsv, loadCsv, parseCsv, type CsvOptions } from './csv';
export { apportion, partitionDirichlet, partitionIid, rowsByClass, stratifiedSplit } from './split';
