import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  unlinkSync,
} from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isMainThread } from 'node:worker_threads';
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';

/** The socket's port number as `pg` spells it into the file name (`<dir>/.s.PGSQL.<port>`). */
export const EMBEDDED_SOCKET_PORT = 5432;
const SOCKET_NAME = `.s.PGSQL.${EMBEDDED_SOCKET_PORT}`;
/** sun_path holds 108 bytes on Linux, 104 on macOS, with the terminating NUL. */
const MAX_SOCKET_PATH = 103;

/** PGlite served to this process's `pg` pool through a Unix socket only its owner can reach. */
export interface EmbeddedDatabase {
  pglite: PGlite;
  /** The directory holding the socket: `pg`'s `host`. */
  socketDir: string;
  socketPath: string;
  close(): Promise<void>;
}

/** A data directory that another running aggregator has open. */
export class DatabaseInUseError extends Error {
  constructor(readonly socketPath: string) {
    super(
      `the embedded database is in use by another process: ${socketPath} answers. Stop that aggregator (or confide command) first, or give this one another --data-dir`,
    );
    this.name = 'DatabaseInUseError';
  }
}

/**
 * Starts PGlite in `dataDir` (or in memory) behind a Unix socket. The data directory is 0700 and
 * its files 0600 (tightened on start for directories written by older versions, which followed the
 * umask); the socket lives inside it, so no other OS user can reach the database, which has no
 * password. Without a data directory the socket is in a private temporary directory.
 */
export async function startEmbeddedDatabase(dataDir?: string): Promise<EmbeddedDatabase> {
  let socketDir: string;
  let temporary = false;
  if (dataDir) {
    socketDir = dataDir;
    checkSocketPath(join(dataDir, SOCKET_NAME));
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    await removeStaleSocket(join(dataDir, SOCKET_NAME));
    tightenTree(dataDir);
  } else {
    // mkdtemp creates the directory 0700.
    socketDir = mkdtempSync(join(tmpdir(), 'confide-pglite-'));
    temporary = true;
  }
  const socketPath = join(socketDir, SOCKET_NAME);
  const releaseUmask = dataDir ? holdPrivateUmask() : () => undefined;
  let pglite: PGlite | undefined;
  let server: PGLiteSocketServer | undefined;
  const cleanUp = async (): Promise<void> => {
    if (server) await server.stop();
    if (pglite && !pglite.closed) await pglite.close();
    if (dataDir && existsSync(dataDir)) tightenTree(dataDir);
    releaseUmask();
    if (temporary) rmSync(socketDir, { recursive: true, force: true });
  };
  try {
    pglite = dataDir ? new PGlite(dataDir) : new PGlite();
    await pglite.waitReady;
    // A new directory's files come from PGlite's initdb with explicit modes, not from the umask.
    if (dataDir) tightenTree(dataDir);
    server = new PGLiteSocketServer({ db: pglite, path: socketPath, maxConnections: 8 });
    try {
      await server.start();
    } catch (e) {
      server = undefined;
      if ((e as NodeJS.ErrnoException).code === 'EADDRINUSE')
        throw new DatabaseInUseError(socketPath);
      throw e;
    }
    chmodSync(socketPath, 0o600);
  } catch (e) {
    await cleanUp();
    throw e;
  }
  let closed = false;
  return {
    pglite,
    socketDir,
    socketPath,
    async close() {
      if (closed) return;
      closed = true;
      await cleanUp();
    },
  };
}

function checkSocketPath(path: string): void {
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH) {
    throw new Error(
      `the embedded database's socket ${path} is longer than a Unix socket path may be (${MAX_SOCKET_PATH} bytes); give a shorter --data-dir`,
    );
  }
}

/**
 * Removes a socket file left by a process that died without closing it (kill -9): one that refuses
 * connections. One that answers belongs to a running aggregator and is left alone.
 */
async function removeStaleSocket(path: string): Promise<void> {
  let st;
  try {
    st = lstatSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  if (!st.isSocket()) {
    throw new Error(`${path} exists and is not a socket; remove it and start again`);
  }
  const answer = await new Promise<'live' | 'stale' | Error>((resolve) => {
    const socket = connect(path);
    const timer = setTimeout(() => {
      socket.destroy();
      resolve('live');
    }, 2000);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.destroy();
      resolve('live');
    });
    socket.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(e.code === 'ECONNREFUSED' ? 'stale' : e);
    });
  });
  if (answer === 'live') throw new DatabaseInUseError(path);
  if (answer instanceof Error) {
    throw new Error(`cannot tell whether ${path} is in use: ${answer.message}`);
  }
  unlinkSync(path);
}

/** Directories 0700, files 0600, below and including `dir` (symbolic links are left alone). */
export function tightenTree(dir: string): void {
  chmodSync(dir, 0o700);
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) tightenTree(path);
    else if (entry.isFile() || entry.isSocket()) chmodSync(path, 0o600);
  }
}

let umaskHolders = 0;
let savedUmask = 0;

/**
 * PGlite creates its files with mode 0666 less the umask, and keeps creating them while it runs (a
 * new table, a WAL segment): while an embedded database is open in a data directory, the process
 * creates files for its owner only, as the postmaster does. Returns the release.
 */
function holdPrivateUmask(): () => void {
  // Workers cannot set the umask; tightenTree on open and close still applies there.
  if (!isMainThread) return () => undefined;
  if (umaskHolders++ === 0) savedUmask = process.umask(0o077);
  let released = false;
  return () => {
    if (released) return;
    released = true;
    if (--umaskHolders === 0) process.umask(savedUmask);
  };
}
