import { z } from 'zod';

/** The protocol version spoken by this build; a peer with another major version is refused. */
export const PROTOCOL_VERSION = 1;

/** Largest JSON control message (and binary frame header) accepted, in bytes: room for per-feature statistics of ~40k features. */
export const MAX_CONTROL_BYTES = 1024 * 1024;

const id = z.string().min(1).max(128);
const b64 = z.string().min(1).max(4096);
const finite = z.number().refine(Number.isFinite, 'must be a finite number');

const base = { v: z.literal(PROTOCOL_VERSION), id };

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
  /** Site level: sampled sites / approved sites this round. */
  siteSamplingRate: finite.refine((x) => x > 0 && x <= 1, 'must be in (0, 1]').nullable(),
  /** Site level with secure aggregation: honest survivors the noise shares assume. */
  survivorsAssumed: z.number().int().positive().nullable(),
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

// ---- server -> site ----
export const challengeSchema = z.object({
  ...base,
  type: z.literal('challenge'),
  nonce: b64,
  serverId: id,
});
export const welcomeSchema = z.object({
  ...base,
  type: z.literal('welcome'),
  siteId: id,
  siteName: z.string(),
  federationId: id,
});
export const errorSchema = z.object({
  ...base,
  type: z.literal('error'),
  code: z.string(),
  message: z.string(),
  refId: z.string().optional(),
  fatal: z.boolean(),
});
export const statsRequestSchema = z.object({
  ...base,
  type: z.literal('stats.request'),
  features: z.number().int().positive(),
});
export const roundTrainSchema = z.object({
  ...base,
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
  deadline: z.string(),
});
const roundRef = { runId: id, round: z.number().int().positive() };
export const secaggAdvertisementsSchema = z.object({
  ...base,
  type: z.literal('secagg.advertisements'),
  ...roundRef,
  advertisements: z.array(z.unknown()),
});
export const secaggDeliverSchema = z.object({
  ...base,
  type: z.literal('secagg.deliver'),
  ...roundRef,
  shares: z.array(z.unknown()),
});
export const secaggConsistencySchema = z.object({
  ...base,
  type: z.literal('secagg.consistency'),
  ...roundRef,
  request: z.unknown(),
});
export const secaggUnmaskSchema = z.object({
  ...base,
  type: z.literal('secagg.unmask'),
  ...roundRef,
  request: z.unknown(),
});
export const ledgerSlotSchema = z.object({
  ...base,
  type: z.literal('ledger.slot'),
  runId: id,
  round: z.number().int().positive(),
  seq: z.number().int().positive(),
  prevHash: z.string().regex(/^[0-9a-f]{64}$/),
  createdAt: z.string(),
  epsilonLimit: finite,
  delta: finite,
});
export const roundEvaluateSchema = z.object({
  ...base,
  type: z.literal('round.evaluate'),
  runId: id,
  round: z.number().int().positive(),
  modelVersionId: id,
  modelHash: z.string(),
});
export const roundEndSchema = z.object({
  ...base,
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
  signature: b64,
  client: z.string().max(200),
  /** The site's number of training records (record-level DP projections need it). */
  numExamples: z.number().int().positive().optional(),
});
export const statsReportSchema = z.object({
  ...base,
  type: z.literal('stats.report'),
  count: z.number().int().positive(),
  sum: z.array(finite),
  sumSq: z.array(finite),
});
export const roundUpdateSchema = z.object({
  ...base,
  type: z.literal('round.update'),
  runId: id,
  round: z.number().int().positive(),
  numExamples: z.number().int().positive(),
  trainLoss: finite,
  /** The signed privacy receipt of this release (DP federations); validated by the ledger. */
  receipt: z.unknown().optional(),
});
export const secaggAdvertiseSchema = z.object({
  ...base,
  type: z.literal('secagg.advertise'),
  runId: id,
  round: z.number().int().positive(),
  advertisement: z.unknown(),
});
export const secaggSharesSchema = z.object({
  ...base,
  type: z.literal('secagg.shares'),
  runId: id,
  round: z.number().int().positive(),
  shares: z.array(z.unknown()),
});
export const secaggSignatureSchema = z.object({
  ...base,
  type: z.literal('secagg.signature'),
  runId: id,
  round: z.number().int().positive(),
  signature: z.unknown(),
});
export const secaggUnmaskResponseSchema = z.object({
  ...base,
  type: z.literal('secagg.unmasked'),
  runId: id,
  round: z.number().int().positive(),
  response: z.unknown(),
});
export const ledgerReserveSchema = z.object({
  ...base,
  type: z.literal('ledger.reserve'),
  runId: id,
  round: z.number().int().positive(),
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
  code: z.string(),
  reason: z.string().max(2000),
});

export const serverMessageSchema = z.discriminatedUnion('type', [
  challengeSchema,
  welcomeSchema,
  errorSchema,
  statsRequestSchema,
  roundTrainSchema,
  roundEvaluateSchema,
  roundEndSchema,
  ledgerSlotSchema,
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
  secaggAdvertiseSchema,
  secaggSharesSchema,
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
]);

export const SITE_MESSAGE_TYPES: ReadonlySet<string> = new Set(
  siteMessageSchema.options.map((o) => o.shape.type.value),
);
export const SERVER_MESSAGE_TYPES: ReadonlySet<string> = new Set(
  serverMessageSchema.options.map((o) => o.shape.type.value),
);
