import type { Dataset } from '@confide/ml';
import type { UpdateTransform } from '@confide/federated';
import type { ErrorCode, IdentityKeyPair, MessageOf, ServerMessage } from '@confide/protocol';
import type { ContributionStore } from './contributions';
import type { SitePolicy } from './policy';
import type { Progress } from './progress';
import type { Stage } from './refusal';
import type { PinStore } from './server-trust';
import type { LocalLedgerStore } from '@confide/site-runtime';

/** What one local round produced; handed to `onUpdate` observers (tests, the demo). */
export interface LocalRoundResult {
  round: number;
  globalWeights: Float32Array;
  localWeights: Float32Array;
  update: Float32Array;
  numExamples: number;
  trainLoss: number;
}

/** A round (or one of its sums) this node refused, and why. */
export interface Refusal {
  runId: string;
  round: number;
  stage: Stage;
  /** A POLICY_ code, BUDGET_EXCEEDED, or the protocol code of what was wrong. */
  code: string;
  message: string;
}

/** Settings of a client node. */
export interface ClientNodeOptions {
  /** ws(s)://host:port or http(s)://host:port (the /v1/fl path is added when missing). */
  server: string;
  federationId: string;
  identity: IdentityKeyPair;
  /** The site's data, raw (standardised with the federation's agreed statistics, or its own). */
  data: Dataset;
  /** Held-out data for evaluation; without it a stratified `evalFraction` of `data` is held out. */
  evalData?: Dataset;
  /** The share of `data` held out for evaluation when there is no `evalData` (default 0.2). */
  evalFraction?: number;
  /** The seed of that held-out split, kept beside the site's key; random per process when absent. */
  holdoutSeed?: number;
  /** The site's privacy policy, enforced before every round touches its data (default policy). */
  policy?: SitePolicy;
  /** The aggregator's identity key or fingerprint (--server-key); pinned on first sight when absent. */
  serverKey?: string;
  /** Where pinned aggregator keys persist (a file beside the site's key); memory when absent. */
  pins?: PinStore;
  /** PEM bundle of the CAs that may sign the aggregator's TLS certificate (--ca). */
  ca?: string;
  /** Environment for proxy settings (HTTPS_PROXY, NO_PROXY); process.env when absent. */
  env?: NodeJS.ProcessEnv;
  /** Client-side update transforms applied before masking, in order. */
  transforms?: UpdateTransform[];
  log?: (line: string) => void;
  progress?: Progress;
  /** Reconnect after a lost connection (default true). */
  reconnect?: boolean;
  /** First reconnect delay in ms, doubled after each failed attempt up to maxBackoffMs. */
  reconnectDelayMs?: number;
  /** The longest wait between reconnect attempts, in ms (default 30 s); each wait is jittered. */
  maxBackoffMs?: number;
  /** Stop (NodeStopped 'STOPPED') after this long without a connection; absent: retry for ever. */
  giveUpAfterMs?: number;
  onUpdate?: (r: LocalRoundResult) => void;
  /** The site's own epsilon limit; also requires DP of every round. */
  epsilonLimit?: number;
  /** Test and demo hook: vanish at this secure-aggregation stage (before sharing keys, before the masked input, before unmasking). */
  dropAt?: 'share' | 'mask' | 'unmask';
  /** Where the site's signed receipts persist (a file beside its key); memory only when absent. */
  ledgerStore?: LocalLedgerStore;
  /** What the site put into secure sums without DP (a file beside its key); memory when absent. */
  contributions?: ContributionStore;
  onRoundEnd?: (m: MessageOf<ServerMessage, 'round.end'>) => void;
  /** Called once logged in (each time after a reconnect too). */
  onWelcome?: (m: MessageOf<ServerMessage, 'welcome'>) => void;
  /** Called for every round or sum this node refuses. */
  onRefused?: (r: Refusal) => void;
  /** Called at each change of what the node is doing (for status displays and `--json`). */
  onState?: (s: NodeState) => void;
}

/** What a node is doing: waiting for a round, training one, or waiting to reconnect. */
export type NodeState =
  | { state: 'waiting' }
  | { state: 'training'; round: number }
  | { state: 'reconnecting'; inMs: number; attempt: number }
  /** Stopping on a signal: what it was doing, now abandoned. */
  | { state: 'stopping'; signal: string; abandoned: string };

/** Why a node stopped for good. */
export class NodeStopped extends Error {
  constructor(
    readonly code: ErrorCode | 'STOPPED',
    message: string,
  ) {
    super(message);
    this.name = 'NodeStopped';
  }
}

/** Turns a server address as people type it into the protocol URL. */
export function protocolUrl(server: string): string {
  let u: URL;
  try {
    u = new URL(server);
  } catch {
    throw new Error(
      `--server must be a URL such as ws://aggregator:8080 or https://aggregator.example; got "${server}"`,
    );
  }
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  else if (u.protocol !== 'ws:' && u.protocol !== 'wss:') {
    throw new Error(`--server must use ws, wss, http or https; got "${u.protocol}"`);
  }
  if (u.pathname === '/' || u.pathname === '') u.pathname = '/v1/fl';
  return u.toString();
}
