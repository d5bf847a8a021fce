import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * A model version's weights move out of one bytea into chunks of a weight blob. A 200 MB value is one
 * protocol message and one statement, which held the embedded database's only connection for
 * minutes; chunks are written one statement each, before the transaction that commits the version,
 * so other requests take their turns in between. Existing weights become one-chunk blobs (the blob
 * takes the version's id).
 */
export class WeightChunks1763900000630 implements MigrationInterface {
  name = 'WeightChunks1763900000630';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE weight_blob (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        created_at timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query(`
      CREATE TABLE weight_chunk (
        blob_id uuid NOT NULL REFERENCES weight_blob(id) ON DELETE CASCADE,
        idx integer NOT NULL CHECK (idx >= 0),
        data bytea NOT NULL,
        PRIMARY KEY (blob_id, idx)
      )`);
    await q.query(
      `ALTER TABLE model_version ADD COLUMN weights_blob_id uuid REFERENCES weight_blob(id)`,
    );
    await q.query(
      `INSERT INTO weight_blob (id, created_at) SELECT id, created_at FROM model_version`,
    );
    await q.query(
      `INSERT INTO weight_chunk (blob_id, idx, data) SELECT id, 0, weights FROM model_version`,
    );
    await q.query(`UPDATE model_version SET weights_blob_id = id`);
    await q.query(`ALTER TABLE model_version ALTER COLUMN weights_blob_id SET NOT NULL`);
    await q.query(
      `ALTER TABLE model_version ADD CONSTRAINT model_version_weights UNIQUE (weights_blob_id)`,
    );
    await q.query(`ALTER TABLE model_version DROP COLUMN weights`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE model_version ADD COLUMN weights bytea`);
    await q.query(`
      UPDATE model_version SET weights = (
        SELECT string_agg(data, ''::bytea ORDER BY idx) FROM weight_chunk WHERE blob_id = weights_blob_id)`);
    await q.query(`ALTER TABLE model_version ALTER COLUMN weights SET NOT NULL`);
    await q.query(`ALTER TABLE model_version DROP COLUMN weights_blob_id`);
    await q.query(`DROP TABLE weight_chunk`);
    await q.query(`DROP TABLE weight_blob`);
  }
}
