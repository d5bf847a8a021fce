import { randomUUID } from 'node:crypto';
import WebSocket from 'ws';
import {
  encodeFrame,
  encodeFrameInPlace,
  FRAME_HEADER_ROOM,
  fromBase64,
  PROTOCOL_VERSION,
  type MessageOf,
  type RoundSecAgg,
  type ServerMessage,
} from '@confide/protocol';
import { MaskWorkerPool, SecAggClient, type SecAggParams } from '@confide/secure-aggregation';
import type { LedgerEntry, MechanismParams } from '@confide/privacy-ledger';
import { runMods, sumKey, type Mod, type SiteUpdateDraft } from '@confide/site-runtime';
import type { LocalRoundResult } from './node-types';
import { codeOf, describe } from './refusal';
import type { UpdateHost } from './site-updates';

type TrainMsg = MessageOf<ServerMessage, 'round.train'>;
type SecureStep = MessageOf<
  ServerMessage,
  'secagg.advertisements' | 'secagg.deliver' | 'secagg.consistency' | 'secagg.unmask'
>;

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

/** What SecureUpdates needs from the node around it. */
export type SecureHost = Pick<
  UpdateHost,
  | 'opts'
  | 'policy'
  | 'budget'
  | 'slots'
  | 'log'
  | 'siteId'
  | 'live'
  | 'send'
  | 'refuse'
  | 'setActivity'
  | 'vanishAt'
> & {
  /** Signs the update's receipt (see SiteUpdates). */
  signUpdate(
    ws: WebSocket,
    ref: { runId: string; round: number },
    mechanism: MechanismParams,
  ): Promise<LedgerEntry>;
};

/**
 * A site's update under secure aggregation: its round keys advertised as training starts, key shares
 * sent while it trains (its masks expanding meanwhile), then, once the neighbours' shares are in,
 * the release mods and the masked update, and its part in unmasking the sum.
 */
export class SecureUpdates {
  /** This round's secure-aggregation client and the trained update waiting for its key shares. */
  private secure: SecureRound | null = null;

  /**
   * The worker thread that adds this site's masks (started on the first secure round): masking a
   * large model takes seconds, during which the event loop keeps answering the aggregator's pings,
   * and the keystream's buffers stay off this thread's heap.
   */
  private maskPool: MaskWorkerPool | null = null;

  constructor(private readonly h: SecureHost) {}

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

  /**
   * Holds the trained update for the key shares; false when `msg` is not this site's current secure
   * round.
   */
  hold(
    msg: { runId: string; round: number },
    pending: NonNullable<SecureRound['pending']>,
  ): boolean {
    if (!this.secure || this.secure.round !== msg.round || this.secure.runId !== msg.runId) {
      return false;
    }
    this.secure.pending = pending;
    return true;
  }

  /** Creates this round's secure-aggregation client and advertises its signed keys at once. */
  start(ws: WebSocket, msg: TrainMsg): void {
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
      receipts: { sign: async (r, m) => (signed.receipt = await this.h.signUpdate(ws, r, m)) },
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
