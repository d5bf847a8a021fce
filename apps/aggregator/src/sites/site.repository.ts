import { Inject, Injectable } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import { DATABASE } from '../common/tokens';
import type { Database } from '../database/database';
import type { SiteRow, SiteStatus } from '../database/rows';
import { camelRow, camelRows, returned } from '../database/sql';
import { isUuid } from '../federations/federation.repository';

const COLUMNS =
  'id, federation_id, name, public_key, status, created_at, approved_at, revoked_at, max_weight';

/** Sites enrolled in federations. */
@Injectable()
export class SiteRepository {
  constructor(@Inject(DATABASE) private readonly db: Database) {}

  async insert(
    em: EntityManager,
    federationId: string,
    name: string,
    publicKey: string,
    maxWeight: number | null = null,
  ): Promise<SiteRow> {
    const rows = await em.query(
      `INSERT INTO site (federation_id, name, public_key, status, max_weight) VALUES ($1, $2, $3, 'pending', $4) RETURNING ${COLUMNS}`,
      [federationId, name, publicKey, maxWeight],
    );
    return camelRow<SiteRow>(rows[0]);
  }

  async findById(federationId: string, id: string): Promise<SiteRow | null> {
    if (!isUuid(id)) return null;
    const rows = await this.db.manager.query(
      `SELECT ${COLUMNS} FROM site WHERE federation_id = $1 AND id = $2`,
      [federationId, id],
    );
    return rows.length ? camelRow<SiteRow>(rows[0]) : null;
  }

  async findByKey(federationId: string, publicKey: string): Promise<SiteRow | null> {
    const rows = await this.db.manager.query(
      `SELECT ${COLUMNS} FROM site WHERE federation_id = $1 AND public_key = $2`,
      [federationId, publicKey],
    );
    return rows.length ? camelRow<SiteRow>(rows[0]) : null;
  }

  async findByName(federationId: string, name: string): Promise<SiteRow | null> {
    const rows = await this.db.manager.query(
      `SELECT ${COLUMNS} FROM site WHERE federation_id = $1 AND name = $2`,
      [federationId, name],
    );
    return rows.length ? camelRow<SiteRow>(rows[0]) : null;
  }

  async list(federationId: string): Promise<SiteRow[]> {
    return camelRows(
      await this.db.manager.query(
        `SELECT ${COLUMNS} FROM site WHERE federation_id = $1 ORDER BY created_at, name`,
        [federationId],
      ),
    );
  }

  async setStatus(em: EntityManager, id: string, status: SiteStatus): Promise<SiteRow> {
    const stamp =
      status === 'approved'
        ? ', approved_at = now()'
        : status === 'revoked'
          ? ', revoked_at = now()'
          : '';
    const rows = returned(
      await em.query(`UPDATE site SET status = $2${stamp} WHERE id = $1 RETURNING ${COLUMNS}`, [
        id,
        status,
      ]),
    );
    return camelRow<SiteRow>(rows[0]!);
  }
}
