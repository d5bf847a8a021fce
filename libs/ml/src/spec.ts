// @confide/ml/spec: the part of @confide/ml that needs no tfjs (model specs, flat initial weights,
// federated standardisation, the seeded PRNG). The aggregator imports only this, so it never loads
// tfjs: about 50 MB less heap for the garbage collector to mark on every major collection.

export { MlError, type MlErrorCode } from './errors';
export {
  MODEL_SPEC_LIMITS,
  layerSizes,
  outputUnits,
  parameterCount,
  parseModelSpec,
  weightShapes,
  type ModelSpec,
  type OutputSpec,
} from './model-spec';
export { initialWeights } from './weights';
export {
  combineFeatureStats,
  featureStatsPartial,
  standardize,
  type FeatureStats,
  type FeatureStatsPartial,
} from './standardize';
export { dirichletSample, seededRandom, shuffleInPlace } from './random';
export {
  checkBounds as checkFeatureBounds,
  statisticsFromSum,
  statisticsSensitivity,
  statisticsVector,
  type FeatureBounds,
  type StatisticsOptions,
} from './secure-stats';
export {
  evaluationLayoutFor,
  evaluationSensitivity,
  evaluationVector,
  evaluationVectorLength,
  metricsFromEvaluationSum,
  type EvaluationLayout,
} from './secure-metrics';
