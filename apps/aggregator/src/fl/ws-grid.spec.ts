import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import WebSocket, { WebSocketServer, type RawData } from 'ws';
import { describe, expect, it } from 'vitest';
import { jsonMessage } from '@confide/federated';
import { gridContract, type ContractSite, type Received } from '@confide/federated/testing';
import {
  decodeFrame,
  encodeFrame,
  ErrorCode,
  PROTOCOL_VERSION,
  parseJsonText,
  parseSiteMessage,
  type SiteMessage,
} from '@confide/protocol';
import { SessionRegistry, type SiteSession } from './session-registry';
import { WsGrid } from './ws-grid';

const FEDERATION = 'fed-1';
/** How long a test waits for something the network should deliver at once. */
const PATIENCE_MS = 5000;

function toBuffer(data: RawData): Buffer {
  return Array.isArray(data)
    ? Buffer.concat(data)
    : Buffer.isBuffer(data)
      ? data
      : Buffer.from(data);
}

/**
 * A real `ws` server standing in for the gateway's transport: a connection names its site and
 * federation in its first message (the gateway's login, without the keys), then every message is
 * decoded and validated as the gateway does and handed to SessionRegistry.messageReceived.
 */
async function startServer(
  sessions: SessionRegistry,
): Promise<{ url: string; close: () => Promise<void> }> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  wss.on('connection', (ws) => {
    let session: SiteSession | null = null;
    ws.on('message', (data, isBinary) => {
      const buf = toBuffer(data);
      if (!session) {
        const hello = parseJsonText(buf.toString('utf8')) as {
          siteId: string;
          federationId: string;
        };
        session = {
          connectionId: randomUUID(),
          siteId: hello.siteId,
          siteName: hello.siteId,
          federationId: hello.federationId,
          sendJson: (m) => ws.send(JSON.stringify(m)),
          sendBinary: (frame) => ws.send(frame, { binary: true }),
          sendSigned: (text) => ws.send(text, { binary: false }),
          close: (_code: ErrorCode, message: string) => ws.close(4000, message.slice(0, 100)),
        };
        sessions.add(session);
        return;
      }
      if (isBinary) {
        const frame = decodeFrame(buf, 1 << 20);
        sessions.messageReceived(session, parseSiteMessage(frame.header), frame.vector, buf.length);
      } else {
        sessions.messageReceived(
          session,
          parseSiteMessage(parseJsonText(buf.toString('utf8'))),
          null,
          buf.length,
        );
      }
    });
    ws.on('close', () => {
      if (session) sessions.remove(session);
    });
  });
  await new Promise<void>((resolve) => wss.once('listening', resolve));
  const { port } = wss.address() as AddressInfo;
  return {
    url: `ws://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of wss.clients) c.terminate();
        wss.close(() => resolve());
      }),
  };
}

/** Resolves when `ready()` holds, re-checking on each `poke`; fails the test after PATIENCE_MS. */
function until(
  what: string,
  ready: () => boolean,
  poke: (f: () => void) => () => void,
): Promise<void> {
  return new Promise((resolve, reject) => {
    if (ready()) return resolve();
    const timer = setTimeout(() => {
      stop();
      reject(new Error(`timed out waiting for ${what}`));
    }, PATIENCE_MS);
    const stop = poke(() => {
      if (!ready()) return;
      clearTimeout(timer);
      stop();
      resolve();
    });
  });
}

/** A site on a real WebSocket client. */
class WsSite implements ContractSite {
  private ws: WebSocket | null = null;
  private readonly inbox: Received[] = [];
  private readonly arrived = new Set<() => void>();
  private readonly seen = new Set<string>();

  constructor(
    readonly id: string,
    private readonly url: string,
    private readonly sessions: SessionRegistry,
  ) {
    sessions.onMessage((s, m) => {
      if (s.siteId === id) this.seen.add(m.id);
    });
  }

  async connect(): Promise<void> {
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.on('message', (data, isBinary) => {
      const buf = toBuffer(data);
      this.inbox.push(
        isBinary
          ? { kind: 'binary', bytes: new Uint8Array(buf) }
          : { kind: 'json', body: JSON.parse(buf.toString('utf8')) as unknown },
      );
      for (const f of [...this.arrived]) f();
    });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    ws.send(JSON.stringify({ siteId: this.id, federationId: FEDERATION }));
    await until(
      `${this.id} to connect`,
      () => this.sessions.isConnected(this.id),
      (f) => this.sessions.onConnect(f),
    );
  }

  async disconnect(): Promise<void> {
    this.ws?.close();
    await until(
      `${this.id} to disconnect`,
      () => !this.sessions.isConnected(this.id),
      (f) => this.sessions.onDisconnect(f),
    );
  }

  async messages(count: number): Promise<Received[]> {
    await until(
      `${count} messages at ${this.id}`,
      () => this.inbox.length >= count,
      (f) => {
        this.arrived.add(f);
        return () => this.arrived.delete(f);
      },
    );
    return [...this.inbox];
  }

  async reply(round: number, vector?: Float32Array): Promise<void> {
    const header = {
      v: PROTOCOL_VERSION,
      id: randomUUID(),
      type: 'round.update',
      runId: 'run-1',
      round,
      numExamples: 1,
    };
    this.ws?.send(encodeFrame(header, vector ?? new Float32Array([round])), { binary: true });
    await until(
      `the reply of ${this.id}`,
      () => this.seen.has(header.id),
      (f) => this.sessions.onMessage(f),
    );
  }

  terminate(): void {
    this.ws?.terminate();
  }
}

gridContract<SiteMessage>('WebSocket, real time', async () => {
  const sessions = new SessionRegistry();
  const server = await startServer(sessions);
  const grid = new WsGrid(sessions, FEDERATION);
  const sites = ['site-a', 'site-b', 'site-c'].map((id) => new WsSite(id, server.url, sessions));
  for (const s of sites) await s.connect();
  return {
    grid,
    sites: [sites[0]!, sites[1]!, sites[2]!],
    unit: 30,
    advance: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
    roundOf: (m) => (m.type === 'round.update' ? m.round : null),
    close: async () => {
      grid.close();
      for (const s of sites) s.terminate();
      await server.close();
    },
  };
});

describe('WsGrid', () => {
  it('sees only its own federation, and leaves the registry as it found it when closed', async () => {
    const sessions = new SessionRegistry();
    const server = await startServer(sessions);
    const grid = new WsGrid(sessions, 'other-federation');
    const site = new WsSite('site-a', server.url, sessions);
    try {
      await site.connect();
      expect(sessions.isConnected('site-a')).toBe(true);
      expect(grid.connected().size).toBe(0);
      expect(grid.send('site-a', jsonMessage({ type: 'x' }))).toBe(false);
      const result = await grid.collect({
        from: new Set(['site-a']),
        accept: () => true,
        until: grid.clock.now() + 60_000,
      });
      expect(result.disconnected).toEqual(new Set(['site-a']));
    } finally {
      grid.close();
      site.terminate();
      await server.close();
    }
  });
});
