import { resolve } from 'node:path';
import type { Database } from '@confide/aggregator';
import { CliError, type Command, type OptionSpec } from '../command';

const common: Record<string, OptionSpec> = {
  'data-dir': {
    type: 'string',
    value: 'DIR',
    description: 'embedded database directory (without DATABASE_URL)',
    default: '.confide/db',
  },
};

async function withDb<T>(dataDir: string, work: (db: Database) => Promise<T>): Promise<T> {
  const { openDatabase } = await import('@confide/aggregator');
  const db = await openDatabase({
    databaseUrl: process.env['DATABASE_URL'] || undefined,
    dataDir: resolve(dataDir),
    migrate: false,
  });
  try {
    return await work(db);
  } finally {
    await db.close();
  }
}

export const dbCommands: Command[] = [
  {
    path: ['db', 'migrate'],
    summary: 'Run pending migrations (the server also does this on start)',
    options: common,
    async run(opts, _p, io) {
      const done = await withDb(String(opts['data-dir']), (db) =>
        db.dataSource.runMigrations({ transaction: 'each' }),
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
      await withDb(String(opts['data-dir']), async (db) => {
        // Every executed migration, newest first (whether or not newer ones are pending).
        while ((await executed(db)) > 0) {
          await db.dataSource.undoLastMigration({ transaction: 'each' });
        }
        await db.dataSource.runMigrations({ transaction: 'each' });
      });
      io.err('database reset');
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
