import { Inject, Injectable } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import { bytesToFloat32, float32ToBytes, sha256Hex } from '@confide/protocol';
import { DATABASE } from '../common/tokens';
import type { Database } from '../database/database';
import type { ModelVersionRow } from '../database/rows';
import { camelRow, camelRows } from '../database/sql';
import { isUuid } from '../federations/federation.repository';

const COLUMNS = 'id, federation_id, round_number, parent_id, hash, num_params, created_at';

/** Model versions: weights as little-endian float32 bytes, with their SHA-256. */
@Injectable()
export class ModelVersionRepository {
  constructor(@Inject(DATABASE) private readonly db: Database) {}

  async insert(
    em: EntityManager,
    v: {
      federationId: string;
      roundNumber: number | null;
      parentId: string | null;
      weights: Float32Array;
    },
  ): Promise<ModelVersionRow> {
    const bytes = Buffer.from(float32ToBytes(v.weights));
    const rows = await em.query(
      `INSERT INTO model_version (federation_id, round_number, parent_id, hash, num_params, weights)
       VALUES ($1, $2, $3, $4, $5, $6) RETURNING ${COLUMNS}`,
      [v.federationId, v.roundNumber, v.parentId, sha256Hex(bytes), v.weights.length, bytes],
    );
    return camelRow<ModelVersionRow>(rows[0]);
  }

  async find(federationId: string, id: string): Promise<ModelVersionRow | null> {
    if (!isUuid(id)) return null;
    const rows = await this.db.manager.query(
      `SELECT ${COLUMNS} FROM model_version WHERE federation_id = $1 AND id = $2`,
      [federationId, id],
    );
    return rows.length ? camelRow<ModelVersionRow>(rows[0]) : null;
  }

  /** The version's weights, checked against its stored hash. */
  async weights(id: string): Promise<Float32Array> {
    const rows = await this.db.manager.query(
      `SELECT hash, weights FROM model_version WHERE id = $1`,
      [id],
    );
    if (!rows.length) throw new Error(`model version ${id} does not exist`);
    const bytes = rows[0].weights as Buffer;
    if (sha256Hex(bytes) !== rows[0].hash)
      throw new Error(`model version ${id} fails its hash check`);
    return bytesToFloat32(bytes);
  }

  async list(federationId: string): Promise<ModelVersionRow[]> {
    return camelRows(
      await this.db.manager.query(
        `SELECT ${COLUMNS} FROM model_version WHERE federation_id = $1 ORDER BY created_at, round_number NULLS FIRST`,
        [federationId],
      ),
    );
  }
}
