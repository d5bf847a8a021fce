import { mkdirSync } from 'node:fs';
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import { DataSource, type EntityManager } from 'typeorm';
import { MIGRATIONS } from '../../../../migrations/index';

/** Where the aggregator keeps its data. */
export interface DatabaseOptions {
  /** A Postgres server; when absent the embedded PGlite is used. */
  databaseUrl?: string;
  /** PGlite data directory; absent means in memory (tests). Ignored with databaseUrl. */
  dataDir?: string;
  /** Run pending migrations on open (default true). */
  migrate?: boolean;
}

/** An open database: a TypeORM DataSource over `pg`, plus the embedded server when there is one. */
export class Database {
  constructor(
    readonly dataSource: DataSource,
    readonly description: string,
    private readonly embedded?: { pglite: PGlite; server: PGLiteSocketServer },
  ) {}

  /** Runs `work` in one transaction (READ COMMITTED unless told otherwise). */
  transaction<T>(work: (em: EntityManager) => Promise<T>): Promise<T> {
    return this.dataSource.transaction(work);
  }

  get manager(): EntityManager {
    return this.dataSource.manager;
  }

  /** Closes the pool, then the embedded server and PGlite (flushing it to disk). */
  async close(): Promise<void> {
    if (this.dataSource.isInitialized) await this.dataSource.destroy();
    if (this.embedded) {
      await this.embedded.server.stop();
      await this.embedded.pglite.close();
    }
  }
}

/**
 * Opens the database named by `databaseUrl`, or starts PGlite (in `dataDir`, or in memory) behind
 * pglite-socket so TypeORM talks to both through the ordinary `pg` driver; then runs the migrations.
 */
export async function openDatabase(opts: DatabaseOptions): Promise<Database> {
  let url: string;
  let embedded: { pglite: PGlite; server: PGLiteSocketServer } | undefined;
  let description: string;
  if (opts.databaseUrl) {
    url = opts.databaseUrl;
    description = `postgres ${redactUrl(url)}`;
  } else {
    if (opts.dataDir) mkdirSync(opts.dataDir, { recursive: true });
    const pglite = opts.dataDir ? new PGlite(opts.dataDir) : new PGlite();
    await pglite.waitReady;
    const server = new PGLiteSocketServer({
      db: pglite,
      port: 0,
      host: '127.0.0.1',
      maxConnections: 8,
    });
    await server.start();
    embedded = { pglite, server };
    url = `postgres://postgres@${server.getServerConn()}/postgres`;
    description = opts.dataDir ? `embedded PGlite in ${opts.dataDir}` : 'embedded PGlite in memory';
  }
  const dataSource = new DataSource({
    type: 'postgres',
    url,
    synchronize: false,
    migrationsRun: false,
    migrations: MIGRATIONS,
    migrationsTableName: 'schema_migration',
    logging: false,
    // PGlite is one backend: pglite-socket queues protocol messages, not whole extended-protocol
    // exchanges, so two connections can overwrite each other's unnamed statement. One connection, then;
    // the pool serialises queries and transactions in order.
    extra: { max: embedded ? 1 : 10, connectionTimeoutMillis: 30_000 },
  });
  try {
    await dataSource.initialize();
  } catch (e) {
    if (embedded) {
      await embedded.server.stop();
      await embedded.pglite.close();
    }
    throw new Error(`cannot connect to ${description}: ${(e as Error).message}`);
  }
  const db = new Database(dataSource, description, embedded);
  if (opts.migrate !== false) {
    await dataSource.runMigrations({ transaction: 'each' });
  }
  return db;
}

/** The URL with its password hidden, for logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable DATABASE_URL)';
  }
}
