import { Inject, Injectable } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import type { LedgerEntry } from '@confide/privacy-ledger';
import { DATABASE } from '../common/tokens';
import type { Database } from '../database/database';
import { camelRow, camelRows } from '../database/sql';

/** A site's budget in a federation. */
export interface BudgetRow {
  federationId: string;
  siteId: string;
  epsilonLimit: number;
  delta: number;
  updatedAt: Date;
}

const ENTRY_COLUMNS = `federation_id, seq, site_id, site_name, round, level, sampling_rate, noise_multiplier, steps,
  clip_norm, survivors_assumed, accountant, rdp, orders_hash, delta, cumulative_epsilon, epsilon_limit, created_at,
  site_public_key, prev_hash, hash, signature, noise, quantization_scale, dimension, release`;

/**
 * Rebuilds the ledger entry exactly as it was signed from its row. A row without `noise` is a
 * continuous-Gaussian entry and gets no integer-noise fields at all (not even null ones), so its
 * hash is the one its site signed.
 */
export function ledgerEntryFromRow(r: Record<string, unknown>): LedgerEntry {
  const noise = (r['noise'] as string | null | undefined) ?? null;
  const release = (r['release'] as string | null | undefined) ?? null;
  return {
    seq: r['seq'] as number,
    federationId: r['federation_id'] as string,
    siteId: r['site_id'] as string,
    siteName: r['site_name'] as string,
    round: r['round'] as number,
    mechanism: {
      level: r['level'] as 'record' | 'site',
      samplingRate: r['sampling_rate'] as number,
      noiseMultiplier: r['noise_multiplier'] as number,
      steps: r['steps'] as number,
      clipNorm: r['clip_norm'] as number,
      survivorsAssumed: (r['survivors_assumed'] as number | null) ?? null,
      accountant: r['accountant'] as 'rdp',
      ...(noise === null
        ? {}
        : {
            noise: noise as 'distributed-discrete-gaussian',
            quantizationScale: r['quantization_scale'] as number,
            dimension: r['dimension'] as number,
          }),
      ...(release === null ? {} : { release: release as 'statistics' | 'evaluation' }),
    },
    rdp: (r['rdp'] as number[]).map(Number),
    ordersHash: r['orders_hash'] as string,
    delta: r['delta'] as number,
    cumulativeEpsilon: r['cumulative_epsilon'] as number,
    epsilonLimit: r['epsilon_limit'] as number,
    createdAt: r['created_at'] as string,
    sitePublicKey: r['site_public_key'] as string,
    prevHash: r['prev_hash'] as string,
    hash: r['hash'] as string,
    signature: r['signature'] as string,
  };
}

/** The epsilon ledger (append-only: the database refuses UPDATE and DELETE) and privacy budgets. */
@Injectable()
export class LedgerRepository {
  constructor(@Inject(DATABASE) private readonly db: Database) {}

  async insert(em: EntityManager, e: LedgerEntry): Promise<void> {
    await em.query(
      `INSERT INTO ledger_entry (${ENTRY_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,$23,$24,$25,$26)`,
      [
        e.federationId,
        e.seq,
        e.siteId,
        e.siteName,
        e.round,
        e.mechanism.level,
        e.mechanism.samplingRate,
        e.mechanism.noiseMultiplier,
        e.mechanism.steps,
        e.mechanism.clipNorm,
        e.mechanism.survivorsAssumed,
        e.mechanism.accountant,
        e.rdp,
        e.ordersHash,
        e.delta,
        e.cumulativeEpsilon,
        e.epsilonLimit,
        e.createdAt,
        e.sitePublicKey,
        e.prevHash,
        e.hash,
        e.signature,
        e.mechanism.noise ?? null,
        e.mechanism.quantizationScale ?? null,
        e.mechanism.dimension ?? null,
        e.mechanism.release ?? null,
      ],
    );
  }

  async last(
    federationId: string,
    em: EntityManager = this.db.manager,
  ): Promise<LedgerEntry | null> {
    const rows = await em.query(
      `SELECT ${ENTRY_COLUMNS} FROM ledger_entry WHERE federation_id = $1 ORDER BY seq DESC LIMIT 1`,
      [federationId],
    );
    return rows.length ? ledgerEntryFromRow(rows[0]) : null;
  }

  async siteEntries(
    federationId: string,
    siteId: string,
    em: EntityManager = this.db.manager,
  ): Promise<LedgerEntry[]> {
    const rows = await em.query(
      `SELECT ${ENTRY_COLUMNS} FROM ledger_entry WHERE federation_id = $1 AND site_id = $2 ORDER BY seq`,
      [federationId, siteId],
    );
    return (rows as Record<string, unknown>[]).map(ledgerEntryFromRow);
  }

  async all(federationId: string): Promise<LedgerEntry[]> {
    const rows = await this.db.manager.query(
      `SELECT ${ENTRY_COLUMNS} FROM ledger_entry WHERE federation_id = $1 ORDER BY seq`,
      [federationId],
    );
    return (rows as Record<string, unknown>[]).map(ledgerEntryFromRow);
  }

  async page(
    federationId: string,
    f: { page: number; pageSize: number; siteId?: string; round?: number },
  ): Promise<{ entries: LedgerEntry[]; total: number }> {
    const where = ['federation_id = $1'];
    const params: unknown[] = [federationId];
    if (f.siteId) {
      params.push(f.siteId);
      where.push(`site_id = $${params.length}`);
    }
    if (f.round !== undefined) {
      params.push(f.round);
      where.push(`round = $${params.length}`);
    }
    const total = await this.db.manager.query(
      `SELECT count(*)::int AS n FROM ledger_entry WHERE ${where.join(' AND ')}`,
      params,
    );
    const rows = await this.db.manager.query(
      `SELECT ${ENTRY_COLUMNS} FROM ledger_entry WHERE ${where.join(' AND ')} ORDER BY seq LIMIT ${f.pageSize} OFFSET ${(f.page - 1) * f.pageSize}`,
      params,
    );
    return {
      entries: (rows as Record<string, unknown>[]).map(ledgerEntryFromRow),
      total: total[0].n as number,
    };
  }

  // ---- budgets ----
  async setBudget(
    em: EntityManager,
    b: { federationId: string; siteId: string; epsilonLimit: number; delta: number },
    change: { actor: string; reason: string; oldLimit: number | null },
  ): Promise<void> {
    await em.query(
      `INSERT INTO privacy_budget (federation_id, site_id, epsilon_limit, delta) VALUES ($1, $2, $3, $4)
       ON CONFLICT (federation_id, site_id) DO UPDATE SET epsilon_limit = EXCLUDED.epsilon_limit, updated_at = now()`,
      [b.federationId, b.siteId, b.epsilonLimit, b.delta],
    );
    await em.query(
      `INSERT INTO privacy_budget_change (federation_id, site_id, old_limit, new_limit, actor, reason) VALUES ($1, $2, $3, $4, $5, $6)`,
      [b.federationId, b.siteId, change.oldLimit, b.epsilonLimit, change.actor, change.reason],
    );
  }

  /** The budget row, locked for the rest of the transaction when `forUpdate`. */
  async budget(
    federationId: string,
    siteId: string,
    em: EntityManager = this.db.manager,
    forUpdate = false,
  ): Promise<BudgetRow | null> {
    const rows = await em.query(
      `SELECT federation_id, site_id, epsilon_limit, delta, updated_at FROM privacy_budget
       WHERE federation_id = $1 AND site_id = $2${forUpdate ? ' FOR UPDATE' : ''}`,
      [federationId, siteId],
    );
    return rows.length ? camelRow<BudgetRow>(rows[0]) : null;
  }

  async budgets(federationId: string): Promise<BudgetRow[]> {
    return camelRows(
      await this.db.manager.query(
        `SELECT federation_id, site_id, epsilon_limit, delta, updated_at FROM privacy_budget WHERE federation_id = $1`,
        [federationId],
      ),
    );
  }

  async budgetChanges(federationId: string): Promise<unknown[]> {
    return camelRows(
      await this.db.manager.query(
        `SELECT * FROM privacy_budget_change WHERE federation_id = $1 ORDER BY id`,
        [federationId],
      ),
    );
  }
}
