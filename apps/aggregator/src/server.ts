import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { availableParallelism } from 'node:os';
import type { INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { AppModule } from './app.module';
import { ServerSigner, type IdentityKeyPair, generateIdentity } from '@confide/protocol';
import { writeAdminTokenFile } from './auth/admin-token-file';
import { AuthService } from './auth/auth.service';
import { loadOrCreateServerIdentity } from './identity/server-identity';
import { systemClock, type AggregatorConfig, type Clock } from './common/tokens';
import { configureApp } from './configure-app';
import { openDatabase, type Database } from './database/database';
import { FlGateway, MAX_WS_PAYLOAD } from './fl/fl.gateway';
import { SessionRegistry } from './fl/session-registry';
import { ClientAddresses } from './net/client-address';

/** How to start an aggregator. */
export interface AggregatorOptions {
  port?: number;
  host?: string;
  /** Postgres server; without it PGlite runs in `dataDir` (or in memory when that is absent too). */
  databaseUrl?: string;
  /** The schema owner's URL (DATABASE_OWNER_URL): migrations run as it, the server as databaseUrl. */
  databaseOwnerUrl?: string;
  dataDir?: string;
  /** An already open database (tests share one across restarts); takes precedence. */
  database?: Database;
  log?: (line: string) => void;
  clock?: Clock;
  reconnectGraceMs?: number;
  heartbeatMs?: number;
  /** Worker threads for unmasking (default: one per core; 0: none). */
  maskWorkers?: number;
  /**
   * The aggregator's Ed25519 identity. Default: the key file in `dataDir` (created on the first
   * start, mode 0600); without a data directory a fresh key for this process only.
   */
  identity?: IdentityKeyPair;
  /** Serve https and wss on the one port with this certificate (PEM) and its key. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** How long a site-protocol connection may stay open without logging in, in ms (default 10 s). */
  loginTimeoutMs?: number;
  /** Connections not logged in yet, in all (default 1024); more are refused with SERVER_BUSY. */
  maxPendingLogins?: number;
  /** Connections not logged in yet from one client address, IPv6 per /64 (default 64). */
  maxPendingLoginsPerAddress?: number;
  /**
   * Addresses or CIDR blocks of load balancers in front of the aggregator: from them, the client
   * address is read from X-Forwarded-For (default: none, the TCP peer is the client).
   */
  trustedProxies?: string[];
  /** Failed REST authentications per client address within the window before 429 (default 10). */
  authFailureLimit?: number;
  /** The window of authFailureLimit, in ms (default 60 s). */
  authFailureWindowMs?: number;
  /** Bearer token /metrics requires (default: none, /metrics is open). */
  metricsToken?: string;
}

/** Defaults of the limits on connections and requests from outside. */
export const EXPOSURE_DEFAULTS = {
  loginTimeoutMs: 10_000,
  maxPendingLogins: 1024,
  maxPendingLoginsPerAddress: 64,
  authFailureLimit: 10,
  authFailureWindowMs: 60_000,
} as const;

/** Checks the limits of `opts` and fills in their defaults; throws RangeError naming a bad one. */
function exposureConfig(opts: AggregatorOptions) {
  const positive = (name: keyof typeof EXPOSURE_DEFAULTS, integer: boolean): number => {
    const v = opts[name] ?? EXPOSURE_DEFAULTS[name];
    if (!Number.isFinite(v) || v <= 0 || (integer && !Number.isInteger(v))) {
      throw new RangeError(
        `${name} must be a positive ${integer ? 'integer' : 'number'}; got ${v}`,
      );
    }
    return v;
  };
  if (opts.metricsToken !== undefined && opts.metricsToken.length < 16) {
    throw new RangeError('metricsToken must have at least 16 characters');
  }
  return {
    loginTimeoutMs: positive('loginTimeoutMs', false),
    maxPendingLogins: positive('maxPendingLogins', true),
    maxPendingLoginsPerAddress: positive('maxPendingLoginsPerAddress', true),
    clientAddresses: new ClientAddresses(opts.trustedProxies ?? []),
    authFailureLimit: positive('authFailureLimit', true),
    authFailureWindowMs: positive('authFailureWindowMs', false),
    metricsToken: opts.metricsToken ?? null,
  };
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
  /** The aggregator's identity public key (base64) and its fingerprint, which sites pin. */
  serverKey: string;
  serverKeyFingerprint: string;
  /** Where the identity key lives, or null when it is held in memory only. */
  serverKeyFile: string | null;
  /**
   * The admin token created at this start (the first against this database, or one after every
   * admin token was revoked or expired), else null. Held in memory for in-process callers.
   */
  initialAdminToken: string | null;
  /** Where that token was written (mode 0600 in `dataDir`), or null when none was or no dataDir. */
  initialAdminTokenFile: string | null;
  /** Issues an API token in-process (the demo and tests; operators use the REST API or the CLI). */
  createToken(role: 'admin' | 'auditor', label: string): Promise<string>;
  close(): Promise<void>;
}

/** Opens the database (running migrations), starts NestJS with REST, OpenAPI, metrics and the site socket. */
export async function startAggregator(opts: AggregatorOptions = {}): Promise<RunningAggregator> {
  const log = opts.log ?? (() => undefined);
  const exposure = exposureConfig(opts);
  const ownsDb = !opts.database;
  const db =
    opts.database ??
    (await openDatabase({
      databaseUrl: opts.databaseUrl,
      ownerUrl: opts.databaseOwnerUrl,
      dataDir: opts.dataDir,
    }));
  try {
    const serverId = await ensureServerId(db);
    let identity = opts.identity;
    let serverKeyFile: string | null = null;
    if (!identity && opts.dataDir) {
      const loaded = await loadOrCreateServerIdentity(opts.dataDir);
      identity = loaded.identity;
      serverKeyFile = loaded.path;
      if (loaded.created) log(`created the aggregator's identity key ${loaded.path}`);
    }
    const signer = new ServerSigner(identity ?? generateIdentity());
    const config: AggregatorConfig = {
      serverId,
      signer,
      tls: Boolean(opts.tls),
      reconnectGraceMs: opts.reconnectGraceMs ?? 5000,
      heartbeatMs: opts.heartbeatMs ?? 15_000,
      maxVectorElements: MAX_WS_PAYLOAD / 4 - 1024,
      // One per core: they run only while a sum is unmasked (tens of ms a round, the sites idle,
      // the event loop waiting for them), and the event loop still gets its turns meanwhile. With
      // cores - 1 the unmask phase of bench/round (10 sites x 1M, 2 cores) took 54-58 ms against
      // 33-50 ms, the round 458-466 ms against 440-447 ms (three runs each).
      maskWorkers: opts.maskWorkers ?? Math.min(256, availableParallelism()),
      ...exposure,
      log,
    };
    const app = await NestFactory.create(
      AppModule.forRoot({ config, db, clock: opts.clock ?? systemClock }),
      {
        logger: ['error', 'warn'],
        bodyParser: true,
        abortOnError: false,
        ...(opts.tls ? { httpsOptions: { cert: opts.tls.cert, key: opts.tls.key } } : {}),
      },
    );
    configureApp(app, log);
    await app.listen(opts.port ?? 0, opts.host ?? '127.0.0.1');
    const address = app.getHttpServer().address() as AddressInfo;
    const host =
      opts.host && opts.host !== '0.0.0.0' && opts.host !== '::' ? opts.host : '127.0.0.1';
    const url = `${opts.tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${address.port}`;
    let initialAdminTokenFile: string | null = null;
    const dataDir = opts.dataDir;
    let initialAdminToken: string | null;
    try {
      initialAdminToken = await app.get(AuthService).ensureInitialAdminToken(async (token) => {
        if (dataDir) initialAdminTokenFile = await writeAdminTokenFile(dataDir, token);
      });
    } catch (e) {
      await app.close();
      throw new Error(
        `cannot create the initial admin token (none was kept; the next start tries again): ${(e as Error).message}`,
      );
    }
    let closed = false;
    return {
      app,
      db,
      port: address.port,
      url,
      wsUrl: `${url.replace(/^http/, 'ws')}/v1/fl`,
      serverId,
      serverKey: signer.publicKey,
      serverKeyFingerprint: signer.fingerprint,
      serverKeyFile,
      initialAdminToken,
      initialAdminTokenFile,
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
