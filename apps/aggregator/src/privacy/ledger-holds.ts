import type { EntityManager } from 'typeorm';
import { ErrorCode, ProtocolError, type SumKind } from '@confide/protocol';
import type { Database } from '../database/database';

/** The chain position one site holds for a signed release, until its receipt or its "none". */
export interface LedgerHold {
  federationId: string;
  siteId: string;
  round: number;
  sum: SumKind;
  seq: number;
  prevHash: string;
  createdAt: string;
  epsilonLimit: number;
  delta: number;
  reservedAt: Date;
}

/** One federation's chain: who holds its next position, and who waits for it (first come, first served). */
interface Gate {
  hold: LedgerHold | null;
  /** A grant is being written: nobody else may start one. */
  granting: boolean;
  waiters: Array<() => void>;
}

/**
 * The federations' next chain positions, persisted. A position is held from the moment it is written
 * until the holder's receipt is appended or the holder says it signed none (or an admin releases it):
 * never on a timer or a disconnect, because a site may have signed and recorded its receipt just
 * before the cut, and another site at the same position would leave that receipt without a place.
 * One process serves a federation's chain; the table's primary key refuses a second hold regardless.
 */
export class LedgerHolds {
  /** One Gate per federation for the life of the process (so an ended hold reaches its waiters). */
  private readonly gates = new Map<string, Promise<Gate>>();
  /** Holds granted by this process (ended through it, so waiters are told at once). */
  private readonly granted = new WeakSet<LedgerHold>();

  constructor(private readonly db: Database) {}

  /** The hold in `federationId`'s chain, if any. */
  async current(federationId: string): Promise<LedgerHold | null> {
    return (await this.gate(federationId)).hold;
  }

  /**
   * Waits (up to `waitMs`) until the chain's next position is free and this caller's turn has come,
   * then runs `grant`, which writes the hold (through `persist`) or returns null when it no longer
   * wants it. A caller whose wait times out is told who holds the position.
   */
  async acquire<T>(
    federationId: string,
    waitMs: number,
    grant: (persist: (em: EntityManager, hold: LedgerHold) => Promise<void>) => Promise<T | null>,
  ): Promise<T | null> {
    const gate = await this.gate(federationId);
    if (gate.hold || gate.granting || gate.waiters.length) {
      await new Promise<void>((resolve, reject) => {
        const turn = (): void => {
          clearTimeout(timer);
          clearInterval(poll);
          resolve();
        };
        const timer = setTimeout(() => {
          clearInterval(poll);
          const k = gate.waiters.indexOf(turn);
          if (k >= 0) gate.waiters.splice(k, 1);
          const h = gate.hold;
          reject(
            new ProtocolError(
              ErrorCode.TIMEOUT,
              h
                ? `the ledger's next position (${h.seq}) is still held for the receipt of round ${h.round} (${h.sum}) of site ${h.siteId}, reserved at ${h.reservedAt.toISOString()}; it is freed when that site sends its receipt or says it signed none (it answers when it reconnects), or by an administrator (confide admin ledger release-hold)`
                : `the ledger's next position did not come free within ${Math.round(waitMs / 1000)} s`,
            ),
          );
        }, waitMs);
        timer.unref();
        // A hold this process did not grant (another process's) ends without telling it: look again.
        const poll = setInterval(() => {
          const h = gate.hold;
          if (!h || this.granted.has(h)) return;
          void this.stillHeld(h).then((held) => {
            if (!held && gate.hold === h) {
              gate.hold = null;
              this.next(gate);
            }
          });
        }, 250);
        poll.unref();
        gate.waiters.push(turn);
      });
    }
    gate.granting = true;
    let pending: LedgerHold | null = null;
    try {
      const result = await grant(async (em, hold) => {
        await em.query(
          `INSERT INTO ledger_reservation (federation_id, seq, prev_hash, site_id, round, sum, created_at, epsilon_limit, delta, reserved_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
          [
            hold.federationId,
            hold.seq,
            hold.prevHash,
            hold.siteId,
            hold.round,
            hold.sum,
            hold.createdAt,
            hold.epsilonLimit,
            hold.delta,
            hold.reservedAt,
          ],
        );
        pending = hold;
      });
      // Only once the row is committed does the hold exist (a failed transaction leaves none).
      if (result !== null && pending) {
        gate.hold = pending;
        this.granted.add(pending);
      }
      return result;
    } catch (e) {
      if ((e as { code?: unknown }).code === '23505') {
        // The row says another process holds the position: believe the row (and poll it).
        gate.hold = await this.read(federationId).catch(() => null);
        throw new ProtocolError(
          ErrorCode.SERVER_BUSY,
          "another aggregator process holds this federation's next ledger position; try again",
        );
      }
      throw e;
    } finally {
      gate.granting = false;
      this.next(gate);
    }
  }

  /**
   * Ends `hold` inside `em`'s transaction (with the receipt's insert, or alone); `after` must run once
   * that transaction commits, to pass the position on.
   */
  async end(em: EntityManager, hold: { federationId: string; seq: number }): Promise<() => void> {
    await em.query(`DELETE FROM ledger_reservation WHERE federation_id = $1 AND seq = $2`, [
      hold.federationId,
      hold.seq,
    ]);
    return () => {
      void this.gate(hold.federationId).then((gate) => {
        if (gate.hold?.seq === hold.seq) gate.hold = null;
        this.next(gate);
      });
    };
  }

  private async stillHeld(h: LedgerHold): Promise<boolean> {
    const rows = await this.db.manager.query<unknown[]>(
      `SELECT 1 FROM ledger_reservation WHERE federation_id = $1 AND seq = $2`,
      [h.federationId, h.seq],
    );
    return rows.length > 0;
  }

  private next(gate: Gate): void {
    if (gate.hold || gate.granting) return;
    gate.waiters.shift()?.();
  }

  private gate(federationId: string): Promise<Gate> {
    let g = this.gates.get(federationId);
    if (!g) {
      g = this.load(federationId);
      this.gates.set(federationId, g);
      // A failed read is retried by the next caller, not remembered.
      g.catch(() => this.gates.delete(federationId));
    }
    return g;
  }

  private async load(federationId: string): Promise<Gate> {
    return { hold: await this.read(federationId), granting: false, waiters: [] };
  }

  private async read(federationId: string): Promise<LedgerHold | null> {
    const rows = await this.db.manager.query<Array<Record<string, unknown>>>(
      `SELECT federation_id, seq, prev_hash, site_id, round, sum, created_at, epsilon_limit, delta, reserved_at
       FROM ledger_reservation WHERE federation_id = $1`,
      [federationId],
    );
    const r = rows[0];
    return r
      ? {
          federationId: r['federation_id'] as string,
          seq: r['seq'] as number,
          prevHash: r['prev_hash'] as string,
          siteId: r['site_id'] as string,
          round: r['round'] as number,
          sum: r['sum'] as SumKind,
          createdAt: r['created_at'] as string,
          epsilonLimit: Number(r['epsilon_limit']),
          delta: Number(r['delta']),
          reservedAt: new Date(r['reserved_at'] as string | Date),
        }
      : null;
  }
}
