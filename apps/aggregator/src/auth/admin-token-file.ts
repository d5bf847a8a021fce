import { randomBytes } from 'node:crypto';
import { link, mkdir, open, unlink } from 'node:fs/promises';
import { join } from 'node:path';

/** The bootstrap admin token's file inside the data directory. */
export const ADMIN_TOKEN_FILE = 'admin-token';
const MAX_SIBLINGS = 100;

/**
 * Writes the bootstrap admin token to a new file in `dir`, mode 0600, and returns its path. The file
 * appears whole or not at all (written under a temporary name, then hard-linked into place), and an
 * existing file is never overwritten: when `admin-token` is taken (a token of an earlier database,
 * or one whose admin tokens have all been revoked or have expired since) the token goes to
 * `admin-token.2`, `.3`, ... so no token an operator may still need is lost.
 */
export async function writeAdminTokenFile(dir: string, token: string): Promise<string> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = join(dir, `.${ADMIN_TOKEN_FILE}.${randomBytes(6).toString('hex')}.tmp`);
  // 'wx': a fresh file, never through a symlink planted at that name; 0600 from its first byte.
  const file = await open(tmp, 'wx', 0o600);
  try {
    try {
      await file.chmod(0o600);
      await file.writeFile(`${token}\n`);
      await file.sync();
    } finally {
      await file.close();
    }
    for (let n = 1; n <= MAX_SIBLINGS; n++) {
      const path = join(dir, n === 1 ? ADMIN_TOKEN_FILE : `${ADMIN_TOKEN_FILE}.${n}`);
      try {
        // Unlike rename, link fails on an existing name instead of replacing it.
        await link(tmp, path);
        await syncDirectory(dir);
        return path;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
    }
    throw new Error(
      `${join(dir, ADMIN_TOKEN_FILE)} and ${MAX_SIBLINGS - 1} numbered siblings exist: move the old admin token files away`,
    );
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}

/** Makes the new name durable before the token is committed to the database. */
async function syncDirectory(dir: string): Promise<void> {
  if (process.platform === 'win32') return;
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
