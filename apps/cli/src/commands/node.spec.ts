import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { loadIdentity, PUBLIC_KEY_FILE, SECRET_KEY_FILE } from '@confide/client-node';
import { fromBase64, keyFingerprint } from '@confide/protocol';
import { captureIo } from '../../../../test/support/cli';
import { main } from '../main';

async function cli(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const io = captureIo();
  const code = await main(argv, io);
  return { code, stdout: io.stdout(), stderr: io.stderr() };
}

const mode = async (path: string): Promise<number> => (await stat(path)).mode & 0o777;

describe('confide node keys', () => {
  let dir: string;
  let keyDir: string;

  beforeEach(async () => {
    vi.stubEnv('CONFIDE_KEY_DIR', undefined);
    dir = await mkdtemp(join(tmpdir(), 'confide-keys-'));
    keyDir = join(dir, 'site');
  });
  afterEach(async () => {
    vi.unstubAllEnvs();
    await rm(dir, { recursive: true, force: true });
  });

  it('writes identity.key with mode 0600 and identity.pub, and prints the public key on stdout', async () => {
    const r = await cli('node', 'keys', '--key-dir', keyDir);
    expect(r.code).toBe(0);
    const secretPath = join(keyDir, SECRET_KEY_FILE);
    const publicPath = join(keyDir, PUBLIC_KEY_FILE);
    expect(await mode(secretPath)).toBe(0o600);
    const publicKey = (await readFile(publicPath, 'utf8')).trim();
    expect(fromBase64(publicKey, 32)).toHaveLength(32);
    // stdout is the public key alone, ready for `admin site enrol --public-key`.
    expect(r.stdout).toBe(publicKey);
    expect(r.stderr).toContain(`Fingerprint: ${keyFingerprint(publicKey)}`);
    expect(r.stderr).toContain(secretPath);
    // The secret key is not printed anywhere.
    const secret = (await readFile(secretPath, 'utf8')).trim();
    expect(r.stdout + r.stderr).not.toContain(secret);
    // And it is the key pair that loadIdentity reads back.
    expect(await loadIdentity(keyDir)).toEqual({ publicKey, secretKey: secret });
  });

  it('refuses to overwrite an existing identity without --force (exit 1, clear message)', async () => {
    expect((await cli('node', 'keys', '--key-dir', keyDir)).code).toBe(0);
    const before = await readFile(join(keyDir, SECRET_KEY_FILE), 'utf8');

    const again = await cli('node', 'keys', '--key-dir', keyDir);
    expect(again.code).toBe(1);
    expect(again.stdout).toBe('');
    expect(again.stderr).toContain(`${join(keyDir, SECRET_KEY_FILE)} already exists`);
    expect(again.stderr).toContain('--force');
    expect(await readFile(join(keyDir, SECRET_KEY_FILE), 'utf8')).toBe(before);

    const forced = await cli('node', 'keys', '--key-dir', keyDir, '--force');
    expect(forced.code).toBe(0);
    expect(await readFile(join(keyDir, SECRET_KEY_FILE), 'utf8')).not.toBe(before);
    expect(await mode(join(keyDir, SECRET_KEY_FILE))).toBe(0o600);
    expect((await readFile(join(keyDir, PUBLIC_KEY_FILE), 'utf8')).trim()).toBe(forced.stdout);
  });

  it('two concurrent runs into one directory: one writes the identity, the other refuses', async () => {
    const runs = await Promise.all([
      cli('node', 'keys', '--key-dir', keyDir),
      cli('node', 'keys', '--key-dir', keyDir),
    ]);
    expect(runs.map((r) => r.code).sort()).toEqual([0, 1]);
    const winner = runs.find((r) => r.code === 0)!;
    const loser = runs.find((r) => r.code === 1)!;
    expect(loser.stderr).toContain('already exists');
    // The files on disk are one key pair: the winner's.
    expect((await readFile(join(keyDir, PUBLIC_KEY_FILE), 'utf8')).trim()).toBe(winner.stdout);
    expect((await loadIdentity(keyDir)).publicKey).toBe(winner.stdout);
  });

  it('--force makes a key that was left world-readable private again', async () => {
    expect((await cli('node', 'keys', '--key-dir', keyDir)).code).toBe(0);
    await chmod(join(keyDir, SECRET_KEY_FILE), 0o644);
    expect((await cli('node', 'keys', '--key-dir', keyDir, '--force')).code).toBe(0);
    expect(await mode(join(keyDir, SECRET_KEY_FILE))).toBe(0o600);
  });

  it('--json prints one JSON object with the public key, fingerprint and file paths', async () => {
    const r = await cli('node', 'keys', '--key-dir', keyDir, '--json');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as Record<string, string>;
    const publicKey = (await readFile(join(keyDir, PUBLIC_KEY_FILE), 'utf8')).trim();
    expect(out).toEqual({
      publicKey,
      fingerprint: keyFingerprint(publicKey),
      secretKeyFile: join(keyDir, SECRET_KEY_FILE),
      publicKeyFile: join(keyDir, PUBLIC_KEY_FILE),
    });
  });

  it('takes the key directory from CONFIDE_KEY_DIR', async () => {
    vi.stubEnv('CONFIDE_KEY_DIR', keyDir);
    const r = await cli('node', 'keys', '--json');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ secretKeyFile: join(keyDir, SECRET_KEY_FILE) });
  });
});

describe('loadIdentity', () => {
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'confide-identity-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses a key file readable by other users (mode 0644), telling the operator to chmod it', async () => {
    expect((await cli('node', 'keys', '--key-dir', dir)).code).toBe(0);
    await chmod(join(dir, SECRET_KEY_FILE), 0o644);
    await expect(loadIdentity(dir)).rejects.toThrow(/mode 644.*chmod 600/);
    await chmod(join(dir, SECRET_KEY_FILE), 0o600);
    await expect(loadIdentity(dir)).resolves.toMatchObject({ publicKey: expect.any(String) });
  });

  it('node join refuses to start with a world-readable key (exit 1, chmod in the message)', async () => {
    expect((await cli('node', 'keys', '--key-dir', dir)).code).toBe(0);
    await chmod(join(dir, SECRET_KEY_FILE), 0o640);
    const r = await cli(
      'node',
      'join',
      '--server',
      'http://127.0.0.1:1',
      '--federation',
      'f',
      '--data',
      join(dir, 'none.csv'),
      '--label',
      'y',
      '--key-dir',
      dir,
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('chmod 600');
  });

  it('explains how to create an identity when there is none', async () => {
    await expect(loadIdentity(dir)).rejects.toThrow(
      `no site identity in ${dir}: run \`confide node keys --key-dir ${dir}\` first`,
    );
  });

  it('refuses a key file that does not hold an Ed25519 secret key', async () => {
    await writeFile(join(dir, SECRET_KEY_FILE), 'not a key\n', { mode: 0o600 });
    await expect(loadIdentity(dir)).rejects.toThrow('does not hold a base64 Ed25519 secret key');
  });
});
