import { randomUUID } from 'node:crypto';
import { ErrorCode, PROTOCOL_VERSION, ProtocolError, type SiteMessage } from '@confide/protocol';
import type { ActiveRound } from './active-round';
import type { RoundEvents } from './round-events';
import type { RoundSumsService } from './round-sums.service';
import type { LedgerService } from '../privacy/ledger.service';
import type { SiteRepository } from '../sites/site.repository';
import type { SessionRegistry, SiteSession } from '../fl/session-registry';
import type { AggregatorConfig, Clock } from '../common/tokens';
import { acceptMetrics } from './workflows/evaluation.workflow';
import { acceptStatsReport } from './workflows/feature-statistics.workflow';
import { acceptSecAggStep } from './workflows/secure-training.workflow';
import { acceptUpdate, grantUpdateSlot } from './workflows/update-intake';
import { settleHeldReceipt } from '../privacy/held-receipts';

/** Site messages that name the secure sum of the round they belong to. */
const SUM_STEPS: ReadonlySet<string> = new Set([
  'secagg.advertise',
  'secagg.shares',
  'secagg.signature',
  'secagg.unmasked',
  'ledger.reserve',
]);

/** The phases of a round's secure update sum, in which a site's round keys are in use. */
const UPDATE_SUM_PHASES: ReadonlySet<string> = new Set([
  'advertising',
  'sharing',
  'collecting',
  'consistency',
  'unmasking',
]);

/** What the site-message handling needs from the aggregator around it. */
export interface RoundMessageDeps {
  /** The round running now in a federation, if any. */
  activeRound(federationId: string): ActiveRound | null;
  sums: RoundSumsService;
  live: RoundEvents;
  siteRepo: SiteRepository;
  ledger: LedgerService;
  sessions: SessionRegistry;
  clock: Clock;
  config: AggregatorConfig;
}

/**
 * What a site's messages and connections do to the round running in its federation: each message
 * is checked against the round's phase and the site's state (a bad one is a ProtocolError for its
 * sender alone), then moves the site on and wakes the round loop. The statistics and evaluation sums
 * go to RoundSumsService.
 */
export class RoundMessages {
  constructor(private readonly d: RoundMessageDeps) {}

  /**
   * Handles one validated message from a logged-in site; throws ProtocolError on a bad one. A receipt
   * it carries is appended to the ledger even when the round refuses the message (or is gone): the
   * site signed and recorded it, so its position must not pass to another site.
   */
  async handle(
    session: SiteSession,
    msg: SiteMessage,
    vector: Float32Array | Uint32Array | null,
    bytes: number,
  ): Promise<void> {
    if (msg.type === 'ledger.receipt' || msg.type === 'ledger.none') {
      await settleHeldReceipt(this.d, session, msg);
      return;
    }
    try {
      await this.route(session, msg, vector, bytes);
    } finally {
      if ('receipt' in msg && msg.receipt !== undefined) {
        await settleHeldReceipt(this.d, session, {
          type: 'ledger.receipt',
          receipt: msg.receipt,
        }).catch((e: unknown) =>
          this.d.config.log(
            `the receipt site ${session.siteName} sent with ${msg.type} was refused: ${(e as Error).message}`,
          ),
        );
      }
    }
  }

  private async route(
    session: SiteSession,
    msg: SiteMessage,
    vector: Float32Array | Uint32Array | null,
    bytes: number,
  ): Promise<void> {
    const active = this.d.activeRound(session.federationId);
    if (msg.type === 'login') {
      throw new ProtocolError(ErrorCode.ALREADY_AUTHENTICATED);
    }
    if (msg.type === 'ledger.receipt' || msg.type === 'ledger.none') return; // settled in handle()
    if (!active) {
      throw new ProtocolError(
        ErrorCode.UNEXPECTED_MESSAGE,
        `no round is running; ${msg.type} was not expected`,
      );
    }
    const p = active.participants.get(session.siteId);
    if (!p) {
      throw new ProtocolError(
        ErrorCode.UNEXPECTED_MESSAGE,
        `this site is not a participant of round ${active.number}`,
      );
    }
    if ('round' in msg && msg.round !== active.number) {
      throw new ProtocolError(
        ErrorCode.UNEXPECTED_MESSAGE,
        `message is for round ${msg.round}, the current round is ${active.number}`,
      );
    }
    if ('runId' in msg && msg.runId !== active.runId) {
      const e = new ProtocolError(
        ErrorCode.WRONG_RUN,
        `message is for run ${msg.runId}; round ${active.number} belongs to run ${active.runId}`,
      );
      // A site still owing this round its work is out of it: the round does not wait for it.
      if (p.status === 'selected' || p.status === 'advertised' || p.status === 'shared') {
        active.exclude(session.siteId, e);
      }
      throw e;
    }
    active.bytesReceived += bytes;
    // The statistics and evaluation sums have their own state machine.
    if (
      msg.type === 'secagg.masked' ||
      (SUM_STEPS.has(msg.type) && (msg as { sum?: string }).sum !== 'update') ||
      (msg.type === 'round.decline' && msg.stage !== 'training' && active.sum)
    ) {
      await this.d.sums.handle(active, session, msg, vector);
      this.d.live.round(active);
      active.signal.notify();
      return;
    }
    switch (msg.type) {
      case 'stats.report':
        acceptStatsReport(active, session.siteId, msg);
        break;
      case 'round.update':
        if (!(await acceptUpdate(this.d, active, session, msg, vector))) return;
        break;
      case 'secagg.advertise':
      case 'secagg.shares':
      case 'secagg.signature':
      case 'secagg.unmasked':
        acceptSecAggStep(active, session.siteId, msg);
        break;
      case 'ledger.reserve':
        await grantUpdateSlot(this.d, active, session, msg);
        return;
      case 'round.metrics':
        acceptMetrics(active, session.siteId, msg);
        break;
      case 'round.decline': {
        if (msg.stage === 'evaluation') {
          // In the clear: a site whose policy keeps its metrics to itself says so and is done.
          if (active.phase !== 'evaluating' || p.status !== 'submitted') {
            throw new ProtocolError(ErrorCode.UNEXPECTED_MESSAGE, 'no evaluation to decline now');
          }
          active.evaluationDeclined.add(session.siteId);
          p.detail = `evaluation declined: ${msg.code}: ${msg.reason}`;
          break;
        }
        const detail = `${msg.code}${msg.stage === 'statistics' ? ' (statistics)' : ''}: ${msg.reason}`;
        if (
          p.status === 'submitted' &&
          (active.phase === 'consistency' || active.phase === 'unmasking')
        ) {
          // Its masked input is in the sum, but it will not help unmask it (its policy refused the
          // request): the round stops waiting for it.
          active.refused.add(session.siteId);
          p.detail = detail;
          break;
        }
        if (p.status !== 'selected' && p.status !== 'advertised' && p.status !== 'shared') {
          throw new ProtocolError(ErrorCode.UNEXPECTED_MESSAGE, 'nothing to decline now');
        }
        p.status = 'declined';
        p.detail = detail;
        active.forgetSlot(session.siteId);
        break;
      }
    }
    this.d.live.round(active);
    active.signal.notify();
  }

  /**
   * A site (re)connected: it hears of a ledger position it still holds (it answers with its receipt
   * or "none"), and a participant of the running round gets that round's work again.
   */
  connected(session: SiteSession): void {
    void this.d.ledger
      .heldBy(session.federationId, session.siteId)
      .then((h) => {
        if (h && this.d.sessions.isCurrent(session)) {
          session.sendJson({ v: PROTOCOL_VERSION, type: 'ledger.held', id: randomUUID(), ...h });
        }
      })
      .catch((e: unknown) =>
        this.d.config.log(`cannot read the ledger's held position: ${(e as Error).message}`),
      );
    const active = this.d.activeRound(session.federationId);
    if (!active) return;
    active.disconnectedAt.delete(session.siteId);
    const p = active.participants.get(session.siteId);
    // Resume within the round: a participant that reconnects gets the round's work again. A secure
    // sum it already joined does not resume (its round keys are gone with the old connection): the
    // round stops waiting for it there, rather than until the step's deadline.
    const sumState = active.sum?.sites.get(session.siteId)?.state;
    const offered = !active.sum || sumState === 'offered';
    const joinedUpdateSum =
      active.secagg !== null &&
      UPDATE_SUM_PHASES.has(active.phase) &&
      (p?.status === 'advertised' || p?.status === 'shared' || p?.status === 'submitted');
    if (p && (joinedUpdateSum || (sumState !== undefined && sumState !== 'offered'))) {
      active.stateLost.add(session.siteId);
      const note = 'reconnected mid secure sum; its round keys were gone with the old connection';
      if (!p.detail?.includes(note)) p.detail = p.detail ? `${p.detail}; ${note}` : note;
    }
    // A plain round collects updates in 'collecting'; a secure one takes advertisements (sent as
    // training starts) in 'advertising': until then a reconnecting site can start over.
    const trainingOpen = active.secagg
      ? active.phase === 'advertising'
      : active.phase === 'collecting';
    if (p?.status === 'selected' && trainingOpen && active.trainFrame) {
      session.sendBinary(active.trainFrame);
    } else if (
      p?.status === 'submitted' &&
      active.phase === 'evaluating' &&
      active.evaluateFrame &&
      offered
    ) {
      session.sendBinary(active.evaluateFrame);
    } else if (
      p?.status === 'selected' &&
      active.phase === 'stats' &&
      active.statsRequest &&
      !active.stats.has(session.siteId) &&
      offered
    ) {
      session.sendJson(active.statsRequest);
    }
    active.signal.notify();
  }

  /**
   * A site's connection ended: it keeps its place for the reconnect grace. A ledger position it
   * holds stays held (it may have signed its receipt just before the cut): it answers for it when it
   * reconnects.
   */
  disconnected(session: SiteSession): void {
    const active = this.d.activeRound(session.federationId);
    if (!active) return;
    if (active.participants.has(session.siteId)) {
      active.forgetSlot(session.siteId);
      active.disconnectedAt.set(session.siteId, this.d.clock.now().getTime());
      // Re-check once the grace period has passed.
      setTimeout(() => active.signal.notify(), this.d.config.reconnectGraceMs + 5).unref();
    }
    active.signal.notify();
  }
}
