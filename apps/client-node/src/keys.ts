import { chmod, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  generateIdentity,
  identityFromSecretKey,
  keyFingerprint,
  type IdentityKeyPair,
} from '@confide/protocol';

/** Files of a site's identity inside its key directory. */
export const SECRET_KEY_FILE = 'identity.key';
export const PUBLIC_KEY_FILE = 'identity.pub';

/** A node-side error whose message is shown to the operator as is. */
export class NodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NodeError';
  }
}

/**
 * Writes a fresh Ed25519 identity into `dir`: the secret key with mode 0600, the public key beside it.
 * Refuses to overwrite an existing identity unless `force`.
 */
export async function createIdentityFiles(
  dir: string,
  force = false,
): Promise<{
  identity: IdentityKeyPair;
  secretPath: string;
  publicPath: string;
  fingerprint: string;
}> {
  const secretPath = join(dir, SECRET_KEY_FILE);
  const publicPath = join(dir, PUBLIC_KEY_FILE);
  const refuse = (): NodeError =>
    new NodeError(
      `${secretPath} already exists; refusing to overwrite a site identity (pass --force to replace it, which needs a new enrolment)`,
    );
  if (!force && (await exists(secretPath))) throw refuse();
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const identity = generateIdentity();
  // A new file, created 0600 ('wx': never an existing file, never through a symlink): writing into the
  // old file would put the new secret under the old file's mode, perhaps readable by others, until chmod.
  if (force) await rm(secretPath, { force: true });
  try {
    await writeFile(secretPath, `${identity.secretKey}\n`, { mode: 0o600, flag: 'wx' });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw refuse();
    throw e;
  }
  await chmod(secretPath, 0o600);
  await writeFile(publicPath, `${identity.publicKey}\n`, { mode: 0o644 });
  return { identity, secretPath, publicPath, fingerprint: keyFingerprint(identity.publicKey) };
}

/** Reads the identity in `dir`, checking that the key is well formed and private to its owner. */
export async function loadIdentity(dir: string): Promise<IdentityKeyPair> {
  const secretPath = join(dir, SECRET_KEY_FILE);
  let text: string;
  try {
    text = (await readFile(secretPath, 'utf8')).trim();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new NodeError(
      code === 'ENOENT'
        ? `no site identity in ${dir}: run \`confide node keys --key-dir ${dir}\` first`
        : `cannot read ${secretPath}: ${(e as Error).message}`,
    );
  }
  const mode = (await stat(secretPath)).mode & 0o777;
  if (mode & 0o077) {
    throw new NodeError(
      `${secretPath} is readable by other users (mode ${mode.toString(8)}); run chmod 600 on it`,
    );
  }
  try {
    return identityFromSecretKey(text);
  } catch {
    throw new NodeError(`${secretPath} does not hold a base64 Ed25519 secret key`);
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
