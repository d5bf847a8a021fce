import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect as tcpConnect, type Socket } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { ErrorCode, generateIdentity } from '@confide/protocol';
import { openDatabase, startAggregator, type RunningAggregator } from '@confide/aggregator';
import type { ApiClient } from '../../apps/cli/src/api-client';
import { cliEnv, spawnCli, type CliProcess } from '../support/cli';
import { databaseKind, freshDatabaseUrl } from '../support/database';
import {
  createFederation,
  enrolSites,
  testAggregator,
  waitUntil,
  type TestSite,
} from '../support/federation';
import { RawSite, type Received } from '../support/raw-site';

const METRICS_TOKEN = 'metrics-token-for-the-outsiders-test';
const KIB = 1024;

/** Everything an outsider (no enrolled key, no API token) can try, against real aggregators. */
describe(`what an outsider gets from a real aggregator (${databaseKind})`, () => {
  /**
   * Behind a trusted proxy (loopback), so each test counts as the client address it puts in
   * X-Forwarded-For; small caps so they can be reached.
   */
  let env: Awaited<ReturnType<typeof testAggregator>>;
  let agg: RunningAggregator;
  let api: ApiClient;
  let fedId: string;
  let fedName: string;
  let sites: TestSite[];
  /** Closed after each test: sockets and processes the test opened. */
  let cleanup: Array<() => void> = [];

  beforeAll(async () => {
    env = await testAggregator({
      trustedProxies: ['127.0.0.1/32', '::1/128'],
      maxPendingLogins: 6,
      maxPendingLoginsPerAddress: 3,
      authFailureLimit: 3,
      authFailureWindowMs: 60_000,
      metricsToken: METRICS_TOKEN,
    });
    agg = env.agg;
    api = env.api;
    fedName = `oncology-trial-${randomBytes(4).toString('hex')}`;
    fedId = (await createFederation(api, { name: fedName })).id;
    sites = await enrolSites(api, fedId, 2);
  });
  afterEach(() => {
    for (const f of cleanup) f();
    cleanup = [];
  });
  afterAll(async () => {
    await env?.close();
  });

  /** A raw site whose connection counts as coming from `address` (through the trusted proxy). */
  async function connectFrom(address: string, url = agg.wsUrl): Promise<RawSite> {
    const site = await RawSite.connect(url, 5000, { 'x-forwarded-for': address });
    cleanup.push(() => site.ws.terminate());
    return site;
  }

  /** Opens a socket and resolves with the first thing that happens: a challenge, or a refusal and close. */
  function tryConnect(
    address: string | null,
    url = agg.wsUrl,
  ): Promise<
    | { kind: 'challenge'; ws: WebSocket }
    | { kind: 'refused'; error: Record<string, unknown> | null; code: number; reason: string }
  > {
    const ws = new WebSocket(url, {
      perMessageDeflate: false,
      headers: address ? { 'x-forwarded-for': address } : {},
    });
    cleanup.push(() => ws.terminate());
    ws.on('error', () => undefined);
    let error: Record<string, unknown> | null = null;
    return new Promise((resolve) => {
      ws.on('message', (data: Buffer) => {
        const msg = JSON.parse(data.toString('utf8')) as Record<string, unknown>;
        if (msg['type'] === 'challenge') resolve({ kind: 'challenge', ws });
        else if (msg['type'] === 'error') error = msg;
      });
      ws.on('close', (code, reason) =>
        resolve({ kind: 'refused', error, code, reason: reason.toString() }),
      );
    });
  }

  /** Resolves with the close code and reason; fails if the socket is still open after `ms`. */
  async function closedWithin(
    site: RawSite,
    ms: number,
  ): Promise<{ code: number; reason: string }> {
    return Promise.race([
      site.closed,
      new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error(`connection still open after ${ms} ms`)), ms).unref(),
      ),
    ]);
  }

  async function metrics(): Promise<string> {
    const res = await fetch(`${agg.url}/metrics`, {
      headers: { authorization: `Bearer ${METRICS_TOKEN}` },
    });
    expect(res.status).toBe(200);
    return res.text();
  }

  /** One sample of a Prometheus counter or gauge (0 when absent). */
  function sample(text: string, name: string, labels = ''): number {
    const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
    return line ? Number(line.split(' ')[1]) : 0;
  }

  /** The parts of an error answer that an outsider could compare. */
  const answerOf = (r: Received) => ({
    type: r.type,
    code: r.msg['code'],
    message: r.msg['message'],
    fatal: r.msg['fatal'],
  });

  describe('before login', () => {
    it('closes a connection with 1009 from the header of a frame over 64 KiB, before its payload arrives', async () => {
      const raw = await rawWebSocket(agg.wsUrl, { 'x-forwarded-for': '198.51.100.1' });
      cleanup.push(() => raw.socket.destroy());
      // A binary frame that declares 100 MiB, followed by only 1 KiB of it.
      const head = Buffer.alloc(14);
      head[0] = 0x82;
      head[1] = 0x80 | 127;
      head.writeBigUInt64BE(BigInt(100 * KIB * KIB), 2);
      randomBytes(4).copy(head, 10);
      raw.socket.write(Buffer.concat([head, randomBytes(KIB)]));
      const started = Date.now();
      await raw.ended(5000);
      expect(Date.now() - started).toBeLessThan(5000);
      expect(raw.closeCode()).toBe(1009);
    }, 15_000);

    it('answers a message of exactly 64 KiB (then closes for the error) but closes one byte more with 1009 unread', async () => {
      const a = await connectFrom('198.51.100.2');
      a.sendText('x'.repeat(64 * KIB));
      const err = await a.errorWith(ErrorCode.MALFORMED_MESSAGE);
      expect(err.msg['fatal']).toBe(false);
      expect(await closedWithin(a, 5000)).toEqual({
        code: 4000,
        reason: ErrorCode.MALFORMED_MESSAGE,
      });

      const b = await connectFrom('198.51.100.2');
      b.sendText('x'.repeat(64 * KIB + 1));
      expect((await closedWithin(b, 5000)).code).toBe(1009);
      expect(b.received.filter((r) => r.type === 'error')).toEqual([]);
      expect(
        sample(
          await metrics(),
          'confide_connections_closed_before_login_total',
          '{reason="frame_too_large"}',
        ),
      ).toBeGreaterThanOrEqual(1);
    }, 15_000);

    it.each([
      {
        what: 'text that is not JSON',
        code: ErrorCode.MALFORMED_MESSAGE,
        send: (s: RawSite) => s.sendText('{"v":2,'),
      },
      {
        what: 'an unknown message type',
        code: ErrorCode.UNKNOWN_MESSAGE_TYPE,
        send: (s: RawSite) => s.sendJson({ type: 'round.bogus' }),
      },
      {
        what: 'a round message',
        code: ErrorCode.NOT_AUTHENTICATED,
        send: (s: RawSite) =>
          s.sendJson({
            type: 'round.decline',
            runId: randomUUID(),
            round: 1,
            code: 'POLICY_NOISE',
            reason: 'x',
          }),
      },
      {
        what: 'a binary frame',
        code: ErrorCode.MALFORMED_MESSAGE,
        send: (s: RawSite) => s.sendFrame({ type: 'login' }, new Float32Array(4)),
      },
    ])(
      'answers $what before login with $code and closes the connection',
      async ({ code, send }) => {
        const s = await connectFrom('198.51.100.3');
        send(s);
        const err = await s.waitFor((r) => r.type === 'error', 5000, 'an error');
        expect(err.msg['code']).toBe(code);
        expect(await closedWithin(s, 5000)).toEqual({ code: 4000, reason: code });
      },
      10_000,
    );

    it('caps connections waiting to log in per client address, counts each refusal, and admits others', async () => {
      const before = sample(
        await metrics(),
        'confide_connections_refused_total',
        '{reason="pending_logins_per_address"}',
      );
      const waiting = [
        await connectFrom('198.51.100.10'),
        await connectFrom('198.51.100.10'),
        await connectFrom('198.51.100.10'),
      ];
      const refused = await tryConnect('198.51.100.10');
      expect(refused).toMatchObject({ kind: 'refused', code: 1013, reason: ErrorCode.SERVER_BUSY });
      expect(refused.kind === 'refused' && refused.error).toMatchObject({
        code: ErrorCode.SERVER_BUSY,
        fatal: false,
      });
      // Another address is not affected, and the refusal was counted.
      expect((await tryConnect('198.51.100.11')).kind).toBe('challenge');
      expect(
        sample(
          await metrics(),
          'confide_connections_refused_total',
          '{reason="pending_logins_per_address"}',
        ),
      ).toBe(before + 1);
      // Once one of them logs in, it no longer counts: the address may open another.
      expect((await waiting[0]!.login(sites[0]!.identity, fedId)).type).toBe('welcome');
      expect((await tryConnect('198.51.100.10')).kind).toBe('challenge');
    }, 15_000);

    it('caps connections waiting to log in in all, and admits again when one goes', async () => {
      const before = sample(
        await metrics(),
        'confide_connections_refused_total',
        '{reason="pending_logins"}',
      );
      // Whatever earlier tests left is closed by now (each closes its own sockets).
      await waitUntil(
        async () => sample(await metrics(), 'confide_pending_logins') === 0,
        5000,
        'no pending logins',
      );
      const waiting: RawSite[] = [];
      for (let i = 0; i < 6; i++) waiting.push(await connectFrom(`198.51.100.${20 + i}`));
      const refused = await tryConnect('198.51.100.30');
      expect(refused).toMatchObject({ kind: 'refused', code: 1013, reason: ErrorCode.SERVER_BUSY });
      expect(
        sample(await metrics(), 'confide_connections_refused_total', '{reason="pending_logins"}'),
      ).toBe(before + 1);
      expect(sample(await metrics(), 'confide_pending_logins')).toBe(6);
      waiting[0]!.close();
      await waiting[0]!.closed;
      await waitUntil(
        async () => (await tryConnect('198.51.100.31')).kind === 'challenge',
        5000,
        'a free slot',
      );
    }, 15_000);
  });

  describe('login', () => {
    it('answers a bad signature the same whether the key is enrolled or not and whether the federation exists', async () => {
      const forger = generateIdentity();
      const answers: Array<{ answer: ReturnType<typeof answerOf>; closed: unknown }> = [];
      for (const [identity, federationId] of [
        [sites[0]!.identity, fedId],
        [generateIdentity(), fedId],
        [sites[0]!.identity, randomUUID()],
      ] as const) {
        const s = await connectFrom('198.51.100.40');
        const answer = await s.login(identity, federationId, { signWith: forger });
        answers.push({ answer: answerOf(answer), closed: await closedWithin(s, 5000) });
      }
      expect(answers[0]!.answer.code).toBe(ErrorCode.BAD_SIGNATURE);
      expect(answers[1]).toEqual(answers[0]);
      expect(answers[2]).toEqual(answers[0]);
      // The site itself still logs in.
      const ok = await connectFrom('198.51.100.40');
      expect((await ok.login(sites[0]!.identity, fedId)).type).toBe('welcome');
    }, 15_000);

    it('names no federation to a peer that has not logged in, and treats an unknown federation as an unknown key', async () => {
      const pending = generateIdentity();
      await api.post(`/api/v1/federations/${fedId}/sites`, {
        name: 'pending-site',
        publicKey: pending.publicKey,
      });
      const revoked = generateIdentity();
      const r = await api.post<{ id: string }>(`/api/v1/federations/${fedId}/sites`, {
        name: 'revoked-site',
        publicKey: revoked.publicKey,
      });
      await api.post(`/api/v1/federations/${fedId}/sites/${r.id}/approve`);
      await api.post(`/api/v1/federations/${fedId}/sites/${r.id}/revoke`);
      const seen: Received[] = [];
      const attempt = async (
        identity = generateIdentity(),
        federationId = fedId,
        signWith = identity,
      ) => {
        const s = await connectFrom('198.51.100.41');
        const answer = await s.login(identity, federationId, { signWith });
        await closedWithin(s, 5000);
        seen.push(...s.received);
        return answer;
      };
      const unknownKey = await attempt();
      const unknownFederation = await attempt(generateIdentity(), randomUUID());
      expect(unknownKey.msg['code']).toBe(ErrorCode.UNKNOWN_SITE);
      expect(answerOf(unknownFederation)).toEqual(answerOf(unknownKey));
      expect((await attempt(pending)).msg['code']).toBe(ErrorCode.SITE_NOT_APPROVED);
      expect((await attempt(revoked)).msg['code']).toBe(ErrorCode.SITE_REVOKED);
      expect((await attempt(sites[1]!.identity, fedId, generateIdentity())).msg['code']).toBe(
        ErrorCode.BAD_SIGNATURE,
      );
      expect(seen.filter((x) => x.type === 'error')).toHaveLength(5);
      for (const x of seen) expect(JSON.stringify(x.msg)).not.toContain(fedName);
    }, 20_000);
  });

  describe('after login', () => {
    it("closes a site that sends a frame over its federation's model plus headroom, from its header", async () => {
      const s = await connectFrom('198.51.100.50');
      expect((await s.login(sites[0]!.identity, fedId)).type).toBe('welcome');
      // The model has 31 parameters; 2 MiB of floats is far past it and its headers.
      s.sendFrame(
        { type: 'round.update', runId: randomUUID(), round: 1, numExamples: 10, trainLoss: 0.1 },
        new Float32Array(512 * KIB),
      );
      expect((await closedWithin(s, 5000)).code).toBe(1009);
      expect(s.received.filter((r) => r.type === 'error')).toEqual([]);
      await waitUntil(
        async () => {
          const listed = await api.get<Array<{ id: string; connected: boolean }>>(
            `/api/v1/federations/${fedId}/sites`,
          );
          return listed.find((x) => x.id === sites[0]!.siteId)?.connected === false;
        },
        5000,
        'the site to be disconnected',
      );
    }, 15_000);

    it('reads frames up to its own model from a site of a federation with a large model', async () => {
      const big = await createFederation(api, {
        modelSpec: { kind: 'mlp', inputDim: 300, hidden: [1024], output: 'binary' },
      });
      const [site] = await enrolSites(api, big.id, 1);
      const s = await connectFrom('198.51.100.51');
      expect((await s.login(site!.identity, big.id)).type).toBe('welcome');
      // 309,249 parameters and the weight coordinate: 1.2 MB, well over the pre-login 64 KiB.
      const id = randomUUID();
      s.sendFrame(
        {
          id,
          type: 'round.update',
          runId: randomUUID(),
          round: 1,
          numExamples: 10,
          trainLoss: 0.1,
        },
        new Float32Array(309_250),
      );
      const answer = await s.waitFor(
        (r) => r.type === 'error' && r.msg['refId'] === id,
        5000,
        'the answer to the update',
      );
      expect(answer.msg['fatal']).toBe(false);
      expect(s.isOpen).toBe(true);
    }, 20_000);
  });

  describe('REST', () => {
    it('tells anyone only whether it is healthy; the database and counts only to a token', async () => {
      const open = await fetch(`${agg.url}/health`);
      expect(open.status).toBe(200);
      expect(await open.json()).toEqual({ status: 'ok' });

      const withToken = await fetch(`${agg.url}/health`, {
        headers: { authorization: `Bearer ${agg.initialAdminToken}` },
      });
      expect(withToken.status).toBe(200);
      const details = (await withToken.json()) as Record<string, unknown>;
      expect(details['status']).toBe('ok');
      expect(details['database']).toBe(agg.db.description);
      expect(typeof details['connectedSites']).toBe('number');
      expect(typeof details['pendingLogins']).toBe('number');

      const badToken = await fetch(`${agg.url}/health`, {
        headers: {
          authorization: 'Bearer cfd_admin_not-a-real-token',
          'x-forwarded-for': '203.0.113.1',
        },
      });
      expect(badToken.status).toBe(401);
    });

    it('serves /metrics only with the metrics token when one is set', async () => {
      const tries: Array<Record<string, string>> = [
        {},
        { authorization: 'Bearer wrong-token-of-some-length' },
        { authorization: `Bearer ${agg.initialAdminToken}` },
      ];
      for (const headers of tries) {
        const res = await fetch(`${agg.url}/metrics`, {
          headers: { ...headers, 'x-forwarded-for': '203.0.113.2' },
        });
        expect(res.status).toBe(401);
        expect(await res.json()).toMatchObject({ error: { code: 'UNAUTHENTICATED' } });
      }
      expect(await metrics()).toContain('confide_pending_logins');
    });

    it('answers 429 with Retry-After to an address after too many failed authentications, and only to it', async () => {
      const from = (address: string, token: string) =>
        fetch(`${agg.url}/api/v1/federations`, {
          headers: { authorization: `Bearer ${token}`, 'x-forwarded-for': address },
        });
      for (let i = 0; i < 3; i++) {
        expect((await from('203.0.113.9', `cfd_admin_guess${i}`)).status).toBe(401);
      }
      const limited = await from('203.0.113.9', 'cfd_admin_guess3');
      expect(limited.status).toBe(429);
      const retryAfter = Number(limited.headers.get('retry-after'));
      expect(retryAfter).toBeGreaterThanOrEqual(1);
      expect(retryAfter).toBeLessThanOrEqual(60);
      expect(await limited.json()).toMatchObject({ error: { code: 'RATE_LIMITED' } });
      // Even a good token waits: the limit is looked at before the token.
      expect((await from('203.0.113.9', agg.initialAdminToken!)).status).toBe(429);
      // Other addresses, and requests without a credential, are not limited.
      expect((await from('203.0.113.10', 'cfd_admin_guess')).status).toBe(401);
      expect((await from('203.0.113.10', agg.initialAdminToken!)).status).toBe(200);
      expect(
        (await fetch(`${agg.url}/health`, { headers: { 'x-forwarded-for': '203.0.113.9' } }))
          .status,
      ).toBe(200);
      const text = await metrics();
      expect(sample(text, 'confide_auth_rate_limited_total')).toBeGreaterThanOrEqual(2);
    });
  });
});

/** An aggregator with nobody trusted as a proxy, a short login timeout and a short failure window. */
describe(`outsiders against an aggregator with no trusted proxy (${databaseKind})`, () => {
  let env: Awaited<ReturnType<typeof testAggregator>>;
  let agg: RunningAggregator;
  let cleanup: Array<() => void> = [];

  beforeAll(async () => {
    env = await testAggregator({
      loginTimeoutMs: 1000,
      maxPendingLoginsPerAddress: 2,
      authFailureLimit: 2,
      authFailureWindowMs: 1500,
    });
    agg = env.agg;
  });
  afterEach(() => {
    for (const f of cleanup) f();
    cleanup = [];
  });
  afterAll(async () => {
    await env?.close();
  });

  async function connect(headers: Record<string, string> = {}): Promise<RawSite> {
    const site = await RawSite.connect(agg.wsUrl, 5000, headers);
    cleanup.push(() => site.ws.terminate());
    return site;
  }

  it('closes a connection that does not log in within the login timeout with TIMEOUT', async () => {
    const started = Date.now();
    const idle = await connect();
    const err = await idle.errorWith(ErrorCode.TIMEOUT, 5000);
    expect(err.msg['fatal']).toBe(false);
    expect(String(err.msg['message'])).toMatch(/no login within 1 s/);
    expect(await idle.closed).toEqual({ code: 4000, reason: ErrorCode.TIMEOUT });
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
  }, 10_000);

  it('counts an untrusted peer by its own address whatever X-Forwarded-For it sends', async () => {
    await connect({ 'x-forwarded-for': '198.51.100.60' });
    await connect({ 'x-forwarded-for': '198.51.100.61' });
    const third = new WebSocket(agg.wsUrl, { headers: { 'x-forwarded-for': '198.51.100.62' } });
    cleanup.push(() => third.terminate());
    third.on('error', () => undefined);
    const closed = await new Promise<{ code: number; reason: string }>((resolve) =>
      third.on('close', (code, reason) => resolve({ code, reason: reason.toString() })),
    );
    expect(closed).toEqual({ code: 1013, reason: ErrorCode.SERVER_BUSY });
  }, 10_000);

  it('limits failed REST authentications of an untrusted peer whatever X-Forwarded-For it sends, for the window only', async () => {
    const attempt = (i: number) =>
      fetch(`${agg.url}/api/v1/federations`, {
        headers: {
          authorization: `Bearer cfd_admin_guess${i}`,
          'x-forwarded-for': `203.0.113.${i}`,
        },
      });
    expect((await attempt(1)).status).toBe(401);
    expect((await attempt(2)).status).toBe(401);
    const limited = await attempt(3);
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get('retry-after'))).toBeLessThanOrEqual(2);
    // After the window the address may try again.
    await waitUntil(async () => (await attempt(4)).status === 401, 5000, 'the window to pass');
  }, 10_000);
});

describe(`/health with its database gone (${databaseKind})`, () => {
  it('answers 503 { status: "unavailable" } and nothing about the database or its error', async () => {
    const fresh = await freshDatabaseUrl();
    const db = await openDatabase({ databaseUrl: fresh.url });
    const agg = await startAggregator({ database: db });
    try {
      expect(await (await fetch(`${agg.url}/health`)).json()).toEqual({ status: 'ok' });
      await db.close();
      const tries: Array<Record<string, string>> = [
        {},
        { authorization: `Bearer ${agg.initialAdminToken}` },
      ];
      for (const headers of tries) {
        const res = await fetch(`${agg.url}/health`, { headers });
        expect(res.status).toBe(503);
        expect(await res.json()).toEqual({ status: 'unavailable' });
      }
    } finally {
      await agg.close().catch(() => undefined);
      await fresh.drop();
    }
  }, 30_000);
});

describe('confide server', () => {
  let tmp: string;
  let server: CliProcess | undefined;
  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'confide-outsiders-'));
  });
  afterAll(async () => {
    await server?.stop('SIGKILL', 5000);
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('listens on 127.0.0.1 only unless --host says otherwise', async () => {
    server = spawnCli(['server', '--port', '0', '--data-dir', join(tmp, 'db')], cliEnv());
    const [, port] = await server.waitForOutput(
      /Confide aggregator listening on http:\/\/127\.0\.0\.1:(\d+)\n/,
      60_000,
    );
    await server.waitForOutput(/reachable from this machine only/, 5000);
    const health = await fetch(`http://127.0.0.1:${port}/health`);
    expect(await health.json()).toEqual({ status: 'ok' });
    // Another interface of this machine, where it has one, is not served.
    const other = Object.values(networkInterfaces())
      .flat()
      .find((i) => i && !i.internal && i.family === 'IPv4');
    if (other) {
      await expect(tcpOpen(other.address, Number(port))).rejects.toThrow(/ECONNREFUSED/);
    }
  }, 90_000);
});

/** Opens a TCP connection; rejects with the connection error. */
function tcpOpen(host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = tcpConnect(port, host);
    s.on('connect', () => {
      s.destroy();
      resolve();
    });
    s.on('error', reject);
  });
}

/**
 * A WebSocket spoken by hand over TCP, so a test can send a frame header without its payload. It
 * records the server's frames and says when the server ends the connection.
 */
async function rawWebSocket(
  url: string,
  headers: Record<string, string>,
): Promise<{
  socket: Socket;
  ended: (ms: number) => Promise<void>;
  closeCode: () => number | null;
}> {
  const u = new URL(url);
  const socket = tcpConnect(Number(u.port), u.hostname);
  let data = Buffer.alloc(0);
  let ended = false;
  const waiters: Array<() => void> = [];
  const wake = () => waiters.splice(0).forEach((f) => f());
  socket.on('data', (d: Buffer) => {
    data = Buffer.concat([data, d]);
    wake();
  });
  socket.on('error', () => undefined);
  socket.on('close', () => {
    ended = true;
    wake();
  });
  const until = (pred: () => boolean, ms: number, what: string): Promise<void> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)),
        ms,
      );
      const check = () => {
        if (pred()) {
          clearTimeout(timer);
          resolve();
        } else waiters.push(check);
      };
      check();
    });
  socket.write(
    `GET ${u.pathname} HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n` +
      Object.entries(headers)
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join('') +
      '\r\n',
  );
  await until(() => data.includes('\r\n\r\n'), 5000, 'the upgrade');
  expect(data.toString('latin1', 0, 12)).toBe('HTTP/1.1 101');
  const bodyStart = data.indexOf('\r\n\r\n') + 4;
  /** The close code of the server's close frame, if it sent one. */
  const closeCode = (): number | null => {
    let at = bodyStart;
    while (at + 2 <= data.length) {
      const opcode = data[at]! & 0x0f;
      let len = data[at + 1]! & 0x7f;
      let off = at + 2;
      if (len === 126) {
        len = data.readUInt16BE(off);
        off += 2;
      } else if (len === 127) {
        len = Number(data.readBigUInt64BE(off));
        off += 8;
      }
      if (off + len > data.length) return null;
      if (opcode === 0x8) return len >= 2 ? data.readUInt16BE(off) : null;
      at = off + len;
    }
    return null;
  };
  return {
    socket,
    ended: (ms) => until(() => ended, ms, 'the server to end the connection'),
    closeCode,
  };
}
