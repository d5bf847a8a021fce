// Issue 14: on a Postgres server the aggregator ran as the role that owns the tables, so whoever held
// its DATABASE_URL could disable the ledger's append-only triggers and rewrite the ledger.
// `confide db setup-roles` makes an owner for migrations and an application role that cannot.
// Needs a real Postgres server: DATABASE_URL's (a superuser), else postgres@127.0.0.1:5432.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startAggregator, type DatabaseRoles, type RunningAggregator } from '@confide/aggregator';
import { scramVerifier } from '../../apps/aggregator/src/database/database-roles';
import { ApiClient } from '../../apps/cli/src/api-client';
import { main } from '../../apps/cli/src/main';
import { captureIo } from '../support/cli';
import { createFederation, enrolSites, startNode, waitForRun } from '../support/federation';

const SERVER = process.env['DATABASE_URL'] || 'postgres://postgres@127.0.0.1:5432/postgres';
const reachable = await canConnect(SERVER);
const suffix = `${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
const DB = `confide_t_roles_${suffix}`;
const OWNER = `confide_t_owner_${suffix}`;
const APP = `confide_t_app_${suffix}`;

describe.skipIf(!reachable)(
  `database roles on Postgres${reachable ? '' : ` (skipped: no Postgres server at ${redacted(SERVER)})`}`,
  { timeout: 180_000 },
  () => {
    let superuserUrl: string;
    let roles: DatabaseRoles;
    let agg: RunningAggregator | undefined;

    beforeAll(async () => {
      await superuserQuery(SERVER, `CREATE DATABASE ${DB}`);
      superuserUrl = withDatabase(SERVER, DB);
      const io = captureIo();
      const code = await main(
        [
          'db',
          'setup-roles',
          '--superuser-url',
          superuserUrl,
          '--owner',
          OWNER,
          '--app',
          APP,
          '--json',
        ],
        io,
      );
      expect(io.stderr()).toBe('');
      expect(code).toBe(0);
      roles = JSON.parse(io.stdout()) as DatabaseRoles;
    });
    afterAll(async () => {
      await agg?.close();
      vi.unstubAllEnvs();
      await superuserQuery(SERVER, `DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);
      await superuserQuery(SERVER, `DROP ROLE IF EXISTS ${OWNER}, ${APP}`);
    });

    it('prints an owner URL and an application URL for the database it was given', () => {
      expect(roles).toMatchObject({ database: DB, owner: OWNER, app: APP });
      const owner = new URL(roles.ownerUrl);
      const app = new URL(roles.appUrl);
      expect([owner.username, app.username]).toEqual([OWNER, APP]);
      expect([owner.pathname, app.pathname]).toEqual([`/${DB}`, `/${DB}`]);
      expect(owner.password.length).toBeGreaterThanOrEqual(32);
      expect(app.password).not.toBe(owner.password);
    });

    it('runs the aggregator as the application role after migrating as the owner: a DP round writes the ledger', async () => {
      agg = await startAggregator({
        databaseUrl: roles.appUrl,
        databaseOwnerUrl: roles.ownerUrl,
        reconnectGraceMs: 300,
      });
      const owners = await superuserQuery(
        superuserUrl,
        `SELECT DISTINCT pg_get_userbyid(relowner) AS owner FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public' AND c.relkind IN ('r', 'S')`,
      );
      expect(owners.map((r) => r['owner'])).toEqual([OWNER]);
      expect(await agg.db.manager.query(`SELECT current_user AS u`)).toEqual([{ u: APP }]);

      const api = new ApiClient(agg.url, agg.initialAdminToken!);
      const fed = await createFederation(api, {
        minSites: 3,
        localEpochs: 1,
        batchSize: 64,
        optimizer: 'sgd',
        learningRate: 0.1,
        evaluation: { enabled: false },
        dp: { level: 'record', noiseMultiplier: 3, clipNorm: 1, delta: 1e-5, epsilonLimit: 10 },
      });
      const sites = await enrolSites(api, fed.id, 3);
      const nodes = await Promise.all(sites.map((s) => startNode(agg!, fed.id, s)));
      try {
        const { id } = await api.post<{ id: string }>(`/api/v1/federations/${fed.id}/runs`, {
          rounds: 1,
        });
        expect(await waitForRun(api, fed.id, id, 120_000)).toMatchObject({
          status: 'completed',
          roundsDone: 1,
        });
      } finally {
        for (const n of nodes) n.node.stop();
      }
      const ledger = await api.get<{ entries: unknown[] }>(
        `/api/v1/federations/${fed.id}/ledger?pageSize=100`,
      );
      expect(ledger.entries.length).toBeGreaterThanOrEqual(3);
      const verified = await api.post<{ ok: boolean }>(
        `/api/v1/federations/${fed.id}/ledger/verify`,
      );
      expect(verified.ok).toBe(true);
    });

    it('as the application role, cannot disable, drop or bypass the ledger triggers, nor change ledger rows', async () => {
      const statements = [
        'ALTER TABLE ledger_entry DISABLE TRIGGER ALL',
        'ALTER TABLE ledger_entry DISABLE TRIGGER USER',
        'ALTER TABLE ledger_entry DISABLE TRIGGER ledger_entry_no_update_delete',
        'DROP TRIGGER ledger_entry_no_update_delete ON ledger_entry',
        'ALTER TABLE privacy_budget_change DISABLE TRIGGER ALL',
        `CREATE OR REPLACE FUNCTION confide_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$`,
        'SET session_replication_role = replica',
        'UPDATE ledger_entry SET cumulative_epsilon = 0',
        'DELETE FROM ledger_entry',
        'TRUNCATE ledger_entry',
        'UPDATE privacy_budget_change SET new_limit = 1000',
        'DELETE FROM privacy_budget_change',
        'DROP TABLE ledger_entry CASCADE',
        'ALTER TABLE federation ADD COLUMN backdoor text',
        'CREATE TABLE public.backdoor (x int)',
        `INSERT INTO schema_migration (timestamp, name) VALUES (1, 'Forged1')`,
      ];
      // Each statement is valid and takes effect for the owner, who may switch the triggers off (in a
      // transaction rolled back), so a refusal below is the role's missing privilege, not a typo.
      const owner = await client(roles.ownerUrl);
      const app = await client(roles.appUrl);
      try {
        const rows = await owner.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM ledger_entry`,
        );
        expect(rows.rows[0]!.n).toBeGreaterThan(0);
        for (const sql of statements) {
          // Superusers only, by design: system (foreign-key) triggers, and replica mode.
          if (/TRIGGER ALL|session_replication_role/.test(sql)) continue;
          await owner.query('BEGIN');
          await owner.query('ALTER TABLE ledger_entry DISABLE TRIGGER USER');
          await owner.query('ALTER TABLE privacy_budget_change DISABLE TRIGGER USER');
          await expect(owner.query(sql), `owner: ${sql}`).resolves.toBeDefined();
          await owner.query('ROLLBACK');
        }
        for (const sql of statements) {
          // The privilege check, not the append-only trigger (which raises 42501 too).
          await expect(app.query(sql), `app: ${sql}`).rejects.toMatchObject({
            code: '42501',
            message: expect.stringMatching(/^(permission denied|must be owner)/),
          });
        }
        // What the aggregator does need still works for it.
        await expect(app.query(`SELECT count(*) FROM ledger_entry`)).resolves.toMatchObject({
          rowCount: 1,
        });
      } finally {
        await owner.end();
        await app.end();
      }
    });

    it('grants tables a later migration creates: confide db migrate with both URLs', async () => {
      vi.stubEnv('DATABASE_URL', roles.appUrl);
      vi.stubEnv('DATABASE_OWNER_URL', roles.ownerUrl);
      await agg?.close();
      agg = undefined;
      const cli = async (...argv: string[]) => {
        const io = captureIo();
        return { code: await main(argv, io), err: io.stderr() };
      };
      expect(await cli('db', 'revert')).toEqual({ code: 0, err: 'reverted the last migration' });
      expect(await cli('db', 'migrate')).toMatchObject({
        code: 0,
        err: expect.stringMatching(/^applied /),
      });
      const app = await client(roles.appUrl);
      try {
        // The re-created tables belong to the owner and the application role may use them.
        const blob = await app.query<{ id: string }>(
          `INSERT INTO weight_blob DEFAULT VALUES RETURNING id`,
        );
        expect(blob.rowCount).toBe(1);
        await expect(
          app.query(`DELETE FROM weight_blob WHERE id = $1`, [blob.rows[0]!.id]),
        ).resolves.toMatchObject({ rowCount: 1 });
        await expect(app.query(`DROP TABLE weight_chunk`)).rejects.toMatchObject({ code: '42501' });
      } finally {
        await app.end();
      }
      vi.unstubAllEnvs();
    });

    it('starts as the application role alone once migrated; a pending migration names the owner', async () => {
      const alone = await startAggregator({ databaseUrl: roles.appUrl });
      await alone.close();
      vi.stubEnv('DATABASE_URL', roles.appUrl);
      vi.stubEnv('DATABASE_OWNER_URL', roles.ownerUrl);
      try {
        expect(await main(['db', 'revert'], captureIo())).toBe(0);
        await expect(startAggregator({ databaseUrl: roles.appUrl })).rejects.toThrow(
          /a pending migration needs the schema's owner .*set DATABASE_OWNER_URL/,
        );
        expect(await main(['db', 'migrate'], captureIo())).toBe(0);
      } finally {
        vi.unstubAllEnvs();
      }
    });

    it('refuses to start as an application role that could act as the owner', async () => {
      await expect(
        startAggregator({ databaseUrl: superuserUrl, databaseOwnerUrl: roles.ownerUrl }),
      ).rejects.toThrow(/is a superuser: it could disable the ledger's append-only triggers/);
      await expect(
        startAggregator({ databaseUrl: roles.ownerUrl, databaseOwnerUrl: roles.ownerUrl }),
      ).rejects.toThrow(/both log in as/);
      await expect(startAggregator({ databaseOwnerUrl: roles.ownerUrl })).rejects.toThrow(
        /DATABASE_OWNER_URL is set without DATABASE_URL/,
      );
    });

    it('refuses a database holding tables that are not Confide’s, taking none of them over', async () => {
      const other = `confide_t_shared_${suffix}`;
      await superuserQuery(SERVER, `CREATE DATABASE ${other}`);
      try {
        const url = withDatabase(SERVER, other);
        await superuserQuery(url, `CREATE TABLE payroll (salary int)`);
        const io = captureIo();
        const code = await main(
          ['db', 'setup-roles', '--superuser-url', url, '--owner', OWNER, '--app', APP],
          io,
        );
        expect(code).toBe(1);
        expect(io.stderr()).toMatch(/tables in schema public that are not Confide's/);
        const [owner] = await superuserQuery(
          url,
          `SELECT pg_get_userbyid(relowner) AS o FROM pg_class WHERE relname = 'payroll'`,
        );
        expect(owner!['o']).not.toBe(OWNER);
      } finally {
        await superuserQuery(SERVER, `DROP DATABASE IF EXISTS ${other} WITH (FORCE)`);
      }
    });

    it('sends passwords as the SCRAM-SHA-256 verifier Postgres itself makes', async () => {
      const stored = await superuserQuery(
        superuserUrl,
        `SELECT rolpassword FROM pg_authid WHERE rolname = $1`,
        [APP],
      );
      const verifier = String(stored[0]!['rolpassword']);
      const m = /^SCRAM-SHA-256\$(\d+):([^$]+)\$/.exec(verifier);
      expect(m).not.toBeNull();
      const password = new URL(roles.appUrl).password;
      expect(scramVerifier(password, Buffer.from(m![2]!, 'base64'), Number(m![1]))).toBe(verifier);
      // And one Postgres computed from a password it was sent in clear, for the same salt.
      const probe = `confide_t_probe_${suffix}`;
      await superuserQuery(
        superuserUrl,
        `SET password_encryption = 'scram-sha-256'; CREATE ROLE ${probe} PASSWORD 'correct horse battery'`,
      );
      try {
        const [row] = await superuserQuery(
          superuserUrl,
          `SELECT rolpassword FROM pg_authid WHERE rolname = $1`,
          [probe],
        );
        const theirs = String(row!['rolpassword']);
        const [, iter, salt] = /^SCRAM-SHA-256\$(\d+):([^$]+)\$/.exec(theirs)!;
        expect(
          scramVerifier('correct horse battery', Buffer.from(salt!, 'base64'), Number(iter)),
        ).toBe(theirs);
      } finally {
        await superuserQuery(superuserUrl, `DROP ROLE ${probe}`);
      }
    });
  },
);

async function canConnect(url: string): Promise<boolean> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  try {
    await c.connect();
    await c.end();
    return true;
  } catch {
    return false;
  }
}

async function client(url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  return c;
}

async function superuserQuery(
  url: string,
  sql: string,
  params?: unknown[],
): Promise<Array<Record<string, unknown>>> {
  const c = await client(url);
  try {
    // A string of several statements answers with one result per statement.
    const r = (await c.query(sql, params)) as unknown as
      pg.QueryResult<Record<string, unknown>> | Array<pg.QueryResult<Record<string, unknown>>>;
    return Array.isArray(r) ? (r.at(-1)?.rows ?? []) : r.rows;
  } finally {
    await c.end();
  }
}

function withDatabase(url: string, db: string): string {
  const u = new URL(url);
  u.pathname = `/${db}`;
  return u.toString();
}

function redacted(url: string): string {
  const u = new URL(url);
  if (u.password) u.password = '***';
  return u.toString();
}
