import type { ModelSpec } from '@confide/ml/spec';
import type { SiteMetrics, TrainConfig } from '@confide/protocol';

/** Roles an API token can carry. */
export type Role = 'admin' | 'auditor';

export interface ApiTokenRow {
  id: string;
  role: Role;
  label: string;
  createdAt: Date;
  /** Null: never expires. */
  expiresAt: Date | null;
  /** Refreshed at most once a minute per token, so up to a minute behind. */
  lastUsedAt: Date | null;
  revokedAt: Date | null;
}

/** A federation's differential-privacy settings. */
export type DpConfig =
  | { level: 'none' }
  | {
      level: 'record' | 'site';
      noiseMultiplier: number;
      clipNorm: number;
      delta: number;
      /** Default per-site budget, set on each site's privacy_budget row at enrolment. */
      epsilonLimit: number;
      /** The share of each site's budget for statistics and evaluation releases (absent: 0.1). */
      statisticsShare?: number;
      /** Noise multiplier of each statistics and evaluation release (absent on older federations). */
      statisticsNoiseMultiplier?: number;
    };

/** A federation's secure-aggregation settings. */
export interface SecAggConfig {
  enabled: boolean;
  threshold?: number;
  graph: 'auto' | 'complete' | 'harary';
  k?: number;
  threatModel: 'semi-honest' | 'semi-malicious';
  clip: number;
  dropoutRate: number;
}

/** A federation's stored settings. */
export interface FederationConfig {
  dp?: DpConfig;
  /** Per-feature bounds of the sites' data, public (DP statistics clip rows to them). */
  featureBounds?: { lo: number[]; hi: number[] } | null;
  /** Federated statistics (a secure-sum pre-round) or each site's own; absent: federated. */
  standardization?: 'federated' | 'local';
  /** Whether sites evaluate each new model (absent: yes). */
  evaluation?: boolean;
  /**
   * The share of connected sites each round takes: the aggregator's draw, or under site-level DP each
   * site's own Poisson coin; absent: 1.
   */
  samplingFraction?: number;
  /** How sites weigh in the average; absent: by records, capped at DEFAULT_MAX_WEIGHT. */
  weighting?: { mode: 'records' | 'equal'; maxWeight: number };
  /** The largest L2 norm of a plain update; absent: the quantisation clip times sqrt(parameters). */
  maxUpdateNorm?: number;
  secureAggregation?: SecAggConfig;
  minSites: number;
  roundTimeoutMs: number;
  evaluationTimeoutMs: number;
  train: TrainConfig;
  seed: number;
  /** The strategy's settings with its defaults applied (absent on older federations: defaults). */
  strategyConfig?: unknown;
}

export interface FeatureStatsRow {
  mean: number[];
  std: number[];
  sites: number;
  count: number;
}

export interface FederationRow {
  id: string;
  name: string;
  modelSpec: ModelSpec;
  strategy: string;
  config: FederationConfig;
  featureStats: FeatureStatsRow | null;
  currentModelVersionId: string | null;
  createdAt: Date;
}

export type SiteStatus = 'pending' | 'approved' | 'revoked';

export interface SiteRow {
  id: string;
  federationId: string;
  name: string;
  publicKey: string;
  status: SiteStatus;
  createdAt: Date;
  approvedAt: Date | null;
  revokedAt: Date | null;
  /** The most records this site's update may weigh in a plain federation (null: the federation's cap). */
  maxWeight: number | null;
}

export type RunStatus = 'running' | 'completed' | 'stopped';

export interface RunRow {
  id: string;
  federationId: string;
  roundsRequested: number;
  roundsDone: number;
  status: RunStatus;
  reason: string | null;
  createdAt: Date;
  endedAt: Date | null;
}

/** Round states, in order; `aborted` can follow any non-terminal state. */
export const ROUND_STATES = [
  'scheduled',
  'advertising',
  'sharing',
  'collecting',
  'unmasking',
  'aggregated',
  'evaluated',
  'committed',
  'aborted',
] as const;
export type RoundState = (typeof ROUND_STATES)[number];

/** What happened to one selected site in a round. */
export type ParticipantStatus =
  | 'selected'
  | 'skipped'
  | 'advertised'
  | 'shared'
  | 'unmasked'
  | 'submitted'
  | 'dropped'
  | 'declined'
  | 'rejected'
  | 'evaluated';

export interface Participant {
  siteId: string;
  name: string;
  status: ParticipantStatus;
  numExamples?: number;
  detail?: string;
}

/**
 * The aggregator's draw of a round's sites: `sampled` of the `connected` approved sites (those with
 * privacy budget left, in a DP federation).
 */
export interface RoundSampling {
  fraction: number;
  connected: number;
  sampled: number;
}

export interface RoundMetrics {
  /** Sample-weighted mean of the sites' final local training loss. */
  trainLoss: number | null;
  /** Sample-weighted held-out metrics the sites reported for the new model (null if none did). */
  evaluation: (Omit<SiteMetrics, 'auc'> & { auc: number | null; sites: number }) | null;
  bytesReceived: number;
  /** Present when the aggregator sampled the round's sites (sampling.fraction below 1, no site DP). */
  sampling?: RoundSampling;
  /** The round's secure-aggregation parameters and how many selected sites dropped (null when off). */
  secureAggregation?: {
    threshold: number;
    graph: string;
    k?: number;
    sites: number;
    dropped: number;
  } | null;
}

export interface RoundRow {
  id: string;
  federationId: string;
  runId: string;
  number: number;
  state: RoundState;
  reason: string | null;
  baseModelVersionId: string;
  modelVersionId: string | null;
  participants: Participant[];
  metrics: RoundMetrics | null;
  deadline: Date | null;
  startedAt: Date;
  endedAt: Date | null;
  durationMs: number | null;
}

export interface ModelVersionRow {
  id: string;
  federationId: string;
  roundNumber: number | null;
  parentId: string | null;
  hash: string;
  numParams: number;
  createdAt: Date;
}
