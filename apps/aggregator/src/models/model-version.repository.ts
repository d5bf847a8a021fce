import { createHash } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import { float32ToBytes } from '@confide/protocol';
import { DATABASE } from '../common/tokens';
import type { Database } from '../database/database';
import type { ModelVersionRow } from '../database/rows';
import { camelRow, camelRows } from '../database/sql';
import { isUuid } from '../federations/federation.repository';

const COLUMNS = 'id, federation_id, round_number, parent_id, hash, num_params, created_at';

/**
 * Bytes per stored chunk: one statement each, so on the embedded database (one connection, PGlite
 * running on the event loop) no write or read of a model holds it for longer than one chunk.
 */
export const WEIGHT_CHUNK_BYTES = 1 << 20;

/** Blobs no model version took within this long were left by a failed or interrupted write. */
const ORPHAN_AFTER = '1 hour';

/** Weights written to the database, not yet a model version: what {@link ModelVersionRepository.insert} commits. */
export interface StoredWeights {
  blobId: string;
  hash: string;
  numParams: number;
}

/** Model versions: weights as little-endian float32 bytes in chunks of a blob, with their SHA-256. */
@Injectable()
export class ModelVersionRepository {
  constructor(@Inject(DATABASE) private readonly db: Database) {}

  /**
   * Writes `weights` chunk by chunk, each its own statement outside any transaction, so other
   * requests take turns on the database meanwhile. Commit them with {@link insert}; a caller whose
   * transaction fails calls {@link discard}. Also removes blobs that earlier failed writes left.
   */
  async store(weights: Float32Array): Promise<StoredWeights> {
    await this.db.manager.query(
      `DELETE FROM weight_blob b WHERE b.created_at < now() - interval '${ORPHAN_AFTER}'
         AND NOT EXISTS (SELECT 1 FROM model_version m WHERE m.weights_blob_id = b.id)`,
    );
    return writeChunks(this.db.manager, weights);
  }

  /** Removes stored weights that no model version took. */
  async discard(stored: StoredWeights): Promise<void> {
    await this.db.manager.query(
      `DELETE FROM weight_blob b WHERE b.id = $1
         AND NOT EXISTS (SELECT 1 FROM model_version m WHERE m.weights_blob_id = b.id)`,
      [stored.blobId],
    );
  }

  /**
   * Records a model version in `em`'s transaction: of weights already {@link store}d, or of a
   * Float32Array written here, inside the transaction (which then holds the connection while the
   * chunks are written).
   */
  async insert(
    em: EntityManager,
    v: {
      federationId: string;
      roundNumber: number | null;
      parentId: string | null;
      weights: Float32Array | StoredWeights;
      /** The strategy's state after the step that made these weights (its serialized JSON). */
      strategyState?: unknown;
    },
  ): Promise<ModelVersionRow> {
    const stored = v.weights instanceof Float32Array ? await writeChunks(em, v.weights) : v.weights;
    const rows = await em.query(
      `INSERT INTO model_version (federation_id, round_number, parent_id, hash, num_params, weights_blob_id, strategy_state)
       VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ${COLUMNS}`,
      [
        v.federationId,
        v.roundNumber,
        v.parentId,
        stored.hash,
        stored.numParams,
        stored.blobId,
        v.strategyState === undefined ? null : JSON.stringify(v.strategyState),
      ],
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

  /** The strategy state stored with the version (its JSON), or null when it has none. */
  async strategyState(id: string): Promise<unknown> {
    const rows = await this.db.manager.query<Array<{ strategy_state: unknown }>>(
      `SELECT strategy_state FROM model_version WHERE id = $1`,
      [id],
    );
    return rows[0]?.strategy_state ?? null;
  }

  /**
   * The version's weights, read chunk by chunk as binary (never as bytea's hex text) and checked
   * against its stored hash.
   */
  async weights(id: string): Promise<Float32Array> {
    const rows = await this.db.manager.query<
      Array<{
        hash: string;
        num_params: number;
        weights_blob_id: string;
        sizes: number[];
        idx: number[];
      }>
    >(
      `SELECT m.hash, m.num_params, m.weights_blob_id,
              coalesce(array_agg(octet_length(c.data) ORDER BY c.idx)
                FILTER (WHERE c.idx IS NOT NULL), '{}') AS sizes,
              coalesce(array_agg(c.idx ORDER BY c.idx) FILTER (WHERE c.idx IS NOT NULL), '{}') AS idx
         FROM model_version m LEFT JOIN weight_chunk c ON c.blob_id = m.weights_blob_id
        WHERE m.id = $1 GROUP BY m.id`,
      [id],
    );
    const row = rows[0];
    if (!row) throw new Error(`model version ${id} does not exist`);
    const sizes = row.sizes.map(Number);
    const total = sizes.reduce((a, b) => a + b, 0);
    if (total !== 4 * row.num_params || row.idx.some((k, i) => Number(k) !== i)) {
      throw new Error(`model version ${id} fails its hash check: its chunks are incomplete`);
    }
    const out = new Float32Array(row.num_params);
    const bytes = float32ToBytes(out);
    const hash = createHash('sha256');
    let offset = 0;
    for (let i = 0; i < sizes.length; i++) {
      const data = await this.readChunk(row.weights_blob_id, i);
      if (!data || data.length !== sizes[i]) {
        throw new Error(`model version ${id} fails its hash check: chunk ${i} changed`);
      }
      bytes.set(data, offset);
      hash.update(data);
      offset += data.length;
    }
    if (hash.digest('hex') !== row.hash)
      throw new Error(`model version ${id} fails its hash check`);
    return out;
  }

  /** Chunk `idx` of blob `blobId` as the server's bytes, or null when there is no such chunk. */
  private async readChunk(blobId: string, idx: number): Promise<Buffer | null> {
    // COPY takes no parameters: both values are checked to be what they claim first.
    if (!isUuid(blobId) || !Number.isSafeInteger(idx))
      throw new Error(`bad chunk ${blobId}/${idx}`);
    const copied = await this.db.copyOut(
      `COPY (SELECT data FROM weight_chunk WHERE blob_id = '${blobId}' AND idx = ${idx}) TO STDOUT (FORMAT binary)`,
    );
    return copiedBytea(copied);
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

/** COPY's binary format: this signature, 32-bit flags, a 32-bit header extension length. */
const COPY_SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');

/**
 * The one bytea of a binary COPY of at most one row of one column, or null when it has no rows.
 * Layout: header, then per row a 16-bit field count and per field a 32-bit length and the bytes,
 * then a 16-bit -1.
 */
function copiedBytea(copied: Buffer): Buffer | null {
  const bad = (why: string): Error => new Error(`unexpected binary COPY data: ${why}`);
  if (copied.length < 21 || !copied.subarray(0, 11).equals(COPY_SIGNATURE)) throw bad('no header');
  let at = 19 + copied.readUInt32BE(15);
  const fields = copied.readInt16BE(at);
  at += 2;
  if (fields === -1) return null;
  if (fields !== 1) throw bad(`${fields} fields`);
  const length = copied.readInt32BE(at);
  at += 4;
  if (length < 0 || at + length + 2 !== copied.length) throw bad('not one bytea');
  if (copied.readInt16BE(at + length) !== -1) throw bad('more than one row');
  return copied.subarray(at, at + length);
}

async function writeChunks(em: EntityManager, weights: Float32Array): Promise<StoredWeights> {
  const bytes = float32ToBytes(weights);
  const [blob] = await em.query<Array<{ id: string }>>(
    `INSERT INTO weight_blob DEFAULT VALUES RETURNING id`,
  );
  const blobId = blob!.id;
  const hash = createHash('sha256');
  for (let i = 0, offset = 0; offset < bytes.length; i++) {
    const chunk = Buffer.from(
      bytes.buffer,
      bytes.byteOffset + offset,
      Math.min(WEIGHT_CHUNK_BYTES, bytes.length - offset),
    );
    hash.update(chunk);
    await em.query(`INSERT INTO weight_chunk (blob_id, idx, data) VALUES ($1, $2, $3)`, [
      blobId,
      i,
      chunk,
    ]);
    offset += chunk.length;
  }
  return { blobId, hash: hash.digest('hex'), numParams: weights.length };
}
