import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { CliError, numberOption, UsageError, type Command } from '../command';

const STOP_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM'];

export const serverCommand: Command = {
  path: ['server'],
  summary: 'Run the aggregator (REST API, dashboard, site protocol on one port)',
  description:
    'Runs the aggregator. With DATABASE_URL it uses that Postgres server; otherwise an embedded PGlite\n' +
    'database in --data-dir, kept across restarts, reachable only through a socket inside it.\n' +
    'Migrations run on start (as DATABASE_OWNER_URL when set: see confide db setup-roles). On the\n' +
    'first start against a database an admin token is created and printed once: keep it.\n' +
    "The aggregator's Ed25519 identity key lives in --data-dir (server-identity.key, created on first\n" +
    'start, mode 0600): it signs every message that configures a round, and sites pin it. Give sites\n' +
    'its fingerprint (printed below) for `confide node join --server-key`. With --tls-cert and\n' +
    '--tls-key the one port serves https and wss.',
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
      description: 'interface to listen on',
      default: '0.0.0.0',
    },
    'data-dir': {
      type: 'string',
      value: 'DIR',
      description: 'embedded database directory',
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
        'print one JSON line on stdout once listening: { url, wsUrl, serverKey, serverKeyFingerprint, tls, initialAdminToken }',
    },
    'mask-workers': {
      type: 'string',
      value: 'N',
      description:
        'worker threads that expand the masks when unmasking a secure-aggregation sum (0: none; default: one per core)',
      env: 'CONFIDE_MASK_WORKERS',
    },
  },
  examples: [
    'confide server --port 8080',
    'DATABASE_URL=postgres://confide@db:5432/confide confide server',
  ],
  async run(opts, _pos, io) {
    const port = numberOption(opts, 'port', { min: 0, max: 65535, integer: true })!;
    const maskWorkers = numberOption(opts, 'mask-workers', { min: 0, max: 256, integer: true });
    const databaseUrl = process.env['DATABASE_URL'] || undefined;
    const databaseOwnerUrl = process.env['DATABASE_OWNER_URL'] || undefined;
    const dataDir = resolve(String(opts['data-dir']));
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
    const { startAggregator } = await import('@confide/aggregator');
    const agg = await startAggregator({
      port,
      host: String(opts['host']),
      databaseUrl,
      databaseOwnerUrl,
      dataDir,
      ...(tls ? { tls } : {}),
      ...(maskWorkers !== undefined ? { maskWorkers } : {}),
      log: (line) => io.err(`[aggregator] ${line}`),
    });
    // The aggregator does not install NestJS's shutdown hooks (they re-raise the signal and kill the
    // process before the database is closed): this command stops it itself.
    const stopped = new Promise<NodeJS.Signals>((resolveStop) => {
      for (const sig of STOP_SIGNALS) process.once(sig, () => resolveStop(sig));
    });
    io.err(
      `Confide aggregator listening on ${tls ? 'https' : 'http'}://${String(opts['host'])}:${agg.port}`,
    );
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
    io.err(`  metrics:    ${agg.url}/metrics   health: ${agg.url}/health`);
    if (opts['json']) {
      io.out(
        JSON.stringify({
          url: agg.url,
          wsUrl: agg.wsUrl,
          serverKey: agg.serverKey,
          serverKeyFingerprint: agg.serverKeyFingerprint,
          tls: Boolean(tls),
          initialAdminToken: agg.initialAdminToken,
        }),
      );
    } else if (agg.initialAdminToken) {
      io.err('');
      io.err(
        'First start: an admin token was created. It is shown only this once; store it safely:',
      );
      io.out(agg.initialAdminToken);
      io.err('');
    }
    io.err(`received ${await stopped}; shutting down`);
    await agg.close();
    return 0;
  },
};
