import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { availableParallelism } from 'node:os';
import type { INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { AppModule } from './app.module';
import { AuthService } from './auth/auth.service';
import { systemClock, type AggregatorConfig, type Clock } from './common/tokens';
import { configureApp } from './configure-app';
import { openDatabase, type Database } from './database/database';
import { FlGateway, MAX_WS_PAYLOAD } from './fl/fl.gateway';
import { SessionRegistry } from './fl/session-registry';

/** How to start an aggregator. */
export interface AggregatorOptions {
  port?: number;
  host?: string;
  /** Postgres server; without it PGlite runs in `dataDir` (or in memory when that is absent too). */
  databaseUrl?: string;
  dataDir?: string;
  /** An already open database (tests share one across restarts); takes precedence. */
  database?: Database;
  log?: (line: string) => void;
  clock?: Clock;
  reconnectGraceMs?: number;
  heartbeatMs?: number;
  /** Worker threads for unmasking (default: one per core; 0: none). */
  maskWorkers?: number;
}

/** A running aggregator. */
export interface RunningAggregator {
  app: INestApplication;
  db: Database;
  port: number;
  /** http://host:port */
  url: string;
  /** ws://host:port/v1/fl */
  wsUrl: string;
  serverId: string;
  /** The admin token created on the first start against this database, else null. */
  initialAdminToken: string | null;
  /** Issues an API token in-process (the demo and tests; operators use the REST API or the CLI). */
  createToken(role: 'admin' | 'auditor', label: string): Promise<string>;
  close(): Promise<void>;
}

/** Opens the database (running migrations), starts NestJS with REST, OpenAPI, metrics and the site socket. */
export async function startAggregator(opts: AggregatorOptions = {}): Promise<RunningAggregator> {
  const log = opts.log ?? (() => undefined);
  const ownsDb = !opts.database;
  const db =
    opts.database ?? (await openDatabase({ databaseUrl: opts.databaseUrl, dataDir: opts.dataDir }));
  try {
    const serverId = await ensureServerId(db);
    const config: AggregatorConfig = {
      serverId,
      reconnectGraceMs: opts.reconnectGraceMs ?? 5000,
      heartbeatMs: opts.heartbeatMs ?? 15_000,
      maxVectorElements: MAX_WS_PAYLOAD / 4 - 1024,
      // One per core: they run only while a sum is unmasked (tens of ms a round, the sites idle,
      // the event loop waiting for them), and the event loop still gets its turns meanwhile. With
      // cores - 1 the unmask phase of bench/round (10 sites x 1M, 2 cores) took 54-58 ms against
      // 33-50 ms, the round 458-466 ms against 440-447 ms (three runs each).
      maskWorkers: opts.maskWorkers ?? Math.min(256, availableParallelism()),
      log,
    };
    const app = await NestFactory.create(
      AppModule.forRoot({ config, db, clock: opts.clock ?? systemClock }),
      {
        logger: ['error', 'warn'],
        bodyParser: true,
        abortOnError: false,
      },
    );
    configureApp(app, log);
    await app.listen(opts.port ?? 0, opts.host ?? '127.0.0.1');
    const address = app.getHttpServer().address() as AddressInfo;
    const host =
      opts.host && opts.host !== '0.0.0.0' && opts.host !== '::' ? opts.host : '127.0.0.1';
    const url = `http://${host.includes(':') ? `[${host}]` : host}:${address.port}`;
    const initialAdminToken = await app.get(AuthService).ensureInitialAdminToken();
    let closed = false;
    return {
      app,
      db,
      port: address.port,
      url,
      wsUrl: `${url.replace(/^http/, 'ws')}/v1/fl`,
      serverId,
      initialAdminToken,
      async createToken(role, label) {
        return (await app.get(AuthService).createToken(role, label, 'system')).token;
      },
      async close() {
        if (closed) return;
        closed = true;
        app.get(SessionRegistry).closeAll();
        app.get(FlGateway).closeAll();
        await app.close();
        if (ownsDb) await db.close();
      },
    };
  } catch (e) {
    if (ownsDb) await db.close();
    throw e;
  }
}

/** The aggregator's stable id (login signatures are bound to it), created on the first start. */
async function ensureServerId(db: Database): Promise<string> {
  await db.manager.query(
    `INSERT INTO server_setting (key, value) VALUES ('server_id', $1) ON CONFLICT (key) DO NOTHING`,
    [`confide-${randomUUID()}`],
  );
  const rows = await db.manager.query(`SELECT value FROM server_setting WHERE key = 'server_id'`);
  return rows[0].value as string;
}
