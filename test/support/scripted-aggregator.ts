import { randomBytes, randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import {
  challengeBytes,
  decodeFrame,
  encodeFrame,
  generateIdentity,
  PROTOCOL_VERSION,
  ServerSigner,
  sha256Hex,
  float32ToBytes,
  toBase64,
  verifyLogin,
  type IdentityKeyPair,
} from '@confide/protocol';

/** One frame a site sent: its JSON (or a binary frame's header) and the frame's vector. */
export interface SiteFrame {
  type: string;
  msg: Record<string, unknown>;
  vector: Float32Array | Uint32Array | null;
}

/**
 * A dishonest aggregator for tests: it speaks the real site protocol (a challenge signed with its
 * own identity key, signed messages, binary frames) but sends whatever the test scripts, and records
 * every frame a site sends it. Not a mock of the node: a real ClientNode connects to it.
 */
export class ScriptedAggregator {
  readonly received: SiteFrame[] = [];
  readonly signer: ServerSigner;
  readonly serverId = `scripted-${randomUUID()}`;
  private socket: WebSocket | null = null;
  private waiters: Array<() => void> = [];
  siteId: string | null = null;
  siteName = 'hospital-scripted';

  private constructor(
    private readonly wss: WebSocketServer,
    readonly identity: IdentityKeyPair,
    private readonly federationId: string,
  ) {
    this.signer = new ServerSigner(identity);
    wss.on('connection', (ws) => this.onConnection(ws));
  }

  /** Listens on a free loopback port; `identity` is the aggregator's key (fresh by default). */
  static async start(
    opts: { identity?: IdentityKeyPair; federationId?: string } = {},
  ): Promise<ScriptedAggregator> {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, path: '/v1/fl' });
    await new Promise<void>((r) => wss.once('listening', () => r()));
    return new ScriptedAggregator(
      wss,
      opts.identity ?? generateIdentity(),
      opts.federationId ?? randomUUID(),
    );
  }

  get url(): string {
    return `ws://127.0.0.1:${(this.wss.address() as AddressInfo).port}/v1/fl`;
  }

  get fedId(): string {
    return this.federationId;
  }

  get publicKey(): string {
    return this.signer.publicKey;
  }

  private onConnection(ws: WebSocket): void {
    this.socket = ws;
    const nonce = toBase64(randomBytes(32));
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      let frame: SiteFrame;
      if (isBinary) {
        const f = decodeFrame(data, 1 << 26);
        frame = { type: String(f.header['type']), msg: f.header, vector: f.vector };
      } else {
        const msg = JSON.parse(data.toString('utf8')) as Record<string, unknown>;
        frame = { type: String(msg['type']), msg, vector: null };
      }
      this.received.push(frame);
      if (frame.type === 'login') {
        const m = frame.msg;
        const ok = verifyLogin(
          String(m['publicKey']),
          String(m['signature']),
          this.serverId,
          nonce,
          String(m['federationId']),
          this.publicKey,
        );
        if (ok) {
          this.siteId ??= randomUUID();
          this.send({
            type: 'welcome',
            siteId: this.siteId,
            siteName: this.siteName,
            federationId: String(m['federationId']),
            clientNonce: String(m['clientNonce']),
          });
        }
      }
      const w = this.waiters;
      this.waiters = [];
      for (const f of w) f();
    });
    ws.on('error', () => undefined);
    ws.send(
      JSON.stringify({
        v: PROTOCOL_VERSION,
        type: 'challenge',
        id: randomUUID(),
        nonce,
        serverId: this.serverId,
        serverKey: this.publicKey,
        sig: this.signer.signBytes(challengeBytes(this.serverId, nonce, this.publicKey)),
      }),
    );
  }

  /** Sends a JSON message signed with this aggregator's key (`v` and `id` filled in). */
  send(body: Record<string, unknown>): void {
    this.socket?.send(
      JSON.stringify(this.signer.sign({ v: PROTOCOL_VERSION, id: randomUUID(), ...body })),
    );
  }

  /** Sends a binary frame whose header is signed by `signer` (this aggregator's by default). */
  sendFrame(
    header: Record<string, unknown>,
    vector: Float32Array | Uint32Array,
    signer: ServerSigner | null = this.signer,
  ): void {
    const h = { v: PROTOCOL_VERSION, id: randomUUID(), ...header };
    this.socket?.send(signer ? signer.frame(h, vector) : encodeFrame(h, vector), { binary: true });
  }

  /** The first frame from the site (earlier ones included) that matches; fails after `timeoutMs`. */
  async waitFor(
    pred: (f: SiteFrame) => boolean,
    timeoutMs: number,
    what: string,
  ): Promise<SiteFrame> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.received.find(pred);
      if (hit) return hit;
      const left = end - Date.now();
      if (left <= 0) {
        throw new Error(
          `timed out after ${timeoutMs} ms waiting for ${what}; the site sent: ${this.received.map((f) => f.type).join(', ') || 'nothing'}`,
        );
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Waits `ms` and returns what the site sent meanwhile (to show it sent nothing). */
  async quietFor(ms: number, since: number): Promise<SiteFrame[]> {
    await new Promise((r) => setTimeout(r, ms));
    return this.received.slice(since);
  }

  async close(): Promise<void> {
    for (const c of this.wss.clients) c.terminate();
    await new Promise<void>((r) => this.wss.close(() => r()));
  }
}

/** A round.train header as an honest aggregator would send it, for `weights` (tests override fields). */
export function trainHeader(
  weights: Float32Array,
  over: Record<string, unknown> & { federationId: string },
): Record<string, unknown> {
  return {
    type: 'round.train',
    runId: 'run-1',
    round: 1,
    modelVersionId: 'mv-1',
    modelHash: sha256Hex(float32ToBytes(weights)),
    modelSpec: { kind: 'logistic', inputDim: 30 },
    train: { epochs: 1, batchSize: 32, learningRate: 0.05, optimizer: 'sgd' },
    standardization: null,
    privacy: null,
    secureAggregation: null,
    deadline: new Date(Date.now() + 60_000).toISOString(),
    ...over,
  };
}
