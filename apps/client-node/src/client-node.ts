import { randomBytes, randomInt, randomUUID } from 'node:crypto';
import WebSocket from 'ws';
import type * as tf from '@tensorflow/tfjs';
import {
  buildModel,
  parameterCount,
  parseModelSpec,
  type Dataset,
  type ModelSpec,
} from '@confide/ml';
import type { UpdateTransform } from '@confide/federated';
import {
  decodeFrame,
  encodeFrame,
  encodeFrameInPlace,
  ErrorCode,
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
  signLogin,
  type IdentityKeyPair,
  type MessageOf,
  type RoundSecAgg,
  type ServerMessage,
  type SumKind,
} from '@confide/protocol';
import { silentProgress, type Progress } from './progress';
import { MaskWorkerPool, SecAggClient, type SecAggParams } from '@confide/secure-aggregation';
import { runMods, updatePipeline, type Mod, type SiteUpdateDraft } from '@confide/site-runtime';
import type { LedgerEntry, MechanismParams } from '@confide/privacy-ledger';
import { DEFAULT_POLICY, type SitePolicy } from './policy';
import { checkRound, type RoundOffer } from './policy-check';
import { memoryPinStore, parseServerKey, ServerTrust, type PinStore } from './server-trust';
import { isLoopbackHost, socketOptions } from './transport';
import { declaredRows, DEFAULT_EVAL_FRACTION, splitSiteData, standardizeSite } from './site-data';
import { updateMechanism } from './site-accounting';
import { memoryContributionStore, type ContributionStore } from './contributions';
import { SiteBudget, sumKey, type LocalLedgerStore } from './site-budget';
import { assertModelHash, codeOf, describe, Refused, type Stage } from './refusal';
import { DataReleases, secAggOffer } from './data-releases';
import { trainLocalUpdate } from './local-update';

type TrainMsg = MessageOf<ServerMessage, 'round.train'>;

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
  /** What the node is doing, for the line it prints when a signal stops it. */
  private activity = 'connecting to the aggregator';
  /** The pending reconnect; it keeps the process alive, as a node that waits must be. */
  private reconnectTimer: NodeJS.Timeout | null = null;
  /** Since when this node has had no logged-in connection (null while it has one). */
  private disconnectedSince: number | null = Date.now();
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
  private slotWaiter: {
    requestId: string;
    ws: WebSocket;
    ref: { runId: string; round: number };
    settle: (m: ServerMessage) => void;
    /** Stops waiting: the connection or the round ended. */
    lost: (why: string) => void;
  } | null = null;
  /**
   * The receipt being signed for a granted position, if any: a ledger.held question waits for it, so
   * the answer ("here is my receipt" or "none") is never given while the receipt is half made.
   */
  private signing: Promise<unknown> = Promise.resolve();
  /** This round's secure-aggregation client and the trained update waiting for its key shares. */
  private secure: {
    client: SecAggClient;
    runId: string;
    round: number;
    info: RoundSecAgg;
    pending: {
      /** What training produced, reported once its update leaves. */
      report: LocalRoundResult;
      /** The update as the prepare mods left it. */
      draft: SiteUpdateDraft;
      /** The mods that record, sign, quantize, noise and mask it once the key shares are in. */
      release: Mod[];
    } | null;
  } | null = null;
  /** Its feature statistics and evaluation metrics, as secure sums or as its policy allows. */
  private readonly releases: DataReleases;
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
    this.releases = new DataReleases({
      budget: this.budget,
      policy: this.policy,
      identity: opts.identity,
      log: this.log,
      siteId: () => this.siteId!,
      trainRows: () => this.split.train,
      evaluationTarget: (msg) => this.evaluationTarget(msg),
      admit: (msg, offer) => this.admit(msg, offer),
      refuse: (ws, msg, stage, code, reason) => this.refuse(ws, msg, stage, code, reason),
      send: (ws, msg) => this.send(ws, msg),
      signRelease: (ws, ref, mechanism) => this.signRelease(ws, ref, mechanism),
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

  /**
   * Stops for good: closes the connection, no reconnect. On a signal it says which step it abandons
   * (nothing of an unfinished step leaves); a receipt being written is finished first, so the local
   * ledger never loses a charge that left.
   */
  stop(signal?: string): void {
    if (this.stopped) return;
    this.stopped = true;
    if (signal) {
      this.log(`${signal}: stopping; abandoned ${this.activity}`);
      this.setState({ state: 'stopping', signal, abandoned: this.activity });
    }
    this.cancelReconnect();
    this.release();
    this.ws?.close(1000, 'site stopping');
    this.ws = null;
    void this.signing.catch(() => undefined).then(() => this.finish(null));
  }

  /** Reports a state change and remembers it as what the node is doing. */
  private setState(s: NodeState): void {
    if (s.state === 'waiting') this.activity = 'waiting for a round';
    else if (s.state === 'training')
      this.activity = `round ${s.round} (training, before its update left)`;
    else if (s.state === 'reconnecting') this.activity = 'waiting to reconnect';
    this.opts.onState?.(s);
  }

  /** Drops the connection without telling the aggregator, as a crash or network cut would (tests, demo). */
  dropConnection(): void {
    this.ws?.terminate();
  }

  private release(): void {
    this.closeMaskWorkers();
    this.releases.endAll();
    this.secure?.client.destroy();
    this.secure = null;
    this.model?.model.dispose();
    this.model = null;
  }

  private cancelReconnect(): void {
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
  }

  private fatal(code: ErrorCode | 'STOPPED', message: string): void {
    if (this.stopped) return;
    this.stopped = true;
    this.cancelReconnect();
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
        if (parsed.msg.type === 'ledger.slot') {
          // A position granted after this site stopped waiting: it signs nothing there, and says so.
          this.send(ws, { type: 'ledger.none', seq: parsed.msg.seq });
          return;
        }
      }
      if (parsed.msg.type === 'ledger.held') {
        void this.answerHeld(ws, parsed.msg);
        return;
      }
      // A round that ends while its release waits for a ledger position ends that wait now (the
      // round's end is queued behind it); a position granted later is answered with "none".
      const w = this.slotWaiter;
      if (
        parsed.msg.type === 'round.end' &&
        w?.ref.runId === parsed.msg.runId &&
        w.ref.round === parsed.msg.round
      ) {
        w.lost(`round ${parsed.msg.round} ended while this site waited for a ledger slot`);
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
      if (this.slotWaiter?.ws === ws)
        this.slotWaiter.lost('the connection ended while waiting for a ledger slot');
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
      const now = Date.now();
      this.disconnectedSince ??= now;
      const giveUp = this.opts.giveUpAfterMs;
      if (giveUp !== undefined && now - this.disconnectedSince >= giveUp) {
        this.fatal(
          'STOPPED',
          `gave up: no connection to ${this.url} for ${Math.round((now - this.disconnectedSince) / 1000)} s (--give-up-after)`,
        );
        return;
      }
      // Capped exponential backoff with jitter, so sites that lost the same aggregator do not all
      // come back at the same instant.
      const cap = this.opts.maxBackoffMs ?? 30_000;
      const ceiling = Math.min(
        cap,
        (this.opts.reconnectDelayMs ?? 1000) * 2 ** Math.min(this.attempt, 30),
      );
      const delay = ceiling / 2 + (Math.random() * ceiling) / 2;
      this.attempt++;
      this.log(
        `${this.connectedOnce ? 'connection lost' : 'aggregator not reachable'} (${code}); reconnecting in ${(delay / 1000).toFixed(1)} s`,
      );
      this.setState({
        state: 'reconnecting',
        inMs: Math.round(delay),
        attempt: this.attempt,
      });
      this.cancelReconnect();
      this.reconnectTimer = setTimeout(() => {
        this.reconnectTimer = null;
        this.connect();
      }, delay);
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
        // Backoff starts again only after a login: an aggregator that takes connections but refuses
        // them (busy, restarting) keeps the waits growing.
        this.attempt = 0;
        this.disconnectedSince = null;
        this.log('waiting for a round');
        this.opts.onWelcome?.(msg);
        this.setState({ state: 'waiting' });
        return;
      case 'error':
        if (msg.fatal) {
          this.fatal(msg.code as ErrorCode, `${msg.code}: ${msg.message}`);
        } else {
          this.log(`aggregator reported ${msg.code}: ${msg.message}`);
        }
        return;
      case 'stats.request':
        await this.guarded(ws, msg, 'statistics', () => this.releases.statistics(ws, msg));
        return;
      case 'round.train':
        await this.train(ws, msg, vector!);
        return;
      case 'round.evaluate':
        await this.guarded(ws, msg, 'evaluation', () => this.releases.evaluate(ws, msg, vector!));
        return;
      case 'sum.open':
        await this.guarded(ws, msg, 'evaluation', () => {
          this.releases.openEvaluation(ws, msg);
          return Promise.resolve();
        });
        return;
      case 'secagg.advertisements':
      case 'secagg.deliver':
      case 'secagg.consistency':
      case 'secagg.unmask':
        if (msg.sum === 'update') await this.onSecure(ws, msg);
        else await this.releases.step({ ...msg, sum: msg.sum });
        return;
      case 'ledger.slot':
      case 'ledger.held':
        return; // handled as they arrive, never queued
      case 'round.end':
        if (this.secure?.round === msg.round && this.secure.runId === msg.runId) {
          this.secure.client.destroy();
          this.secure = null;
        }
        this.releases.endRound(msg.runId, msg.round);
        this.budget.dropRound(msg.runId, msg.round);
        this.activity = 'waiting for a round';
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
    announced: Omit<RoundOffer, 'tls'>,
  ): void {
    const offer: RoundOffer = { ...announced, tls: this.tls };
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

  private async train(ws: WebSocket, msg: TrainMsg, global: Float32Array): Promise<void> {
    if (this.lastSent && this.lastSent.runId === msg.runId && this.lastSent.round === msg.round) {
      // Resumed after a reconnect: the update was computed already; send it again.
      if (ws.readyState === WebSocket.OPEN) ws.send(this.lastSent.frame, { binary: true });
      return;
    }
    let spec: ModelSpec;
    let mechanism: MechanismParams | null = null;
    /** The contribution recorded before a secure sum without DP takes the update. */
    let once: string | null = null;
    try {
      assertModelHash(global, msg.modelHash);
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
        this.budget.check(mechanism, msg.privacy.epsilonLimit, 'this round');
      }
      once = msg.secureAggregation
        ? this.budget.contributionKey(`update/${msg.runId}/${msg.round}`, msg.privacy)
        : null;
      if (msg.secureAggregation) {
        try {
          this.startSecure(ws, msg);
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
    this.setState({ state: 'training', round: msg.round });
    try {
      const { train } = this.datasets(msg.standardization);
      const rows = this.declaredTrainRows();
      const trained = await trainLocalUpdate({
        model: this.modelFor(spec),
        spec,
        train,
        global,
        msg,
        mechanism,
        progress: this.progress,
      });
      const loss = trained.loss;
      // The weight it claims: its records, clamped to the cap the round announced (a claim above
      // it would be refused), or 1 when sites weigh equally.
      const weighting = msg.weighting ?? { mode: 'records' as const, cap: Infinity };
      const claimed = Math.min(rows, weighting.cap);
      const info = msg.secureAggregation;
      const params = info ? (info.params as unknown as SecAggParams) : null;
      const live = (): boolean => !this.stopped && ws === this.ws;
      const pipeline = updatePipeline({
        privacy: msg.privacy,
        secure: params,
        transforms: this.opts.transforms ?? [],
        contribution: once,
      });
      const prepared = await runMods(
        pipeline.prepare,
        {
          federationId: this.opts.federationId,
          runId: msg.runId,
          round: msg.round,
          update: trained.update,
          numExamples: rows,
          // Under secure aggregation its weight (declared records over the public normaliser)
          // travels inside the masked vector.
          weight:
            !info || msg.privacy?.level === 'site' || weighting.mode === 'equal'
              ? 1
              : Math.min(1, claimed / info.weightNormalizer),
          privacy: msg.privacy,
          secure: params,
          mechanism,
        },
        { live },
      );
      if (!prepared.completed || this.stopped || ws !== this.ws) return;
      const update = prepared.draft.update;
      const report: LocalRoundResult = {
        round: msg.round,
        globalWeights: global,
        localWeights: trained.local,
        update,
        numExamples: rows,
        trainLoss: loss,
      };
      if (this.secure && this.secure.round === msg.round && this.secure.runId === msg.runId) {
        // Under secure aggregation the update waits for the key shares; it leaves masked.
        this.secure.pending = { report, draft: prepared.draft, release: pipeline.release };
        this.log(
          `round ${msg.round}: trained on ${train.numRows} rows, loss ${loss.toFixed(4)}; waiting for key shares`,
        );
        return;
      }
      // The release is signed and recorded in the site's own ledger before the update leaves.
      const released = await runMods(pipeline.release, prepared.draft, {
        receipts: { sign: (ref, m) => this.signUpdate(ws, ref, m) },
        live,
      });
      const receipt = released.draft.receipt;
      if (!released.completed || this.stopped || ws !== this.ws) return;
      // In the clear, as its policy allows: its weight (the declared record count) except at site
      // level, where every site weighs 1; its training loss only without DP (it is not noised).
      const frame = encodeFrame(
        {
          v: PROTOCOL_VERSION,
          type: 'round.update',
          id: randomUUID(),
          runId: msg.runId,
          round: msg.round,
          ...(msg.privacy?.level === 'site' ? {} : { numExamples: claimed }),
          ...(msg.privacy ? {} : { trainLoss: loss }),
          ...(receipt ? { receipt } : {}),
        },
        update,
      );
      // A signed release is never sent twice (a resend would need a second receipt).
      this.lastSent = receipt ? null : { runId: msg.runId, round: msg.round, frame };
      this.opts.onUpdate?.(report);
      if (ws.readyState === WebSocket.OPEN) ws.send(frame, { binary: true });
      this.log(
        `round ${msg.round}: trained on ${train.numRows} rows, loss ${loss.toFixed(4)}, update sent`,
      );
      this.activity = `round ${msg.round} (update sent; waiting for the round to end)`;
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
  private startSecure(ws: WebSocket, msg: TrainMsg): void {
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
    this.secure = { client, runId: msg.runId, round: msg.round, info, pending: null };
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
    /** A receipt signed in this step that has not left with its update yet. */
    let receipt: LedgerEntry | undefined;
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
          this.activity = `round ${msg.round} (secure aggregation, before its masked update left)`;
          return;
        case 'secagg.deliver': {
          s.client.receiveShares(msg.shares);
          const pending = s.pending;
          if (!pending)
            throw new Error('key shares arrived but this site has no update for the round');
          if (this.vanishAt('mask')) return;
          const mask = (): MaskWorkerPool => this.maskWorkers();
          const released = await runMods(pending.release, pending.draft, {
            // Signed here, it must reach the aggregator even if a later step fails (see catch).
            receipts: {
              sign: async (r, m) => (receipt = await this.signUpdate(ws, r, m)),
            },
            contributions: { record: (key) => this.budget.recordContribution(key) },
            masker: {
              maskInput: (input) => s.client.maskInputOn(mask(), input),
              maskWeightedUpdate: (u, w) => s.client.maskWeightedUpdateOn(mask(), u, w),
            },
            live: () => !this.stopped && ws === this.ws,
          });
          if (!released.completed) {
            // Stopped before its receipt: nothing of this release is pending any more.
            if (!receipt) this.budget.drop(sumKey(msg.runId, msg.round, 'update'));
            return;
          }
          const masked = released.draft.masked!;
          // The round may have ended (or a new one begun) while the masks were being added.
          if (this.stopped || ws !== this.ws || this.secure !== s) {
            this.sendReceipt(ws, receipt);
            return;
          }
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
          receipt = undefined; // it travels with the update
          if (ws.readyState === WebSocket.OPEN) ws.send(frame, { binary: true });
          this.log(`round ${msg.round}: masked update sent`);
          this.activity = `round ${msg.round} (masked update sent; helping unmask the sum)`;
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
      this.sendReceipt(ws, receipt);
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

  /**
   * Asks for the ledger's next position, builds and signs the receipt, records it locally (fsync).
   * A position it does not sign at is given back at once (ledger.none); one it signed stays held by
   * the aggregator until the receipt reaches it, with the update or, after a cut, on reconnect.
   */
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
        ws,
        ref,
        settle: (m) => {
          clearTimeout(timer);
          this.slotWaiter = null;
          if (m.type === 'ledger.slot') resolve(m);
          else if (m.type === 'error') reject(new ProtocolError(m.code as ErrorCode, m.message));
        },
        lost: (why) => {
          clearTimeout(timer);
          this.slotWaiter = null;
          reject(new ProtocolError(ErrorCode.TIMEOUT, why));
        },
      };
      if (ws.readyState === WebSocket.OPEN) {
        ws.send(
          JSON.stringify({ v: PROTOCOL_VERSION, id: requestId, type: 'ledger.reserve', ...ref }),
        );
      }
    });
    const signed = (async () => {
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
    })();
    this.signing = signed;
    try {
      return await signed;
    } catch (e) {
      // Nothing was recorded at this position (a failed write leaves no entry in memory either).
      if (!this.budget.entries().some((x) => x.seq === slot.seq && x.siteId === this.siteId)) {
        this.send(ws, { type: 'ledger.none', seq: slot.seq });
      }
      throw e;
    }
  }

  /**
   * The aggregator says this site holds ledger position `seq` (after a cut or a restart of either
   * side): once any receipt being signed is recorded, the site re-sends its receipt for it, or says
   * it signed none. A dishonest aggregator learns nothing from this: a receipt is made for it.
   */
  private async answerHeld(
    ws: WebSocket,
    msg: MessageOf<ServerMessage, 'ledger.held'>,
  ): Promise<void> {
    await this.signing.catch(() => undefined);
    if (ws !== this.ws) return;
    const mine = this.budget
      .entries()
      .find(
        (e) =>
          e.federationId === this.opts.federationId &&
          e.siteId === this.siteId &&
          e.seq === msg.seq,
      );
    if (mine) {
      this.send(ws, { type: 'ledger.receipt', receipt: mine });
      this.log(
        `re-sent the receipt for ledger position ${msg.seq} (round ${msg.round}, ${msg.sum})`,
      );
    } else {
      this.send(ws, { type: 'ledger.none', seq: msg.seq });
      this.log(
        `signed nothing at ledger position ${msg.seq} (round ${msg.round}); told the aggregator`,
      );
    }
  }

  /** Sends a receipt that the message meant to carry it will not (the round moved on, a step failed). */
  private sendReceipt(ws: WebSocket, receipt: LedgerEntry | undefined): void {
    if (receipt && ws === this.ws) this.send(ws, { type: 'ledger.receipt', receipt });
  }

  /**
   * The model and held-out rows a round's new model is evaluated with; refused for a round this site
   * did not train in, or when it holds no rows out.
   */
  private evaluationTarget(msg: { runId: string; round: number }): {
    model: tf.LayersModel;
    spec: ModelSpec;
    rows: Dataset;
  } {
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
    return { ...this.model, rows };
  }
}
