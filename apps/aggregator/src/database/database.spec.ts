import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshDatabaseUrl, databaseKind } from '../../../../test/support/database';
import { openDatabase, type Database } from './database';
import { MIGRATIONS } from '../../../../migrations/index';
import { FederationRepository } from '../federations/federation.repository';
import { SiteRepository } from '../sites/site.repository';
import { RoundRepository } from '../rounds/round.repository';
import {
  ModelVersionRepository,
  WEIGHT_CHUNK_BYTES,
  type StoredWeights,
} from '../models/model-version.repository';
import { WeightChunks1763900000630 } from '../../../../migrations/1763900000630-weight-chunks';
import { float32ToBytes, sha256Hex } from '@confide/protocol';
import { ApiTokenRepository } from '../auth/api-token.repository';
import { hashToken } from '../auth/auth.service';

/** The parts of a `pg` pool's client this spec reads. */
interface PooledClient {
  connection: { stream: { bytesRead: number } };
}

describe(`migrations and repositories on ${databaseKind}`, () => {
  let db: Database;
  let drop: () => Promise<void>;

  beforeAll(async () => {
    const fresh = await freshDatabaseUrl();
    drop = fresh.drop;
    db = await openDatabase({ databaseUrl: fresh.url });
  });
  afterAll(async () => {
    await db.close();
    await drop();
  });

  it('applies every migration, reverts them all, and applies them again', async () => {
    const applied = await db.manager.query(`SELECT name FROM schema_migration ORDER BY id`);
    expect(applied.map((r: { name: string }) => r.name)).toEqual(MIGRATIONS.map((m) => m.name));
    for (let i = 0; i < MIGRATIONS.length; i++) await db.dataSource.undoLastMigration();
    const tables = await db.manager.query(
      `SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = 'public' AND table_name <> 'schema_migration'`,
    );
    expect(tables[0].n).toBe(0);
    await db.dataSource.runMigrations();
    expect(await db.dataSource.showMigrations()).toBe(false);
  });

  it('stores federations, sites, rounds and model versions, and enforces their constraints', async () => {
    const feds = new FederationRepository(db);
    const sites = new SiteRepository(db);
    const rounds = new RoundRepository(db);
    const models = new ModelVersionRepository(db);
    const weights = Float32Array.from([0.5, -1.25, 3]);
    const { fed, v0 } = await db.transaction(async (em) => {
      const f = await feds.insert(em, {
        name: 'repo-test',
        modelSpec: { kind: 'logistic', inputDim: 2 },
        strategy: 'fedavg',
        config: {
          minSites: 1,
          roundTimeoutMs: 1000,
          evaluationTimeoutMs: 1000,
          seed: 1,
          train: { epochs: 1, batchSize: 8, learningRate: 0.1, optimizer: 'sgd' },
        },
      });
      const v = await models.insert(em, {
        federationId: f.id,
        roundNumber: null,
        parentId: null,
        weights,
      });
      await feds.setCurrentModel(em, f.id, v.id);
      return { fed: f, v0: v };
    });
    expect((await feds.findById(fed.id))?.currentModelVersionId).toBe(v0.id);
    expect(await feds.findById('not-a-uuid')).toBeNull();
    expect(Array.from(await models.weights(v0.id))).toEqual([0.5, -1.25, 3]);

    // A stored model whose bytes no longer match its hash is refused, not served.
    await db.manager.query(
      `UPDATE weight_chunk SET data = $2
        WHERE blob_id = (SELECT weights_blob_id FROM model_version WHERE id = $1)`,
      [v0.id, Buffer.alloc(12)],
    );
    await expect(models.weights(v0.id)).rejects.toThrow(/hash check/);

    const s = await db.transaction((em) =>
      sites.insert(em, fed.id, 'hospital-1', 'a'.repeat(43) + '='),
    );
    await expect(
      db.transaction((em) => sites.insert(em, fed.id, 'hospital-1', 'b'.repeat(43) + '=')),
    ).rejects.toThrow();
    const approved = await db.transaction((em) => sites.setStatus(em, s.id, 'approved'));
    expect(approved.status).toBe('approved');
    expect(approved.approvedAt).toBeInstanceOf(Date);

    const run = await db.transaction((em) => rounds.insertRun(em, fed.id, 2));
    // Only one running run per federation.
    await expect(db.transaction((em) => rounds.insertRun(em, fed.id, 1))).rejects.toThrow();
    const r1 = await db.transaction(async (em) =>
      rounds.insertRound(em, {
        federationId: fed.id,
        runId: run.id,
        number: await rounds.nextRoundNumber(em, fed.id),
        baseModelVersionId: v0.id,
        deadline: new Date(Date.now() + 1000),
      }),
    );
    expect(r1.number).toBe(1);
    await db.transaction((em) =>
      rounds.transition(em, r1.id, 'collecting', {
        participants: [{ siteId: s.id, name: 'hospital-1', status: 'selected' }],
      }),
    );
    const ended = await db.transaction((em) =>
      rounds.transition(em, r1.id, 'aborted', { reason: 'test', ended: true }),
    );
    expect(ended).toMatchObject({ state: 'aborted', reason: 'test' });
    expect(ended.durationMs).toBeGreaterThanOrEqual(0);
    // An ended round cannot be moved again.
    await expect(db.transaction((em) => rounds.transition(em, r1.id, 'committed'))).rejects.toThrow(
      /already ended/,
    );
    const events = await rounds.roundEvents(r1.id);
    expect(events.map((e) => e.state)).toEqual(['scheduled', 'collecting', 'aborted']);
    // The state column only takes the states of the state machine.
    await expect(
      db.manager.query(`UPDATE round SET state = 'bogus' WHERE id = $1`, [r1.id]),
    ).rejects.toThrow();
  });

  it('stores a model over several chunks, reads it back whole, and refuses one with a chunk missing', async () => {
    const models = new ModelVersionRepository(db);
    const weights = new Float32Array(Math.floor((2.5 * WEIGHT_CHUNK_BYTES) / 4) + 3);
    for (let i = 0; i < weights.length; i++) weights[i] = Math.sin(i);
    const stored = await models.store(weights);
    const chunks = await db.manager.query<Array<{ n: number }>>(
      `SELECT idx, octet_length(data)::int AS n FROM weight_chunk WHERE blob_id = $1 ORDER BY idx`,
      [stored.blobId],
    );
    expect(chunks.map((c) => c.n)).toEqual([
      WEIGHT_CHUNK_BYTES,
      WEIGHT_CHUNK_BYTES,
      4 * weights.length - 2 * WEIGHT_CHUNK_BYTES,
    ]);
    expect(stored.hash).toBe(sha256Hex(float32ToBytes(weights)));
    const version = await insertVersion('chunked', stored);
    expect(version).toMatchObject({ hash: stored.hash, numParams: weights.length });
    const back = Buffer.from(float32ToBytes(await models.weights(version.id)));
    expect(back.equals(Buffer.from(float32ToBytes(weights)))).toBe(true);
    // A version's blob is its own: discarding it after the commit keeps it.
    await models.discard(stored);
    expect((await models.weights(version.id)).length).toBe(weights.length);

    await db.manager.query(`DELETE FROM weight_chunk WHERE blob_id = $1 AND idx = 1`, [
      stored.blobId,
    ]);
    await expect(models.weights(version.id)).rejects.toThrow(/hash check.*incomplete/);
  });

  it('reads weights as their bytes, not as hex text, and refuses a chunk changed in place', async () => {
    const models = new ModelVersionRepository(db);
    const weights = new Float32Array((2 * WEIGHT_CHUNK_BYTES) / 4 + 5);
    for (let i = 0; i < weights.length; i++) weights[i] = Math.cos(i);
    const stored = await models.store(weights);
    const version = await insertVersion('binary-read', stored);
    // What the server sent on every connection of the pool (the embedded database has one).
    const pool = (db.dataSource.driver as unknown as { master: { _clients: PooledClient[] } })
      .master;
    const bytesRead = (): number =>
      pool._clients.reduce((n, c) => n + c.connection.stream.bytesRead, 0);
    const before = bytesRead();
    const back = await models.weights(version.id);
    const received = bytesRead() - before;
    expect(Buffer.from(float32ToBytes(back)).equals(Buffer.from(float32ToBytes(weights)))).toBe(
      true,
    );
    // Hex text would be twice the weights' size.
    expect(received).toBeGreaterThanOrEqual(4 * weights.length);
    expect(received).toBeLessThan(1.1 * 4 * weights.length);

    await db.manager.query(
      `UPDATE weight_chunk SET data = set_byte(data, 7, get_byte(data, 7) # 1)
        WHERE blob_id = $1 AND idx = 1`,
      [stored.blobId],
    );
    await expect(models.weights(version.id)).rejects.toThrow(/fails its hash check$/);

    // A failed COPY is an error and leaves the connection usable.
    await expect(db.copyOut(`COPY (SELECT no_such_column) TO STDOUT`)).rejects.toThrow(
      /no_such_column/,
    );
    const [after] = await db.manager.query<Array<{ hash: string }>>(
      `SELECT hash FROM model_version WHERE id = $1`,
      [version.id],
    );
    expect(after?.hash).toBe(stored.hash);
  });

  it('removes weights no version took: at once when discarded, after an hour when abandoned', async () => {
    const models = new ModelVersionRepository(db);
    const blobs = async (): Promise<string[]> =>
      (await db.manager.query<Array<{ id: string }>>(`SELECT id FROM weight_blob`)).map(
        (r) => r.id,
      );
    const discarded = await models.store(Float32Array.from([1, 2, 3]));
    await models.discard(discarded);
    expect(await blobs()).not.toContain(discarded.blobId);
    const abandoned = await models.store(Float32Array.from([4, 5]));
    const recent = await models.store(Float32Array.from([6]));
    await db.manager.query(
      `UPDATE weight_blob SET created_at = now() - interval '2 hours' WHERE id = $1`,
      [abandoned.blobId],
    );
    const next = await models.store(Float32Array.from([7]));
    const left = await blobs();
    expect(left).not.toContain(abandoned.blobId);
    expect(left).toEqual(expect.arrayContaining([recent.blobId, next.blobId]));
    const orphans = await db.manager.query<Array<{ n: number }>>(
      `SELECT count(*)::int AS n FROM weight_chunk WHERE blob_id = $1`,
      [abandoned.blobId],
    );
    expect(orphans[0]!.n).toBe(0);
  });

  it('keeps the weights of existing versions when the chunk migration is applied and reverted', async () => {
    const models = new ModelVersionRepository(db);
    const versions = await Promise.all(
      [Float32Array.from([0.25, -8]), new Float32Array(WEIGHT_CHUNK_BYTES / 2).fill(0.5)].map(
        async (weights, i) => ({ ...(await insertVersion(`legacy-${i}`, weights)), weights }),
      ),
    );
    const executed = async (): Promise<string[]> =>
      (await db.manager.query<Array<{ name: string }>>(`SELECT name FROM schema_migration`)).map(
        (r) => r.name,
      );
    let reverted = 0;
    while ((await executed()).includes(WeightChunks1763900000630.name)) {
      await db.dataSource.undoLastMigration();
      reverted++;
    }
    expect(reverted).toBeGreaterThan(0);
    for (const v of versions) {
      const [legacy] = await db.manager.query<Array<{ weights: Buffer }>>(
        `SELECT weights FROM model_version WHERE id = $1`,
        [v.id],
      );
      expect(sha256Hex(legacy!.weights)).toBe(v.hash);
    }
    await db.dataSource.runMigrations();
    for (const v of versions) {
      const after = Buffer.from(float32ToBytes(await models.weights(v.id)));
      expect(after.equals(Buffer.from(float32ToBytes(v.weights)))).toBe(true);
    }
  });

  it('keeps API tokens only as hashes', async () => {
    const tokens = new ApiTokenRepository(db);
    const row = await tokens.insert('auditor', 'audit', hashToken('cfd_auditor_secret'));
    expect(await tokens.findActiveByHash(hashToken('cfd_auditor_secret'))).toMatchObject({
      id: row.id,
      role: 'auditor',
    });
    const stored = await db.manager.query(`SELECT * FROM api_token WHERE id = $1`, [row.id]);
    expect(JSON.stringify(stored)).not.toContain('cfd_auditor_secret');
    await expect(tokens.insert('root' as never, 'x', 'h')).rejects.toThrow();
  });

  /** A federation named `name` with one model version of `weights`. */
  function insertVersion(
    name: string,
    weights: Float32Array | StoredWeights,
  ): Promise<{ id: string; hash: string; numParams: number }> {
    const feds = new FederationRepository(db);
    const models = new ModelVersionRepository(db);
    return db.transaction(async (em) => {
      const f = await feds.insert(em, {
        name,
        modelSpec: { kind: 'logistic', inputDim: 2 },
        strategy: 'fedavg',
        config: {
          minSites: 1,
          roundTimeoutMs: 1000,
          evaluationTimeoutMs: 1000,
          seed: 1,
          train: { epochs: 1, batchSize: 8, learningRate: 0.1, optimizer: 'sgd' },
        },
      });
      return models.insert(em, { federationId: f.id, roundNumber: null, parentId: null, weights });
    });
  }
});
