import { randomUUID } from 'node:crypto';
import WebSocket from 'ws';
import { parameterCount, parseModelSpec, type Dataset, type ModelSpec } from '@confide/ml';
import {
  encodeFrame,
  encodeFrameInPlace,
  ErrorCode,
  FRAME_HEADER_ROOM,
  fromBase64,
  PROTOCOL_VERSION,
  type MessageOf,
  type RoundSecAgg,
  type ServerMessage,
} from '@confide/protocol';
import { MaskWorkerPool, SecAggClient, type SecAggParams } from '@confide/secure-aggregation';
import type { LedgerEntry, MechanismParams } from '@confide/privacy-ledger';
import {
  runMods,
  sumKey,
  updateMechanism,
  updatePipeline,
  type Admission,
  type Mod,
  type SiteBudget,
  type SiteUpdateDraft,
} from '@confide/site-runtime';
import { secAggOffer } from './data-releases';
import type { LedgerSlots } from './ledger-slots';
import { trainLocalUpdate } from './local-update';
import type { ClientNodeOptions, LocalRoundResult, NodeState } from './node-types';
import type { SitePolicy } from './policy';
import type { Progress } from './progress';
import { assertModelHash, codeOf, describe, Refused, type Stage } from './refusal';
import type { SiteModel } from './site-model';

type TrainMsg = MessageOf<ServerMessage, 'round.train'>;
type SecureStep = MessageOf<
  ServerMessage,
  'secagg.advertisements' | 'secagg.deliver' | 'secagg.consistency' | 'secagg.unmask'
>;

/** What a training round's admission settled: the model, the release and its contribution key. */
interface Admitted {
  spec: ModelSpec;
  /** The release as the site accounts it; null without DP. */
  mechanism: MechanismParams | null;
  /** The contribution recorded before a secure sum without DP takes the update. */
  contribution: string | null;
}

/** A secure round this site takes part in. */
interface SecureRound {
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
}

/** What SiteUpdates needs from the node around it. */
export interface UpdateHost {
  readonly opts: ClientNodeOptions;
  readonly policy: SitePolicy;
  readonly budget: SiteBudget;
  readonly admission: Admission;
  readonly model: SiteModel;
  readonly slots: LedgerSlots;
  readonly progress: Progress;
  readonly log: (line: string) => void;
  siteId(): string;
  /** Whether `ws` is still the node's connection and the node has not stopped. */
  live(ws: WebSocket): boolean;
  /** The rows this site trains on. */
  trainRows(): Dataset;
  /** The record count this site reveals (weight, receipts): exact or a lower bound, per its policy. */
  declaredTrainRows(): number;
  send(ws: WebSocket, msg: Record<string, unknown>): void;
  refuse(
    ws: WebSocket,
    msg: { runId: string; round: number },
    stage: Stage,
    code: string,
    reason: string,
  ): void;
  setState(s: NodeState): void;
  /** What the node is doing, for the line it prints when a signal stops it. */
  setActivity(activity: string): void;
  /** Test and demo hook: vanish instead of performing `stage` (true when it did). */
  vanishAt(stage: 'share' | 'mask' | 'unmask'): boolean;
}

/**
 * A site's update in each round: admitted by its own checks, trained locally, passed through the
 * site-runtime mods (clip, noise, transforms; then contribution, receipt, quantize, discrete noise
 * and mask) and sent, in the clear or into the round's secure sum.
 */
export class SiteUpdates {
  /** The round this node last trained; a resent train message for it is answered from memory. */
  private lastSent: { runId: string; round: number; frame: Buffer } | null = null;
  /** This round's secure-aggregation client and the trained update waiting for its key shares. */
  private secure: SecureRound | null = null;

  /**
   * The worker thread that adds this site's masks (started on the first secure round): masking a
   * large model takes seconds, during which the event loop keeps answering the aggregator's pings,
   * and the keystream's buffers stay off this thread's heap.
   */
  private maskPool: MaskWorkerPool | null = null;

  constructor(private readonly h: UpdateHost) {}

  private maskWorkers(): MaskWorkerPool {
    this.maskPool ??= new MaskWorkerPool(1);
    return this.maskPool;
  }

  /**
   * Whether a secure step is this site's current round's key advertisements, answered at once even
   * while it trains: sharing keys does not need the update, and the masks then expand on the mask
   * worker during training instead of after it.
   */
  answersAtOnce(msg: ServerMessage): msg is MessageOf<ServerMessage, 'secagg.advertisements'> {
    const s = this.secure;
    return (
      msg.type === 'secagg.advertisements' &&
      msg.sum === 'update' &&
      s?.runId === msg.runId &&
      s.round === msg.round &&
      s.client.state === 'advertised'
    );
  }

  /** A round ended: its secure-aggregation secrets are wiped. */
  endRound(runId: string, round: number): void {
    if (this.secure?.round === round && this.secure.runId === runId) {
      this.secure.client.destroy();
      this.secure = null;
    }
  }

  /** The node stops or lost its connection: this round's secrets are wiped, the mask worker ends. */
  destroy(): void {
    void this.maskPool?.close();
    this.maskPool = null;
    this.secure?.client.destroy();
    this.secure = null;
  }

  /** Trains this site's update for a round.train and sends it, or holds it for the key shares. */
  async train(ws: WebSocket, msg: TrainMsg, global: Float32Array): Promise<void> {
    if (this.lastSent && this.lastSent.runId === msg.runId && this.lastSent.round === msg.round) {
      // Resumed after a reconnect: the update was computed already; send it again.
      if (ws.readyState === WebSocket.OPEN) ws.send(this.lastSent.frame, { binary: true });
      return;
    }
    let admitted: Admitted;
    try {
      admitted = this.admitTraining(ws, msg, global);
    } catch (e) {
      this.h.refuse(ws, msg, 'training', codeOf(e), (e as Error).message);
      return;
    }
    this.h.admission.trained(msg.runId, msg.round);
    this.h.setState({ state: 'training', round: msg.round });
    try {
      await this.trainAndRelease(ws, msg, global, admitted);
    } catch (e) {
      this.h.progress.done();
      this.h.budget.drop(sumKey(msg.runId, msg.round, 'update'));
      this.h.refuse(ws, msg, 'training', codeOf(e), (e as Error).message);
    }
  }

  /**
   * The site's checks of a training round before it touches its data: the signed model, its policy,
   * its schema, its own budget; then its secure-aggregation keys go out and the release is held.
   */
  private admitTraining(ws: WebSocket, msg: TrainMsg, global: Float32Array): Admitted {
    assertModelHash(global, msg.modelHash);
    let spec: ModelSpec;
    try {
      spec = parseModelSpec(msg.modelSpec);
    } catch (e) {
      throw new Refused(
        ErrorCode.SCHEMA_MISMATCH,
        `the federation's model spec is invalid: ${(e as Error).message}`,
      );
    }
    this.h.admission.admit(msg, {
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
    if (spec.inputDim !== this.h.trainRows().numFeatures) {
      throw new Refused(
        ErrorCode.SCHEMA_MISMATCH,
        `the model expects ${spec.inputDim} features, this site's data has ${this.h.trainRows().numFeatures}`,
      );
    }
    if (msg.privacy?.level === 'record' && (msg.privacy.siteSamplingRate ?? 1) !== 1) {
      throw new Refused(
        ErrorCode.POLICY_SAMPLING,
        'site self-sampling is accounted at site level only; a record-level round must take every site',
      );
    }
    // The site's own veto: its accountant, its ledger, its limit, whatever the aggregator says.
    let mechanism: MechanismParams | null = null;
    if (msg.privacy) {
      mechanism = updateMechanism(msg, this.h.declaredTrainRows());
      this.h.budget.check(mechanism, msg.privacy.epsilonLimit, 'this round');
    }
    const contribution = msg.secureAggregation
      ? this.h.budget.contributionKey(`update/${msg.runId}/${msg.round}`, msg.privacy)
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
    if (mechanism) this.h.budget.hold(sumKey(msg.runId, msg.round, 'update'), mechanism);
    return { spec, mechanism, contribution };
  }

  /**
   * Trains, runs the prepare mods, and then either holds the update for the key shares (secure
   * aggregation) or runs the release mods and sends it in the clear.
   */
  private async trainAndRelease(
    ws: WebSocket,
    msg: TrainMsg,
    global: Float32Array,
    { spec, mechanism, contribution }: Admitted,
  ): Promise<void> {
    const { train } = this.h.model.datasets(msg.standardization);
    const rows = this.h.declaredTrainRows();
    const trained = await trainLocalUpdate({
      model: this.h.model.modelFor(spec),
      spec,
      train,
      global,
      msg,
      mechanism,
      progress: this.h.progress,
    });
    const loss = trained.loss;
    // The weight it claims: its records, clamped to the cap the round announced (a claim above
    // it would be refused), or 1 when sites weigh equally.
    const weighting = msg.weighting ?? { mode: 'records' as const, cap: Infinity };
    const claimed = Math.min(rows, weighting.cap);
    const info = msg.secureAggregation;
    const params = info ? (info.params as unknown as SecAggParams) : null;
    const live = (): boolean => this.h.live(ws);
    const pipeline = updatePipeline({
      privacy: msg.privacy,
      secure: params,
      transforms: this.h.opts.transforms ?? [],
      contribution,
    });
    const prepared = await runMods(
      pipeline.prepare,
      {
        federationId: this.h.opts.federationId,
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
    if (!prepared.completed || !this.h.live(ws)) return;
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
      this.h.log(
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
    if (!released.completed || !this.h.live(ws)) return;
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
    this.h.opts.onUpdate?.(report);
    if (ws.readyState === WebSocket.OPEN) ws.send(frame, { binary: true });
    this.h.log(
      `round ${msg.round}: trained on ${train.numRows} rows, loss ${loss.toFixed(4)}, update sent`,
    );
    this.h.setActivity(`round ${msg.round} (update sent; waiting for the round to end)`);
  }

  /** Signs the update's receipt; the admitted release is no longer pending once signed or refused. */
  private async signUpdate(
    ws: WebSocket,
    ref: { runId: string; round: number },
    mechanism: MechanismParams,
  ): Promise<LedgerEntry> {
    try {
      return await this.h.slots.signRelease(ws, { ...ref, sum: 'update' }, mechanism);
    } finally {
      this.h.budget.drop(sumKey(ref.runId, ref.round, 'update'));
    }
  }

  /** Creates this round's secure-aggregation client and advertises its signed keys at once. */
  private startSecure(ws: WebSocket, msg: TrainMsg): void {
    const info = msg.secureAggregation!;
    this.secure?.client.destroy();
    const client = new SecAggClient({
      siteId: this.h.siteId(),
      identitySecretKey: fromBase64(this.h.opts.identity.secretKey, 64),
      roster: new Map(info.roster.map((r) => [r.siteId, fromBase64(r.publicKey, 32)])),
      runId: msg.runId,
      round: msg.round,
      modelHash: msg.modelHash,
      params: info.params as unknown as SecAggParams,
      vectorLength: info.vectorLength,
      minSurvivors: this.h.policy.minSitesPerSum,
    });
    this.secure = { client, runId: msg.runId, round: msg.round, info, pending: null };
    this.h.send(ws, {
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
  async step(ws: WebSocket, msg: SecureStep): Promise<void> {
    const s = this.secure;
    if (!s || s.round !== msg.round || s.runId !== msg.runId) {
      this.h.log(`ignoring ${msg.type} for a round this site is not in`);
      return;
    }
    const ref = { runId: msg.runId, round: msg.round, sum: 'update' };
    /** A receipt signed in this step that has not left with its update yet. */
    const signed: { receipt?: LedgerEntry } = {};
    try {
      switch (msg.type) {
        case 'secagg.advertisements':
          if (this.h.vanishAt('share')) return;
          this.h.send(ws, {
            type: 'secagg.shares',
            ...ref,
            shares: s.client.shareKeys(msg.advertisements),
          });
          // The masks do not depend on the update: they expand on the mask worker while the shares
          // go round (the update is added when they come back), with room before them to frame the
          // masked update for sending without copying it.
          s.client.precomputeMasksOn(this.maskWorkers(), { reserveBefore: FRAME_HEADER_ROOM });
          this.h.log(`round ${msg.round}: key shares sent; masks expanding`);
          this.h.setActivity(
            `round ${msg.round} (secure aggregation, before its masked update left)`,
          );
          return;
        case 'secagg.deliver':
          s.client.receiveShares(msg.shares);
          await this.sendMasked(ws, s, msg, signed);
          return;
        case 'secagg.consistency':
          this.h.send(ws, {
            type: 'secagg.signature',
            ...ref,
            signature: s.client.confirmSurvivors(msg.request),
          });
          return;
        case 'secagg.unmask':
          if (this.h.vanishAt('unmask')) return;
          this.h.send(ws, {
            type: 'secagg.unmasked',
            ...ref,
            response: s.client.unmask(msg.request),
          });
          s.client.destroy();
          this.secure = null;
          return;
      }
    } catch (e) {
      this.h.slots.sendReceipt(ws, signed.receipt);
      // The round learns at once that this site is out of it (rather than waiting for its deadline).
      s.client.abort();
      s.pending = null;
      this.h.budget.drop(sumKey(msg.runId, msg.round, 'update'));
      this.h.refuse(
        ws,
        msg,
        'training',
        codeOf(e),
        `secure aggregation step ${msg.type} refused: ${describe(e)}`,
      );
    }
  }

  /**
   * Once the neighbours' key shares are in: the release mods (contribution record, receipt, then
   * quantize, discrete noise and mask), then the masked update leaves with its receipt. A receipt
   * signed here is kept in `signed` until it leaves, so a failure after it still delivers it.
   */
  private async sendMasked(
    ws: WebSocket,
    s: SecureRound,
    msg: MessageOf<ServerMessage, 'secagg.deliver'>,
    signed: { receipt?: LedgerEntry },
  ): Promise<void> {
    const pending = s.pending;
    if (!pending) throw new Error('key shares arrived but this site has no update for the round');
    if (this.h.vanishAt('mask')) return;
    const mask = (): MaskWorkerPool => this.maskWorkers();
    const released = await runMods(pending.release, pending.draft, {
      receipts: { sign: async (r, m) => (signed.receipt = await this.signUpdate(ws, r, m)) },
      contributions: { record: (key) => this.h.budget.recordContribution(key) },
      masker: {
        maskInput: (input) => s.client.maskInputOn(mask(), input),
        maskWeightedUpdate: (u, w) => s.client.maskWeightedUpdateOn(mask(), u, w),
      },
      live: () => this.h.live(ws),
    });
    if (!released.completed) {
      // Stopped before its receipt: nothing of this release is pending any more.
      if (!signed.receipt) this.h.budget.drop(sumKey(msg.runId, msg.round, 'update'));
      return;
    }
    const masked = released.draft.masked!;
    // The round may have ended (or a new one begun) while the masks were being added.
    if (!this.h.live(ws) || this.secure !== s) {
      this.h.slots.sendReceipt(ws, signed.receipt);
      return;
    }
    // No record count and no training loss in the clear: they would be this site's alone.
    const receipt = signed.receipt;
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
    this.h.opts.onUpdate?.(pending.report);
    s.pending = null;
    signed.receipt = undefined; // it travels with the update
    if (ws.readyState === WebSocket.OPEN) ws.send(frame, { binary: true });
    this.h.log(`round ${msg.round}: masked update sent`);
    this.h.setActivity(`round ${msg.round} (masked update sent; helping unmask the sum)`);
  }
}
