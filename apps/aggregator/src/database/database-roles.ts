import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import pg from 'pg';

/** Runs one statement and gives its rows. */
export type RunSql = (sql: string, params?: unknown[]) => Promise<Array<Record<string, unknown>>>;

/** A role name Confide creates or grants to: plain lower-case identifiers only. */
const ROLE_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/** Tables whose rows the database refuses to change: those guarded by confide_append_only(). */
export async function appendOnlyTables(run: RunSql): Promise<string[]> {
  const rows = await run(
    `SELECT DISTINCT c.relname AS name
       FROM pg_trigger t
       JOIN pg_class c ON c.oid = t.tgrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_proc p ON p.oid = t.tgfoid
      WHERE p.proname = 'confide_append_only' AND n.nspname = 'public'
      ORDER BY 1`,
  );
  return rows.map((r) => String(r['name']));
}

/**
 * Gives the application role what the aggregator needs and no more: rows of every table in schema
 * public, only SELECT and INSERT on the append-only ones and on schema_migration, sequences, and the
 * same on tables the owner creates later. Never ownership, TRIGGER or REFERENCES: the application
 * role cannot ALTER or DROP a table or its triggers. Run as the owner (`forOwner` absent) or as a
 * superuser on the owner's behalf.
 */
export async function grantApplicationRole(
  run: RunSql,
  app: string,
  forOwner?: string,
): Promise<void> {
  const a = ident(app);
  const forRole = forOwner ? ` FOR ROLE ${ident(forOwner)}` : '';
  await run(`GRANT USAGE ON SCHEMA public TO ${a}`);
  await run(`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ${a}`);
  await run(`GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO ${a}`);
  await run(
    `ALTER DEFAULT PRIVILEGES${forRole} IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO ${a}`,
  );
  await run(
    `ALTER DEFAULT PRIVILEGES${forRole} IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO ${a}`,
  );
  for (const table of await appendOnlyTables(run)) {
    await run(`REVOKE UPDATE, DELETE, TRUNCATE ON ${ident(table)} FROM ${a}`);
  }
  const migrations = await run(`SELECT to_regclass('public.schema_migration') IS NOT NULL AS t`);
  if (migrations[0]?.['t']) {
    await run(`REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON schema_migration FROM ${a}`);
  }
}

/** The role a connection string logs in as. */
export async function currentRole(url: string): Promise<string> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const r = await c.query<{ u: string }>(`SELECT current_user AS u`);
    return r.rows[0]!.u;
  } finally {
    await c.end();
  }
}

/**
 * Refuses an application role that could undo the ledger's protection: a superuser (it can disable
 * any trigger), the owner itself, or a member of the owner's role.
 */
export async function checkApplicationRole(run: RunSql, app: string, owner: string): Promise<void> {
  if (app === owner) {
    throw new Error(
      `DATABASE_URL and DATABASE_OWNER_URL both log in as "${app}": the application role must not own the tables (create one with confide db setup-roles), or leave DATABASE_OWNER_URL unset to run as one role`,
    );
  }
  const rows = await run(
    `SELECT rolsuper AS superuser, pg_has_role($1, $2, 'MEMBER') AS member
       FROM pg_roles WHERE rolname = $1`,
    [app, owner],
  );
  const row = rows[0];
  if (!row) throw new Error(`role "${app}" does not exist`);
  if (row['superuser']) {
    throw new Error(
      `the application role "${app}" is a superuser: it could disable the ledger's append-only triggers; give DATABASE_URL a role made by confide db setup-roles`,
    );
  }
  if (row['member']) {
    throw new Error(
      `the application role "${app}" is a member of the owner "${owner}": it could alter the tables and drop the ledger's triggers`,
    );
  }
}

/** What `setUpRoles` made: the two roles and their connection strings. */
export interface DatabaseRoles {
  database: string;
  owner: string;
  app: string;
  /** DATABASE_OWNER_URL: migrations. */
  ownerUrl: string;
  /** DATABASE_URL: the running aggregator. */
  appUrl: string;
}

/**
 * Creates (or updates) the owner role, which owns the schema and runs migrations, and the
 * application role the aggregator runs as, in the database `superuserUrl` names. Existing tables,
 * sequences and functions in schema public move to the owner; the application role is granted
 * through {@link grantApplicationRole}. Passwords are sent as SCRAM-SHA-256 verifiers, so a statement
 * log never holds them.
 */
export async function setUpRoles(
  superuserUrl: string,
  opts: { owner: string; app: string; ownerPassword: string; appPassword: string },
): Promise<DatabaseRoles> {
  for (const [what, name] of [
    ['owner', opts.owner],
    ['application', opts.app],
  ] as const) {
    if (!ROLE_NAME.test(name)) {
      throw new Error(
        `the ${what} role name "${name}" is not a plain identifier (lower-case letters, digits and _, at most 63)`,
      );
    }
  }
  if (opts.owner === opts.app) throw new Error('the owner and application roles must differ');
  for (const pw of [opts.ownerPassword, opts.appPassword]) checkPassword(pw);
  const c = new pg.Client({ connectionString: superuserUrl });
  await c.connect();
  const run: RunSql = async (sql, params) =>
    (await c.query<Record<string, unknown>>(sql, params)).rows;
  try {
    const me = await run(
      `SELECT rolsuper AS superuser, current_database() AS db FROM pg_roles WHERE rolname = current_user`,
    );
    if (!me[0]?.['superuser']) {
      throw new Error('--superuser-url must log in as a superuser (it creates roles and grants)');
    }
    const database = String(me[0]['db']);
    const o = roleIdent(opts.owner);
    const a = roleIdent(opts.app);
    await run('BEGIN');
    await refuseForeignTables(run, database);
    for (const [name, password] of [
      [opts.owner, opts.ownerPassword],
      [opts.app, opts.appPassword],
    ] as const) {
      const exists = await run(`SELECT rolsuper FROM pg_roles WHERE rolname = $1`, [name]);
      if (exists[0]?.['rolsuper']) {
        throw new Error(`role "${name}" exists and is a superuser; choose another name`);
      }
      const verb = exists.length ? 'ALTER' : 'CREATE';
      await run(
        `${verb} ROLE ${roleIdent(name)} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD ${literal(scramVerifier(password))}`,
      );
    }
    const member = await run(`SELECT pg_has_role($1, $2, 'MEMBER') AS m`, [opts.app, opts.owner]);
    if (member[0]?.['m']) {
      throw new Error(
        `role "${opts.app}" is a member of "${opts.owner}": it would act as the owner; choose other names`,
      );
    }
    await run(`GRANT CONNECT ON DATABASE ${ident(database)} TO ${o}, ${a}`);
    await run(`REVOKE CREATE ON SCHEMA public FROM PUBLIC`);
    await run(`GRANT USAGE, CREATE ON SCHEMA public TO ${o}`);
    await transferOwnership(run, opts.owner);
    await grantApplicationRole(run, opts.app, opts.owner);
    await run('COMMIT');
    return {
      database,
      owner: opts.owner,
      app: opts.app,
      ownerUrl: withCredentials(superuserUrl, opts.owner, opts.ownerPassword),
      appUrl: withCredentials(superuserUrl, opts.app, opts.appPassword),
    };
  } catch (e) {
    await c.query('ROLLBACK').catch(() => undefined);
    throw e;
  } finally {
    await c.end();
  }
}

/** A fresh password for a generated role: 32 URL-safe characters. */
export function generatePassword(): string {
  return randomBytes(24).toString('base64url');
}

/**
 * Every table in schema public moves to the owner: refused when some are not Confide's (tables but
 * no schema_migration), so a shared database's other tables are never taken over.
 */
async function refuseForeignTables(run: RunSql, database: string): Promise<void> {
  const rows = await run(
    `SELECT count(*)::int AS n, bool_or(c.relname = 'schema_migration') AS confide
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm')`,
  );
  if (Number(rows[0]?.['n']) > 0 && !rows[0]?.['confide']) {
    throw new Error(
      `database ${database} has tables in schema public that are not Confide's (no schema_migration); give Confide a database of its own`,
    );
  }
}

/** Tables, views, standalone sequences and functions of schema public, from a one-role install. */
async function transferOwnership(run: RunSql, owner: string): Promise<void> {
  const o = roleIdent(owner);
  const relations = await run(
    `SELECT c.relname AS name, c.relkind AS kind
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
        AND pg_get_userbyid(c.relowner) <> $1
        AND NOT (c.relkind = 'S' AND EXISTS (
          SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i')))`,
    [owner],
  );
  for (const r of relations) {
    const kind = r['kind'] === 'S' ? 'SEQUENCE' : r['kind'] === 'v' ? 'VIEW' : 'TABLE';
    const what = r['kind'] === 'm' ? 'MATERIALIZED VIEW' : kind;
    await run(`ALTER ${what} ${ident(String(r['name']))} OWNER TO ${o}`);
  }
  const functions = await run(
    `SELECT p.oid::regprocedure::text AS sig
       FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
      WHERE n.nspname = 'public' AND pg_get_userbyid(p.proowner) <> $1
        AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')`,
    [owner],
  );
  for (const f of functions) await run(`ALTER FUNCTION ${String(f['sig'])} OWNER TO ${o}`);
}

/** The URL with another user and password; host, port, database and parameters unchanged. */
function withCredentials(url: string, user: string, password: string): string {
  const u = new URL(url);
  u.username = user;
  u.password = password;
  return u.toString();
}

function checkPassword(pw: string): void {
  // Printable ASCII: SASLprep leaves it unchanged, so the verifier below is the one Postgres makes.
  if (!/^[\x21-\x7e]{12,}$/.test(pw)) {
    throw new Error(
      'a role password must be at least 12 printable ASCII characters, without spaces',
    );
  }
}

/** The SCRAM-SHA-256 verifier Postgres stores for `password` (RFC 5802, as libpq's PQencryptPassword). */
export function scramVerifier(password: string, salt = randomBytes(16), iterations = 4096): string {
  const salted = pbkdf2Sync(password, salt, iterations, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}

function roleIdent(name: string): string {
  if (!ROLE_NAME.test(name)) throw new Error(`"${name}" is not a plain role name`);
  return ident(name);
}

function ident(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

function literal(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}
