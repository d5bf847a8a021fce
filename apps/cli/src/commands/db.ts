import { resolve } from 'node:path';
import type { Database } from '@confide/aggregator';
import { CliError, str, UsageError, type Command, type OptionSpec } from '../command';

const common: Record<string, OptionSpec> = {
  'data-dir': {
    type: 'string',
    value: 'DIR',
    description: 'embedded database directory (without DATABASE_URL)',
    default: '.confide/db',
  },
};

/**
 * Opens the database the migration commands work on: with DATABASE_OWNER_URL the owner role's
 * connection (then, when `grant`, the application role DATABASE_URL names is granted what the
 * migrated tables need), else DATABASE_URL, else the embedded database in `dataDir`.
 */
async function withDb<T>(
  dataDir: string,
  work: (db: Database) => Promise<T>,
  { grant = false }: { grant?: boolean } = {},
): Promise<T> {
  const { openDatabase, grantToApplicationRole } = await import('@confide/aggregator');
  const appUrl = process.env['DATABASE_URL'] || undefined;
  const ownerUrl = process.env['DATABASE_OWNER_URL'] || undefined;
  if (ownerUrl && !appUrl) {
    throw new CliError(
      'DATABASE_OWNER_URL is set without DATABASE_URL: set both (the owner migrates, DATABASE_URL names the role that is granted the tables), or neither',
      2,
    );
  }
  const db = await openDatabase({
    databaseUrl: ownerUrl ?? appUrl,
    dataDir: resolve(dataDir),
    migrate: false,
  });
  try {
    const result = await work(db);
    if (grant && ownerUrl && appUrl) await grantToApplicationRole(db, appUrl);
    return result;
  } finally {
    await db.close();
  }
}

export const dbCommands: Command[] = [
  {
    path: ['db', 'migrate'],
    summary: 'Run pending migrations (the server also does this on start)',
    description:
      'Runs pending migrations on DATABASE_URL, or on the embedded database in --data-dir. With\n' +
      'DATABASE_OWNER_URL too, they run as that owner role and the application role DATABASE_URL names\n' +
      'is then granted the tables (see confide db setup-roles).',
    options: common,
    async run(opts, _p, io) {
      const done = await withDb(
        String(opts['data-dir']),
        (db) => db.dataSource.runMigrations({ transaction: 'each' }),
        { grant: true },
      );
      io.err(
        done.length ? `applied ${done.map((m) => m.name).join(', ')}` : 'schema is up to date',
      );
    },
  },
  {
    path: ['db', 'revert'],
    summary: 'Revert the most recent migration',
    options: common,
    async run(opts, _p, io) {
      const reverted = await withDb(String(opts['data-dir']), async (db) => {
        if ((await executed(db)) === 0) return false;
        await db.dataSource.undoLastMigration({ transaction: 'each' });
        return true;
      });
      io.err(reverted ? 'reverted the last migration' : 'no migration to revert');
    },
  },
  {
    path: ['db', 'reset'],
    summary: 'Revert every migration and apply them again (DESTROYS all data)',
    options: {
      ...common,
      yes: { type: 'boolean', description: 'confirm that all data is to be destroyed' },
    },
    async run(opts, _p, io) {
      if (!opts['yes'])
        throw new CliError(
          'db reset destroys every federation, model and token; pass --yes to confirm',
          2,
        );
      await withDb(
        String(opts['data-dir']),
        async (db) => {
          // Every executed migration, newest first (whether or not newer ones are pending).
          while ((await executed(db)) > 0) {
            await db.dataSource.undoLastMigration({ transaction: 'each' });
          }
          await db.dataSource.runMigrations({ transaction: 'each' });
        },
        { grant: true },
      );
      io.err('database reset');
    },
  },
  {
    path: ['db', 'setup-roles'],
    summary: 'Create an owner role for migrations and an application role for the aggregator',
    description:
      'On a Postgres server, in the database --superuser-url names (it must exist), creates or updates\n' +
      'two roles. The owner owns the tables and runs migrations (DATABASE_OWNER_URL). The application\n' +
      'role, which the aggregator runs as (DATABASE_URL), reads and writes rows but does not own the\n' +
      "tables: it cannot alter them, disable or drop the epsilon ledger's append-only triggers, or\n" +
      'update, delete or truncate ledger rows. Tables of an earlier one-role install move to the owner.\n' +
      'Passwords not given are generated (running it again sets new ones); they reach the server as\n' +
      'SCRAM-SHA-256 verifiers. Prints the two URLs (KEY=value lines, or JSON with --json).',
    options: {
      'superuser-url': {
        type: 'string',
        value: 'URL',
        description: 'a superuser connection to the database the aggregator uses',
        required: true,
        env: 'CONFIDE_DB_SUPERUSER_URL',
      },
      owner: {
        type: 'string',
        value: 'NAME',
        description: 'the owner role',
        default: 'confide_owner',
      },
      app: {
        type: 'string',
        value: 'NAME',
        description: 'the application role',
        default: 'confide_app',
      },
      'owner-password': {
        type: 'string',
        value: 'PASSWORD',
        description:
          "the owner's password, at least 12 printable ASCII characters (default: generated)",
        env: 'CONFIDE_DB_OWNER_PASSWORD',
      },
      'app-password': {
        type: 'string',
        value: 'PASSWORD',
        description: "the application role's password (default: generated)",
        env: 'CONFIDE_DB_APP_PASSWORD',
      },
      json: {
        type: 'boolean',
        description: 'print { database, owner, app, ownerUrl, appUrl } as JSON on stdout',
      },
    },
    examples: [
      'confide db setup-roles --superuser-url postgres://postgres@db:5432/confide',
      '(umask 077; confide db setup-roles --superuser-url postgres://postgres@db:5432/confide > confide-db.env)',
    ],
    async run(opts, _p, io) {
      const { setUpRoles, generatePassword, redactUrl } = await import('@confide/aggregator');
      const url = str(opts, 'superuser-url');
      try {
        new URL(url);
      } catch {
        throw new UsageError(
          '--superuser-url must be a URL such as postgres://postgres@host:5432/confide',
        );
      }
      let roles;
      try {
        roles = await setUpRoles(url, {
          owner: str(opts, 'owner'),
          app: str(opts, 'app'),
          ownerPassword: (opts['owner-password'] as string | undefined) ?? generatePassword(),
          appPassword: (opts['app-password'] as string | undefined) ?? generatePassword(),
        });
      } catch (e) {
        throw new CliError(`${redactUrl(url)}: ${(e as Error).message}`);
      }
      if (opts['json']) {
        io.out(JSON.stringify(roles));
        return;
      }
      io.err(
        `roles ready in database ${roles.database}: ${roles.owner} (owner, migrations) and ${roles.app} (the aggregator)`,
      );
      io.out(`DATABASE_OWNER_URL=${roles.ownerUrl}`);
      io.out(`DATABASE_URL=${roles.appUrl}`);
    },
  },
];

async function executed(db: Database): Promise<number> {
  const rows = await db.manager.query(
    `SELECT to_regclass('schema_migration') IS NOT NULL AS present`,
  );
  if (!rows[0].present) return 0;
  const n = await db.manager.query(`SELECT count(*)::int AS n FROM schema_migration`);
  return n[0].n as number;
}
