import {
  assertLength,
  ErrorCode,
  ProtocolError,
  squaredNorm,
  type SiteMessage,
} from '@confide/protocol';
import { canonicalJson, recordLevelRelease, siteLevelRelease } from '@confide/privacy-ledger';
import type { ActiveRound } from '../active-round';
import { checkUpdateNorm, maxUpdateNorm, plainWeight, weightingOf } from '../contribution-checks';
import { ledgerSlotMessage } from '../../privacy/ledger.service';
import type { LedgerService } from '../../privacy/ledger.service';
import type { SiteRepository } from '../../sites/site.repository';
import type { SessionRegistry, SiteSession } from '../../fl/session-registry';
import type { Participant } from '../../database/rows';

type UpdateMessage = Extract<SiteMessage, { type: 'round.update' }>;
type ReserveMessage = Extract<SiteMessage, { type: 'ledger.reserve' }>;

/** What taking an update needs: the sites' enrolments and the ledger. */
export interface IntakeDeps {
  activeRound(federationId: string): ActiveRound | null;
  siteRepo: SiteRepository;
  ledger: LedgerService;
  sessions: SessionRegistry;
}

/** The round's participant record of a site (RoundMessages checked it is one). */
function participant(active: ActiveRound, siteId: string): Participant {
  return active.participants.get(siteId)!;
}

/**
 * A site's training update, plain or masked, in either training workflow: checked against its
 * range in the clear, its DP receipt appended to the ledger before it is used, then folded into
 * the round's collector or masked sum. A bad one excludes its sender (ProtocolError). Returns
 * false when the round moved on while the receipt was appended (the update is then not used).
 */
export async function acceptUpdate(
  d: IntakeDeps,
  active: ActiveRound,
  session: SiteSession,
  msg: UpdateMessage,
  vector: Float32Array | Uint32Array | null,
): Promise<boolean> {
  const p = participant(active, session.siteId);
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
      const site = await d.siteRepo.findById(active.federationId, session.siteId);
      await d.ledger.acceptReceipt(slot, site!, msg.receipt, (m) => {
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
      if (active.phase !== 'collecting' || p.status !== expectStatus) return false; // round moved on meanwhile
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
  return true;
}

/**
 * A DP site asks for the ledger's next chain position before it signs its update's receipt: it
 * is granted when the positions before it are settled, and answered with the slot.
 */
export async function grantUpdateSlot(
  d: IntakeDeps,
  active: ActiveRound,
  session: SiteSession,
  msg: ReserveMessage,
): Promise<void> {
  const p = participant(active, session.siteId);
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
  const site = await d.siteRepo.findById(active.federationId, session.siteId);
  const slot = await d.ledger.reserve(
    active.fed,
    site!,
    active.number,
    'update',
    () =>
      d.activeRound(session.federationId) === active &&
      active.phase === 'collecting' &&
      p.status === reserveStatus &&
      d.sessions.isCurrent(session),
  );
  if (!slot) {
    throw new ProtocolError(
      ErrorCode.UNEXPECTED_MESSAGE,
      `round ${active.number} moved on while this site waited for the ledger's next position`,
    );
  }
  active.slots.set(session.siteId, slot);
  session.sendJson(ledgerSlotMessage(slot, msg.id, { runId: active.runId, sum: 'update' }));
}
