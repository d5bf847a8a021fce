import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generateIdentity, identityFromSecretKey, type IdentityKeyPair } from '@confide/protocol';

/** The aggregator's identity key inside its data directory. */
const SERVER_KEY_FILE = 'server-identity.key';

/**
 * The aggregator's Ed25519 identity, created on the first start in `dir` (the secret key alone,
 * base64, mode 0600; the public key is derived from it). Sites pin the public key: every message that
 * configures a round is signed with it. A key file readable by others is refused, as a site's is.
 */
export async function loadOrCreateServerIdentity(
  dir: string,
): Promise<{ identity: IdentityKeyPair; path: string; created: boolean }> {
  const path = join(dir, SERVER_KEY_FILE);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  let created = false;
  try {
    const fresh = generateIdentity();
    // 'wx': never an existing file, never through a symlink; created 0600 from the start.
    await writeFile(path, `${fresh.secretKey}\n`, { mode: 0o600, flag: 'wx' });
    await chmod(path, 0o600);
    created = true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  const mode = (await stat(path)).mode & 0o777;
  if (mode & 0o077) {
    throw new Error(
      `${path} is readable by others (mode ${mode.toString(8)}); run chmod 600 ${path} and restart`,
    );
  }
  return {
    identity: identityFrom(path, (await readFile(path, 'utf8')).trim()),
    path,
    created,
  };
}

function identityFrom(path: string, secretKey: string): IdentityKeyPair {
  try {
    return identityFromSecretKey(secretKey);
  } catch (e) {
    throw new Error(`${path} does not hold a valid Ed25519 secret key: ${(e as Error).message}`);
  }
}
