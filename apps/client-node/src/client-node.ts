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
  type Dataset,
  type ModelSpec,
} from '@confide/ml';
import { applyTransforms, subtract, type UpdateTransform } from '@confide/federated';
import {
  assertFinite,
  decodeFrame,
  encodeFrame,
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
  type ServerMessage,
} from '@confide/protocol';
import { silentProgress, type Progress } from './progress';

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
  onRoundEnd?: (m: MessageOf<ServerMessage, 'round.end'>) => void;
  /** Called once logged in (each time after a reconnect too). */
  onWelcome?: (m: MessageOf<ServerMessage, 'welcome'>) => void;
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

  constructor(private readonly opts: ClientNodeOptions) {
    this.url = protocolUrl(opts.server);
    this.log = opts.log ?? (() => undefined);
    this.progress = opts.progress ?? silentProgress;
    this.finished = new Promise((resolve) => (this.finish = resolve));
  }

  /** Connects and serves rounds until `stop()` or a fatal error; resolves with the reason it stopped. */
  run(): Promise<NodeStopped | null> {
    this.connect();
    return this.finished;
  }

  /** Stops for good: closes the connection, no reconnect. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
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
      // Messages are handled strictly in order; training blocks the queue, not the socket.
      this.queue = this.queue
        .then(() => this.onMessage(ws, data, isBinary))
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

  private async onMessage(ws: WebSocket, data: Buffer, isBinary: boolean): Promise<void> {
    if (this.stopped || ws !== this.ws) return;
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
      return;
    }
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
        });
        return;
      }
      case 'welcome':
        this.siteId = msg.siteId;
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
      case 'round.end':
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
    try {
      assertFinite(global, 'global model');
      const { train } = this.datasets(msg.standardization);
      const model = this.modelFor(spec);
      setModelWeights(model, global);
      const result = await trainModel(model, spec, train, {
        epochs: msg.train.epochs,
        batchSize: msg.train.batchSize,
        learningRate: msg.train.learningRate,
        optimizer: msg.train.optimizer,
        shuffleSeed: msg.round,
        onBatchEnd: (b) =>
          this.progress.epoch({
            round: msg.round,
            epoch: b.epoch + 1,
            epochs: msg.train.epochs,
            batch: b.batch + 1,
            batches: b.batchesPerEpoch,
            loss: b.loss,
          }),
      });
      this.progress.done();
      if (this.stopped || ws !== this.ws) return;
      const local = getModelWeights(model);
      const rawUpdate = subtract(local, global);
      const update = await applyTransforms(rawUpdate, this.opts.transforms ?? [], {
        federationId: this.opts.federationId,
        runId: msg.runId,
        round: msg.round,
        numExamples: result.numExamples,
      });
      assertFinite(update, 'update');
      const frame = encodeFrame(
        {
          v: PROTOCOL_VERSION,
          type: 'round.update',
          id: randomUUID(),
          runId: msg.runId,
          round: msg.round,
          numExamples: result.numExamples,
          trainLoss: result.loss,
        },
        update,
      );
      this.lastSent = { runId: msg.runId, round: msg.round, frame };
      this.opts.onUpdate?.({
        round: msg.round,
        globalWeights: global,
        localWeights: local,
        update,
        numExamples: result.numExamples,
        trainLoss: result.loss,
      });
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
