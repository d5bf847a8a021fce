import { randomInt, randomUUID } from 'node:crypto';
import WebSocket from 'ws';
import {
  ErrorCode,
  keyFingerprint,
  PROTOCOL_VERSION,
  ProtocolError,
  type ServerMessage,
} from '@confide/protocol';
import type { LedgerEntry } from '@confide/privacy-ledger';
import type { Dataset } from '@confide/ml';
import { silentProgress, type Progress } from './progress';
import { DEFAULT_POLICY, type SitePolicy } from './policy';
import { memoryPinStore, parseServerKey, ServerTrust } from './server-trust';
import { isLoopbackHost, socketOptions } from './transport';
import { declaredRows, DEFAULT_EVAL_FRACTION, splitSiteData } from './site-data';
import { memoryContributionStore } from './contributions';
import { Admission, SiteBudget } from '@confide/site-runtime';
import { codeOf, type Stage } from './refusal';
import { DataReleases } from './data-releases';
import { loginAnswer, readServerMessage, reconnectDelay } from './server-messages';
import { LedgerSlots } from './ledger-slots';
import { SiteModel } from './site-model';
import { SiteUpdates } from './site-updates';
import { NodeStopped, protocolUrl, type ClientNodeOptions, type NodeState } from './node-types';

export {
  NodeStopped,
  protocolUrl,
  type ClientNodeOptions,
  type LocalRoundResult,
  type NodeState,
  type Refusal,
} from './node-types';

/**
 * A site's runtime: logs in with its Ed25519 key to an aggregator whose key it pinned, checks every
 * round against its own policy before it touches its data, trains locally, and reconnects after a
 * lost connection. Raw data never leaves this object; updates, statistics and metrics leave only
 * inside secure sums (or in the clear where the site's policy allows it), noised and charged to its
 * own ledger under DP. The Node glue around @confide/site-runtime: it owns the connection and the
 * message queue, and composes the parts (SiteUpdates, LedgerSlots, DataReleases) that run the mods.
 */
export class ClientNode {
  private ws: WebSocket | null = null;
  private stopped = false;
  private connectedOnce = false;
  private attempt = 0;
  /** What the node is doing, for the line it prints when a signal stops it. */
  private activity = 'connecting to the aggregator';
  /** The pending reconnect; it keeps the process alive, as a node that waits must be. */
  private reconnectTimer: NodeJS.Timeout | null = null;
  /** Since when this node has had no logged-in connection (null while it has one). */
  private disconnectedSince: number | null = Date.now();
  private queue: Promise<void> = Promise.resolve();
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
  siteId: string | null = null;
  siteName: string | null = null;
  /** What this site has spent and may spend: its local ledger, held releases, contributions. */
  private readonly budget: SiteBudget;
  /** The site's gate in front of its data: freshness, its policy, DP when it keeps a limit. */
  private readonly admission: Admission;
  /** Its model and standardised rows, kept between rounds. */
  private readonly siteModel: SiteModel;
  /** Its ledger positions at the aggregator: receipts signed there, answers for held ones. */
  private readonly slots: LedgerSlots;
  /** Its update in each round: trained, passed through the mods, sent or masked. */
  private readonly updates: SiteUpdates;
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
    this.admission = new Admission({
      federationId: opts.federationId,
      policy: this.policy,
      tls: this.tls,
      delta: () => this.budget.delta(),
      epsilonLimit: opts.epsilonLimit,
    });
    this.siteModel = new SiteModel(this.split);
    this.slots = new LedgerSlots({
      federationId: opts.federationId,
      identity: opts.identity,
      budget: this.budget,
      log: this.log,
      siteId: () => this.siteId,
      siteName: () => this.siteName,
      current: () => this.ws,
      send: (ws, msg) => this.send(ws, msg),
    });
    this.updates = new SiteUpdates({
      opts,
      policy: this.policy,
      budget: this.budget,
      admission: this.admission,
      model: this.siteModel,
      slots: this.slots,
      progress: this.progress,
      log: this.log,
      siteId: () => this.siteId!,
      live: (ws) => !this.stopped && ws === this.ws,
      trainRows: () => this.split.train,
      declaredTrainRows: () => declaredRows(this.split.train.numRows, this.policy.rowCount),
      send: (ws, msg) => this.send(ws, msg),
      refuse: (ws, msg, stage, code, reason) => this.refuse(ws, msg, stage, code, reason),
      setState: (st) => this.setState(st),
      setActivity: (activity) => (this.activity = activity),
      vanishAt: (stage) => this.vanishAt(stage),
    });
    this.releases = new DataReleases({
      budget: this.budget,
      policy: this.policy,
      identity: opts.identity,
      log: this.log,
      siteId: () => this.siteId!,
      trainRows: () => this.split.train,
      evaluationTarget: (msg) =>
        this.siteModel.evaluationTarget(msg, this.admission.trainedIn(msg.runId, msg.round)),
      admit: (msg, offer) => this.admission.admit(msg, offer),
      refuse: (ws, msg, stage, code, reason) => this.refuse(ws, msg, stage, code, reason),
      send: (ws, msg) => this.send(ws, msg),
      signRelease: (ws, ref, mechanism) => this.slots.signRelease(ws, ref, mechanism),
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
    void this.slots.settled().then(() => this.finish(null));
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
    this.releases.endAll();
    this.updates.destroy();
    this.siteModel.dispose();
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
      // Ledger answers and this round's key advertisements are handled as they arrive.
      if (this.slots.route(ws, parsed.msg)) return;
      if (this.updates.answersAtOnce(parsed.msg)) {
        void this.updates.step(ws, parsed.msg);
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
      this.slots.closed(ws);
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
      const delay = reconnectDelay(this.attempt, this.opts);
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

  /** Reads a message the aggregator signed (see readServerMessage); null, logged, otherwise. */
  private parse(
    data: Buffer,
    isBinary: boolean,
  ): { msg: ServerMessage; vector: Float32Array | null } | null {
    try {
      return readServerMessage(data, isBinary, this.trust);
    } catch (e) {
      this.log(`ignoring an invalid message from the aggregator: ${(e as Error).message}`);
      return null;
    }
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
        const login = loginAnswer(msg, this.opts.identity, this.opts.federationId);
        this.clientNonce = login.clientNonce;
        this.send(ws, login.message);
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
        await this.updates.train(ws, msg, vector!);
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
        if (msg.sum === 'update') await this.updates.step(ws, msg);
        else await this.releases.step({ ...msg, sum: msg.sum });
        return;
      case 'ledger.slot':
      case 'ledger.held':
        return; // handled as they arrive, never queued
      case 'round.end':
        this.updates.endRound(msg.runId, msg.round);
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

  /** Test and demo hook: vanish (no goodbye) instead of performing `stage`. */
  private vanishAt(stage: 'share' | 'mask' | 'unmask'): boolean {
    if (this.opts.dropAt !== stage) return false;
    this.log(`vanishing before the ${stage} step (--drop-site-at)`);
    this.ws?.terminate();
    this.stopped = true;
    this.finish(null);
    return true;
  }
}
