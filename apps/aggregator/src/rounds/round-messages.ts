import { randomUUID } from 'node:crypto';
import {
  assertLength,
  ErrorCode,
  PROTOCOL_VERSION,
  ProtocolError,
  squaredNorm,
  type SiteMessage,
} from '@confide/protocol';
import { canonicalJson, recordLevelRelease, siteLevelRelease } from '@confide/privacy-ledger';
import type { ActiveRound } from './active-round';
import type { RoundEvents } from './round-events';
import type { RoundSumsService } from './round-sums.service';
import type { LedgerService } from '../privacy/ledger.service';
import { ledgerSlotMessage } from '../privacy/ledger.service';
import type { SiteRepository } from '../sites/site.repository';
import type { SessionRegistry, SiteSession } from '../fl/session-registry';
import type { AggregatorConfig, Clock } from '../common/tokens';
import {
  checkMetrics,
  checkPlainStats,
  checkUpdateNorm,
  maxUpdateNorm,
  plainWeight,
  weightingOf,
} from './contribution-checks';

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
      await this.settleHeld(session, msg);
      return;
    }
    try {
      await this.route(session, msg, vector, bytes);
    } finally {
      if ('receipt' in msg && msg.receipt !== undefined) {
        await this.settleHeld(session, { type: 'ledger.receipt', receipt: msg.receipt }).catch(
          (e: unknown) =>
            this.d.config.log(
              `the receipt site ${session.siteName} sent with ${msg.type} was refused: ${(e as Error).message}`,
            ),
        );
      }
    }
  }

  /** A receipt for the position the site holds, or its word that it signed none there. */
  private async settleHeld(
    session: SiteSession,
    msg: { type: 'ledger.receipt'; receipt: unknown } | { type: 'ledger.none'; seq: number },
  ): Promise<void> {
    const fedId = session.federationId;
    if (msg.type === 'ledger.none') {
      if (await this.d.ledger.siteSignedNone(fedId, session.siteId, msg.seq)) {
        this.d.config.log(
          `site ${session.siteName} signed no receipt at ledger position ${msg.seq}; it passes on`,
        );
      }
      return;
    }
    const site = await this.d.siteRepo.findById(fedId, session.siteId);
    if (site && (await this.d.ledger.acceptHeldReceipt(fedId, site, msg.receipt))) {
      this.d.config.log(
        `site ${session.siteName}'s receipt for ledger position ${String((msg.receipt as { seq?: unknown }).seq)} appended`,
      );
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
      case 'stats.report': {
        if (active.phase !== 'stats' || active.stats.has(session.siteId)) {
          throw new ProtocolError(
            ErrorCode.UNEXPECTED_MESSAGE,
            'feature statistics were not requested now',
          );
        }
        if (msg.sum.length !== msg.sumSq.length) {
          throw new ProtocolError(
            ErrorCode.MALFORMED_MESSAGE,
            'sum and sumSq must have the same length',
          );
        }
        const features = active.fed.modelSpec.inputDim;
        if (msg.sum.length !== features) {
          throw new ProtocolError(
            ErrorCode.SCHEMA_MISMATCH,
            `expected ${features} features, got ${msg.sum.length}`,
          );
        }
        try {
          checkPlainStats(
            msg,
            weightingOf(active.fed).cap,
            active.fed.config.featureBounds ?? null,
          );
        } catch (e) {
          active.exclude(session.siteId, e as ProtocolError);
          throw e;
        }
        active.stats.set(session.siteId, { count: msg.count, sum: msg.sum, sumSq: msg.sumSq });
        break;
      }
      case 'round.update': {
        const expectStatus = active.secagg ? 'shared' : 'selected';
        if (active.phase !== 'collecting' || p.status !== expectStatus) {
          throw new ProtocolError(
            ErrorCode.UNEXPECTED_MESSAGE,
            `an update is not expected from this site now (${p.status})`,
          );
        }
        if (active.secagg ? !(vector instanceof Uint32Array) : !(vector instanceof Float32Array)) {
          throw new ProtocolError(
            ErrorCode.MALFORMED_MESSAGE,
            active.secagg
              ? 'under secure aggregation round.update must carry the masked uint32 vector'
              : 'round.update must carry a float32 vector',
          );
        }
        const dpCfg = active.fed.config.dp ?? { level: 'none' as const };
        let weight = 1;
        let outOfRange: ProtocolError | null = null;
        try {
          assertLength(vector!, active.expectedLength + (active.secagg ? 1 : 0), 'update');
          if (vector instanceof Float32Array) {
            // In the clear every contribution is checked against its range before it is used.
            const sq = squaredNorm(vector, 'update');
            try {
              checkUpdateNorm(sq, maxUpdateNorm(active.fed, active.expectedLength));
              weight = plainWeight(msg.numExamples, weightingOf(active.fed), {
                maxWeight: active.sites.get(session.siteId)?.maxWeight ?? null,
              });
              if (msg.trainLoss !== undefined && !(msg.trainLoss >= 0)) {
                throw new ProtocolError(
                  ErrorCode.METRICS_OUT_OF_RANGE,
                  `trainLoss ${msg.trainLoss} is not a finite value >= 0`,
                );
              }
            } catch (e) {
              if (!(e instanceof ProtocolError)) throw e;
              // Under DP the site has released it (its receipt is signed, its own ledger charged):
              // the aggregator's ledger records the release too, then the update is left out.
              if (dpCfg.level === 'none' || msg.receipt === undefined) throw e;
              outOfRange = e;
            }
          }
          if (dpCfg.level !== 'none') {
            // The release is charged to the ledger (signed by the site) before its update is used.
            const slot = active.slots.get(session.siteId);
            if (!slot) {
              throw new ProtocolError(
                ErrorCode.RECEIPT_INVALID,
                'a differentially private update needs a signed receipt: send ledger.reserve first',
              );
            }
            active.slots.delete(session.siteId);
            const site = await this.d.siteRepo.findById(active.federationId, session.siteId);
            await this.d.ledger.acceptReceipt(slot, site!, msg.receipt, (m) => {
              // Record level: q is the site's own (batch / its records, or a lower bound on them,
              // which over-charges); the round fixes everything else.
              const want =
                dpCfg.level === 'record'
                  ? recordLevelRelease({
                      batchSize: active.fed.config.train.batchSize,
                      epochs: active.fed.config.train.epochs,
                      numExamples: Math.max(
                        1,
                        Math.round(active.fed.config.train.batchSize / m.samplingRate),
                      ),
                      noiseMultiplier: dpCfg.noiseMultiplier,
                      clipNorm: dpCfg.clipNorm,
                    })
                  : siteLevelRelease({
                      siteSamplingRate: active.siteSamplingRate,
                      noiseMultiplier: dpCfg.noiseMultiplier,
                      clipNorm: dpCfg.clipNorm,
                      survivorsAssumed: active.survivorsAssumed,
                      integerNoise: active.integerNoise,
                    });
              return canonicalJson(m) === canonicalJson(want)
                ? null
                : `the receipt's mechanism ${canonicalJson(m)} is not this round's ${canonicalJson(want)}`;
            });
            if (active.phase !== 'collecting' || p.status !== expectStatus) return; // round moved on meanwhile
          }
          if (outOfRange) {
            throw new ProtocolError(
              outOfRange.code,
              `${outOfRange.message} (the release was charged to the ledger; the update is not used)`,
            );
          }
        } catch (e) {
          // A rejected site never uses the ledger slot it may hold: it goes to the next site now.
          active.exclude(
            session.siteId,
            e instanceof ProtocolError ? e : { code: ErrorCode.INTERNAL, message: String(e) },
          );
          throw e;
        }
        if (active.secagg) {
          // Only the running masked sum is kept; the masked vector is not stored.
          try {
            active.secagg.addMaskedInput(session.siteId, vector as Uint32Array);
          } catch (e) {
            p.status = 'rejected';
            p.detail = (e as Error).message;
            active.signal.notify();
            throw new ProtocolError(ErrorCode.SECAGG_REFUSED, (e as Error).message);
          }
        } else {
          active.collector!.add({ siteId: session.siteId, delta: vector as Float32Array, weight });
        }
        // Plain rounds only: under secure aggregation a site's count and loss stay inside its masks.
        if (!active.secagg && msg.numExamples !== undefined && msg.trainLoss !== undefined) {
          active.trainLossSum += msg.trainLoss * weight;
          active.trainWeightSum += weight;
          p.numExamples = msg.numExamples;
        }
        p.status = 'submitted';
        break;
      }
      case 'secagg.advertise':
      case 'secagg.shares':
      case 'secagg.signature':
      case 'secagg.unmasked': {
        const server = active.secagg;
        const expected = {
          'secagg.advertise': ['advertising', 'selected'],
          'secagg.shares': ['sharing', 'advertised'],
          'secagg.signature': ['consistency', 'submitted'],
          'secagg.unmasked': ['unmasking', 'submitted'],
        }[msg.type];
        if (!server || active.phase !== expected[0] || p.status !== expected[1]) {
          throw new ProtocolError(
            ErrorCode.UNEXPECTED_MESSAGE,
            `${msg.type} is not expected from this site now (${active.phase}, ${p.status})`,
          );
        }
        try {
          switch (msg.type) {
            case 'secagg.advertise':
              if ((msg.advertisement as { siteId?: unknown } | null)?.siteId !== session.siteId) {
                throw new Error('the advertisement names another site');
              }
              server.addAdvertisement(msg.advertisement);
              p.status = 'advertised';
              break;
            case 'secagg.shares':
              server.addShares(session.siteId, msg.shares);
              p.status = 'shared';
              break;
            case 'secagg.signature':
              if (
                (msg.signature as { siteId?: unknown } | null)?.siteId !== session.siteId ||
                active.confirmed.has(session.siteId)
              ) {
                throw new Error('the signature is not this site’s, or came twice');
              }
              server.addSurvivorSignature(msg.signature);
              active.confirmed.add(session.siteId);
              break;
            case 'secagg.unmasked':
              if (
                (msg.response as { siteId?: unknown } | null)?.siteId !== session.siteId ||
                active.unmasked.has(session.siteId)
              ) {
                throw new Error('the unmask response is not this site’s, or came twice');
              }
              server.addUnmaskResponse(msg.response);
              active.unmasked.add(session.siteId);
              break;
          }
        } catch (e) {
          throw new ProtocolError(ErrorCode.SECAGG_REFUSED, (e as Error).message);
        }
        break;
      }
      case 'ledger.reserve': {
        const dpCfg = active.fed.config.dp ?? { level: 'none' as const };
        const reserveStatus = active.secagg ? 'shared' : 'selected';
        if (dpCfg.level === 'none' || active.phase !== 'collecting' || p.status !== reserveStatus) {
          throw new ProtocolError(
            ErrorCode.UNEXPECTED_MESSAGE,
            'no privacy receipt is expected from this site now',
          );
        }
        if (active.slots.has(session.siteId)) {
          throw new ProtocolError(
            ErrorCode.UNEXPECTED_MESSAGE,
            'this site already holds the ledger slot',
          );
        }
        const site = await this.d.siteRepo.findById(active.federationId, session.siteId);
        const slot = await this.d.ledger.reserve(
          active.fed,
          site!,
          active.number,
          'update',
          () =>
            this.d.activeRound(session.federationId) === active &&
            active.phase === 'collecting' &&
            p.status === reserveStatus &&
            this.d.sessions.isCurrent(session),
        );
        if (!slot) {
          throw new ProtocolError(
            ErrorCode.UNEXPECTED_MESSAGE,
            `round ${active.number} moved on while this site waited for the ledger's next position`,
          );
        }
        active.slots.set(session.siteId, slot);
        session.sendJson(ledgerSlotMessage(slot, msg.id, { runId: active.runId, sum: 'update' }));
        return;
      }
      case 'round.metrics': {
        if (
          active.phase !== 'evaluating' ||
          p.status !== 'submitted' ||
          msg.modelVersionId !== active.newModelVersionId
        ) {
          throw new ProtocolError(
            ErrorCode.UNEXPECTED_MESSAGE,
            'metrics are not expected for this model version now',
          );
        }
        try {
          checkMetrics(msg.metrics, weightingOf(active.fed).cap);
        } catch (e) {
          active.exclude(
            session.siteId,
            e as ProtocolError,
            ' (its update is in the model; its metrics are not)',
          );
          throw e;
        }
        active.evaluations.set(session.siteId, msg.metrics);
        p.status = 'evaluated';
        break;
      }
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
