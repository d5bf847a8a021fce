import { z } from 'zod';

/**
 * The protocol version spoken by this build; a peer with another major version is refused. Version 2:
 * the aggregator signs every message (`sig`), statistics and evaluation travel as secure sums.
 */
export const PROTOCOL_VERSION = 2;

/** Largest JSON control message (and binary frame header) accepted, in bytes: room for per-feature statistics of ~40k features. */
export const MAX_CONTROL_BYTES = 1024 * 1024;

const id = z.string().min(1).max(128);
const b64 = z.string().min(1).max(4096);
const finite = z.number().refine(Number.isFinite, 'must be a finite number');

const base = { v: z.literal(PROTOCOL_VERSION), id };
/** Every server message carries the aggregator's Ed25519 signature (checked by the node, not here). */
const signed = {
  ...base,
  sig: b64.optional(),
  /** Where the message sits in a batch signed as one (ServerSigner.signEach). */
  batch: z
    .object({
      index: z.number().int().nonnegative(),
      count: z.number().int().positive(),
      proof: z.string().max(4096),
    })
    .optional(),
};

/** The secure sums of a round: feature statistics, the training update, evaluation counts. */
const SUM_KINDS = ['statistics', 'update', 'evaluation'] as const;
/** Which secure sum of a round a secure-aggregation message belongs to. */
export type SumKind = (typeof SUM_KINDS)[number];
const sumKind = z.enum(SUM_KINDS);

export const metricsSchema = z.object({
  loss: finite,
  accuracy: finite,
  auc: finite.nullable(),
  f1: finite,
  numExamples: z.number().int().nonnegative(),
});
/** Held-out metrics a site reports for a model version. */
export type SiteMetrics = z.infer<typeof metricsSchema>;

export const trainConfigSchema = z.object({
  epochs: z.number().int().min(1).max(1000),
  batchSize: z.number().int().min(1).max(1_000_000),
  learningRate: finite.refine((x) => x > 0 && x <= 10, 'must be in (0, 10]'),
  optimizer: z.enum(['sgd', 'adam']),
  /** FedProx: the weight mu of the proximal term mu/2 * ||w - w_global||^2 (absent: none). */
  proximalMu: finite.refine((x) => x >= 0 && x <= 1000, 'must be in [0, 1000]').optional(),
});
/** Local training settings sent with every round. */
export type TrainConfig = z.infer<typeof trainConfigSchema>;

/** The DP settings a round runs with, as the site needs them to train, account and sign its receipt. */
export const roundPrivacySchema = z.object({
  level: z.enum(['record', 'site']),
  noiseMultiplier: finite.refine((x) => x > 0, 'must be positive'),
  clipNorm: finite.refine((x) => x > 0, 'must be positive'),
  delta: finite.refine((x) => x > 0 && x < 1, 'must be in (0, 1)'),
  /** The budget the aggregator holds for this site. */
  epsilonLimit: finite.refine((x) => x > 0, 'must be positive'),
  /**
   * Site level: the rate of each site's own coin (Poisson self-sampling); 1 when every site takes
   * part. A site charges this rate only because its own CSPRNG decides its participation.
   */
  siteSamplingRate: finite.refine((x) => x > 0 && x <= 1, 'must be in (0, 1]').nullable(),
  /** Site level with secure aggregation: honest survivors the noise shares assume. */
  survivorsAssumed: z.number().int().positive().nullable(),
  /** The share of each site's budget set aside for statistics and evaluation releases. */
  statisticsShare: finite.refine((x) => x >= 0 && x < 1, 'must be in [0, 1)').optional(),
});
/** DP settings of a round. */
export type RoundPrivacy = z.infer<typeof roundPrivacySchema>;

/** Secure-aggregation settings of a round (the parameters are validated by the library). */
export const roundSecAggSchema = z.object({
  params: z.record(z.string(), z.unknown()),
  /** The selected sites and their enrolled Ed25519 keys: the only keys an advertisement may be signed with. */
  roster: z.array(z.object({ siteId: id, publicKey: b64 })).min(2),
  /** Public divisor of the sites' weights so that each weight is in [0, 1]. */
  weightNormalizer: finite.refine((x) => x > 0, 'must be positive'),
  /** Quantized vector length: the update plus its weight coordinate. */
  vectorLength: z.number().int().positive(),
});
/** Secure-aggregation settings of a round. */
export type RoundSecAgg = z.infer<typeof roundSecAggSchema>;

export const standardizationSchema = z.object({
  mean: z.array(finite),
  std: z.array(finite),
});

/** Per-feature bounds a federation declares in its data schema; sites clip their rows to them. */
export const featureBoundsSchema = z.object({
  lo: z.array(finite).max(100_000),
  hi: z.array(finite).max(100_000),
});

/** The DP settings of a statistics or evaluation release: a Gaussian mechanism on the site's sums. */
export const sumPrivacySchema = z.object({
  level: z.enum(['record', 'site']),
  noiseMultiplier: finite.refine((x) => x > 0, 'must be positive'),
  delta: finite.refine((x) => x > 0 && x < 1, 'must be in (0, 1)'),
  epsilonLimit: finite.refine((x) => x > 0, 'must be positive'),
  statisticsShare: finite.refine((x) => x >= 0 && x < 1, 'must be in [0, 1)'),
});
/** DP settings of a statistics or evaluation sum. */
export type SumPrivacy = z.infer<typeof sumPrivacySchema>;

/** How a site lays out its evaluation counts (see libs/ml secure-metrics). */
export const evaluationLayoutSchema = z.object({
  classes: z.number().int().min(2).max(1000),
  bins: z.number().int().min(0).max(1000),
  lossClip: finite.refine((x) => x > 0 && x <= 1e6, 'must be in (0, 1e6]'),
});

// ---- server -> site ----
export const challengeSchema = z.object({
  ...signed,
  type: z.literal('challenge'),
  nonce: b64,
  serverId: id,
  /** The aggregator's Ed25519 identity public key; `sig` is its signature over challengeBytes. */
  serverKey: b64,
});
export const welcomeSchema = z.object({
  ...signed,
  type: z.literal('welcome'),
  siteId: id,
  siteName: z.string(),
  federationId: id,
  /** The login's clientNonce, echoed under the aggregator's signature: this welcome answers it. */
  clientNonce: b64,
});
export const errorSchema = z.object({
  ...signed,
  type: z.literal('error'),
  code: z.string(),
  message: z.string(),
  refId: z.string().optional(),
  fatal: z.boolean(),
});
export const statsRequestSchema = z.object({
  ...signed,
  type: z.literal('stats.request'),
  runId: id,
  round: z.number().int().positive(),
  federationId: id,
  features: z.number().int().positive(),
  /** The secure sum the statistics travel in; null in a plain federation (sent in the clear). */
  secureAggregation: roundSecAggSchema.nullable(),
  /** With DP the statistics are a release of their own, clipped to `featureBounds`. */
  privacy: sumPrivacySchema.nullable(),
  featureBounds: featureBoundsSchema.nullable(),
  deadline: z.string(),
});
export const roundTrainSchema = z.object({
  ...signed,
  type: z.literal('round.train'),
  runId: id,
  round: z.number().int().positive(),
  federationId: id,
  modelVersionId: id,
  modelHash: z.string(),
  modelSpec: z.unknown(),
  train: trainConfigSchema,
  standardization: standardizationSchema.nullable(),
  privacy: roundPrivacySchema.nullable(),
  secureAggregation: roundSecAggSchema.nullable(),
  /**
   * How sites weigh: by records up to `cap` (a node clamps its count to it; a claim above it is
   * refused), or equally. Absent: by records, uncapped (an aggregator before weight caps).
   */
  weighting: z
    .object({
      mode: z.enum(['records', 'equal']),
      cap: z.number().int().positive(),
    })
    .optional(),
  deadline: z.string(),
});
const roundRef = { runId: id, round: z.number().int().positive(), sum: sumKind };
export const secaggAdvertisementsSchema = z.object({
  ...signed,
  type: z.literal('secagg.advertisements'),
  ...roundRef,
  // This site's neighbourhood (which sites advertised, their Merkle root, its neighbours' keys with
  // proofs), or every advertisement; the secure-aggregation client checks either.
  advertisements: z.union([z.array(z.unknown()), z.record(z.string(), z.unknown())]),
});
export const secaggDeliverSchema = z.object({
  ...signed,
  type: z.literal('secagg.deliver'),
  ...roundRef,
  shares: z.array(z.unknown()),
});
export const secaggConsistencySchema = z.object({
  ...signed,
  type: z.literal('secagg.consistency'),
  ...roundRef,
  request: z.unknown(),
});
export const secaggUnmaskSchema = z.object({
  ...signed,
  type: z.literal('secagg.unmask'),
  ...roundRef,
  request: z.unknown(),
});
export const ledgerSlotSchema = z.object({
  ...signed,
  type: z.literal('ledger.slot'),
  ...roundRef,
  /** The id of the ledger.reserve this slot answers. */
  refId: id,
  seq: z.number().int().positive(),
  prevHash: z.string().regex(/^[0-9a-f]{64}$/),
  createdAt: z.string(),
  epsilonLimit: finite,
  delta: finite,
});
/**
 * The chain position this site holds for a release it may have signed (sent after a reconnect): the
 * site answers with its receipt for it (ledger.receipt) or says it signed none (ledger.none).
 */
export const ledgerHeldSchema = z.object({
  ...signed,
  type: z.literal('ledger.held'),
  seq: z.number().int().positive(),
  round: z.number().int().positive(),
  sum: sumKind,
});
export const roundEvaluateSchema = z.object({
  ...signed,
  type: z.literal('round.evaluate'),
  runId: id,
  round: z.number().int().positive(),
  federationId: id,
  modelVersionId: id,
  modelHash: z.string(),
  /** The secure sum the evaluation counts travel in; null in a plain federation. */
  secureAggregation: roundSecAggSchema.nullable(),
  privacy: sumPrivacySchema.nullable(),
  evaluation: evaluationLayoutSchema,
  deadline: z.string(),
});
/**
 * Opens a round's evaluation sum before its model exists: the sites agree the sum's keys while the
 * aggregator stores the model (the keys do not depend on it); `round.evaluate` then brings the model.
 */
export const sumOpenSchema = z.object({
  ...signed,
  type: z.literal('sum.open'),
  runId: id,
  round: z.number().int().positive(),
  federationId: id,
  sum: z.literal('evaluation'),
  secureAggregation: roundSecAggSchema,
  privacy: sumPrivacySchema.nullable(),
  evaluation: evaluationLayoutSchema,
  deadline: z.string(),
});
export const roundEndSchema = z.object({
  ...signed,
  type: z.literal('round.end'),
  runId: id,
  round: z.number().int().positive(),
  outcome: z.enum(['committed', 'aborted']),
  reason: z.string().nullable(),
});

// ---- site -> server ----
export const loginSchema = z.object({
  ...base,
  type: z.literal('login'),
  federationId: id,
  publicKey: b64,
  nonce: b64,
  /** A fresh nonce of the site's, which the aggregator's signed welcome echoes. */
  clientNonce: b64,
  signature: b64,
  client: z.string().max(200),
});
export const statsReportSchema = z.object({
  ...base,
  type: z.literal('stats.report'),
  runId: id,
  round: z.number().int().positive(),
  count: z.number().int().positive(),
  sum: z.array(finite),
  sumSq: z.array(finite),
});
export const roundUpdateSchema = z.object({
  ...base,
  type: z.literal('round.update'),
  runId: id,
  round: z.number().int().positive(),
  /** Plain rounds only: under secure aggregation the weight travels inside the masked vector. */
  numExamples: z.number().int().positive().optional(),
  trainLoss: finite.optional(),
  /** The signed privacy receipt of this release (DP federations); validated by the ledger. */
  receipt: z.unknown().optional(),
});
export const secaggAdvertiseSchema = z.object({
  ...base,
  type: z.literal('secagg.advertise'),
  ...roundRef,
  advertisement: z.unknown(),
});
export const secaggSharesSchema = z.object({
  ...base,
  type: z.literal('secagg.shares'),
  ...roundRef,
  shares: z.array(z.unknown()),
});
/** A masked statistics or evaluation vector (uint32 binary frame); the update has round.update. */
export const secaggMaskedSchema = z.object({
  ...base,
  type: z.literal('secagg.masked'),
  ...roundRef,
  /** The signed privacy receipt of this release (DP federations); validated by the ledger. */
  receipt: z.unknown().optional(),
});
export const secaggSignatureSchema = z.object({
  ...base,
  type: z.literal('secagg.signature'),
  ...roundRef,
  signature: z.unknown(),
});
export const secaggUnmaskResponseSchema = z.object({
  ...base,
  type: z.literal('secagg.unmasked'),
  ...roundRef,
  response: z.unknown(),
});
export const ledgerReserveSchema = z.object({
  ...base,
  type: z.literal('ledger.reserve'),
  ...roundRef,
});
/** A signed receipt the aggregator may lack, for the position this site holds (see ledger.held). */
export const ledgerReceiptSchema = z.object({
  ...base,
  type: z.literal('ledger.receipt'),
  receipt: z.unknown(),
});
/** This site signed no receipt at the position it was granted: the position may pass on. */
export const ledgerNoneSchema = z.object({
  ...base,
  type: z.literal('ledger.none'),
  seq: z.number().int().positive(),
});
export const roundMetricsSchema = z.object({
  ...base,
  type: z.literal('round.metrics'),
  runId: id,
  round: z.number().int().positive(),
  modelVersionId: id,
  metrics: metricsSchema,
});
export const roundDeclineSchema = z.object({
  ...base,
  type: z.literal('round.decline'),
  runId: id,
  round: z.number().int().positive(),
  /** What the site declines: the round's statistics, its training (default) or its evaluation. */
  stage: z.enum(['statistics', 'training', 'evaluation']).default('training'),
  code: z.string().max(100),
  reason: z.string().max(2000),
});

export const serverMessageSchema = z.discriminatedUnion('type', [
  challengeSchema,
  welcomeSchema,
  errorSchema,
  statsRequestSchema,
  roundTrainSchema,
  roundEvaluateSchema,
  sumOpenSchema,
  roundEndSchema,
  ledgerSlotSchema,
  ledgerHeldSchema,
  secaggAdvertisementsSchema,
  secaggDeliverSchema,
  secaggConsistencySchema,
  secaggUnmaskSchema,
]);
export const siteMessageSchema = z.discriminatedUnion('type', [
  loginSchema,
  statsReportSchema,
  roundUpdateSchema,
  roundMetricsSchema,
  roundDeclineSchema,
  ledgerReserveSchema,
  ledgerReceiptSchema,
  ledgerNoneSchema,
  secaggAdvertiseSchema,
  secaggSharesSchema,
  secaggMaskedSchema,
  secaggSignatureSchema,
  secaggUnmaskResponseSchema,
]);

/** Every message the aggregator sends to a site. */
export type ServerMessage = z.infer<typeof serverMessageSchema>;
/** Every message a site sends to the aggregator. */
export type SiteMessage = z.infer<typeof siteMessageSchema>;
/** A message of a given type. */
export type MessageOf<M extends { type: string }, T extends M['type']> = Extract<M, { type: T }>;

/** Message types that travel as binary frames (header + vector); all others are JSON text. */
export const BINARY_TYPES: ReadonlySet<string> = new Set([
  'round.train',
  'round.evaluate',
  'round.update',
  'secagg.masked',
]);

export const SITE_MESSAGE_TYPES: ReadonlySet<string> = new Set(
  siteMessageSchema.options.map((o) => o.shape.type.value),
);
export const SERVER_MESSAGE_TYPES: ReadonlySet<string> = new Set(
  serverMessageSchema.options.map((o) => o.shape.type.value),
);
