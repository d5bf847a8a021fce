import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { AggregatorOptions } from '@confide/aggregator';
import { CliError, numberOption, UsageError, type Command, type ParsedOptions } from '../command';

const STOP_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM'];

export const serverCommand: Command = {
  path: ['server'],
  summary: 'Run the aggregator (REST API, dashboard, site protocol on one port)',
  description:
    'Runs the aggregator. With DATABASE_URL it uses that Postgres server; otherwise an embedded PGlite\n' +
    'database in --data-dir, kept across restarts, reachable only through a socket inside it.\n' +
    'Migrations run on start (as DATABASE_OWNER_URL when set: see confide db setup-roles). On the first\n' +
    'start against a database an admin token is created and written to a new file in --data-dir\n' +
    '(admin-token, mode 0600; also with DATABASE_URL, where --data-dir holds only that file and the\n' +
    'identity key): only its path is printed, so the token stays out of logs. --print-token prints the\n' +
    'token on stdout.\n' +
    "The aggregator's Ed25519 identity key lives in --data-dir (server-identity.key, created on first\n" +
    'start, mode 0600): it signs every message that configures a round, and sites pin it. Give sites\n' +
    'its fingerprint (printed below) for `confide node join --server-key`. With --tls-cert and\n' +
    '--tls-key the one port serves https and wss.\n' +
    'It listens on 127.0.0.1 only unless --host says otherwise (--host 0.0.0.0: every interface).\n' +
    'Connections that have not logged in get 64 KiB messages, --login-timeout seconds and capped\n' +
    'numbers (--max-pending-logins, --max-pending-logins-per-address); behind a load balancer, give\n' +
    'its addresses in --trusted-proxies so those caps count clients (X-Forwarded-For), not it.\n' +
    '/health tells anyone ok or not, details only with an API token; --metrics-token (better:\n' +
    'CONFIDE_METRICS_TOKEN) makes /metrics require it as a bearer token. Failed REST\n' +
    'authentications are limited per address (--auth-failure-limit in --auth-failure-window).',
  options: {
    port: {
      type: 'string',
      value: 'PORT',
      description: 'HTTP and WebSocket port',
      default: '8080',
      env: 'CONFIDE_PORT',
    },
    host: {
      type: 'string',
      value: 'HOST',
      description: 'address to listen on (0.0.0.0 or :: for every interface)',
      default: '127.0.0.1',
      env: 'CONFIDE_HOST',
    },
    'data-dir': {
      type: 'string',
      value: 'DIR',
      description:
        'embedded database directory; also holds the identity key and the admin-token file (with DATABASE_URL too)',
      default: '.confide/db',
    },
    'tls-cert': {
      type: 'string',
      value: 'FILE.pem',
      description: 'serve https and wss with this certificate (chain) in PEM (with --tls-key)',
      env: 'CONFIDE_TLS_CERT',
    },
    'tls-key': {
      type: 'string',
      value: 'FILE.pem',
      description: "the certificate's private key in PEM",
      env: 'CONFIDE_TLS_KEY',
    },
    json: {
      type: 'boolean',
      description:
        'print one JSON line on stdout once listening: { url, wsUrl, serverKey, serverKeyFingerprint, tls, adminTokenFile } (and initialAdminToken with --print-token)',
    },
    'print-token': {
      type: 'boolean',
      description:
        'print the admin token created at this start on stdout, for scripts (it is in the admin-token file either way)',
    },
    'mask-workers': {
      type: 'string',
      value: 'N',
      description:
        'worker threads that expand the masks when unmasking a secure-aggregation sum (0: none; default: one per core)',
      env: 'CONFIDE_MASK_WORKERS',
    },
    'login-timeout': {
      type: 'string',
      value: 'SECONDS',
      description: 'close a site-protocol connection that has not logged in within this time',
      default: '10',
    },
    'max-pending-logins': {
      type: 'string',
      value: 'N',
      description:
        'most site-protocol connections not logged in yet, in all; more are refused (SERVER_BUSY)',
      default: '1024',
    },
    'max-pending-logins-per-address': {
      type: 'string',
      value: 'N',
      description: 'most of them from one client address (IPv6: one /64)',
      default: '64',
    },
    'trusted-proxies': {
      type: 'string',
      value: 'CIDRS',
      description:
        'comma-separated addresses or CIDR blocks of load balancers whose X-Forwarded-For names the client (default: none)',
      env: 'CONFIDE_TRUSTED_PROXIES',
    },
    'auth-failure-limit': {
      type: 'string',
      value: 'N',
      description:
        'failed REST authentications from one address within the window before it gets 429 (Retry-After)',
      default: '10',
    },
    'auth-failure-window': {
      type: 'string',
      value: 'SECONDS',
      description: 'the window of --auth-failure-limit',
      default: '60',
    },
    'metrics-token': {
      type: 'string',
      value: 'TOKEN',
      description:
        'serve /metrics only to "Authorization: Bearer TOKEN" (at least 16 characters; default: open)',
      env: 'CONFIDE_METRICS_TOKEN',
    },
  },
  examples: [
    'confide server --port 8080',
    'DATABASE_URL=postgres://confide@db:5432/confide confide server',
    'confide server --port 8080 --print-token    # the first start also prints the token on stdout',
    'confide server --host 0.0.0.0 --trusted-proxies 10.0.0.0/8   # behind a load balancer',
    'CONFIDE_METRICS_TOKEN=$(openssl rand -hex 24) confide server --host 0.0.0.0',
  ],
  async run(opts, _pos, io) {
    const options = serverOptions(opts);
    const certFile = opts['tls-cert'] as string | undefined;
    const keyFile = opts['tls-key'] as string | undefined;
    if (Boolean(certFile) !== Boolean(keyFile)) {
      throw new UsageError('--tls-cert and --tls-key go together');
    }
    const read = async (file: string, what: string): Promise<Buffer> => {
      try {
        return await readFile(resolve(file), { flag: 'r' });
      } catch (e) {
        throw new CliError(`cannot read the TLS ${what} ${file}: ${(e as Error).message}`, 2);
      }
    };
    const tls =
      certFile && keyFile
        ? { cert: await read(certFile, 'certificate'), key: await read(keyFile, 'key') }
        : undefined;
    // Loaded here, not at the top: the other commands must not pay for NestJS and TypeORM.
    const { startAggregator, TrustedProxyError } = await import('@confide/aggregator');
    let agg;
    try {
      agg = await startAggregator({
        ...options,
        ...(tls ? { tls } : {}),
        log: (line) => io.err(`[aggregator] ${line}`),
      });
    } catch (e) {
      if (e instanceof TrustedProxyError) throw new UsageError(`--trusted-proxies: ${e.message}`);
      throw e;
    }
    // The aggregator does not install NestJS's shutdown hooks (they re-raise the signal and kill the
    // process before the database is closed): this command stops it itself.
    const stopped = new Promise<NodeJS.Signals>((resolveStop) => {
      for (const sig of STOP_SIGNALS) process.once(sig, () => resolveStop(sig));
    });
    const host = options.host!;
    io.err(
      `Confide aggregator listening on ${tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${agg.port}`,
    );
    if (host === '127.0.0.1' || host === '::1' || host === 'localhost') {
      io.err('  reachable from this machine only (--host 0.0.0.0 listens on every interface)');
    }
    io.err(
      `  identity:   ${agg.serverKeyFingerprint}  (${agg.serverKey}; key file ${agg.serverKeyFile ?? 'in memory'})`,
    );
    io.err(
      `              sites pin it: confide node join --server-key ${agg.serverKeyFingerprint} ...`,
    );
    if (!tls) {
      io.err(
        '  transport:  plain http/ws (give --tls-cert and --tls-key, or put a TLS-terminating proxy in front)',
      );
    }
    io.err(`  database:   ${agg.db.description}`);
    io.err(`  REST API:   ${agg.url}/api/v1   (OpenAPI: ${agg.url}/api/docs)`);
    io.err(`  sites:      ${agg.wsUrl}`);
    io.err(
      `  metrics:    ${agg.url}/metrics${options.metricsToken ? ' (bearer: the metrics token)' : ''}   health: ${agg.url}/health`,
    );
    // The token itself only on request: stdout of a service ends up in its logs (compose, journald).
    const printToken = Boolean(opts['print-token']);
    if (agg.initialAdminToken) {
      io.err(
        `  admin:      a new admin token was written to ${agg.initialAdminTokenFile} (mode 0600); read it there`,
      );
    } else if (printToken) {
      io.err('  admin:      no admin token was created at this start (this database has one)');
    }
    if (opts['json']) {
      io.out(
        JSON.stringify({
          url: agg.url,
          wsUrl: agg.wsUrl,
          serverKey: agg.serverKey,
          serverKeyFingerprint: agg.serverKeyFingerprint,
          tls: Boolean(tls),
          adminTokenFile: agg.initialAdminTokenFile,
          ...(printToken ? { initialAdminToken: agg.initialAdminToken } : {}),
        }),
      );
    } else if (printToken && agg.initialAdminToken) {
      io.out(agg.initialAdminToken);
    }
    io.err(`received ${await stopped}; shutting down`);
    await agg.close();
    return 0;
  },
};

/**
 * The aggregator's options from the command line (TLS files are read by the command). Every limit is
 * explicit here, so `--help` shows what runs.
 */
export function serverOptions(opts: ParsedOptions): AggregatorOptions {
  const seconds = (name: string, max: number): number =>
    numberOption(opts, name, { min: 0.001, max })! * 1000;
  const count = (name: string): number =>
    numberOption(opts, name, { min: 1, max: 1_000_000, integer: true })!;
  const host = String(opts['host']).trim();
  if (host === '') throw new UsageError('--host must not be empty (127.0.0.1, 0.0.0.0, ::, ...)');
  const metricsToken = opts['metrics-token'] as string | undefined;
  if (metricsToken !== undefined && metricsToken.length < 16) {
    throw new UsageError('--metrics-token must have at least 16 characters');
  }
  const proxies = opts['trusted-proxies'] as string | undefined;
  const maskWorkers = numberOption(opts, 'mask-workers', { min: 0, max: 256, integer: true });
  return {
    port: numberOption(opts, 'port', { min: 0, max: 65535, integer: true })!,
    host,
    databaseUrl: process.env['DATABASE_URL'] || undefined,
    databaseOwnerUrl: process.env['DATABASE_OWNER_URL'] || undefined,
    dataDir: resolve(String(opts['data-dir'])),
    ...(maskWorkers !== undefined ? { maskWorkers } : {}),
    loginTimeoutMs: seconds('login-timeout', 3600),
    maxPendingLogins: count('max-pending-logins'),
    maxPendingLoginsPerAddress: count('max-pending-logins-per-address'),
    trustedProxies: proxies
      ? proxies
          .split(',')
          .map((p) => p.trim())
          .filter((p) => p !== '')
      : [],
    authFailureLimit: count('auth-failure-limit'),
    authFailureWindowMs: seconds('auth-failure-window', 86_400),
    ...(metricsToken !== undefined ? { metricsToken } : {}),
  };
}
