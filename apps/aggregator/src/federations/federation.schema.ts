import { z } from 'zod';
import { STRATEGY_NAME_PATTERN, strategyCatalog, strategyNames } from '@confide/federated';
import { DEFAULT_MAX_WEIGHT } from '../rounds/contribution-checks';

/** The body of "create a federation". Unknown keys are refused so a typo is never silently ignored. */
export const createFederationSchema = z
  .object({
    name: z
      .string()
      .min(1)
      .max(100)
      .regex(/^[A-Za-z0-9][A-Za-z0-9 ._-]*$/, 'use letters, digits, spaces, ".", "_" or "-"'),
    modelSpec: z.unknown(),
    /** A registered strategy's name; checked against the registry with its configuration. */
    strategy: z
      .string()
      .max(40)
      .regex(STRATEGY_NAME_PATTERN, 'a strategy name is lower-case letters, digits and "-"')
      .default('fedavg'),
    /** The strategy's settings (absent: its defaults), checked by its schema in the registry. */
    strategyConfig: z.record(z.string().max(100), z.unknown()).optional(),
    minSites: z.number().int().min(1).max(10_000).default(2),
    roundTimeoutSeconds: z
      .number()
      .int()
      .min(1)
      .max(7 * 24 * 3600)
      .default(300),
    evaluationTimeoutSeconds: z
      .number()
      .int()
      .min(1)
      .max(24 * 3600)
      .default(60),
    localEpochs: z.number().int().min(1).max(1000).default(1),
    batchSize: z.number().int().min(1).max(1_000_000).default(32),
    learningRate: z.number().gt(0).max(10).default(0.01),
    optimizer: z.enum(['sgd', 'adam']).default('adam'),
    seed: z
      .number()
      .int()
      .min(0)
      .max(2 ** 31 - 1)
      .optional(),
    dp: z
      .discriminatedUnion('level', [
        z.object({ level: z.literal('none') }).strict(),
        z
          .object({
            level: z.enum(['record', 'site']),
            noiseMultiplier: z.number().gt(0).max(1000),
            clipNorm: z.number().gt(0).max(1e6),
            delta: z.number().gt(0).lt(1).default(1e-5),
            epsilonLimit: z.number().gt(0).max(1e6),
            /** The share of each site's budget for statistics and evaluation releases. */
            statisticsShare: z.number().gt(0).lt(1).default(0.1),
            /** How many evaluation releases that share is planned for (sets their noise). */
            evaluationRounds: z.number().int().min(1).max(100_000).default(10),
            /** Noise multiplier of each statistics/evaluation release; derived from the share when absent. */
            statisticsNoiseMultiplier: z.number().gt(0).max(1e6).optional(),
          })
          .strict(),
      ])
      .default({ level: 'none' }),
    /** The data every site holds: per-feature bounds, public, which DP statistics are clipped to. */
    dataSchema: z
      .object({
        featureBounds: z
          .object({
            lo: z.array(z.number().finite()).min(1).max(100_000),
            hi: z.array(z.number().finite()).min(1).max(100_000),
          })
          .strict()
          .optional(),
      })
      .strict()
      .default({}),
    /**
     * 'federated': statistics agreed in a pre-round (a secure sum); 'local': each site standardises
     * with its own. Default: federated, except under DP without featureBounds.
     */
    standardization: z.enum(['federated', 'local']).optional(),
    /**
     * Federated evaluation of each new model on the sites' held-out rows (a secure sum of counts; under
     * DP a release charged to every site's budget, so an admin may turn it off).
     */
    evaluation: z
      .object({ enabled: z.boolean().default(true) })
      .strict()
      .default({ enabled: true }),
    /**
     * How sites weigh in each average: by their record count capped at maxWeight (announced in every
     * round; a claim above it excludes the site), or equally.
     */
    weighting: z
      .object({
        mode: z.enum(['records', 'equal']).default('records'),
        maxWeight: z
          .number()
          .int()
          .min(1)
          .max(2 ** 31 - 1)
          .default(DEFAULT_MAX_WEIGHT),
      })
      .strict()
      .default({ mode: 'records', maxWeight: DEFAULT_MAX_WEIGHT }),
    /** The largest L2 norm of a plain update; default: secureAggregation.clip x sqrt(parameters). */
    maxUpdateNorm: z.number().gt(0).max(1e12).optional(),
    /**
     * The share of connected sites each round takes: drawn by the aggregator (at least minSites), or
     * under site-level DP by each site's own Poisson coin.
     */
    sampling: z
      .object({ fraction: z.number().gt(0).max(1).default(1) })
      .strict()
      .default({ fraction: 1 }),
    secureAggregation: z
      .object({
        enabled: z.boolean().default(true),
        /** Shamir threshold t; default: a majority of the round's sites, at least 2. */
        threshold: z.number().int().min(2).max(10_000).optional(),
        /** 'auto': complete graph up to 64 sites, a Harary graph above. */
        graph: z.enum(['auto', 'complete', 'harary']).default('auto'),
        k: z.number().int().min(2).max(10_000).optional(),
        threatModel: z.enum(['semi-honest', 'semi-malicious']).default('semi-honest'),
        /** Quantization clip of each update coordinate before weighting. */
        clip: z.number().gt(0).max(1e6).default(10),
        /** Dropout rate the Harary parameters are chosen for. */
        dropoutRate: z.number().min(0).max(0.5).default(0.1),
      })
      .strict()
      .default({
        enabled: true,
        graph: 'auto',
        threatModel: 'semi-honest',
        clip: 10,
        dropoutRate: 0.1,
      }),
  })
  .strict();

export type CreateFederationInput = z.input<typeof createFederationSchema>;

/** JSON schema of the body, for the OpenAPI document. */
export const createFederationOpenApi = {
  type: 'object',
  required: ['name', 'modelSpec'],
  properties: {
    name: { type: 'string', example: 'breast-cancer' },
    modelSpec: {
      type: 'object',
      example: { kind: 'mlp', inputDim: 30, hidden: [16], output: 'binary' },
      description:
        "{ kind: 'logistic', inputDim } or { kind: 'mlp', inputDim, hidden: number[], output: 'binary' | { classes } }",
    },
    strategy: { type: 'string', enum: strategyNames(), default: 'fedavg' },
    strategyConfig: {
      type: 'object',
      description:
        "the strategy's settings (absent: its defaults), e.g. { serverLearningRate: 0.01 } for fedadam; strategies that need each site's update need secureAggregation.enabled: false",
      oneOf: strategyCatalog().map(({ name, summary, needsIndividualUpdates, configSchema }) => {
        const { $schema: _, ...schema } = configSchema;
        return {
          ...schema,
          title: name,
          description: summary + (needsIndividualUpdates ? ' Plain federations only.' : ''),
        };
      }),
    },
    minSites: { type: 'integer', default: 2 },
    roundTimeoutSeconds: { type: 'integer', default: 300 },
    evaluationTimeoutSeconds: { type: 'integer', default: 60 },
    localEpochs: { type: 'integer', default: 1 },
    batchSize: { type: 'integer', default: 32 },
    learningRate: { type: 'number', default: 0.01 },
    optimizer: { type: 'string', enum: ['sgd', 'adam'], default: 'adam' },
    seed: { type: 'integer', description: 'seed of the initial weights (random when absent)' },
    secureAggregation: {
      type: 'object',
      description:
        "secure aggregation (on by default): { enabled, threshold?, graph: 'auto' | 'complete' | 'harary', k?, threatModel: 'semi-honest' | 'semi-malicious', clip, dropoutRate }",
      example: { enabled: true, graph: 'auto', threatModel: 'semi-honest' },
    },
    dataSchema: {
      type: 'object',
      description:
        "public facts about the sites' data: { featureBounds: { lo: number[], hi: number[] } } (one per feature; DP statistics clip rows to them)",
    },
    standardization: {
      type: 'string',
      enum: ['federated', 'local'],
      description:
        'federated: statistics agreed in a secure-sum pre-round; local: each site uses its own (default: federated, local under DP without featureBounds)',
    },
    evaluation: {
      type: 'object',
      description:
        "federated evaluation of each new model on the sites' held-out rows, { enabled } (default true; under DP each evaluation is a charged release)",
    },
    weighting: {
      type: 'object',
      description: `how sites weigh in each average: { mode: 'records' | 'equal' (default records), maxWeight (default ${DEFAULT_MAX_WEIGHT}): the most records a site may claim }`,
    },
    maxUpdateNorm: {
      type: 'number',
      description:
        "the largest L2 norm of a site's update in a plain federation (default: secureAggregation.clip x sqrt(parameters))",
    },
    sampling: {
      type: 'object',
      description:
        'client sampling, { fraction } (default 1): each round takes max(minSites, ceil(fraction x connected sites)), drawn by the aggregator with a CSPRNG and recorded in the round; under site-level DP each site flips its own coin instead (Poisson self-sampling)',
    },
    dp: {
      type: 'object',
      description:
        "differential privacy: { level: 'none' } (default) or { level: 'record' | 'site', noiseMultiplier, clipNorm, delta (default 1e-5), epsilonLimit (each site's default budget), statisticsShare (default 0.1), evaluationRounds (default 10), statisticsNoiseMultiplier? }",
      example: { level: 'record', noiseMultiplier: 1.1, clipNorm: 1, delta: 1e-5, epsilonLimit: 1 },
    },
  },
} as const;
