// Issue 14: the embedded database listened on a TCP port as `postgres` with no password, so any
// local user could rewrite it (insert an admin token, disable the ledger's triggers), and most of its
// files were mode 0666 in a directory that followed the umask.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import {
  chmod,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rm,
  stat,
  writeFile,
} from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from './database';

const LINUX = existsSync('/proc/self/fd') && existsSync('/proc/net/tcp');
const ROOT = process.getuid?.() === 0;
const SETPRIV = ROOT && spawnSync('setpriv', ['--version']).status === 0;

describe('the embedded database (PGlite)', { timeout: 120_000 }, () => {
  let tmp: string;

  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'confide-embedded-'));
    // Others may enter: only the data directory's own mode keeps them out of it.
    await chmod(tmp, 0o755);
  });
  afterAll(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it.runIf(LINUX)(
    'listens on no TCP port, in memory or in a data directory, only on its Unix socket',
    async () => {
      const before = await listeningTcpSockets();
      for (const dataDir of [undefined, join(tmp, 'no-tcp')]) {
        const db = await openDatabase({ dataDir });
        try {
          expect(await listeningTcpSockets()).toEqual(before);
          expect(await db.manager.query(`SELECT 1 AS one`)).toEqual([{ one: 1 }]);
          const socket = db.socketPath!;
          expect((await lstat(socket)).isSocket()).toBe(true);
          if (dataDir) expect(socket).toBe(join(dataDir, '.s.PGSQL.5432'));
        } finally {
          await db.close();
        }
      }
    },
  );

  it('keeps the data directory 0700 and every file 0600 under a permissive umask, tightening an older directory', async () => {
    const dataDir = join(tmp, 'modes');
    // As an older version left it: the directory and a file open to all.
    await mkdir(dataDir, { mode: 0o777 });
    await chmod(dataDir, 0o777);
    await writeFile(join(dataDir, 'left-by-an-older-version'), 'x', { mode: 0o666 });
    await chmod(join(dataDir, 'left-by-an-older-version'), 0o666);
    const umask = process.umask(0);
    try {
      const db = await openDatabase({ dataDir });
      try {
        expect(await modeOf(dataDir)).toBe(0o700);
        expect(await modeOf(db.socketPath!)).toBe(0o600);
        // New relation files, written while it runs.
        await db.manager.query(`CREATE TABLE probe (x bigint); INSERT INTO probe VALUES (1)`);
        await db.manager.query(`CHECKPOINT`);
        expect(await openToOthers(dataDir)).toEqual([]);
      } finally {
        await db.close();
      }
      expect(await openToOthers(dataDir)).toEqual([]);
      const entries = await tree(dataDir);
      expect(entries.length).toBeGreaterThan(100);
      for (const e of entries) expect(e.mode, e.path).toBe(e.dir ? 0o700 : 0o600);
      // The process's own umask is given back on close.
      expect(process.umask(0)).toBe(0);
    } finally {
      process.umask(umask);
    }
  });

  it('keeps an in-memory database’s socket in a private directory, removed on close', async () => {
    const db = await openDatabase({});
    const socket = db.socketPath!;
    const dir = join(socket, '..');
    expect(await modeOf(dir)).toBe(0o700);
    await db.close();
    expect(existsSync(dir)).toBe(false);
  });

  it('removes a socket a killed aggregator left, and refuses to open a directory a live one holds', async () => {
    const dataDir = join(tmp, 'stale');
    await mkdir(dataDir, { mode: 0o700 });
    const socket = join(dataDir, '.s.PGSQL.5432');
    // A process that dies by SIGKILL cannot unlink its socket.
    const holder = spawn(process.execPath, [
      '-e',
      `require('net').createServer().listen(process.argv[1], () => console.log('listening'))`,
      socket,
    ]);
    await new Promise<void>((resolve, reject) => {
      holder.stdout.once('data', () => resolve());
      holder.once('exit', (code) => reject(new Error(`the socket holder exited with ${code}`)));
    });
    holder.kill('SIGKILL');
    await new Promise((r) => holder.once('exit', r));
    expect((await lstat(socket)).isSocket()).toBe(true);
    await expect(connectTo(socket)).resolves.toBe('ECONNREFUSED');

    const db = await openDatabase({ dataDir });
    try {
      expect(db.socketPath).toBe(socket);
      expect(await db.manager.query(`SELECT 2 AS two`)).toEqual([{ two: 2 }]);
      await expect(openDatabase({ dataDir })).rejects.toThrow(
        /in use by another process: .*\.s\.PGSQL\.5432 answers/,
      );
      // The live socket is left alone and keeps serving.
      expect(await db.manager.query(`SELECT 3 AS three`)).toEqual([{ three: 3 }]);
    } finally {
      await db.close();
    }
    expect(existsSync(socket)).toBe(false);
  });

  it('names what is wrong with a data directory it cannot serve from, and leaves it as it was', async () => {
    const long = join(tmp, 'x'.repeat(120));
    await expect(openDatabase({ dataDir: long })).rejects.toThrow(
      /longer than a Unix socket path may be .*give a shorter --data-dir/,
    );
    expect(existsSync(long)).toBe(false);
    const occupied = join(tmp, 'occupied');
    await mkdir(occupied, { mode: 0o700 });
    await writeFile(join(occupied, '.s.PGSQL.5432'), 'not a socket');
    await expect(openDatabase({ dataDir: occupied })).rejects.toThrow(
      /\.s\.PGSQL\.5432 exists and is not a socket; remove it/,
    );
    expect(await readFile(join(occupied, '.s.PGSQL.5432'), 'utf8')).toBe('not a socket');
  });

  it(
    SETPRIV
      ? 'refuses another OS user (nobody) at the socket and at the files'
      : `refuses other OS users by the modes of its directory, socket and files (${ROOT ? 'setpriv is missing' : 'not root: cannot become another user'}, so the modes are checked)`,
    async () => {
      const dataDir = join(tmp, 'other-user');
      const db = await openDatabase({ dataDir });
      try {
        const socket = db.socketPath!;
        if (SETPRIV) {
          const attempt = spawnSync(
            'setpriv',
            [
              '--reuid=nobody',
              '--regid=nogroup',
              '--clear-groups',
              process.execPath,
              '-e',
              ASSAULT,
              socket,
              join(dataDir, 'PG_VERSION'),
            ],
            { encoding: 'utf8', timeout: 20_000 },
          );
          expect(attempt.stderr).toBe('');
          expect(JSON.parse(attempt.stdout)).toEqual({ connect: 'EACCES', read: 'EACCES' });
        } else {
          expect((await modeOf(dataDir)) & 0o077).toBe(0);
          expect((await modeOf(socket)) & 0o077).toBe(0);
          expect(await openToOthers(dataDir)).toEqual([]);
        }
      } finally {
        await db.close();
      }
    },
  );
});

/** Run as the other user: tries the socket and a data file, prints what each attempt met. */
const ASSAULT = `
const [socket, file] = process.argv.slice(1);
const out = {};
try { require('fs').readFileSync(file); out.read = 'read it'; } catch (e) { out.read = e.code; }
const c = require('net').connect(socket);
c.once('connect', () => { out.connect = 'connected'; c.destroy(); console.log(JSON.stringify(out)); });
c.once('error', (e) => { out.connect = e.code; console.log(JSON.stringify(out)); });
`;

/** Local addresses of the TCP sockets this process listens on. */
async function listeningTcpSockets(): Promise<string[]> {
  const inodes = new Set<string>();
  for (const fd of await readdir('/proc/self/fd')) {
    const link = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
    const m = /^socket:\[(\d+)\]$/.exec(link);
    if (m) inodes.add(m[1]!);
  }
  const out: string[] = [];
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    const text = await readFile(table, 'utf8').catch(() => '');
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      // st 0A is LISTEN; column 9 is the inode.
      if (cols[3] === '0A' && inodes.has(cols[9] ?? '')) out.push(cols[1]!);
    }
  }
  return out.sort();
}

async function modeOf(path: string): Promise<number> {
  return (await stat(path)).mode & 0o777;
}

async function tree(dir: string): Promise<Array<{ path: string; mode: number; dir: boolean }>> {
  const out = [{ path: dir, mode: await modeOf(dir), dir: true }];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isSymbolicLink()) continue;
    const path = join(e.parentPath, e.name);
    out.push({ path, mode: (await lstat(path)).mode & 0o777, dir: e.isDirectory() });
  }
  return out;
}

/** Entries anyone but the owner can read, write or enter. */
async function openToOthers(dir: string): Promise<string[]> {
  return (await tree(dir)).filter((e) => e.mode & 0o077).map((e) => e.path);
}

function connectTo(path: string): Promise<string> {
  return new Promise((resolve) => {
    const c = connect(path);
    c.once('connect', () => {
      c.destroy();
      resolve('connected');
    });
    c.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}
