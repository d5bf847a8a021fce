import { randomBytes, randomInt, randomUUID } from 'node:crypto';
import WebSocket from 'ws';
import type * as tf from '@tensorflow/tfjs';
import {
  buildModel,
  evaluateForSum,
  evaluateModel,
  evaluationSensitivity,
  featureStatsPartial,
  getModelWeights,
  MlError,
  parameterCount,
  parseModelSpec,
  setModelWeights,
  statisticsSensitivity,
  statisticsVector,
  trainModel,
  trainModelDpSgd,
  type Dataset,
  type ModelSpec,
} from '@confide/ml';
import { applyTransforms, subtract, type UpdateTransform } from '@confide/federated';
import {
  assertFinite,
  decodeFrame,
  encodeFrame,
  encodeFrameInPlace,
  ErrorCode,
  float32ToBytes,
  FRAME_HEADER_ROOM,
  fromBase64,
  keyFingerprint,
  MAX_CONTROL_BYTES,
  toBase64,
  parameterLimit,
  parseJsonText,
  parseServerMessage,
  PROTOCOL_VERSION,
  ProtocolError,
  sha256Hex,
  signLogin,
  type IdentityKeyPair,
  type MessageOf,
  type RoundSecAgg,
  type ServerMessage,
  type SumKind,
} from '@confide/protocol';
import { silentProgress, type Progress } from './progress';
import {
  addGaussianNoise,
  clipL2,
  distributedNoiseShare,
  sampleDiscreteGaussian,
} from '@confide/differential-privacy';
import {
  isSecAggError,
  MaskWorkerPool,
  quantizeWeighted,
  SecAggClient,
  type SecAggParams,
} from '@confide/secure-aggregation';
import type { LedgerEntry, MechanismParams } from '@confide/privacy-ledger';
import { DEFAULT_POLICY, type SitePolicy } from './policy';
import { checkRound, type RoundOffer } from './policy-check';
import { memoryPinStore, parseServerKey, ServerTrust, type PinStore } from './server-trust';
import { isLoopbackHost, socketOptions } from './transport';
import { declaredRows, DEFAULT_EVAL_FRACTION, splitSiteData, standardizeSite } from './site-data';
import { sumMechanism, updateMechanism } from './site-accounting';
import { SiteSum } from './site-sum';
import { memoryContributionStore, type ContributionStore } from './contributions';
import { Refused, SiteBudget, type LocalLedgerStore } from './site-budget';

type TrainMsg = MessageOf<ServerMessage, 'round.train'>;
type EvaluateMsg = MessageOf<ServerMessage, 'round.evaluate'>;
type StatsMsg = MessageOf<ServerMessage, 'stats.request'>;
type SumOpenMsg = MessageOf<ServerMessage, 'sum.open'>;
type Stage = 'statistics' | 'training' | 'evaluation';

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
  /** First reconnect delay in ms, doubled up to 30 s. */
  reconnectDelayMs?: number;
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
}

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

/**
 * A site's runtime: logs in with its Ed25519 key to an aggregator whose key it pinned, checks every
 * round against its own policy before it touches its data, trains locally, and reconnects after a
 * lost connection. Raw data never leaves this object; updates, statistics and metrics leave only
 * inside secure sums (or in the clear where the site's policy allows it), noised and charged to its
 * own ledger under DP.
 */
export class ClientNode {
  private ws: WebSocket | null = null;
  private stopped = false;
  private maskPool: MaskWorkerPool | null = null;
  private connectedOnce = false;
  private attempt = 0;
  private queue: Promise<void> = Promise.resolve();
  private model: { spec: ModelSpec; model: tf.LayersModel } | null = null;
  private standardized: { key: string; train: Dataset; eval: Dataset | null } | null = null;
  private finish!: (err: NodeStopped | null) => void;
  private readonly finished: Promise<NodeStopped | null>;
  private readonly url: string;
  private readonly tls: boolean;
  private readonly log: (line: string) => void;
  private readonly progress: Progress;
  private readonly policy: SitePolicy;
  private readonly trust: ServerTrust;
  /** The rows this site trains on and the rows it evaluates on (never the same). */
  private readonly split: { train: Dataset; eval: Dataset | null };
  /** The round this node last trained; a resent train message for it is answered from memory. */
  private lastSent: { runId: string; round: number; frame: Buffer } | null = null;
  /** The rounds this node took part in, by run: a configuration for an earlier one is a replay. */
  private readonly latestRound = new Map<string, number>();
  siteId: string | null = null;
  siteName: string | null = null;
  /** What this site has spent and may spend: its local ledger, held releases, contributions. */
  private readonly budget: SiteBudget;
  private slotWaiter: { requestId: string; settle: (m: ServerMessage) => void } | null = null;
  /** This round's secure-aggregation client and the trained update waiting for its key shares. */
  private secure: {
    client: SecAggClient;
    runId: string;
    round: number;
    info: RoundSecAgg;
    /** Recorded before the masked update leaves (no DP: its values go into one sum only). */
    contribution: string | null;
    pending: {
      update: Float32Array;
      numExamples: number;
      /** Declared records over the round's public normaliser: this site's weight in the average. */
      weight: number;
      trainLoss: number;
      mechanism: MechanismParams | null;
      train: TrainMsg;
      report: LocalRoundResult;
    } | null;
  } | null = null;
  /** This site's statistics and evaluation sums in progress, by runId/round/kind. */
  private readonly sums = new Map<string, SiteSum>();
  /** The nonce of this connection's login, which the aggregator's signed welcome must echo. */
  private clientNonce: string | null = null;

  constructor(private readonly opts: ClientNodeOptions) {
    this.url = protocolUrl(opts.server);
    this.tls = this.url.startsWith('wss:');
    this.log = opts.log ?? (() => undefined);
    this.progress = opts.progress ?? silentProgress;
    this.policy = opts.policy ?? DEFAULT_POLICY;
    this.trust = new ServerTrust(
      opts.federationId,
      this.url,
      opts.serverKey ? parseServerKey(opts.serverKey) : null,
      opts.pins ?? memoryPinStore(),
      this.log,
    );
    this.split = splitSiteData(
      opts.data,
      opts.evalData,
      opts.evalFraction ?? DEFAULT_EVAL_FRACTION,
      opts.holdoutSeed ?? randomInt(0, 2 ** 31 - 1),
    );
    this.budget = new SiteBudget({
      federationId: opts.federationId,
      siteId: () => this.siteId,
      policy: this.policy,
      epsilonLimit: opts.epsilonLimit,
      ledgerStore: opts.ledgerStore,
      contributions: opts.contributions ?? memoryContributionStore(),
    });
    this.finished = new Promise((resolve) => (this.finish = resolve));
  }

  /** Connects and serves rounds until `stop()` or a fatal error; resolves with the reason it stopped. */
  run(): Promise<NodeStopped | null> {
    void (async () => {
      try {
        await this.budget.load();
      } catch (e) {
        this.fatal('STOPPED', `cannot read the local privacy ledger: ${(e as Error).message}`);
        return;
      }
      if (!this.tls) {
        if (this.policy.requireTls) {
          this.fatal(
            ErrorCode.POLICY_TLS,
            `POLICY_TLS: ${this.url} is plain ws://; this site's policy requires TLS (wss:// or https://)`,
          );
          return;
        }
        if (!isLoopbackHost(new URL(this.url).hostname)) {
          this.log(
            `WARNING: speaking plain ws:// to ${new URL(this.url).host}, which is not this machine: anyone on the path can read and delay this site's traffic (its masks and the aggregator's signatures still protect what it sends and is asked); use wss://`,
          );
        }
      }
      this.connect();
    })();
    return this.finished;
  }

  /** The site's own ledger entries (copies). */
  ledgerEntries(): LedgerEntry[] {
    return this.budget.entries();
  }

  /** The rows this node trains on and evaluates on (tests, the demo). */
  get rows(): { train: number; eval: number } {
    return { train: this.split.train.numRows, eval: this.split.eval?.numRows ?? 0 };
  }

  /** The aggregator key this node trusts, and whether it was given or pinned before (not first seen). */
  get serverKey(): { publicKey: string | null; pinned: boolean } {
    return { publicKey: this.trust.publicKey, pinned: this.trust.pinned };
  }

  /**
   * The worker thread that adds this site's masks (started on the first secure round): masking a
   * large model takes seconds, during which the event loop keeps answering the aggregator's pings,
   * and the keystream's buffers stay off this thread's heap.
   */
  private maskWorkers(): MaskWorkerPool {
    this.maskPool ??= new MaskWorkerPool(1);
    return this.maskPool;
  }

  private closeMaskWorkers(): void {
    void this.maskPool?.close();
    this.maskPool = null;
  }

  /** Stops for good: closes the connection, no reconnect. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.release();
    this.ws?.close(1000, 'site stopping');
    this.ws = null;
    this.finish(null);
  }

  /** Drops the connection without telling the aggregator, as a crash or network cut would (tests, demo). */
  dropConnection(): void {
    this.ws?.terminate();
  }

  private release(): void {
    this.closeMaskWorkers();
    for (const s of this.sums.values()) s.destroy();
    this.sums.clear();
    this.secure?.client.destroy();
    this.secure = null;
    this.model?.model.dispose();
    this.model = null;
  }

  private fatal(code: ErrorCode | 'STOPPED', message: string): void {
    if (this.stopped) return;
    this.stopped = true;
    this.release();
    this.ws?.close(1000);
    this.ws = null;
    this.finish(new NodeStopped(code, message));
  }

  private connect(): void {
    if (this.stopped) return;
    let ws: WebSocket;
    try {
      ws = new WebSocket(this.url, {
        perMessageDeflate: false,
        maxPayload: 1024 * 1024 * 1024,
        ...socketOptions(this.url, {
          ...(this.opts.ca !== undefined ? { ca: this.opts.ca } : {}),
          env: this.opts.env ?? process.env,
        }),
      });
    } catch (e) {
      this.fatal('STOPPED', `cannot connect to ${this.url}: ${(e as Error).message}`);
      return;
    }
    this.ws = ws;
    ws.on('open', () => {
      this.attempt = 0;
    });
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      const parsed = this.parse(data, isBinary);
      if (!parsed) return;
      // A ledger slot answers a request made from inside a queued handler: deliver it at once, to
      // the request it names.
      if (parsed.msg.type === 'ledger.slot' || parsed.msg.type === 'error') {
        if (parsed.msg.refId !== undefined && this.slotWaiter?.requestId === parsed.msg.refId) {
          this.slotWaiter.settle(parsed.msg);
          return;
        }
        if (parsed.msg.type === 'ledger.slot') return; // an answer to no pending request
      }
      // The key advertisements of this site's current secure round are answered at once, even while
      // it trains: sharing keys does not need the update, and the masks then expand on the mask
      // worker during training instead of after it.
      const s = this.secure;
      if (
        parsed.msg.type === 'secagg.advertisements' &&
        parsed.msg.sum === 'update' &&
        s?.runId === parsed.msg.runId &&
        s.round === parsed.msg.round &&
        s.client.state === 'advertised'
      ) {
        void this.onSecure(ws, parsed.msg);
        return;
      }
      // Other messages are handled strictly in order; training blocks the queue, not the socket.
      this.queue = this.queue
        .then(() => this.onMessage(ws, parsed.msg, parsed.vector))
        .catch((e: unknown) =>
          this.log(`error handling a server message: ${(e as Error).message}`),
        );
    });
    ws.on('error', (e) => {
      if (!this.connectedOnce && this.attempt === 0)
        this.log(`cannot reach ${this.url}: ${e.message}`);
    });
    ws.on('close', (code, reason) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.stopped) return;
      if (this.opts.reconnect === false) {
        this.fatal(
          'STOPPED',
          `connection closed (${code}${reason.length ? ` ${reason.toString()}` : ''})`,
        );
        return;
      }
      const delay = Math.min(30_000, (this.opts.reconnectDelayMs ?? 1000) * 2 ** this.attempt);
      this.attempt++;
      this.log(`connection lost (${code}); reconnecting in ${(delay / 1000).toFixed(1)} s`);
      setTimeout(() => this.connect(), delay).unref();
    });
  }

  private send(ws: WebSocket, msg: Record<string, unknown>): void {
    if (ws.readyState === WebSocket.OPEN)
      ws.send(JSON.stringify({ v: PROTOCOL_VERSION, id: randomUUID(), ...msg }));
  }

  /**
   * Decodes a message and checks that the aggregator signed it with the pinned key (the challenge
   * carries its own proof, checked when it is handled); anything else is dropped, so neither a relay
   * nor a replay from another aggregator can configure a round.
   */
  private parse(
    data: Buffer,
    isBinary: boolean,
  ): { msg: ServerMessage; vector: Float32Array | null } | null {
    let raw: unknown;
    let vector: Float32Array | null = null;
    let msg: ServerMessage;
    try {
      if (isBinary) {
        const frame = decodeFrame(data, parameterLimit);
        if (!(frame.vector instanceof Float32Array))
          throw new ProtocolError(ErrorCode.MALFORMED_MESSAGE, 'expected float32');
        raw = frame.header;
        vector = frame.vector;
      } else {
        if (data.length > MAX_CONTROL_BYTES) throw new ProtocolError(ErrorCode.FRAME_TOO_LARGE);
        raw = parseJsonText(data.toString('utf8'));
      }
      const type = (raw as { type?: unknown } | null)?.type;
      if (type !== 'challenge' && !this.trust.verify(raw as Record<string, unknown>)) {
        throw new ProtocolError(
          ErrorCode.BAD_SERVER_SIGNATURE,
          `${String(type)} is not signed with the aggregator's pinned key`,
        );
      }
      msg = parseServerMessage(raw);
    } catch (e) {
      this.log(`ignoring an invalid message from the aggregator: ${(e as Error).message}`);
      return null;
    }
    return { msg, vector };
  }

  private async onMessage(
    ws: WebSocket,
    msg: ServerMessage,
    vector: Float32Array | null,
  ): Promise<void> {
    if (this.stopped || ws !== this.ws) return;
    switch (msg.type) {
      case 'challenge': {
        try {
          await this.trust.checkChallenge(msg);
        } catch (e) {
          const code = e instanceof ProtocolError ? e.code : ErrorCode.BAD_SERVER_SIGNATURE;
          this.fatal(code, `${code}: ${(e as Error).message}`);
          return;
        }
        const signature = signLogin(
          this.opts.identity,
          msg.serverId,
          msg.nonce,
          this.opts.federationId,
          msg.serverKey,
        );
        // A fresh nonce of its own: the signed welcome must echo it, so a recorded challenge and
        // welcome replayed by a relay cannot pass for a login.
        this.clientNonce = toBase64(randomBytes(32));
        this.send(ws, {
          type: 'login',
          federationId: this.opts.federationId,
          publicKey: this.opts.identity.publicKey,
          nonce: msg.nonce,
          clientNonce: this.clientNonce,
          signature,
          client: 'confide-node/0.2',
        });
        return;
      }
      case 'welcome':
        if (msg.clientNonce !== this.clientNonce || msg.federationId !== this.opts.federationId) {
          this.log('ignoring a welcome that does not answer this connection’s login');
          return;
        }
        this.siteId = msg.siteId;
        this.siteName = msg.siteName;
        this.log(
          `${this.connectedOnce ? 'reconnected' : 'connected'} as site "${msg.siteName}" (aggregator key ${keyFingerprint(this.trust.publicKey!)}${this.trust.pinned ? '' : ', pinned on first use'})`,
        );
        this.connectedOnce = true;
        this.opts.onWelcome?.(msg);
        return;
      case 'error':
        if (msg.fatal) {
          this.fatal(msg.code as ErrorCode, `${msg.code}: ${msg.message}`);
        } else {
          this.log(`aggregator reported ${msg.code}: ${msg.message}`);
        }
        return;
      case 'stats.request':
        await this.guarded(ws, msg, 'statistics', () => this.statistics(ws, msg));
        return;
      case 'round.train':
        await this.train(ws, msg, vector!);
        return;
      case 'round.evaluate':
        await this.guarded(ws, msg, 'evaluation', () => this.evaluate(ws, msg, vector!));
        return;
      case 'sum.open':
        await this.guarded(ws, msg, 'evaluation', () => {
          this.openEvaluation(ws, msg);
          return Promise.resolve();
        });
        return;
      case 'secagg.advertisements':
      case 'secagg.deliver':
      case 'secagg.consistency':
      case 'secagg.unmask':
        if (msg.sum === 'update') await this.onSecure(ws, msg);
        else await this.sums.get(sumKey(msg.runId, msg.round, msg.sum))?.step(msg);
        return;
      case 'ledger.slot':
        return; // delivered directly to the waiting release, never queued
      case 'round.end':
        if (this.secure?.round === msg.round && this.secure.runId === msg.runId) {
          this.secure.client.destroy();
          this.secure = null;
        }
        for (const [key, sum] of this.sums) {
          if (key.startsWith(`${msg.runId}/${msg.round}/`)) {
            sum.destroy();
            this.sums.delete(key);
          }
        }
        this.budget.dropRound(msg.runId, msg.round);
        this.log(
          msg.outcome === 'committed'
            ? `round ${msg.round} committed`
            : `round ${msg.round} aborted: ${msg.reason ?? 'no reason given'}`,
        );
        this.opts.onRoundEnd?.(msg);
        return;
    }
  }

  /** Runs a handler; a refusal it throws declines the round's stage with its code. */
  private async guarded(
    ws: WebSocket,
    msg: { runId: string; round: number },
    stage: Stage,
    handler: () => Promise<void>,
  ): Promise<void> {
    try {
      await handler();
    } catch (e) {
      this.progress.done();
      this.refuse(ws, msg, stage, codeOf(e), (e as Error).message);
    }
  }

  /** Logs and declines: `refused round N: CODE: why`; nothing derived from the data leaves. */
  private refuse(
    ws: WebSocket,
    msg: { runId: string; round: number },
    stage: Stage,
    code: string,
    reason: string,
  ): void {
    this.log(
      `refused round ${msg.round}${stage === 'training' ? '' : ` (${stage})`}: ${code}: ${reason}`,
    );
    this.opts.onRefused?.({ runId: msg.runId, round: msg.round, stage, code, message: reason });
    this.send(ws, {
      type: 'round.decline',
      runId: msg.runId,
      round: msg.round,
      stage,
      code,
      reason: reason.slice(0, 2000),
    });
  }

  /**
   * The site's own checks of a round configuration, before anything touches its data: fresh (not past
   * its deadline, not an earlier round of the run), its policy, and DP whenever the site keeps a limit.
   */
  private admit(
    msg: { runId: string; round: number; deadline: string; federationId: string },
    offer: RoundOffer,
  ): void {
    if (msg.federationId !== this.opts.federationId) {
      throw new Refused(
        ErrorCode.UNEXPECTED_MESSAGE,
        `the configuration is for federation ${msg.federationId}, this node joined ${this.opts.federationId}`,
      );
    }
    const deadline = Date.parse(msg.deadline);
    if (!(deadline > Date.now())) {
      throw new Refused(
        ErrorCode.STALE_CONFIGURATION,
        `the configuration's deadline ${msg.deadline} has passed (a replayed or delayed message)`,
      );
    }
    const latest = this.latestRound.get(msg.runId);
    if (latest !== undefined && msg.round < latest) {
      throw new Refused(
        ErrorCode.STALE_CONFIGURATION,
        `round ${msg.round} of run ${msg.runId} comes after round ${latest} (a replayed configuration)`,
      );
    }
    const v = checkRound(this.policy, offer);
    if (v) throw new Refused(v.code, v.message);
    // The delta the site's epsilon is measured at is the site's, never a larger one the aggregator
    // picks (the same mechanism has a far smaller epsilon at a larger delta).
    if (offer.privacy && !(offer.privacy.delta <= this.budget.delta())) {
      throw new Refused(
        ErrorCode.POLICY_DELTA,
        `the round's delta ${offer.privacy.delta} is larger than this site's delta ${this.budget.delta()} (a larger delta is a weaker guarantee)`,
      );
    }
    if (this.opts.epsilonLimit !== undefined && offer.privacy === null) {
      throw new Refused(
        ErrorCode.POLICY_DP_REQUIRED,
        `this site keeps its own epsilon limit (${this.opts.epsilonLimit}); the ${offer.stage} round carries no differential privacy, so what it releases could not be charged`,
      );
    }
  }

  private modelFor(spec: ModelSpec): tf.LayersModel {
    if (this.model && JSON.stringify(this.model.spec) === JSON.stringify(spec))
      return this.model.model;
    this.model?.model.dispose();
    this.model = { spec, model: buildModel(spec) };
    return this.model.model;
  }

  private datasets(stats: TrainMsg['standardization']): { train: Dataset; eval: Dataset | null } {
    const key = JSON.stringify(stats);
    if (this.standardized?.key === key) return this.standardized;
    this.standardized = { key, ...standardizeSite(this.split, stats) };
    return this.standardized;
  }

  /** The record count this site reveals (weight, receipts): exact or a lower bound, per its policy. */
  private declaredTrainRows(): number {
    return declaredRows(this.split.train.numRows, this.policy.rowCount);
  }

  private async statistics(ws: WebSocket, msg: StatsMsg): Promise<void> {
    const privacy = msg.privacy;
    this.admit(msg, {
      stage: 'statistics',
      tls: this.tls,
      secureAggregation: secAggOffer(msg.secureAggregation),
      privacy: sumOffer(privacy),
    });
    const train = this.split.train;
    if (msg.features !== train.numFeatures) {
      throw new Refused(
        ErrorCode.SCHEMA_MISMATCH,
        `the federation's data has ${msg.features} features, this site's has ${train.numFeatures}`,
      );
    }
    if (!msg.secureAggregation) {
      // In the clear (a plain federation, which the site's policy allows): exact sums, never noised
      // or charged, and the exact record count; so never under DP, nor when the site reveals only a
      // lower bound on its records.
      if (privacy) {
        throw new Refused(
          ErrorCode.POLICY_SECURE_AGGREGATION,
          'under differential privacy this site releases its statistics only inside a secure sum, noised and charged',
        );
      }
      if (this.policy.rowCount === 'lowerBound') {
        throw new Refused(
          ErrorCode.POLICY_SECURE_AGGREGATION,
          "statistics in the clear would reveal this site's exact record count; its policy reveals only a lower bound",
        );
      }
      const part = featureStatsPartial(train);
      this.send(ws, { type: 'stats.report', count: part.count, sum: part.sum, sumSq: part.sumSq });
      return;
    }
    const perSite = privacy?.level === 'site';
    const bounds = msg.featureBounds;
    if (privacy && !bounds) {
      throw new Refused(
        ErrorCode.SCHEMA_MISMATCH,
        'differentially private statistics need the federation to declare feature bounds',
      );
    }
    const once = this.budget.contributionKey(`statistics/${msg.federationId}`, privacy);
    let values = statisticsVector(train, { bounds, perSite });
    let mechanism: MechanismParams | null = null;
    if (privacy) {
      const sensitivity = statisticsSensitivity(train.numFeatures, { perSite, bounds });
      mechanism = sumMechanism('statistics', privacy, sensitivity);
      this.budget.checkSumBudget(mechanism, privacy);
      values = addGaussianNoise(values, privacy.noiseMultiplier * sensitivity);
    }
    // Bound to the federation as the aggregator binds it (an update binds the model's hash).
    const context = `statistics/${msg.federationId}`;
    const ref = { runId: msg.runId, round: msg.round, sum: 'statistics' } as const;
    this.openSum(ws, msg, 'statistics', msg.secureAggregation, context, {
      values,
      release: this.releaseFor(ws, ref, mechanism, once),
    });
  }

  /** How a sum's release is recorded before its masked vector leaves: contribution, then receipt. */
  private releaseFor(
    ws: WebSocket,
    ref: { runId: string; round: number; sum: 'statistics' | 'evaluation' },
    mechanism: MechanismParams | null,
    contribution: string | null,
  ): () => Promise<LedgerEntry | undefined> {
    const key = sumKey(ref.runId, ref.round, ref.sum);
    if (mechanism) this.budget.hold(key, mechanism);
    return async () => {
      // Recorded before the values leave: a crash after this never lets them into a second sum.
      if (contribution) await this.budget.recordContribution(contribution);
      if (!mechanism) return undefined;
      try {
        return await this.signRelease(ws, ref, mechanism);
      } finally {
        this.budget.drop(key);
      }
    };
  }

  /**
   * Starts this site's part in a statistics or evaluation sum: its keys at once, its vector now or
   * (an evaluation opened before the model is there) once `setInput` brings it.
   */
  private openSum(
    ws: WebSocket,
    msg: { runId: string; round: number },
    kind: 'statistics' | 'evaluation',
    info: RoundSecAgg,
    context: string,
    input: { values: Float64Array; release: () => Promise<LedgerEntry | undefined> } | null,
  ): SiteSum {
    const key = sumKey(msg.runId, msg.round, kind);
    this.sums.get(key)?.destroy();
    const sum = new SiteSum(
      {
        kind,
        siteId: this.siteId!,
        identitySecretKey: this.opts.identity.secretKey,
        info,
        runId: msg.runId,
        round: msg.round,
        modelHash: context,
        minSurvivors: this.policy.minSitesPerSum,
        sendJson: (m) => this.send(ws, m),
        sendBinary: (frame) => {
          if (ws.readyState === WebSocket.OPEN) ws.send(frame, { binary: true });
        },
        release: input?.release ?? (() => Promise.resolve(undefined)),
        refuse: (step, e) => {
          this.budget.drop(key);
          this.refuse(ws, msg, kind, codeOf(e), `${kind} sum step ${step} refused: ${describe(e)}`);
        },
        log: this.log,
      },
      input?.values,
    );
    this.sums.set(key, sum);
    sum.start();
    this.log(`round ${msg.round}: ${kind} sum joined`);
    return sum;
  }

  private async train(ws: WebSocket, msg: TrainMsg, global: Float32Array): Promise<void> {
    if (this.lastSent && this.lastSent.runId === msg.runId && this.lastSent.round === msg.round) {
      // Resumed after a reconnect: the update was computed already; send it again.
      if (ws.readyState === WebSocket.OPEN) ws.send(this.lastSent.frame, { binary: true });
      return;
    }
    let spec: ModelSpec;
    let mechanism: MechanismParams | null = null;
    try {
      if (sha256Hex(float32ToBytes(global)) !== msg.modelHash) {
        throw new Refused(
          ErrorCode.BAD_SERVER_SIGNATURE,
          "the model's weights do not match the hash the aggregator signed",
        );
      }
      try {
        spec = parseModelSpec(msg.modelSpec);
      } catch (e) {
        throw new Refused(
          ErrorCode.SCHEMA_MISMATCH,
          `the federation's model spec is invalid: ${(e as Error).message}`,
        );
      }
      this.admit(msg, {
        stage: 'training',
        tls: this.tls,
        secureAggregation: secAggOffer(msg.secureAggregation),
        privacy: msg.privacy
          ? {
              level: msg.privacy.level,
              noiseMultiplier: msg.privacy.noiseMultiplier,
              clipNorm: msg.privacy.clipNorm,
              delta: msg.privacy.delta,
            }
          : null,
        model: { kind: spec.kind, parameters: parameterCount(spec) },
      });
      if (spec.inputDim !== this.split.train.numFeatures) {
        throw new Refused(
          ErrorCode.SCHEMA_MISMATCH,
          `the model expects ${spec.inputDim} features, this site's data has ${this.split.train.numFeatures}`,
        );
      }
      if (msg.privacy?.level === 'record' && (msg.privacy.siteSamplingRate ?? 1) !== 1) {
        throw new Refused(
          ErrorCode.POLICY_SAMPLING,
          'site self-sampling is accounted at site level only; a record-level round must take every site',
        );
      }
      // The site's own veto: its accountant, its ledger, its limit, whatever the aggregator says.
      if (msg.privacy) {
        mechanism = updateMechanism(msg, this.declaredTrainRows());
        this.budget.check(mechanism, this.budget.ownLimit(msg.privacy.epsilonLimit), 'this round');
      }
      const once = msg.secureAggregation
        ? this.budget.contributionKey(`update/${msg.runId}/${msg.round}`, msg.privacy)
        : null;
      if (msg.secureAggregation) {
        try {
          this.startSecure(ws, msg, once);
        } catch (e) {
          throw new Refused(
            ErrorCode.SECAGG_REFUSED,
            `cannot take part in secure aggregation: ${(e as Error).message}`,
          );
        }
      }
      if (mechanism) this.budget.hold(sumKey(msg.runId, msg.round, 'update'), mechanism);
    } catch (e) {
      this.refuse(ws, msg, 'training', codeOf(e), (e as Error).message);
      return;
    }
    this.latestRound.set(msg.runId, msg.round);
    try {
      assertFinite(global, 'global model');
      const { train } = this.datasets(msg.standardization);
      const model = this.modelFor(spec);
      setModelWeights(model, global);
      const onBatchEnd = (b: {
        epoch: number;
        batch: number;
        batchesPerEpoch: number;
        loss: number;
      }): void =>
        this.progress.epoch({
          round: msg.round,
          epoch: b.epoch + 1,
          epochs: msg.train.epochs,
          batch: b.batch + 1,
          batches: b.batchesPerEpoch,
          loss: b.loss,
        });
      const result =
        msg.privacy?.level === 'record' && mechanism
          ? await trainModelDpSgd(model, spec, train, {
              epochs: msg.train.epochs,
              samplingRate: mechanism.samplingRate,
              learningRate: msg.train.learningRate,
              clipNorm: msg.privacy.clipNorm,
              noiseMultiplier: msg.privacy.noiseMultiplier,
              optimizer: msg.train.optimizer,
              onStep: (s) => {
                const perEpoch = s.steps / msg.train.epochs;
                onBatchEnd({
                  epoch: Math.floor(s.step / perEpoch),
                  batch: s.step % perEpoch,
                  batchesPerEpoch: perEpoch,
                  loss: s.loss,
                });
              },
            })
          : await trainModel(model, spec, train, {
              epochs: msg.train.epochs,
              batchSize: msg.train.batchSize,
              learningRate: msg.train.learningRate,
              optimizer: msg.train.optimizer,
              shuffleSeed: msg.round,
              onBatchEnd,
            });
      this.progress.done();
      if (this.stopped || ws !== this.ws) return;
      const local = getModelWeights(model);
      let rawUpdate = subtract(local, global);
      if (msg.privacy?.level === 'site') {
        // DP-FedAvg: clip the whole update to C. With self-sampling the site's own coin decides
        // whether the update takes part; when it says no the site sends a zero update (and its noise),
        // indistinguishable from taking part, so its amplification is earned. Without secure
        // aggregation the aggregator sees this update alone: all of the noise, z*C, is added here.
        // Under secure aggregation a share for the t survivors is added in the integer domain later.
        rawUpdate = clipL2(rawUpdate, msg.privacy.clipNorm).clipped;
        const q = msg.privacy.siteSamplingRate ?? 1;
        if (q < 1 && randomInt(0, 2 ** 32) / 2 ** 32 >= q) rawUpdate.fill(0);
        if (!msg.secureAggregation) {
          rawUpdate = addGaussianNoise(
            rawUpdate,
            msg.privacy.noiseMultiplier * msg.privacy.clipNorm,
          );
        }
      }
      const rows = this.declaredTrainRows();
      const update = await applyTransforms(rawUpdate, this.opts.transforms ?? [], {
        federationId: this.opts.federationId,
        runId: msg.runId,
        round: msg.round,
        numExamples: rows,
      });
      assertFinite(update, 'update');
      const report: LocalRoundResult = {
        round: msg.round,
        globalWeights: global,
        localWeights: local,
        update,
        numExamples: rows,
        trainLoss: result.loss,
      };
      if (this.secure && this.secure.round === msg.round && this.secure.runId === msg.runId) {
        // Under secure aggregation the update waits for the key shares; it leaves masked, its weight
        // (declared records over the public normaliser) inside the masked vector.
        this.secure.pending = {
          update,
          numExamples: rows,
          weight:
            msg.privacy?.level === 'site'
              ? 1
              : Math.min(1, rows / this.secure.info.weightNormalizer),
          trainLoss: result.loss,
          mechanism,
          train: msg,
          report,
        };
        this.log(
          `round ${msg.round}: trained on ${train.numRows} rows, loss ${result.loss.toFixed(4)}; waiting for key shares`,
        );
        return;
      }
      // The release is signed and recorded in the site's own ledger before the update leaves.
      const receipt = mechanism
        ? await this.signUpdate(ws, { runId: msg.runId, round: msg.round }, mechanism)
        : undefined;
      if (this.stopped || ws !== this.ws) return;
      // In the clear, as its policy allows: its weight (the declared record count) except at site
      // level, where every site weighs 1; its training loss only without DP (it is not noised).
      const frame = encodeFrame(
        {
          v: PROTOCOL_VERSION,
          type: 'round.update',
          id: randomUUID(),
          runId: msg.runId,
          round: msg.round,
          ...(msg.privacy?.level === 'site' ? {} : { numExamples: rows }),
          ...(msg.privacy ? {} : { trainLoss: result.loss }),
          ...(receipt ? { receipt } : {}),
        },
        update,
      );
      // A signed release is never sent twice (a resend would need a second receipt).
      this.lastSent = receipt ? null : { runId: msg.runId, round: msg.round, frame };
      this.opts.onUpdate?.(report);
      if (ws.readyState === WebSocket.OPEN) ws.send(frame, { binary: true });
      this.log(
        `round ${msg.round}: trained on ${train.numRows} rows, loss ${result.loss.toFixed(4)}, update sent`,
      );
    } catch (e) {
      this.progress.done();
      this.budget.drop(sumKey(msg.runId, msg.round, 'update'));
      this.refuse(ws, msg, 'training', codeOf(e), (e as Error).message);
    }
  }

  /** Signs the update's receipt; the admitted release is no longer pending once signed or refused. */
  private async signUpdate(
    ws: WebSocket,
    ref: { runId: string; round: number },
    mechanism: MechanismParams,
  ): Promise<LedgerEntry> {
    try {
      return await this.signRelease(ws, { ...ref, sum: 'update' }, mechanism);
    } finally {
      this.budget.drop(sumKey(ref.runId, ref.round, 'update'));
    }
  }

  /** Creates this round's secure-aggregation client and advertises its signed keys at once. */
  private startSecure(ws: WebSocket, msg: TrainMsg, contribution: string | null): void {
    const info = msg.secureAggregation!;
    this.secure?.client.destroy();
    const client = new SecAggClient({
      siteId: this.siteId!,
      identitySecretKey: fromBase64(this.opts.identity.secretKey, 64),
      roster: new Map(info.roster.map((r) => [r.siteId, fromBase64(r.publicKey, 32)])),
      runId: msg.runId,
      round: msg.round,
      modelHash: msg.modelHash,
      params: info.params as unknown as SecAggParams,
      vectorLength: info.vectorLength,
      minSurvivors: this.policy.minSitesPerSum,
    });
    this.secure = { client, runId: msg.runId, round: msg.round, info, pending: null, contribution };
    this.send(ws, {
      type: 'secagg.advertise',
      runId: msg.runId,
      round: msg.round,
      sum: 'update',
      advertisement: client.advertise(),
    });
  }

  /**
   * The secure-aggregation steps of the update: share keys (as soon as the advertisements come,
   * during training), then after training send the masked update, and unmask.
   */
  private async onSecure(
    ws: WebSocket,
    msg: MessageOf<
      ServerMessage,
      'secagg.advertisements' | 'secagg.deliver' | 'secagg.consistency' | 'secagg.unmask'
    >,
  ): Promise<void> {
    const s = this.secure;
    if (!s || s.round !== msg.round || s.runId !== msg.runId) {
      this.log(`ignoring ${msg.type} for a round this site is not in`);
      return;
    }
    const ref = { runId: msg.runId, round: msg.round, sum: 'update' };
    try {
      switch (msg.type) {
        case 'secagg.advertisements':
          if (this.vanishAt('share')) return;
          this.send(ws, {
            type: 'secagg.shares',
            ...ref,
            shares: s.client.shareKeys(msg.advertisements),
          });
          // The masks do not depend on the update: they expand on the mask worker while the shares
          // go round (the update is added when they come back), with room before them to frame the
          // masked update for sending without copying it.
          s.client.precomputeMasksOn(this.maskWorkers(), { reserveBefore: FRAME_HEADER_ROOM });
          this.log(`round ${msg.round}: key shares sent; masks expanding`);
          return;
        case 'secagg.deliver': {
          s.client.receiveShares(msg.shares);
          const pending = s.pending;
          if (!pending)
            throw new Error('key shares arrived but this site has no update for the round');
          if (this.vanishAt('mask')) return;
          const dim = pending.mechanism?.dimension;
          if (dim !== undefined && dim !== pending.update.length) {
            // The receipt would account noise over other coordinates than the ones it is added to.
            throw new Error(
              `the round accounts ${dim} noised coordinates, the update has ${pending.update.length}`,
            );
          }
          if (s.contribution) await this.budget.recordContribution(s.contribution);
          const receipt = pending.mechanism
            ? await this.signUpdate(ws, ref, pending.mechanism)
            : undefined;
          if (this.stopped || ws !== this.ws) return;
          const privacy = pending.train.privacy;
          const params = s.info.params as unknown as SecAggParams;
          let masked: Uint32Array;
          if (privacy?.level === 'site') {
            const quantized = quantizeWeighted(pending.update, pending.weight, params);
            // Distributed discrete Gaussian: this site's share of the noise, in the integer domain,
            // sized for the round's threshold t of survivors (what its receipt accounts), not for
            // a number of survivors the aggregator could inflate.
            const t = params.threshold;
            const sd = privacy.noiseMultiplier * privacy.clipNorm * params.scale;
            const { discreteGaussianSigma2 } = distributedNoiseShare({ sigma: sd, t });
            const noise = sampleDiscreteGaussian(discreteGaussianSigma2, pending.update.length);
            for (let i = 0; i < noise.length; i++) quantized[i] = (quantized[i]! + noise[i]!) >>> 0;
            masked = await s.client.maskInputOn(this.maskWorkers(), quantized);
            quantized.fill(0); // this site's input and noise share, now inside the masked vector
          } else {
            masked = await s.client.maskWeightedUpdateOn(
              this.maskWorkers(),
              pending.update,
              pending.weight,
            );
          }
          // The round may have ended (or a new one begun) while the masks were being added.
          if (this.stopped || ws !== this.ws || this.secure !== s) return;
          // No record count and no training loss in the clear: they would be this site's alone.
          const header = {
            v: PROTOCOL_VERSION,
            type: 'round.update',
            id: randomUUID(),
            runId: msg.runId,
            round: msg.round,
            ...(receipt ? { receipt } : {}),
          };
          // Precomputed masks leave room before the vector for the frame header (no 4 MB copy).
          const frame =
            masked.byteOffset >= FRAME_HEADER_ROOM
              ? encodeFrameInPlace(header, masked)
              : encodeFrame(header, masked);
          this.opts.onUpdate?.(pending.report);
          s.pending = null;
          if (ws.readyState === WebSocket.OPEN) ws.send(frame, { binary: true });
          this.log(`round ${msg.round}: masked update sent`);
          return;
        }
        case 'secagg.consistency':
          this.send(ws, {
            type: 'secagg.signature',
            ...ref,
            signature: s.client.confirmSurvivors(msg.request),
          });
          return;
        case 'secagg.unmask':
          if (this.vanishAt('unmask')) return;
          this.send(ws, {
            type: 'secagg.unmasked',
            ...ref,
            response: s.client.unmask(msg.request),
          });
          s.client.destroy();
          this.secure = null;
          return;
      }
    } catch (e) {
      // The round learns at once that this site is out of it (rather than waiting for its deadline).
      s.client.abort();
      s.pending = null;
      this.budget.drop(sumKey(msg.runId, msg.round, 'update'));
      this.refuse(
        ws,
        msg,
        'training',
        codeOf(e),
        `secure aggregation step ${msg.type} refused: ${describe(e)}`,
      );
    }
  }

  /** Test and demo hook: vanish (no goodbye) instead of performing `stage`. */
  private vanishAt(stage: 'share' | 'mask' | 'unmask'): boolean {
    if (this.opts.dropAt !== stage) return false;
    this.log(`vanishing before the ${stage} step (--drop-site-at)`);
    this.ws?.terminate();
    this.stopped = true;
    this.finish(null);
    return true;
  }

  /** Asks for the ledger's next position, builds and signs the receipt, records it locally. */
  private async signRelease(
    ws: WebSocket,
    ref: { runId: string; round: number; sum: SumKind },
    mechanism: MechanismParams,
  ): Promise<LedgerEntry> {
    const requestId = randomUUID();
    const slot = await new Promise<MessageOf<ServerMessage, 'ledger.slot'>>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.slotWaiter = null;
        reject(
          new ProtocolError(
            ErrorCode.TIMEOUT,
            'the aggregator did not grant a ledger slot in time',
          ),
        );
      }, 60_000);
      this.slotWaiter = {
        requestId,
        settle: (m) => {
          clearTimeout(timer);
          this.slotWaiter = null;
          if (m.type === 'ledger.slot') resolve(m);
          else if (m.type === 'error') reject(new ProtocolError(m.code as ErrorCode, m.message));
        },
      };
      if (ws.readyState === WebSocket.OPEN) {
        ws.send(
          JSON.stringify({ v: PROTOCOL_VERSION, id: requestId, type: 'ledger.reserve', ...ref }),
        );
      }
    });
    if (slot.runId !== ref.runId || slot.round !== ref.round || slot.sum !== ref.sum) {
      throw new ProtocolError(
        ErrorCode.UNEXPECTED_MESSAGE,
        `the ledger slot is for ${slot.sum} of round ${slot.round}, not ${ref.sum} of round ${ref.round}`,
      );
    }
    return this.budget.sign(slot, ref, mechanism, {
      siteId: this.siteId!,
      siteName: this.siteName!,
      identity: this.opts.identity,
    });
  }

  /**
   * Opens this site's part in a round's evaluation sum before the model exists (its keys do not
   * depend on it), after the same checks as the evaluation itself: policy, and a round it trained in
   * with rows held out to evaluate on.
   */
  private openEvaluation(ws: WebSocket, msg: SumOpenMsg | EvaluateMsg): SiteSum {
    this.admit(msg, {
      stage: 'evaluation',
      tls: this.tls,
      secureAggregation: secAggOffer(msg.secureAggregation),
      privacy: sumOffer(msg.privacy),
    });
    this.evaluationRows(msg);
    // Bound to the round (the model is bound by the signed hash round.evaluate carries).
    const context = `evaluation/${msg.runId}/${msg.round}`;
    return this.openSum(ws, msg, 'evaluation', msg.secureAggregation!, context, null);
  }

  /** The held-out rows a round's model is evaluated on; refused for a round this site did not train in. */
  private evaluationRows(msg: { runId: string; round: number }): Dataset {
    if (!this.model || !this.standardized || this.latestRound.get(msg.runId) !== msg.round) {
      throw new Refused(
        ErrorCode.UNEXPECTED_MESSAGE,
        `this site did not train in round ${msg.round} of this run; nothing to evaluate`,
      );
    }
    const rows = this.standardized.eval;
    if (!rows || rows.numRows === 0) {
      throw new Refused(
        ErrorCode.SCHEMA_MISMATCH,
        'this site holds no rows out for evaluation (too few rows, and no --eval-data)',
      );
    }
    return rows;
  }

  /**
   * Evaluates the round's new model on this site's held-out rows: its counts join the round's secure
   * sum (noised and charged under DP), or, in a plain federation, its own metrics leave only if its
   * policy says so.
   */
  private async evaluate(ws: WebSocket, msg: EvaluateMsg, weights: Float32Array): Promise<void> {
    const privacy = msg.privacy;
    // Checked again even when its sum was opened already: this message's own settings count.
    this.admit(msg, {
      stage: 'evaluation',
      tls: this.tls,
      secureAggregation: secAggOffer(msg.secureAggregation),
      privacy: sumOffer(privacy),
    });
    const key = sumKey(msg.runId, msg.round, 'evaluation');
    let sum = msg.secureAggregation ? this.sums.get(key) : undefined;
    if (msg.secureAggregation && !sum) sum = this.openEvaluation(ws, msg);
    try {
      await this.evaluateInto(ws, msg, weights, sum);
    } catch (e) {
      // Its part in the sum ends with the refusal: secrets wiped, nothing more sent for it.
      sum?.destroy();
      this.sums.delete(key);
      this.budget.drop(key);
      throw e;
    }
  }

  private async evaluateInto(
    ws: WebSocket,
    msg: EvaluateMsg,
    weights: Float32Array,
    sum: SiteSum | undefined,
  ): Promise<void> {
    const privacy = msg.privacy;
    if (sha256Hex(float32ToBytes(weights)) !== msg.modelHash) {
      throw new Refused(
        ErrorCode.BAD_SERVER_SIGNATURE,
        "the model's weights do not match the hash the aggregator signed",
      );
    }
    const evalRows = this.evaluationRows(msg);
    const { spec, model } = this.model!;
    setModelWeights(model, weights);
    if (!sum) {
      const m = await evaluateModel(model, spec, evalRows);
      this.send(ws, {
        type: 'round.metrics',
        runId: msg.runId,
        round: msg.round,
        modelVersionId: msg.modelVersionId,
        metrics: {
          loss: m.loss,
          accuracy: m.accuracy,
          auc: m.auc,
          f1: m.f1,
          numExamples: m.numExamples,
        },
      });
      return;
    }
    const once = this.budget.contributionKey(`evaluation/${msg.modelHash}`, privacy);
    const perSite = privacy?.level === 'site';
    let values = await evaluateForSum(model, spec, evalRows, msg.evaluation, { perSite });
    let mechanism: MechanismParams | null = null;
    if (privacy) {
      const sensitivity = evaluationSensitivity(msg.evaluation, { perSite });
      mechanism = sumMechanism('evaluation', privacy, sensitivity);
      this.budget.checkSumBudget(mechanism, privacy);
      values = addGaussianNoise(values, privacy.noiseMultiplier * sensitivity);
    }
    const ref = { runId: msg.runId, round: msg.round, sum: 'evaluation' } as const;
    await sum.setInput(values, this.releaseFor(ws, ref, mechanism, once));
  }
}

function sumKey(runId: string, round: number, kind: string): string {
  return `${runId}/${round}/${kind}`;
}

/** The code a round is declined with for an error: its own, or what kind of failure it was. */
function codeOf(e: unknown): string {
  if (e instanceof Refused || e instanceof ProtocolError) return e.code;
  if (isSecAggError(e)) return ErrorCode.SECAGG_REFUSED;
  return e instanceof MlError ? ErrorCode.SCHEMA_MISMATCH : ErrorCode.INTERNAL;
}

/** An error's message, with the secure-aggregation library's own code in front of it. */
function describe(e: unknown): string {
  return isSecAggError(e) ? `${e.code}: ${e.message}` : (e as Error).message;
}

/** What the site's policy needs to know of a statistics or evaluation release's DP. */
function sumOffer(privacy: StatsMsg['privacy']): RoundOffer['privacy'] {
  return privacy
    ? {
        level: privacy.level,
        noiseMultiplier: privacy.noiseMultiplier,
        clipNorm: null,
        delta: privacy.delta,
      }
    : null;
}

/** What the site's policy needs to know of a round's secure aggregation. */
function secAggOffer(info: RoundSecAgg | null): RoundOffer['secureAggregation'] {
  if (!info) return null;
  const p = info.params as Partial<SecAggParams>;
  return {
    sites: info.roster.length,
    // Passed on as announced: the policy check refuses a graph it does not know.
    graph: p.graph as 'complete' | 'harary',
    ...(p.k !== undefined ? { k: p.k } : {}),
    threshold: Number(p.threshold),
    threatModel: p.threatModel as 'semi-honest' | 'semi-malicious',
  };
}
