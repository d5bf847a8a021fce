import { Inject, Injectable } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import { DATABASE } from '../common/tokens';
import type { Database } from '../database/database';
import type { ApiTokenRow, Role } from '../database/rows';
import { camelRow, camelRows, returned } from '../database/sql';

const COLUMNS = 'id, role, label, created_at, expires_at, last_used_at, revoked_at';

/** SQL condition: the token can be used at the instant bound to `$n`. */
const usableAt = (n: number): string =>
  `revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $${n})`;

/** Stores API tokens by their SHA-256 hash; the token itself is never stored. */
@Injectable()
export class ApiTokenRepository {
  constructor(@Inject(DATABASE) private readonly db: Database) {}

  async insert(
    role: Role,
    label: string,
    tokenHash: string,
    times: { createdAt?: Date; expiresAt?: Date | null } = {},
    em: EntityManager = this.db.manager,
  ): Promise<ApiTokenRow> {
    const rows = await em.query(
      `INSERT INTO api_token (role, label, token_hash, created_at, expires_at)
       VALUES ($1, $2, $3, COALESCE($4, now()), $5) RETURNING ${COLUMNS}`,
      [role, label, tokenHash, times.createdAt ?? null, times.expiresAt ?? null],
    );
    return camelRow<ApiTokenRow>(rows[0]);
  }

  /** The token with this hash whatever its state (revoked and expired included), or null. */
  async findByHash(tokenHash: string): Promise<ApiTokenRow | null> {
    const rows = await this.db.manager.query(
      `SELECT ${COLUMNS} FROM api_token WHERE token_hash = $1`,
      [tokenHash],
    );
    return rows.length ? camelRow<ApiTokenRow>(rows[0]) : null;
  }

  /** The token with this hash if it is neither revoked nor expired at `now`. */
  async findActiveByHash(tokenHash: string, now = new Date()): Promise<ApiTokenRow | null> {
    const rows = await this.db.manager.query(
      `SELECT ${COLUMNS} FROM api_token WHERE token_hash = $1 AND ${usableAt(2)}`,
      [tokenHash, now],
    );
    return rows.length ? camelRow<ApiTokenRow>(rows[0]) : null;
  }

  async findById(id: string, em: EntityManager = this.db.manager): Promise<ApiTokenRow | null> {
    const rows = await em.query(`SELECT ${COLUMNS} FROM api_token WHERE id = $1`, [id]);
    return rows.length ? camelRow<ApiTokenRow>(rows[0]) : null;
  }

  async countActive(
    role: Role,
    now = new Date(),
    em: EntityManager = this.db.manager,
  ): Promise<number> {
    const rows = await em.query(
      `SELECT count(*)::int AS n FROM api_token WHERE role = $1 AND ${usableAt(2)}`,
      [role, now],
    );
    return rows[0].n as number;
  }

  /**
   * Ids of the admin tokens usable at `now`, locked until `em`'s transaction ends: two admins
   * revoking each other's tokens at once cannot both pass the last-admin check.
   */
  async lockActiveAdminIds(em: EntityManager, now: Date): Promise<string[]> {
    const rows: Array<{ id: string }> = await em.query(
      `SELECT id FROM api_token WHERE role = 'admin' AND ${usableAt(1)} FOR UPDATE`,
      [now],
    );
    return rows.map((r) => r.id);
  }

  /** Keeps the first bootstrap of two aggregators starting on one database from racing the other. */
  async lockForBootstrap(em: EntityManager): Promise<void> {
    await em.query(`LOCK TABLE api_token IN EXCLUSIVE MODE`);
  }

  /** Marks the token revoked at `at` (an earlier revocation time is kept); null when there is none. */
  async revoke(id: string, at: Date, em: EntityManager): Promise<ApiTokenRow | null> {
    const rows = returned(
      await em.query(
        `UPDATE api_token SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1
         RETURNING ${COLUMNS}`,
        [id, at],
      ),
    );
    return rows[0] ? camelRow<ApiTokenRow>(rows[0]) : null;
  }

  /** Records a use at `at` unless one at or after `since` is already recorded. */
  async touch(id: string, at: Date, since: Date): Promise<void> {
    await this.db.manager.query(
      `UPDATE api_token SET last_used_at = $2
       WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $3)`,
      [id, at, since],
    );
  }

  async list(): Promise<ApiTokenRow[]> {
    return camelRows(
      await this.db.manager.query(`SELECT ${COLUMNS} FROM api_token ORDER BY created_at, id`),
    );
  }
}
