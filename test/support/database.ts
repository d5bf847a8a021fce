import { randomBytes } from 'node:crypto';
import pg from 'pg';

/**
 * A fresh, empty database for one spec file: on the server named by DATABASE_URL when set (a new
 * database created there and dropped afterwards), else nothing (the caller uses PGlite).
 */
export async function freshDatabaseUrl(): Promise<{
  url: string | undefined;
  drop: () => Promise<void>;
}> {
  const base = process.env['DATABASE_URL'];
  if (!base) return { url: undefined, drop: async () => undefined };
  const name = `confide_t_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const u = new URL(base);
  u.pathname = `/${name}`;
  return {
    url: u.toString(),
    drop: async () => {
      const c = new pg.Client({ connectionString: base });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

/** Which database the suite runs on, for test names. */
export const databaseKind = process.env['DATABASE_URL'] ? 'Postgres (DATABASE_URL)' : 'PGlite';
