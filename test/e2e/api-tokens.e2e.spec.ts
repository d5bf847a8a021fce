/**
 * API tokens over the REST API of a real aggregator (PGlite, or DATABASE_URL): revocation, expiry
 * (an injected clock moves time), the listing, last use, and the bootstrap admin token's file.
 */
import { lstat, mkdtemp, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateIdentity } from '@confide/protocol';
import { openDatabase, startAggregator, type RunningAggregator } from '@confide/aggregator';
import { ApiClient, ApiRequestError } from '../../apps/cli/src/api-client';
import { databaseKind, freshDatabaseUrl } from '../support/database';
import { createFederation, testAggregator, waitUntil } from '../support/federation';
import type { TokenInfo } from '../../apps/cli/src/commands/admin-tokens';

type Created = TokenInfo & { token: string };

const MINUTE = 60_000;

/** Real time plus an offset the test moves forward. */
function movableClock(): { now: () => Date; advance: (ms: number) => void } {
  let offset = 0;
  return { now: () => new Date(Date.now() + offset), advance: (ms) => (offset += ms) };
}

/** The API's error for `call`, which must fail. */
async function failure(call: Promise<unknown>): Promise<ApiRequestError> {
  try {
    await call;
  } catch (e) {
    if (e instanceof ApiRequestError) return e;
    throw e;
  }
  throw new Error('the call succeeded');
}

describe(`API tokens over REST (${databaseKind})`, () => {
  let agg: RunningAggregator;
  let admin: ApiClient;
  let close: () => Promise<void>;
  const clock = movableClock();
  const as = (token: string): ApiClient => new ApiClient(agg.url, token);
  const create = (body: Record<string, unknown>): Promise<Created> =>
    admin.post<Created>('/api/v1/tokens', body);

  beforeAll(async () => {
    ({ agg, api: admin, close } = await testAggregator({ clock }));
  });

  afterAll(async () => {
    await close?.();
  });

  it('refuses a revoked token with 401 at once, saying so only to its holder', async () => {
    const t = await create({ role: 'auditor', label: 'leaked laptop' });
    const auditor = as(t.token);
    await auditor.get('/api/v1/me');
    const revoked = await admin.post<TokenInfo>(`/api/v1/tokens/${t.id}/revoke`);
    expect(revoked).toMatchObject({ id: t.id, revokedAt: expect.any(String) });
    const e = await failure(auditor.get('/api/v1/me'));
    expect(e).toMatchObject({ status: 401, code: 'UNAUTHENTICATED' });
    expect(e.message).toMatch(/the API token was revoked/);
    // Anyone without the secret (a guess of the same shape) learns only "unknown".
    const guess = await failure(as(`cfd_auditor_${'A'.repeat(43)}`).get('/api/v1/me'));
    expect(guess).toMatchObject({ status: 401, code: 'UNAUTHENTICATED' });
    expect(guess.message).toMatch(/the API token is unknown$/);
    // Revoking again changes nothing, the first revocation time included.
    const again = await admin.post<TokenInfo>(`/api/v1/tokens/${t.id}/revoke`);
    expect(again.revokedAt).toBe(revoked.revokedAt);
  });

  it('refuses a token past its expiry with 401 (the clock moved on)', async () => {
    const t = await create({ role: 'auditor', label: 'one hour', expiresInSeconds: 3600 });
    expect(Date.parse(t.expiresAt!) - Date.parse(t.createdAt)).toBe(3600_000);
    const auditor = as(t.token);
    clock.advance(59 * MINUTE);
    await expect(auditor.get('/api/v1/me')).resolves.toMatchObject({ tokenId: t.id });
    clock.advance(2 * MINUTE);
    const e = await failure(auditor.get('/api/v1/me'));
    expect(e).toMatchObject({ status: 401, code: 'UNAUTHENTICATED' });
    expect(e.message).toContain(`the API token expired at ${t.expiresAt}`);
  });

  it('refuses a lifetime that is not a whole number of seconds from a minute to ten years', async () => {
    for (const expiresInSeconds of [0, 59, 1.5, -3600, 11 * 366 * 86_400, '3600']) {
      const e = await failure(create({ role: 'auditor', expiresInSeconds }));
      expect(e).toMatchObject({ status: 400, code: 'VALIDATION_FAILED' });
      expect(e.message).toContain('expiresInSeconds');
    }
  });

  it('lists every token with its dates and never a secret or a hash', async () => {
    const t = await create({ role: 'admin', label: 'ci', expiresInSeconds: 7 * 86_400 });
    const list = await admin.get<TokenInfo[]>('/api/v1/tokens');
    for (const row of list) {
      expect(Object.keys(row).sort()).toEqual(
        ['createdAt', 'expiresAt', 'id', 'label', 'lastUsedAt', 'revokedAt', 'role'].sort(),
      );
    }
    expect(list.find((r) => r.id === t.id)).toEqual({
      id: t.id,
      role: 'admin',
      label: 'ci',
      createdAt: t.createdAt,
      expiresAt: t.expiresAt,
      lastUsedAt: null,
      revokedAt: null,
    });
    const text = JSON.stringify(list);
    expect(text).not.toContain(t.token);
    expect(text).not.toContain(agg.initialAdminToken!);
    expect(text).not.toMatch(/cfd_|[0-9a-f]{64}/);
  });

  it('records when a token was last used, writing at most once a minute', async () => {
    const t = await create({ role: 'auditor', label: 'dashboard' });
    const lastUsed = async (): Promise<string | null> =>
      (await admin.get<TokenInfo[]>('/api/v1/tokens')).find((r) => r.id === t.id)!.lastUsedAt;
    expect(await lastUsed()).toBeNull();
    const auditor = as(t.token);
    const before = clock.now().getTime();
    await auditor.get('/api/v1/me');
    const first = await lastUsed();
    expect(Date.parse(first!)).toBeGreaterThanOrEqual(before - 1000);
    // Within the minute: no write, however many requests.
    clock.advance(30_000);
    for (let i = 0; i < 5; i++) await auditor.get('/api/v1/me');
    expect(await lastUsed()).toBe(first);
    clock.advance(31_000);
    await auditor.get('/api/v1/me');
    expect(Date.parse((await lastUsed())!)).toBeGreaterThanOrEqual(Date.parse(first!) + MINUTE);
  });

  it('answers 404 for revoking an unknown id, and 403 for an auditor', async () => {
    const unknown = await failure(
      admin.post('/api/v1/tokens/00000000-0000-4000-8000-000000000000/revoke'),
    );
    expect(unknown).toMatchObject({ status: 404, code: 'NOT_FOUND' });
    expect(unknown.message).toContain(
      'no API token has the id 00000000-0000-4000-8000-000000000000',
    );
    const malformed = await failure(admin.post('/api/v1/tokens/not-an-id/revoke'));
    expect(malformed).toMatchObject({ status: 404, code: 'NOT_FOUND' });
    const auditor = as((await create({ role: 'auditor' })).token);
    const target = await create({ role: 'auditor' });
    const forbidden = await failure(auditor.post(`/api/v1/tokens/${target.id}/revoke`));
    expect(forbidden).toMatchObject({ status: 403, code: 'FORBIDDEN' });
  });

  it('ends an open live-event stream when its token is revoked', async () => {
    const fed = await createFederation(admin);
    const t = await create({ role: 'auditor', label: 'wall screen' });
    const res = await fetch(`${agg.url}/api/v1/federations/${fed.id}/events?token=${t.token}`);
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    let ended = false;
    const drained = (async () => {
      for (;;) if ((await reader.read()).done) return (ended = true);
    })();
    await admin.post(`/api/v1/tokens/${t.id}/revoke`);
    await waitUntil(() => ended, 5000, 'the stream to end');
    await drained;
  });
});

describe(`the last admin token (${databaseKind})`, () => {
  let close: () => Promise<void>;
  let agg: RunningAggregator;

  beforeAll(async () => {
    ({ agg, close } = await testAggregator());
  });

  afterAll(async () => {
    await close?.();
  });

  it('cannot be revoked; once another admin token exists, it can', async () => {
    const first = new ApiClient(agg.url, agg.initialAdminToken!);
    const me = await first.get<{ tokenId: string }>('/api/v1/me');
    // An auditor token does not count: it cannot administer anything.
    await first.post('/api/v1/tokens', { role: 'auditor' });
    const refused = await failure(first.post(`/api/v1/tokens/${me.tokenId}/revoke`));
    expect(refused).toMatchObject({ status: 409, code: 'CONFLICT' });
    expect(refused.message).toMatch(/last admin token .*create another admin token/);
    await first.get('/api/v1/me');

    const second = await first.post<Created>('/api/v1/tokens', { role: 'admin', label: 'next' });
    await first.post(`/api/v1/tokens/${me.tokenId}/revoke`);
    await expect(first.get('/api/v1/me')).rejects.toMatchObject({ status: 401 });
    // Now `second` is the last one, and revoking it (with itself) is refused too.
    const next = new ApiClient(agg.url, second.token);
    await expect(next.post(`/api/v1/tokens/${second.id}/revoke`)).rejects.toMatchObject({
      status: 409,
    });
  });
});

describe(`the bootstrap admin token's file (${databaseKind})`, () => {
  const dirs: string[] = [];
  const cleanups: Array<() => Promise<void>> = [];

  /** A fresh database kept open across aggregator restarts, and a fresh data directory. */
  async function fresh(): Promise<{
    start: (clock?: { now: () => Date }) => Promise<RunningAggregator>;
    dir: string;
  }> {
    const url = await freshDatabaseUrl();
    const database = await openDatabase({ databaseUrl: url.url });
    cleanups.push(async () => {
      await database.close();
      await url.drop();
    });
    const dir = await mkdtemp(join(tmpdir(), 'confide-admin-token-'));
    dirs.push(dir);
    return {
      dir,
      start: async (clock) => {
        const agg = await startAggregator({ database, dataDir: dir, ...(clock ? { clock } : {}) });
        cleanups.unshift(() => agg.close());
        return agg;
      },
    };
  }

  afterAll(async () => {
    for (const c of cleanups) await c();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('is written once, mode 0600, in the data directory; a restart writes none', async () => {
    const { dir, start } = await fresh();
    const agg = await start();
    const file = join(dir, 'admin-token');
    expect(agg.initialAdminTokenFile).toBe(file);
    expect((await lstat(file)).mode & 0o777).toBe(0o600);
    expect(await readFile(file, 'utf8')).toBe(`${agg.initialAdminToken!}\n`);
    expect(agg.initialAdminToken).toMatch(/^cfd_admin_/);
    await expect(
      new ApiClient(agg.url, agg.initialAdminToken!).get('/api/v1/me'),
    ).resolves.toMatchObject({ role: 'admin' });
    // Written under a temporary name and linked into place: nothing else is left behind.
    expect((await readdir(dir)).sort()).toEqual(['admin-token', 'server-identity.key']);
    await agg.close();

    const again = await start();
    expect(again.initialAdminToken).toBeNull();
    expect(again.initialAdminTokenFile).toBeNull();
    expect(await readFile(file, 'utf8')).toBe(`${agg.initialAdminToken!}\n`);
  });

  it('never overwrites an existing file nor writes through a planted symlink', async () => {
    const { dir, start } = await fresh();
    await writeFile(join(dir, 'admin-token'), 'an earlier token\n', { mode: 0o600 });
    const elsewhere = join(dir, 'elsewhere');
    await writeFile(elsewhere, 'not a token file\n');
    await symlink(elsewhere, join(dir, 'admin-token.2'));
    const agg = await start();
    expect(agg.initialAdminTokenFile).toBe(join(dir, 'admin-token.3'));
    expect(await readFile(join(dir, 'admin-token.3'), 'utf8')).toBe(`${agg.initialAdminToken!}\n`);
    expect(await readFile(join(dir, 'admin-token'), 'utf8')).toBe('an earlier token\n');
    expect(await readFile(elsewhere, 'utf8')).toBe('not a token file\n');
  });

  it('is written again, beside the first, once every admin token has expired', async () => {
    const { dir, start } = await fresh();
    const clock = movableClock();
    const agg = await start(clock);
    const first = new ApiClient(agg.url, agg.initialAdminToken!);
    const shortLived = await first.post<Created>('/api/v1/tokens', {
      role: 'admin',
      expiresInSeconds: 3600,
    });
    const bootstrapId = (await first.get<{ tokenId: string }>('/api/v1/me')).tokenId;
    await new ApiClient(agg.url, shortLived.token).post(`/api/v1/tokens/${bootstrapId}/revoke`);
    await agg.close();
    clock.advance(2 * 3600_000);

    const recovered = await start(clock);
    expect(recovered.initialAdminTokenFile).toBe(join(dir, 'admin-token.2'));
    expect(await readFile(join(dir, 'admin-token'), 'utf8')).toBe(`${agg.initialAdminToken!}\n`);
    await expect(
      new ApiClient(recovered.url, recovered.initialAdminToken!).get('/api/v1/me'),
    ).resolves.toMatchObject({ role: 'admin' });
  });

  it('is not kept in the database when its file cannot be written, so the next start tries again', async () => {
    const url = await freshDatabaseUrl();
    const database = await openDatabase({ databaseUrl: url.url });
    cleanups.push(async () => {
      await database.close();
      await url.drop();
    });
    const dir = await mkdtemp(join(tmpdir(), 'confide-admin-token-'));
    dirs.push(dir);
    // A file where the data directory should be: the token cannot be written there. (The identity
    // is given, so its key file is not what fails.)
    const notADir = join(dir, 'file');
    await writeFile(notADir, '');
    const identity = generateIdentity();
    await expect(startAggregator({ database, dataDir: notADir, identity })).rejects.toThrow(
      /cannot create the initial admin token \(none was kept; the next start tries again\)/,
    );
    const agg = await startAggregator({ database, dataDir: join(dir, 'data'), identity });
    cleanups.unshift(() => agg.close());
    expect(agg.initialAdminTokenFile).toBe(join(dir, 'data', 'admin-token'));
    const list = await new ApiClient(agg.url, agg.initialAdminToken!).get<TokenInfo[]>(
      '/api/v1/tokens',
    );
    expect(list).toHaveLength(1);
  });
});
