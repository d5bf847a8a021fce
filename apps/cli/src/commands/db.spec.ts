import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { openDatabase } from '@confide/aggregator';
import { captureIo } from '../../../../test/support/cli';
import { databaseKind, freshDatabaseUrl } from '../../../../test/support/database';
import { main } from '../main';

// Each command opens the database anew: an on-disk PGlite takes seconds to open (the first, to create).
describe(`confide db migrate, revert and reset (${databaseKind})`, { timeout: 90_000 }, () => {
  let tmp: string;
  let dataDir: string;
  let db: Awaited<ReturnType<typeof freshDatabaseUrl>>;

  async function cli(...argv: string[]): Promise<{ code: number; stderr: string }> {
    const io = captureIo();
    const code = await main([...argv, '--data-dir', dataDir], io);
    return { code, stderr: io.stderr() };
  }

  /** Runs `sql` on the database the commands use (no migrations on open); with its public tables. */
  async function inspect<T>(
    sql = 'SELECT 1',
  ): Promise<{ rows: T[]; tables: string[]; executed: number }> {
    const d = await openDatabase({ databaseUrl: db.url, dataDir, migrate: false });
    try {
      const rows = await d.manager.query<T[]>(sql);
      const tables = (
        await d.manager.query<{ t: string }[]>(
          `SELECT table_name AS t FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1`,
        )
      ).map((r) => r.t);
      const executed = tables.includes('schema_migration')
        ? (
            await d.manager.query<{ n: number }[]>(
              `SELECT count(*)::int AS n FROM schema_migration`,
            )
          )[0]!.n
        : 0;
      return { rows, tables, executed };
    } finally {
      await d.close();
    }
  }

  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'confide-db-cli-'));
    dataDir = join(tmp, 'db');
    db = await freshDatabaseUrl();
    vi.stubEnv('DATABASE_URL', db.url ?? '');
  });
  afterAll(async () => {
    vi.unstubAllEnvs();
    await db?.drop();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('migrate applies the schema once; a second migrate finds it up to date', async () => {
    const first = await cli('db', 'migrate');
    expect(first).toEqual({ code: 0, stderr: expect.stringMatching(/^applied \w+/) });
    expect(await cli('db', 'migrate')).toEqual({ code: 0, stderr: 'schema is up to date' });
    expect((await inspect()).tables).toEqual(
      expect.arrayContaining(['federation', 'server_setting', 'schema_migration']),
    );
  });

  it('reset --yes destroys the data and leaves the schema migrated', async () => {
    const before = await inspect(`INSERT INTO server_setting (key, value) VALUES ('probe', 'x')`);
    expect(await cli('db', 'reset', '--yes')).toEqual({ code: 0, stderr: 'database reset' });
    const after = await inspect(`SELECT * FROM server_setting WHERE key = 'probe'`);
    expect(after.rows).toEqual([]);
    expect(after.tables).toEqual(before.tables);
    expect(after.executed).toBe(before.executed);
  });

  it('revert undoes the last migration; with none left it says so; reset then migrates again', async () => {
    const { executed: n, tables } = await inspect();
    expect(n).toBeGreaterThan(0);
    for (let i = 0; i < n; i++) {
      expect(await cli('db', 'revert')).toEqual({
        code: 0,
        stderr: 'reverted the last migration',
      });
    }
    expect(await inspect()).toMatchObject({ executed: 0, tables: ['schema_migration'] });
    expect(await cli('db', 'revert')).toEqual({ code: 0, stderr: 'no migration to revert' });
    expect(await cli('db', 'reset', '--yes')).toEqual({ code: 0, stderr: 'database reset' });
    expect(await inspect()).toMatchObject({ executed: n, tables });
  });
});
