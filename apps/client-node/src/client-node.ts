import { randomUUID } from 'node:crypto';
import WebSocket from 'ws';
import type * as tf from '@tensorflow/tfjs';
import {
  buildModel,
  evaluateModel,
  featureStatsPartial,
  getModelWeights,
  MlError,
  parseModelSpec,
  setModelWeights,
  standardize,
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
  FRAME_HEADER_ROOM,
  ErrorCode,
  MAX_CONTROL_BYTES,
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
  fromBase64,
} from '@confide/protocol';
import { silentProgress, type Progress } from './progress';
import {
  addGaussianNoise,
  clipL2,
  distributedNoiseShare,
  sampleDiscreteGaussian,
} from '@confide/differential-privacy';
import {
  MaskWorkerPool,
  quantizeWeighted,
  SecAggClient,
  type SecAggParams,
} from '@confide/secure-aggregation';
import {
  confideAccountant,
  createReceipt,
  projectNextRound,
  recordLevelRelease,
  signReceipt,
  siteLevelRelease,
  type LedgerEntry,
  type MechanismParams,
} from '@confide/privacy-ledger';

type TrainMsg = MessageOf<ServerMessage, 'round.train'>;
type EvaluateMsg = MessageOf<ServerMessage, 'round.evaluate'>;

/** What one local round produced; handed to `onUpdate` observers (tests, the demo). */
export interface LocalRoundResult {
  round: number;
  globalWeights: Float32Array;
  localWeights: Float32Array;
  update: Float32Array;
  numExamples: number;
  trainLoss: number;
}

/** Settings of a client node. */
export interface ClientNodeOptions {
  /** ws://host:port or http://host:port (the /v1/fl path is added when missing). */
  server: string;
  federationId: string;
  identity: IdentityKeyPair;
  /** The site's training data, raw (standardised with the federation's agreed statistics). */
  data: Dataset;
  /** Held-out data for evaluation; the training data when absent. */
  evalData?: Dataset;
  /** Client-side update transforms (clipping, noise, masking), applied in order. */
  transforms?: UpdateTransform[];
  log?: (line: string) => void;
  progress?: Progress;
  /** Reconnect after a lost connection (default true). */
  reconnect?: boolean;
  /** First reconnect delay in ms, doubled up to 30 s. */
  reconnectDelayMs?: number;
  onUpdate?: (r: LocalRoundResult) => void;
  /** The site's own epsilon limit; the federation's announced limit when absent. */
  epsilonLimit?: number;
  /** Test and demo hook: vanish at this secure-aggregation stage (before sharing keys, before the masked input, before unmasking). */
  dropAt?: 'share' | 'mask' | 'unmask';
  /** Where the site's signed receipts persist (a file beside its key); memory only when absent. */
  ledgerStore?: LocalLedgerStore;
  onRoundEnd?: (m: MessageOf<ServerMessage, 'round.end'>) => void;
  /** Called once logged in (each time after a reconnect too). */
  onWelcome?: (m: MessageOf<ServerMessage, 'welcome'>) => void;
}

/** Durable storage of a site's local ledger. */
export interface LocalLedgerStore {
  load(): Promise<LedgerEntry[]>;
  /** Must be durable (fsync) before it resolves: the update is sent only after. */
  append(entry: LedgerEntry): Promise<void>;
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
 * A site's runtime: logs in with its Ed25519 key, answers the aggregator's rounds by training locally,
 * and reconnects after a lost connection. Raw data never leaves this object; only updates and metrics do.
 */
export class ClientNode {
  private ws: WebSocket | null = null;
  private stopped = false;
  private maskPool: MaskWorkerPool | null = null;
  private connectedOnce = false;
  private attempt = 0;
  private queue: Promise<void> = Promise.resolve();
  private model: { spec: ModelSpec; model: tf.LayersModel } | null = null;
  private standardized: { key: string; train: Dataset; eval: Dataset } | null = null;
  private finish!: (err: NodeStopped | null) => void;
  private readonly finished: Promise<NodeStopped | null>;
  private readonly url: string;
  private readonly log: (line: string) => void;
  private readonly progress: Progress;
  /** The round this node last trained; a resent train message for it is answered from memory. */
  private lastSent: { runId: string; round: number; frame: Buffer } | null = null;
  siteId: string | null = null;
  siteName: string | null = null;
  /** This site's own signed releases (its local ledger). */
  private readonly localLedger: LedgerEntry[] = [];
  private slotWaiter: { requestId: string; settle: (m: ServerMessage) => void } | null = null;
  /** This round's secure-aggregation client and the trained update waiting for its key shares. */
  private secure: {
    client: SecAggClient;
    runId: string;
    round: number;
    info: RoundSecAgg;
    pending: {
      update: Float32Array;
      numExamples: number;
      trainLoss: number;
      mechanism: MechanismParams | null;
      train: TrainMsg;
      report: LocalRoundResult;
    } | null;
  } | null = null;

  constructor(private readonly opts: ClientNodeOptions) {
    this.url = protocolUrl(opts.server);
    this.log = opts.log ?? (() => undefined);
    this.progress = opts.progress ?? silentProgress;
    this.finished = new Promise((resolve) => (this.finish = resolve));
  }

  /** Connects and serves rounds until `stop()` or a fatal error; resolves with the reason it stopped. */
  run(): Promise<NodeStopped | null> {
    void (async () => {
      try {
        if (this.opts.ledgerStore) this.localLedger.push(...(await this.opts.ledgerStore.load()));
      } catch (e) {
        this.fatal('STOPPED', `cannot read the local privacy ledger: ${(e as Error).message}`);
        return;
      }
      this.connect();
    })();
    return this.finished;
  }

  /** The site's own ledger entries (copies). */
  ledgerEntries(): LedgerEntry[] {
    return [...this.localLedger];
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
    this.closeMaskWorkers();
    this.ws?.close(1000, 'site stopping');
    this.ws = null;
    this.model?.model.dispose();
    this.model = null;
    this.finish(null);
  }

  /** Drops the connection without telling the aggregator, as a crash or network cut would (tests, demo). */
  dropConnection(): void {
    this.ws?.terminate();
  }

  private fatal(code: ErrorCode | 'STOPPED', message: string): void {
    if (this.stopped) return;
    this.stopped = true;
    this.closeMaskWorkers();
    this.ws?.close(1000);
    this.ws = null;
    this.model?.model.dispose();
    this.model = null;
    this.finish(new NodeStopped(code, message));
  }

  private connect(): void {
    if (this.stopped) return;
    const ws = new WebSocket(this.url, {
      perMessageDeflate: false,
      maxPayload: 1024 * 1024 * 1024,
    });
    this.ws = ws;
    ws.on('open', () => {
      this.attempt = 0;
    });
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      const parsed = this.parse(data, isBinary);
      if (!parsed) return;
      // A ledger slot answers a request made from inside a queued handler: deliver it at once.
      if (
        parsed.msg.type === 'ledger.slot' ||
        (parsed.msg.type === 'error' &&
          parsed.msg.refId &&
          this.slotWaiter?.requestId === parsed.msg.refId)
      ) {
        this.slotWaiter?.settle(parsed.msg);
        return;
      }
      // The key advertisements of this site's current secure round are answered at once, even while
      // it trains: sharing keys does not need the update, and the masks then expand on the mask
      // worker during training instead of after it.
      const s = this.secure;
      if (
        parsed.msg.type === 'secagg.advertisements' &&
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

  private parse(
    data: Buffer,
    isBinary: boolean,
  ): { msg: ServerMessage; vector: Float32Array | null } | null {
    let msg: ServerMessage;
    let vector: Float32Array | null = null;
    try {
      if (isBinary) {
        const frame = decodeFrame(data, parameterLimit);
        if (!(frame.vector instanceof Float32Array))
          throw new ProtocolError(ErrorCode.MALFORMED_MESSAGE, 'expected float32');
        msg = parseServerMessage(frame.header);
        vector = frame.vector;
      } else {
        if (data.length > MAX_CONTROL_BYTES) throw new ProtocolError(ErrorCode.FRAME_TOO_LARGE);
        msg = parseServerMessage(parseJsonText(data.toString('utf8')));
      }
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
        const signature = signLogin(
          this.opts.identity,
          msg.serverId,
          msg.nonce,
          this.opts.federationId,
        );
        this.send(ws, {
          type: 'login',
          federationId: this.opts.federationId,
          publicKey: this.opts.identity.publicKey,
          nonce: msg.nonce,
          signature,
          client: 'confide-node/0.1',
          numExamples: this.opts.data.numRows,
        });
        return;
      }
      case 'welcome':
        this.siteId = msg.siteId;
        this.siteName = msg.siteName;
        this.log(`${this.connectedOnce ? 'reconnected' : 'connected'} as site "${msg.siteName}"`);
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
      case 'stats.request': {
        const part = featureStatsPartial(this.opts.data);
        this.send(ws, {
          type: 'stats.report',
          count: part.count,
          sum: part.sum,
          sumSq: part.sumSq,
        });
        return;
      }
      case 'round.train':
        await this.train(ws, msg, vector!);
        return;
      case 'round.evaluate':
        await this.evaluate(ws, msg, vector!);
        return;
      case 'secagg.advertisements':
      case 'secagg.deliver':
      case 'secagg.consistency':
      case 'secagg.unmask':
        await this.onSecure(ws, msg);
        return;
      case 'ledger.slot':
        return; // delivered directly to the waiting release, never queued
      case 'round.end':
        if (this.secure?.round === msg.round) {
          this.secure.client.destroy();
          this.secure = null;
        }
        this.log(
          msg.outcome === 'committed'
            ? `round ${msg.round} committed`
            : `round ${msg.round} aborted: ${msg.reason ?? 'no reason given'}`,
        );
        this.opts.onRoundEnd?.(msg);
        return;
    }
  }

  private modelFor(spec: ModelSpec): tf.LayersModel {
    if (this.model && JSON.stringify(this.model.spec) === JSON.stringify(spec))
      return this.model.model;
    this.model?.model.dispose();
    this.model = { spec, model: buildModel(spec) };
    return this.model.model;
  }

  private datasets(stats: TrainMsg['standardization']): { train: Dataset; eval: Dataset } {
    const key = JSON.stringify(stats);
    if (this.standardized?.key === key) return this.standardized;
    const evalRaw = this.opts.evalData ?? this.opts.data;
    const train = stats ? standardize(this.opts.data, stats) : this.opts.data;
    const evalData = stats ? standardize(evalRaw, stats) : evalRaw;
    this.standardized = { key, train, eval: evalData };
    return this.standardized;
  }

  private decline(ws: WebSocket, msg: TrainMsg, code: ErrorCode, reason: string): void {
    this.log(`declining round ${msg.round}: ${reason}`);
    this.send(ws, { type: 'round.decline', runId: msg.runId, round: msg.round, code, reason });
  }

  private async train(ws: WebSocket, msg: TrainMsg, global: Float32Array): Promise<void> {
    if (this.lastSent && this.lastSent.runId === msg.runId && this.lastSent.round === msg.round) {
      // Resumed after a reconnect: the update was computed already; send it again.
      if (ws.readyState === WebSocket.OPEN) ws.send(this.lastSent.frame, { binary: true });
      return;
    }
    let spec: ModelSpec;
    try {
      spec = parseModelSpec(msg.modelSpec);
    } catch (e) {
      this.decline(
        ws,
        msg,
        ErrorCode.SCHEMA_MISMATCH,
        `the federation's model spec is invalid: ${(e as Error).message}`,
      );
      return;
    }
    if (spec.inputDim !== this.opts.data.numFeatures) {
      this.decline(
        ws,
        msg,
        ErrorCode.SCHEMA_MISMATCH,
        `the model expects ${spec.inputDim} features, this site's data has ${this.opts.data.numFeatures}`,
      );
      return;
    }
    // The site's own veto: its accountant, its ledger, its limit, whatever the aggregator says.
    let mechanism: MechanismParams | null = null;
    if (msg.privacy) {
      mechanism = this.releaseMechanism(msg);
      const limit = this.opts.epsilonLimit ?? msg.privacy.epsilonLimit;
      const projection = projectNextRound(
        this.ownHistory(),
        mechanism,
        msg.privacy.delta,
        limit,
        confideAccountant,
      );
      if (!projection.allowed) {
        this.decline(
          ws,
          msg,
          ErrorCode.BUDGET_EXCEEDED,
          `this round would bring the site's epsilon to ${projection.projectedEpsilon.toFixed(4)}, past its own limit ${limit}`,
        );
        return;
      }
    }
    if (msg.secureAggregation) {
      try {
        this.startSecure(ws, msg);
      } catch (e) {
        this.decline(
          ws,
          msg,
          ErrorCode.SECAGG_REFUSED,
          `cannot take part in secure aggregation: ${(e as Error).message}`,
        );
        return;
      }
    }
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
        // DP-FedAvg: clip the whole update to C, add this site's share of the Gaussian noise so the sum
        // of t honest shares carries standard deviation z*C. Under secure aggregation the share is drawn
        // in the integer domain instead (a discrete Gaussian, after quantization), not here as well.
        const t = msg.privacy.survivorsAssumed ?? 1;
        rawUpdate = clipL2(rawUpdate, msg.privacy.clipNorm).clipped;
        if (!msg.secureAggregation) {
          rawUpdate = addGaussianNoise(
            rawUpdate,
            (msg.privacy.noiseMultiplier * msg.privacy.clipNorm) / Math.sqrt(t),
          );
        }
      }
      const update = await applyTransforms(rawUpdate, this.opts.transforms ?? [], {
        federationId: this.opts.federationId,
        runId: msg.runId,
        round: msg.round,
        numExamples: result.numExamples,
      });
      assertFinite(update, 'update');
      const report: LocalRoundResult = {
        round: msg.round,
        globalWeights: global,
        localWeights: local,
        update,
        numExamples: result.numExamples,
        trainLoss: result.loss,
      };
      if (this.secure && this.secure.round === msg.round && this.secure.runId === msg.runId) {
        // Under secure aggregation the update waits for the key shares; it leaves masked.
        this.secure.pending = {
          update,
          numExamples: result.numExamples,
          trainLoss: result.loss,
          mechanism,
          train: msg,
          report,
        };
        this.log(
          `round ${msg.round}: trained on ${result.numExamples} rows, loss ${result.loss.toFixed(4)}; waiting for key shares`,
        );
        return;
      }
      // The release is signed and recorded in the site's own ledger before the update leaves.
      const receipt = mechanism ? await this.signRelease(ws, msg, mechanism) : undefined;
      if (this.stopped || ws !== this.ws) return;
      const frame = encodeFrame(
        {
          v: PROTOCOL_VERSION,
          type: 'round.update',
          id: randomUUID(),
          runId: msg.runId,
          round: msg.round,
          numExamples: result.numExamples,
          trainLoss: result.loss,
          ...(receipt ? { receipt } : {}),
        },
        update,
      );
      // A signed release is never sent twice (a resend would need a second receipt).
      this.lastSent = receipt ? null : { runId: msg.runId, round: msg.round, frame };
      this.opts.onUpdate?.(report);
      if (ws.readyState === WebSocket.OPEN) ws.send(frame, { binary: true });
      this.log(
        `round ${msg.round}: trained on ${result.numExamples} rows, loss ${result.loss.toFixed(4)}, update sent`,
      );
    } catch (e) {
      this.progress.done();
      const code =
        e instanceof ProtocolError
          ? e.code
          : e instanceof MlError
            ? ErrorCode.SCHEMA_MISMATCH
            : ErrorCode.INTERNAL;
      this.decline(ws, msg, code, (e as Error).message);
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
    });
    this.secure = { client, runId: msg.runId, round: msg.round, info, pending: null };
    this.send(ws, {
      type: 'secagg.advertise',
      runId: msg.runId,
      round: msg.round,
      advertisement: client.advertise(),
    });
  }

  /**
   * The secure-aggregation steps: share keys (as soon as the advertisements come, during training),
   * then after training send the masked update, and unmask.
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
    const ref = { runId: msg.runId, round: msg.round };
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
          const receipt = pending.mechanism
            ? await this.signRelease(ws, pending.train, pending.mechanism)
            : undefined;
          if (this.stopped || ws !== this.ws) return;
          const privacy = pending.train.privacy;
          const weight =
            privacy?.level === 'site' ? 1 : pending.numExamples / s.info.weightNormalizer;
          const params = s.info.params as unknown as SecAggParams;
          let masked: Uint32Array;
          if (privacy?.level === 'site') {
            const quantized = quantizeWeighted(pending.update, Math.min(1, weight), params);
            // Distributed discrete Gaussian: this site's share of the noise, in the integer domain,
            // of the variance the ledger's bound assumes (quantizedDdgMechanism).
            const t = privacy.survivorsAssumed ?? params.threshold;
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
              Math.min(1, weight),
            );
          }
          // The round may have ended (or a new one begun) while the masks were being added.
          if (this.stopped || ws !== this.ws || this.secure !== s) return;
          const header = {
            v: PROTOCOL_VERSION,
            type: 'round.update',
            id: randomUUID(),
            ...ref,
            numExamples: pending.numExamples,
            trainLoss: pending.trainLoss,
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
      this.log(`secure aggregation step ${msg.type} refused: ${(e as Error).message}`);
      s.client.abort();
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
   * The mechanism of this site's release in a DP round. Site level under secure aggregation is the
   * distributed discrete Gaussian this node adds after quantising with the round's scale, over the
   * model's coordinates (the vector minus its weight coordinate), by the t survivors it assumes.
   */
  private releaseMechanism(msg: TrainMsg): MechanismParams {
    const p = msg.privacy!;
    const secure = msg.secureAggregation;
    const params = secure?.params as unknown as SecAggParams | undefined;
    return p.level === 'record'
      ? recordLevelRelease({
          batchSize: msg.train.batchSize,
          epochs: msg.train.epochs,
          numExamples: this.opts.data.numRows,
          noiseMultiplier: p.noiseMultiplier,
          clipNorm: p.clipNorm,
        })
      : siteLevelRelease({
          siteSamplingRate: p.siteSamplingRate ?? 1,
          noiseMultiplier: p.noiseMultiplier,
          clipNorm: p.clipNorm,
          survivorsAssumed: secure ? (p.survivorsAssumed ?? params!.threshold) : p.survivorsAssumed,
          integerNoise:
            secure && params ? { scale: params.scale, dimension: secure.vectorLength - 1 } : null,
        });
  }

  /** This site's earlier releases in this federation, from its own ledger. */
  private ownHistory(): LedgerEntry[] {
    return this.localLedger.filter(
      (e) =>
        e.federationId === this.opts.federationId &&
        (this.siteId === null || e.siteId === this.siteId),
    );
  }

  /** Asks for the ledger's next position, builds and signs the receipt, records it locally. */
  private async signRelease(
    ws: WebSocket,
    msg: TrainMsg,
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
          JSON.stringify({
            v: PROTOCOL_VERSION,
            id: requestId,
            type: 'ledger.reserve',
            runId: msg.runId,
            round: msg.round,
          }),
        );
      }
    });
    const ownLimit = this.opts.epsilonLimit ?? slot.epsilonLimit;
    const body = createReceipt(
      {
        seq: slot.seq,
        federationId: this.opts.federationId,
        siteId: this.siteId!,
        siteName: this.siteName!,
        round: msg.round,
        mechanism,
        delta: slot.delta,
        epsilonLimit: slot.epsilonLimit,
        createdAt: slot.createdAt,
        sitePublicKey: this.opts.identity.publicKey,
        siteHistory: this.ownHistory(),
      },
      confideAccountant,
    );
    if (body.cumulativeEpsilon > ownLimit) {
      throw new ProtocolError(
        ErrorCode.BUDGET_EXCEEDED,
        `this release would bring the site's epsilon to ${body.cumulativeEpsilon.toFixed(4)}, past its own limit ${ownLimit}`,
      );
    }
    const entry = signReceipt(body, slot.prevHash, this.opts.identity.secretKey);
    await this.opts.ledgerStore?.append(entry);
    this.localLedger.push(entry);
    return entry;
  }

  private async evaluate(ws: WebSocket, msg: EvaluateMsg, weights: Float32Array): Promise<void> {
    if (!this.model || !this.standardized) return;
    setModelWeights(this.model.model, weights);
    const m = await evaluateModel(this.model.model, this.model.spec, this.standardized.eval);
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
  }
}
