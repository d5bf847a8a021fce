import { randomUUID } from 'node:crypto';
import WebSocket from 'ws';
import { parameterCount, parseModelSpec, type Dataset, type ModelSpec } from '@confide/ml';
import {
  encodeFrame,
  ErrorCode,
  PROTOCOL_VERSION,
  type MessageOf,
  type ServerMessage,
} from '@confide/protocol';
import type { SecAggParams } from '@confide/secure-aggregation';
import type { LedgerEntry, MechanismParams } from '@confide/privacy-ledger';
import {
  runMods,
  sumKey,
  updateMechanism,
  updatePipeline,
  type Admission,
  type SiteBudget,
} from '@confide/site-runtime';
import { secAggOffer } from './data-releases';
import type { LedgerSlots } from './ledger-slots';
import { trainLocalUpdate } from './local-update';
import type { ClientNodeOptions, LocalRoundResult, NodeState } from './node-types';
import type { SitePolicy } from './policy';
import type { Progress } from './progress';
import { assertModelHash, codeOf, Refused, type Stage } from './refusal';
import type { SiteModel } from './site-model';
import { SecureUpdates } from './secure-update';

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
  /** This round's secure-aggregation part, when it has one. */
  private readonly secure: SecureUpdates;

  constructor(private readonly h: UpdateHost) {
    this.secure = new SecureUpdates({
      ...h,
      signUpdate: (ws, ref, mechanism) => this.signUpdate(ws, ref, mechanism),
    });
  }

  /** See SecureUpdates.answersAtOnce. */
  answersAtOnce(msg: ServerMessage): msg is MessageOf<ServerMessage, 'secagg.advertisements'> {
    return this.secure.answersAtOnce(msg);
  }

  /** One secure-aggregation step of this site's update. */
  step(ws: WebSocket, msg: SecureStep): Promise<void> {
    return this.secure.step(ws, msg);
  }

  /** A round ended: its secure-aggregation secrets are wiped. */
  endRound(runId: string, round: number): void {
    this.secure.endRound(runId, round);
  }

  /** The node stops or lost its connection: this round's secrets are wiped, the mask worker ends. */
  destroy(): void {
    this.secure.destroy();
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
        this.secure.start(ws, msg);
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
    if (this.secure.hold(msg, { report, draft: prepared.draft, release: pipeline.release })) {
      // Under secure aggregation the update waits for the key shares; it leaves masked.
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
}
