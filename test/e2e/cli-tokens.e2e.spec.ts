import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliEnv, runCli, runCliJson, spawnCli, type CliProcess } from '../support/cli';
import { databaseKind, freshDatabaseUrl } from '../support/database';
import type { TokenInfo } from '../../apps/cli/src/commands/admin-tokens';

const FIELDS = ['id', 'role', 'label', 'createdAt', 'expiresAt', 'lastUsedAt', 'revokedAt'];

/**
 * The operator's side of API tokens with real processes: `confide server` keeps its first admin token
 * out of its output (a file instead, or stdout with --print-token), and `confide admin token`
 * creates, lists and revokes tokens against it.
 */
describe(`confide server's admin token and confide admin token (${databaseKind})`, () => {
  const children: CliProcess[] = [];
  const databases: Array<Awaited<ReturnType<typeof freshDatabaseUrl>>> = [];
  let tmp: string;
  let db: Awaited<ReturnType<typeof freshDatabaseUrl>>;
  let server: CliProcess;
  let url: string;
  let token: string;

  const startServer = (dataDir: string, dbUrl: string | undefined, ...extra: string[]) => {
    const p = spawnCli(
      ['server', '--port', '0', '--host', '127.0.0.1', '--data-dir', dataDir, ...extra],
      cliEnv({ DATABASE_URL: dbUrl }),
    );
    children.push(p);
    return p;
  };

  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'confide-cli-tokens-'));
    db = await freshDatabaseUrl();
    databases.push(db);
  });

  afterAll(async () => {
    await Promise.all(children.map((c) => c.stop('SIGKILL', 5000)));
    for (const d of databases) await d.drop();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('writes the first admin token to a 0600 file in --data-dir and prints only its path', async () => {
    server = startServer(join(tmp, 'db'), db.url);
    [, url] = (await server.waitForOutput(
      /Confide aggregator listening on (http:\/\/127\.0\.0\.1:\d+)\n/,
      60_000,
    )) as [string, string];
    const [, file] = await server.waitForOutput(
      /admin token was written to (\S+) \(mode 0600\)/,
      10_000,
    );
    expect(file).toBe(join(tmp, 'db', 'admin-token'));
    expect((await stat(file!)).mode & 0o777).toBe(0o600);
    token = (await readFile(file!, 'utf8')).trim();
    expect(token).toMatch(/^cfd_admin_[A-Za-z0-9_-]{43}$/);
    // Everything the server prints at start is out: the token is in neither stream.
    expect(server.stdout).toBe('');
    expect(server.stderr).not.toContain(token);
  });

  it('creates tokens with --expires-in, lists them with --json, revokes them by id', async () => {
    const env = cliEnv({ CONFIDE_SERVER: url, CONFIDE_TOKEN: token });
    const created = await runCliJson<TokenInfo & { token: string }>(
      [
        'admin',
        'token',
        'create',
        '--role',
        'auditor',
        '--label',
        'audit 2026',
        '--expires-in',
        '90d',
        '--json',
      ],
      env,
    );
    expect(Date.parse(created.expiresAt!) - Date.parse(created.createdAt)).toBe(90 * 86_400_000);

    const bad = await runCli(
      ['admin', 'token', 'create', '--role', 'auditor', '--expires-in', '90x'],
      env,
    );
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain(
      '--expires-in must be a duration such as 30m, 12h or 90d (a positive whole number and one of the units s, m, h, d, w); got "90x"',
    );
    expect(bad.stderr).not.toMatch(/^\s+at /m);

    // The auditor token works until it is revoked.
    const auditorEnv = cliEnv({ CONFIDE_SERVER: url, CONFIDE_TOKEN: created.token });
    expect((await runCli(['admin', 'federation', 'list', '--json'], auditorEnv)).code).toBe(0);

    const list = await runCliJson<TokenInfo[]>(['admin', 'token', 'list', '--json'], env);
    for (const row of list) expect(Object.keys(row)).toEqual(FIELDS);
    expect(list).toHaveLength(2);
    const [bootstrap, auditor] = list;
    expect(bootstrap).toMatchObject({ role: 'admin', lastUsedAt: expect.any(String) });
    expect(auditor).toMatchObject({
      id: created.id,
      role: 'auditor',
      label: 'audit 2026',
      expiresAt: created.expiresAt,
      lastUsedAt: expect.any(String),
      revokedAt: null,
    });
    expect(JSON.stringify(list)).not.toContain('cfd_');
    const table = await runCli(['admin', 'token', 'list'], env);
    expect(table.stdout).toMatch(/^ID +ROLE +STATE +CREATED +EXPIRES +LAST USED +LABEL$/m);
    expect(table.stdout).toMatch(new RegExp(`^${created.id} +auditor +active .* audit 2026$`, 'm'));

    const revoked = await runCliJson<TokenInfo>(
      ['admin', 'token', 'revoke', created.id, '--json'],
      env,
    );
    expect(revoked).toMatchObject({ id: created.id, revokedAt: expect.any(String) });
    const refused = await runCli(['admin', 'federation', 'list'], auditorEnv);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/UNAUTHENTICATED: .*the API token was revoked/);
    expect((await runCli(['admin', 'token', 'list'], env)).stdout).toMatch(
      new RegExp(`^${created.id} +auditor +revoked `, 'm'),
    );

    const unknown = await runCli(
      ['admin', 'token', 'revoke', '00000000-0000-4000-8000-000000000000'],
      env,
    );
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(
      /^confide admin token revoke: NOT_FOUND: .*no API token has the id 00000000-0000-4000-8000-000000000000$/m,
    );
    const missing = await runCli(['admin', 'token', 'revoke'], env);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('<ID> is required');
    // An admin may revoke the token it signs in with, while another admin token remains; it is told.
    const ci = await runCliJson<{ id: string; token: string }>(
      ['admin', 'token', 'create', '--role', 'admin', '--label', 'ci', '--json'],
      env,
    );
    const self = await runCli(
      ['admin', 'token', 'revoke', ci.id],
      cliEnv({ CONFIDE_SERVER: url, CONFIDE_TOKEN: ci.token }),
    );
    expect(self.code).toBe(0);
    expect(self.stdout).toContain(`revoked admin token ${ci.id} (ci) at `);
    expect(self.stderr).toContain('This was the token this command used: it no longer works');
    const last = await runCli(['admin', 'token', 'revoke', bootstrap!.id], env);
    expect(last.code).toBe(1);
    expect(last.stderr).toMatch(/CONFLICT: .*last admin token/);
  }, 120_000);

  it('prints the token on stdout with --print-token, and nothing on a later start', async () => {
    const other = await freshDatabaseUrl();
    databases.push(other);
    const printing = startServer(join(tmp, 'db2'), other.url, '--print-token');
    const [, printed] = await printing.waitForOutput(/^(\S+)\n/, 60_000, 'stdout');
    expect(printed).toBe((await readFile(join(tmp, 'db2', 'admin-token'), 'utf8')).trim());
    expect(printing.stderr).not.toContain(printed);
    expect(await printing.stop('SIGTERM')).toEqual({ code: 0, signal: null });

    // The first server again, on the same database: it has an admin token, so none is made.
    expect(await server.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    const again = startServer(join(tmp, 'db'), db.url, '--print-token', '--json');
    const [line] = await again.waitForOutput(/^\{.*\}\n/, 60_000, 'stdout');
    expect(JSON.parse(line)).toMatchObject({ adminTokenFile: null, initialAdminToken: null });
    expect(again.stderr).toContain('no admin token was created at this start');
    expect(await readFile(join(tmp, 'db', 'admin-token'), 'utf8')).toBe(`${token}\n`);
  }, 120_000);
});
