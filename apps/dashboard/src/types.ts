/** The REST API's shapes, as the dashboard reads them (dates arrive as ISO strings). */

export type Role = 'admin' | 'auditor';

export interface Me {
  role: Role;
  tokenId: string;
  label: string;
  /** The aggregator's identity key, which sites pin (give them its fingerprint). */
  server?: { publicKey: string; fingerprint: string; tls: boolean };
}

export type ModelSpec =
  | { kind: 'logistic'; inputDim: number; output?: 'binary' | { classes: number } }
  | {
      kind: 'mlp';
      inputDim: number;
      hidden: number[];
      activation?: 'relu' | 'tanh';
      output: 'binary' | { classes: number };
    };

export interface DpConfig {
  level: 'none' | 'record' | 'site';
  noiseMultiplier?: number;
  clipNorm?: number;
  delta?: number;
  epsilonLimit?: number;
}

export interface SecureAggregationConfig {
  enabled: boolean;
  threshold?: number;
  graph?: 'auto' | 'complete' | 'harary';
  k?: number;
  threatModel?: 'semi-honest' | 'semi-malicious';
}

export interface Federation {
  id: string;
  name: string;
  modelSpec: ModelSpec;
  strategy: string;
  parameters: number;
  config: {
    minSites: number;
    roundTimeoutMs: number;
    evaluationTimeoutMs: number;
    seed: number;
    train: { epochs: number; batchSize: number; learningRate: number; optimizer: string };
    /** The strategy's settings with its defaults applied (absent on older federations). */
    strategyConfig?: unknown;
    dp?: DpConfig;
    secureAggregation?: SecureAggregationConfig;
  };
  dp?: DpConfig;
  secureAggregation?: SecureAggregationConfig;
  currentModelVersionId: string | null;
  createdAt: string;
}

export interface Site {
  id: string;
  name: string;
  status: 'pending' | 'approved' | 'revoked';
  fingerprint: string;
  connected: boolean;
  createdAt: string;
  approvedAt: string | null;
  revokedAt: string | null;
}

export interface Participant {
  siteId: string;
  name: string;
  status: string;
  detail?: string;
  numExamples?: number;
}

export interface Evaluation {
  loss: number;
  accuracy: number;
  auc: number | null;
  f1: number;
  numExamples: number;
  sites: number;
}

export interface Round {
  id: string;
  number: number;
  runId: string;
  state: string;
  reason: string | null;
  participants: Participant[];
  metrics: {
    trainLoss: number | null;
    evaluation: Evaluation | null;
    bytesReceived: number;
    /** The aggregator's draw of the round's sites (client sampling), when it drew. */
    sampling?: { fraction: number; connected: number; sampled: number };
  } | null;
  startedAt: string;
  endedAt: string | null;
  durationMs: number | null;
}

export interface LiveRound {
  number: number;
  phase: string;
  state?: string;
  participants: Participant[];
}

export interface Run {
  id: string;
  roundsRequested: number;
  roundsDone: number;
  status: 'running' | 'completed' | 'stopped';
  reason: string | null;
  createdAt: string;
  endedAt: string | null;
}

export interface Schedule {
  id: string;
  cron: string;
  timeZone: string;
  roundsPerTrigger: number;
  endsAt: string | null;
  paused: boolean;
  status: 'active' | 'paused' | 'ended';
  nextRunAt: string | null;
  lastRunAt: string | null;
  lastOutcome: string | null;
  createdAt: string;
  createdBy: string;
}

export interface LedgerEntry {
  seq: number;
  siteId: string;
  siteName: string;
  round: number;
  mechanism: {
    level: string;
    samplingRate: number;
    noiseMultiplier: number;
    steps: number;
    clipNorm: number;
    survivorsAssumed?: number | null;
    /** Absent for the continuous Gaussian. */
    noise?: 'distributed-discrete-gaussian';
    quantizationScale?: number;
    dimension?: number;
    /** Absent for a model update; a release of summed statistics or evaluation counts otherwise. */
    release?: 'statistics' | 'evaluation';
  };
  cumulativeEpsilon: number;
  epsilonLimit: number;
  delta: number;
  hash: string;
  prevHash: string;
  signature: string;
  createdAt: string;
}

export interface LedgerPage {
  entries: LedgerEntry[];
  total: number;
  page: number;
  pageSize: number;
}

export interface VerifyResult {
  ok: boolean;
  checks: Array<{ name: string; ok: boolean; detail: string }>;
  discrepancies: Array<{ seq?: number; siteId?: string; kind: string; message: string }>;
}

export interface Privacy {
  level: string;
  delta: number | null;
  sites: Array<{
    siteId: string;
    name: string;
    epsilon: number;
    /** null when the site has no budget yet. */
    limit: number | null;
    /** null when it cannot be forecast (no budget, or no next release planned). */
    roundsLeft: number | null;
    history: Array<{ round: number; epsilon: number }>;
  }>;
}
