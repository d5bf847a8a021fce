import type { Pool } from 'pg';
import { DataSource, type DataSourceOptions, type EntityManager } from 'typeorm';
import { MIGRATIONS } from '../../../../migrations/index';
import {
  checkApplicationRole,
  currentRole,
  grantApplicationRole,
  type RunSql,
} from './database-roles';
import {
  EMBEDDED_SOCKET_PORT,
  startEmbeddedDatabase,
  type EmbeddedDatabase,
} from './embedded-database';

/** Where the aggregator keeps its data. */
export interface DatabaseOptions {
  /** A Postgres server; when absent the embedded PGlite is used. */
  databaseUrl?: string;
  /**
   * The role that owns the schema, for migrations (DATABASE_OWNER_URL); `databaseUrl` is then the
   * application role, granted what it needs after they run. Absent: `databaseUrl` does everything.
   */
  ownerUrl?: string;
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
    private readonly embedded?: EmbeddedDatabase,
  ) {}

  /** Runs `work` in one transaction (READ COMMITTED unless told otherwise). */
  transaction<T>(work: (em: EntityManager) => Promise<T>): Promise<T> {
    return this.dataSource.transaction(work);
  }

  get manager(): EntityManager {
    return this.dataSource.manager;
  }

  /**
   * Runs `COPY (...) TO STDOUT (FORMAT binary)` outside any transaction and gives the bytes it
   * sent. `pg` reads every result column as text (a bytea as hex, twice its size, then decoded in
   * JavaScript) and has no binary result mode; COPY data reaches us as the server's raw bytes.
   */
  async copyOut(sql: string): Promise<Buffer> {
    // TypeORM's pool: on the embedded database its one connection, taken in turn with TypeORM's.
    const pool = (this.dataSource.driver as unknown as { master: Pool }).master;
    const client = await pool.connect();
    try {
      return await client.query(new CopyOut(sql)).done;
    } finally {
      client.release();
    }
  }

  /** The embedded database's Unix socket, or null on a Postgres server. */
  get socketPath(): string | null {
    return this.embedded?.socketPath ?? null;
  }

  /** Closes the pool, then the embedded server and PGlite (flushing it to disk). */
  async close(): Promise<void> {
    if (this.dataSource.isInitialized) await this.dataSource.destroy();
    await this.embedded?.close();
  }
}

/**
 * Opens the database named by `databaseUrl`, or starts PGlite (in `dataDir`, or in memory) behind
 * a Unix socket so TypeORM talks to both through the ordinary `pg` driver; then runs the migrations
 * (as the owner role when `ownerUrl` is given).
 */
export async function openDatabase(opts: DatabaseOptions): Promise<Database> {
  if (opts.ownerUrl && !opts.databaseUrl) {
    throw new Error(
      'DATABASE_OWNER_URL is set without DATABASE_URL: the owner role runs migrations for the application role DATABASE_URL names',
    );
  }
  let connection: Partial<DataSourceOptions>;
  let embedded: EmbeddedDatabase | undefined;
  let description: string;
  if (opts.databaseUrl) {
    connection = { url: opts.databaseUrl };
    description = `postgres ${redactUrl(opts.databaseUrl)}`;
  } else {
    embedded = await startEmbeddedDatabase(opts.dataDir);
    connection = {
      host: embedded.socketDir,
      port: EMBEDDED_SOCKET_PORT,
      username: 'postgres',
      database: 'postgres',
    };
    description = opts.dataDir ? `embedded PGlite in ${opts.dataDir}` : 'embedded PGlite in memory';
  }
  const dataSource = newDataSource(connection, embedded ? 1 : 10);
  try {
    await dataSource.initialize();
  } catch (e) {
    await embedded?.close();
    throw new Error(`cannot connect to ${description}: ${(e as Error).message}`);
  }
  const db = new Database(dataSource, description, embedded);
  try {
    if (opts.ownerUrl) {
      await migrateAsOwner(opts.ownerUrl, dataSource, opts.migrate !== false);
    } else if (opts.migrate !== false) {
      await dataSource.runMigrations({ transaction: 'each' }).catch((e: unknown) => {
        throw notTheOwner(e) ?? e;
      });
    }
  } catch (e) {
    await db.close();
    throw e;
  }
  return db;
}

function newDataSource(connection: Partial<DataSourceOptions>, max: number): DataSource {
  return new DataSource({
    type: 'postgres',
    ...connection,
    synchronize: false,
    migrationsRun: false,
    migrations: MIGRATIONS,
    migrationsTableName: 'schema_migration',
    logging: false,
    // PGlite is one backend: pglite-socket queues protocol messages, not whole extended-protocol
    // exchanges, so two connections can overwrite each other's unnamed statement. One connection, then;
    // the pool serialises queries and transactions in order.
    extra: { max, connectionTimeoutMillis: 30_000 },
  } as DataSourceOptions);
}

/**
 * Runs the migrations through the owner's connection and grants the application role what they
 * created, after checking that role cannot act as the owner. With `migrate` false only the check.
 */
async function migrateAsOwner(ownerUrl: string, app: DataSource, migrate: boolean): Promise<void> {
  const owner = newDataSource({ url: ownerUrl }, 1);
  try {
    await owner.initialize();
  } catch (e) {
    throw new Error(
      `cannot connect to the owner role ${redactUrl(ownerUrl)}: ${(e as Error).message}`,
    );
  }
  try {
    const appRole = await currentUser(app);
    await checkApplicationRole(sqlOf(owner), appRole, await currentUser(owner));
    if (!migrate) return;
    await owner.runMigrations({ transaction: 'each' });
    await grant(owner, appRole);
  } finally {
    await owner.destroy();
  }
}

/**
 * After migrations run through `owner` (a database opened with DATABASE_OWNER_URL), grants the
 * application role that `appUrl` logs in as what the new tables need (`confide db migrate`).
 */
export async function grantToApplicationRole(owner: Database, appUrl: string): Promise<string> {
  const appRole = await currentRole(appUrl);
  await checkApplicationRole(sqlOf(owner.dataSource), appRole, await currentUser(owner.dataSource));
  await grant(owner.dataSource, appRole);
  return appRole;
}

function grant(owner: DataSource, appRole: string): Promise<void> {
  return owner.transaction((em) =>
    grantApplicationRole((sql, p) => em.query<Array<Record<string, unknown>>>(sql, p), appRole),
  );
}

async function currentUser(ds: DataSource): Promise<string> {
  return (await ds.query<Array<{ u: string }>>(`SELECT current_user AS u`))[0]!.u;
}

function sqlOf(ds: DataSource): RunSql {
  return (sql, params) => ds.query<Array<Record<string, unknown>>>(sql, params);
}

/**
 * A migration refused for want of privilege: DATABASE_URL is an application role (setup-roles),
 * whose pending migrations only the owner may run.
 */
function notTheOwner(e: unknown): Error | null {
  const err = e as { code?: string; driverError?: { code?: string }; message?: string };
  if ((err.driverError?.code ?? err.code) !== '42501') return null;
  return new Error(
    `a pending migration needs the schema's owner (${err.message ?? 'permission denied'}): set DATABASE_OWNER_URL too, or run confide db migrate with it first`,
  );
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

/**
 * A COPY ... TO STDOUT run through a `pg` client (a Submittable: the client hands it the
 * connection and the messages that answer it), collecting the CopyData messages.
 */
class CopyOut {
  readonly done: Promise<Buffer>;
  private readonly parts: Buffer[] = [];
  private settle!: (err: Error | null, data?: Buffer) => void;

  constructor(private readonly sql: string) {
    this.done = new Promise((resolve, reject) => {
      this.settle = (err, data) => (err ? reject(err) : resolve(data!));
    });
  }

  submit(connection: { query(sql: string): void }): void {
    connection.query(this.sql);
  }

  handleCopyData(msg: { chunk: Buffer }): void {
    // The chunk is a view of the connection's read buffer, which later messages may reuse.
    this.parts.push(Buffer.from(msg.chunk));
  }

  // At once: a lost connection gets no ReadyForQuery. The client still waits for it before the
  // next query it is given, so the connection can go back to the pool now.
  handleError(err: Error): void {
    this.settle(err);
  }

  handleReadyForQuery(): void {
    this.settle(null, Buffer.concat(this.parts));
  }

  handleCommandComplete(): void {}
  handleRowDescription(): void {}
  handleDataRow(): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}
  handleCopyInResponse(): void {}
}
