import { randomBytes, randomUUID } from 'node:crypto';
import WebSocket from 'ws';
import {
  decodeFrame,
  encodeFrame,
  parameterLimit,
  PROTOCOL_VERSION,
  signLogin,
  type IdentityKeyPair,
} from '@confide/protocol';

/** One message the raw site received: the JSON body (or a binary frame's header) and the frame's vector. */
export interface Received {
  type: string;
  msg: Record<string, unknown>;
  vector: Float32Array | Uint32Array | null;
}

/** The login message a site sends, as built by {@link RawSite.loginMessage}. */
export type LoginMessage = Record<string, unknown> & { type: 'login'; nonce: string };

/**
 * A bare protocol client for fault tests: it speaks the wire format directly (so it can send anything),
 * records every message it receives, and runs registered handlers for each one.
 */
export class RawSite {
  readonly received: Received[] = [];
  /** Resolves when the socket closes, with the close code and reason. */
  readonly closed: Promise<{ code: number; reason: string }>;
  challenge!: { nonce: string; serverId: string; serverKey: string };
  private readonly handlers: Array<(r: Received) => void> = [];
  private notify: Array<() => void> = [];

  private constructor(readonly ws: WebSocket) {
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        resolve({ code, reason: reason.toString() });
        this.wake();
      });
    });
    ws.on('error', () => undefined);
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      let r: Received;
      if (isBinary) {
        const frame = decodeFrame(data, parameterLimit);
        r = { type: String(frame.header['type']), msg: frame.header, vector: frame.vector };
      } else {
        const msg = JSON.parse(data.toString('utf8')) as Record<string, unknown>;
        r = { type: String(msg['type']), msg, vector: null };
      }
      this.received.push(r);
      for (const h of this.handlers) h(r);
      this.wake();
    });
  }

  /** Opens a connection to `wsUrl` (with extra request `headers`) and waits for the server's challenge. */
  static async connect(
    wsUrl: string,
    timeoutMs = 5000,
    headers: Record<string, string> = {},
  ): Promise<RawSite> {
    const site = new RawSite(new WebSocket(wsUrl, { perMessageDeflate: false, headers }));
    const c = await site.waitFor((r) => r.type === 'challenge', timeoutMs, 'the challenge');
    site.challenge = {
      nonce: String(c.msg['nonce']),
      serverId: String(c.msg['serverId']),
      serverKey: String(c.msg['serverKey']),
    };
    return site;
  }

  get isOpen(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  /** Runs `handler` for every message received from now on. */
  onMessage(handler: (r: Received) => void): void {
    this.handlers.push(handler);
  }

  sendText(text: string): void {
    this.ws.send(text);
  }

  /** Sends a JSON control message; `v` and `id` are filled in unless given. */
  sendJson(body: Record<string, unknown>): void {
    this.ws.send(JSON.stringify({ v: PROTOCOL_VERSION, id: randomUUID(), ...body }));
  }

  /** Sends a binary frame (header + vector); `v` and `id` are filled in unless given. */
  sendFrame(header: Record<string, unknown>, vector: Float32Array): void {
    this.ws.send(encodeFrame({ v: PROTOCOL_VERSION, id: randomUUID(), ...header }, vector), {
      binary: true,
    });
  }

  /**
   * A login answering this connection's challenge. `signWith` signs with another key than the one
   * presented (a bad signature).
   */
  loginMessage(
    identity: IdentityKeyPair,
    federationId: string,
    opts: { signWith?: IdentityKeyPair } = {},
  ): LoginMessage {
    const { nonce, serverId, serverKey } = this.challenge;
    return {
      v: PROTOCOL_VERSION,
      id: randomUUID(),
      type: 'login',
      federationId,
      publicKey: identity.publicKey,
      nonce,
      clientNonce: randomBytes(32).toString('base64'),
      signature: signLogin(opts.signWith ?? identity, serverId, nonce, federationId, serverKey),
      client: 'raw-test-site',
    };
  }

  /** Sends `login` (default: a valid one for `identity`) and resolves with the welcome or error answering it. */
  async login(
    identity: IdentityKeyPair,
    federationId: string,
    opts: { signWith?: IdentityKeyPair; message?: LoginMessage; timeoutMs?: number } = {},
  ): Promise<Received> {
    const message = opts.message ?? this.loginMessage(identity, federationId, opts);
    const from = this.received.length;
    this.ws.send(JSON.stringify(message));
    return this.waitFor(
      (r, i) =>
        i >= from &&
        (r.type === 'welcome' || (r.type === 'error' && r.msg['refId'] === message['id'])),
      opts.timeoutMs ?? 5000,
      'the answer to the login',
    );
  }

  /** The first received message (earlier ones included) that matches `pred`; fails after `timeoutMs`. */
  waitFor(
    pred: (r: Received, index: number) => boolean,
    timeoutMs: number,
    what: string,
  ): Promise<Received> {
    const end = Date.now() + timeoutMs;
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const i = this.received.findIndex(pred);
        if (i >= 0) {
          resolve(this.received[i]!);
          return;
        }
        const left = end - Date.now();
        if (left <= 0) {
          const seen = this.received.map((r) =>
            r.type === 'error' ? `error ${String(r.msg['code'])}` : r.type,
          );
          reject(
            new Error(
              `timed out after ${timeoutMs} ms waiting for ${what}; received: ${seen.join(', ') || 'nothing'}`,
            ),
          );
          return;
        }
        const wake = (): void => {
          clearTimeout(timer);
          this.notify = this.notify.filter((f) => f !== wake);
          check();
        };
        const timer = setTimeout(wake, left);
        this.notify.push(wake);
      };
      check();
    });
  }

  /** The first error frame with `code`. */
  errorWith(code: string, timeoutMs = 5000): Promise<Received> {
    return this.waitFor(
      (r) => r.type === 'error' && r.msg['code'] === code,
      timeoutMs,
      `an error ${code}`,
    );
  }

  /** Closes the connection (a clean close: the aggregator sees a disconnect). */
  close(): void {
    this.ws.close(1000, 'raw site leaving');
  }

  private wake(): void {
    const n = this.notify;
    this.notify = [];
    for (const f of n) f();
  }
}
