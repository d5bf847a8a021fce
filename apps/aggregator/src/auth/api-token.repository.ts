import { Inject, Injectable } from '@nestjs/common';
import { DATABASE } from '../common/tokens';
import type { Database } from '../database/database';
import type { ApiTokenRow, Role } from '../database/rows';
import { camelRow, camelRows } from '../database/sql';

const COLUMNS = 'id, role, label, created_at, revoked_at';

/** Stores API tokens by their SHA-256 hash; the token itself is never stored. */
@Injectable()
export class ApiTokenRepository {
  constructor(@Inject(DATABASE) private readonly db: Database) {}

  async insert(role: Role, label: string, tokenHash: string): Promise<ApiTokenRow> {
    const rows = await this.db.manager.query(
      `INSERT INTO api_token (role, label, token_hash) VALUES ($1, $2, $3) RETURNING ${COLUMNS}`,
      [role, label, tokenHash],
    );
    return camelRow<ApiTokenRow>(rows[0]);
  }

  async findActiveByHash(tokenHash: string): Promise<ApiTokenRow | null> {
    const rows = await this.db.manager.query(
      `SELECT ${COLUMNS} FROM api_token WHERE token_hash = $1 AND revoked_at IS NULL`,
      [tokenHash],
    );
    return rows.length ? camelRow<ApiTokenRow>(rows[0]) : null;
  }

  async countActive(role: Role): Promise<number> {
    const rows = await this.db.manager.query(
      `SELECT count(*)::int AS n FROM api_token WHERE role = $1 AND revoked_at IS NULL`,
      [role],
    );
    return rows[0].n as number;
  }

  async list(): Promise<ApiTokenRow[]> {
    return camelRows(
      await this.db.manager.query(`SELECT ${COLUMNS} FROM api_token ORDER BY created_at`),
    );
  }
}
