import { createServer } from 'node:net';
import { cliEnv, spawnCli, type CliProcess } from './cli';

/** A loopback port nobody listens on now (an aggregator is started and killed on it several times). */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** The children a test or harness started, so that every one of them goes, whatever happened. */
export class ProcessGroup {
  readonly children: CliProcess[] = [];

  spawn(args: string[], env: NodeJS.ProcessEnv = cliEnv()): CliProcess {
    const p = spawnCli(args, env);
    this.children.push(p);
    return p;
  }

  /** SIGKILLs every child still running and waits for each exit. */
  async killAll(): Promise<void> {
    await Promise.all(this.children.map((c) => c.stop('SIGKILL', 5000)));
  }
}

/** What `confide server --json` prints once it listens. */
export interface ServerInfo {
  url: string;
  wsUrl: string;
  serverKey: string;
  serverKeyFingerprint: string;
  adminTokenFile: string | null;
  /** Only on the start that created it (with --print-token). */
  initialAdminToken?: string;
}

/**
 * Starts `confide server` on `port` with its data in `dataDir` (and DATABASE_URL's Postgres when
 * `databaseUrl` is set) and waits until it listens: its process and what it printed (`--json`).
 */
export async function startServerProcess(
  group: ProcessGroup,
  opts: { port: number; dataDir: string; databaseUrl?: string; timeoutMs?: number },
): Promise<{ process: CliProcess; info: ServerInfo }> {
  const p = group.spawn(
    ['server', '--port', String(opts.port), '--data-dir', opts.dataDir, '--json', '--print-token'],
    cliEnv({ DATABASE_URL: opts.databaseUrl }),
  );
  const [line] = await p.waitForOutput(/^\{.*\}\n/m, opts.timeoutMs ?? 60_000, 'stdout');
  return { process: p, info: JSON.parse(line) as ServerInfo };
}

/** The arguments of `confide node join` for a site whose key and data are on disk. */
export function nodeJoinArgs(o: {
  server: string;
  federationId: string;
  keyDir: string;
  data: string;
  label: string;
  serverKey?: string;
  maxBackoff?: string;
  policy?: string;
  json?: boolean;
}): string[] {
  return [
    'node',
    'join',
    '--quiet',
    '--server',
    o.server,
    '--federation',
    o.federationId,
    '--key-dir',
    o.keyDir,
    '--data',
    o.data,
    '--label',
    o.label,
    ...(o.serverKey ? ['--server-key', o.serverKey] : []),
    ...(o.maxBackoff ? ['--max-backoff', o.maxBackoff] : []),
    ...(o.policy ? ['--policy', o.policy] : []),
    ...(o.json ? ['--json'] : []),
  ];
}
