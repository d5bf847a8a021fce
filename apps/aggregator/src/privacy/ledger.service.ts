import { Inject, Injectable } from '@nestjs/common';
import {
  chainHead,
  confideAccountant,
  forecastRoundsLeft,
  LedgerError,
  LEDGER_EXPORT_FORMAT,
  projectNextRound,
  validateLedgerEntry,
  verifyLedger,
  verifyReceipt,
  type LedgerEntry,
  type LedgerExport,
  type MechanismParams,
  type VerificationReport,
} from '@confide/privacy-ledger';
import { randomUUID } from 'node:crypto';
import { ErrorCode, PROTOCOL_VERSION, ProtocolError, type SumKind } from '@confide/protocol';
import { LedgerHolds, type LedgerHold } from './ledger-holds';
import { LedgerRepository } from './ledger.repository';
import { CLOCK, DATABASE, type Clock } from '../common/tokens';
import type { Database } from '../database/database';
import type { DpConfig, FederationRow, SiteRow } from '../database/rows';
import { SiteRepository } from '../sites/site.repository';

/** The next position in a federation's chain, held by one site until it sends its receipt or says it has none. */
export type LedgerSlot = Omit<LedgerHold, 'reservedAt' | 'sum'>;

/** The ledger.slot message that hands `slot` to its site for the `sum` of a round, answering `refId`. */
export function ledgerSlotMessage(
  slot: LedgerSlot,
  refId: string,
  at: { runId: string; sum: 'update' | 'statistics' | 'evaluation' },
): object {
  return {
    v: PROTOCOL_VERSION,
    type: 'ledger.slot',
    id: randomUUID(),
    refId,
    runId: at.runId,
    round: slot.round,
    sum: at.sum,
    seq: slot.seq,
    prevHash: slot.prevHash,
    createdAt: slot.createdAt,
    epsilonLimit: slot.epsilonLimit,
    delta: slot.delta,
  };
}

/** DP settings that are on. */
export type ActiveDp = Exclude<DpConfig, { level: 'none' }>;

/** How long a site waits for the chain's next position before its request is refused. */
const SLOT_WAIT_MS = 60_000;

/**
 * The epsilon ledger's rules: one chain position at a time per federation, receipts verified
 * (signature, hash, recomputed RDP and cumulative epsilon, limit) before they are stored, budgets
 * projected before selection, and the auditor's verification.
 */
@Injectable()
export class LedgerService {
  private readonly holds: LedgerHolds;

  constructor(
    @Inject(DATABASE) private readonly db: Database,
    @Inject(CLOCK) private readonly clock: Clock,
    @Inject(LedgerRepository) private readonly ledger: LedgerRepository,
    @Inject(SiteRepository) private readonly sites: SiteRepository,
  ) {
    this.holds = new LedgerHolds(db);
  }

  /**
   * Waits for the federation's chain head and holds it for `site` (persisted) until its receipt or
   * its "none"; null (nothing held) when `wanted` says no once the position is free.
   */
  async reserve(
    fed: FederationRow,
    site: SiteRow,
    round: number,
    sum: SumKind,
    wanted: () => boolean = () => true,
  ): Promise<LedgerSlot | null> {
    return this.holds.acquire(fed.id, SLOT_WAIT_MS, async (persist) => {
      if (!wanted()) return null;
      const head = chainHead((await this.ledger.last(fed.id)) ?? undefined);
      const budget = await this.ledger.budget(fed.id, site.id);
      if (!budget)
        throw new ProtocolError(
          ErrorCode.BUDGET_EXCEEDED,
          `site ${site.name} has no privacy budget in this federation`,
        );
      const hold: LedgerHold = {
        federationId: fed.id,
        siteId: site.id,
        round,
        sum,
        ...head,
        createdAt: this.clock.now().toISOString(),
        epsilonLimit: budget.epsilonLimit,
        delta: budget.delta,
        reservedAt: this.clock.now(),
      };
      await this.db.transaction((em) => persist(em, hold));
      // One last look: the site may have gone while the position was written. It was never told
      // of it, so it cannot have signed for it.
      if (!wanted()) {
        await this.endHold(hold);
        return null;
      }
      return slotOf(hold);
    });
  }

  /** The position `siteId` holds in `federationId`'s chain, if any (its welcome names it). */
  async heldBy(
    federationId: string,
    siteId: string,
  ): Promise<{ seq: number; round: number; sum: SumKind } | null> {
    const h = await this.holds.current(federationId);
    return h && h.siteId === siteId ? { seq: h.seq, round: h.round, sum: h.sum } : null;
  }

  /** Who holds `federationId`'s next chain position, if anyone (the privacy summary shows it). */
  hold(federationId: string): Promise<LedgerHold | null> {
    return this.holds.current(federationId);
  }

  /**
   * A receipt the site sent for the position it holds, outside the message that normally carries it
   * (a resend after a cut, or a release the round no longer wanted): appended after every check but
   * the round's own mechanism (the round may be gone; its update, if any, is not used). No-op when
   * the site holds no position, or another one (already appended: a duplicate).
   */
  async acceptHeldReceipt(federationId: string, site: SiteRow, raw: unknown): Promise<boolean> {
    const h = await this.holds.current(federationId);
    const seq = (raw as { seq?: unknown } | null)?.seq;
    if (!h || h.siteId !== site.id || seq !== h.seq) return false;
    await this.acceptReceipt(slotOf(h), site, raw, (m) =>
      (m.release ?? 'update') === h.sum
        ? null
        : `the receipt is for a ${m.release ?? 'update'} release; position ${h.seq} was reserved for the ${h.sum} of round ${h.round}`,
    );
    return true;
  }

  /** The site says it signed nothing at position `seq`: the position passes on. */
  async siteSignedNone(federationId: string, siteId: string, seq: number): Promise<boolean> {
    const h = await this.holds.current(federationId);
    if (!h || h.siteId !== siteId || h.seq !== seq) return false;
    await this.endHold(h);
    return true;
  }

  /** An administrator frees a held position (its holder gone for good); returns what was held. */
  async releaseHold(federationId: string): Promise<LedgerHold | null> {
    const h = await this.holds.current(federationId);
    if (h) await this.endHold(h);
    return h;
  }

  private async endHold(h: LedgerHold): Promise<void> {
    const after = await this.db.transaction((em) => this.holds.end(em, h));
    after();
  }

  /**
   * Checks a site's signed receipt against its slot and the mechanism the round prescribes, recomputes
   * its RDP curve and cumulative epsilon from this ledger, and appends it; the position passes on.
   */
  async acceptReceipt(
    slot: LedgerSlot,
    site: SiteRow,
    raw: unknown,
    expected: (m: MechanismParams) => string | null,
  ): Promise<LedgerEntry> {
    try {
      let entry: LedgerEntry;
      try {
        entry = validateLedgerEntry(raw, 'receipt', true);
      } catch (e) {
        throw new ProtocolError(ErrorCode.RECEIPT_INVALID, (e as Error).message);
      }
      const mismatch = (
        [
          ['seq', entry.seq, slot.seq],
          ['prevHash', entry.prevHash, slot.prevHash],
          ['createdAt', entry.createdAt, slot.createdAt],
          ['federationId', entry.federationId, slot.federationId],
          ['siteId', entry.siteId, site.id],
          ['siteName', entry.siteName, site.name],
          ['round', entry.round, slot.round],
          ['sitePublicKey', entry.sitePublicKey, site.publicKey],
          ['delta', entry.delta, slot.delta],
          ['epsilonLimit', entry.epsilonLimit, slot.epsilonLimit],
        ] as const
      ).find(([, got, want]) => got !== want);
      if (mismatch) {
        throw new ProtocolError(
          ErrorCode.RECEIPT_INVALID,
          `receipt.${mismatch[0]} is ${JSON.stringify(mismatch[1])}, expected ${JSON.stringify(mismatch[2])}`,
        );
      }
      if (!verifyReceipt(entry, site.publicKey)) {
        throw new ProtocolError(
          ErrorCode.RECEIPT_INVALID,
          "the receipt's hash or signature does not verify",
        );
      }
      const wrongMechanism = expected(entry.mechanism);
      if (wrongMechanism) throw new ProtocolError(ErrorCode.RECEIPT_INVALID, wrongMechanism);
      const after = await this.db.transaction(async (em) => {
        // The budget row is locked: concurrent releases of one site are serialised, never double-spent.
        const budget = await this.ledger.budget(slot.federationId, site.id, em, true);
        const history = await this.ledger.siteEntries(slot.federationId, site.id, em);
        const projection = projectNextRound(
          history,
          entry.mechanism,
          entry.delta,
          budget?.epsilonLimit ?? 0,
          confideAccountant,
        );
        const recomputed = confideAccountant.releaseRdp(entry.mechanism);
        if (recomputed.some((x, k) => !closeTo(x, entry.rdp[k]!))) {
          throw new ProtocolError(
            ErrorCode.RECEIPT_INVALID,
            "the receipt's RDP curve does not match its mechanism",
          );
        }
        if (!closeTo(projection.projectedEpsilon, entry.cumulativeEpsilon)) {
          throw new ProtocolError(
            ErrorCode.RECEIPT_INVALID,
            `the receipt says cumulative epsilon ${entry.cumulativeEpsilon}; the ledger gives ${projection.projectedEpsilon}`,
          );
        }
        if (!projection.allowed) {
          throw new ProtocolError(
            ErrorCode.BUDGET_EXCEEDED,
            `this release would bring the site's epsilon to ${projection.projectedEpsilon.toFixed(4)}, past its limit ${String(budget?.epsilonLimit)}`,
          );
        }
        const head = chainHead((await this.ledger.last(slot.federationId, em)) ?? undefined);
        if (head.seq !== entry.seq || head.prevHash !== entry.prevHash) {
          throw new ProtocolError(
            ErrorCode.RECEIPT_INVALID,
            'the chain moved on: this receipt no longer links to its head',
          );
        }
        await this.ledger.insert(em, entry);
        return this.holds.end(em, slot);
      });
      after();
      return entry;
    } catch (e) {
      const err =
        e instanceof LedgerError ? new ProtocolError(ErrorCode.RECEIPT_INVALID, e.message) : e;
      // A receipt refused on its merits frees the position (its site broke the protocol, or its
      // ledger disagrees with this one); a failure of the database keeps it held for a resend.
      if (err instanceof ProtocolError) {
        const h = await this.holds.current(slot.federationId);
        if (h && h.seq === slot.seq && h.siteId === site.id) await this.endHold(h);
      }
      throw err;
    }
  }

  /** The site's projected epsilon if it released `mechanism` next; null limit means no budget row. */
  async project(
    fedId: string,
    siteId: string,
    mechanism: MechanismParams,
  ): Promise<{ projected: number; limit: number | null; allowed: boolean; current: number }> {
    const budget = await this.ledger.budget(fedId, siteId);
    if (!budget) return { projected: Infinity, limit: null, allowed: false, current: 0 };
    const history = await this.ledger.siteEntries(fedId, siteId);
    const p = projectNextRound(
      history,
      mechanism,
      budget.delta,
      budget.epsilonLimit,
      confideAccountant,
    );
    return {
      projected: p.projectedEpsilon,
      limit: budget.epsilonLimit,
      allowed: p.allowed,
      current: p.currentEpsilon,
    };
  }

  /** Per-site epsilon spent, limit, rounds left under `next`, and the epsilon history by round. */
  async summary(
    fed: FederationRow,
    next: (site: SiteRow, history: LedgerEntry[]) => MechanismParams | null,
  ) {
    const dp = fed.config.dp ?? { level: 'none' as const };
    const sites = await this.sites.list(fed.id);
    const budgets = new Map((await this.ledger.budgets(fed.id)).map((b) => [b.siteId, b]));
    const entries = await this.ledger.all(fed.id);
    return {
      level: dp.level,
      delta: dp.level === 'none' ? null : dp.delta,
      sites: sites.map((s) => {
        const mine = entries.filter((e) => e.siteId === s.id);
        const budget = budgets.get(s.id);
        const mechanism = budget ? next(s, mine) : null;
        return {
          siteId: s.id,
          name: s.name,
          status: s.status,
          epsilon: mine.at(-1)?.cumulativeEpsilon ?? 0,
          limit: budget?.epsilonLimit ?? null,
          delta: budget?.delta ?? null,
          releases: mine.length,
          roundsLeft:
            budget && mechanism
              ? forecastRoundsLeft(
                  mine,
                  mechanism,
                  budget.delta,
                  budget.epsilonLimit,
                  confideAccountant,
                )
              : null,
          history: mine.map((e) => ({ round: e.round, epsilon: e.cumulativeEpsilon, seq: e.seq })),
        };
      }),
    };
  }

  /** The ledger as an auditor downloads it. */
  async exportLedger(fed: FederationRow): Promise<LedgerExport> {
    const sites = await this.sites.list(fed.id);
    const dp = fed.config.dp;
    return {
      format: LEDGER_EXPORT_FORMAT,
      federationId: fed.id,
      orders: [...confideAccountant.orders],
      ...(dp && dp.level !== 'none' ? { delta: dp.delta } : {}),
      sites: sites.map((s) => ({ siteId: s.id, name: s.name, publicKey: s.publicKey })),
      entries: await this.ledger.all(fed.id),
      exportedAt: this.clock.now().toISOString(),
    };
  }

  /** The same verification `confide audit verify` runs, over the database's current ledger. */
  async verify(fed: FederationRow): Promise<VerificationReport> {
    const sites = await this.sites.list(fed.id);
    const budgets = await this.ledger.budgets(fed.id);
    return verifyLedger({
      entries: await this.ledger.all(fed.id),
      orders: confideAccountant.orders,
      accountant: confideAccountant,
      sites: new Map(sites.map((s) => [s.id, s.publicKey])),
      limits: new Map(budgets.map((b) => [b.siteId, b.epsilonLimit])),
      federationId: fed.id,
    });
  }
}

function slotOf(h: LedgerHold): LedgerSlot {
  return {
    federationId: h.federationId,
    siteId: h.siteId,
    round: h.round,
    seq: h.seq,
    prevHash: h.prevHash,
    createdAt: h.createdAt,
    epsilonLimit: h.epsilonLimit,
    delta: h.delta,
  };
}

function closeTo(a: number, b: number): boolean {
  return a === b || Math.abs(a - b) <= 1e-9 * Math.max(Math.abs(a), Math.abs(b));
}
