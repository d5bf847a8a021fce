/**
 * A TCP proxy between the client nodes and the aggregator. It forwards bytes untouched and, beside
 * them, reads the WebSocket frames both ways (RFC 6455: the HTTP upgrade, then frames, masked from
 * the site) and decodes each protocol message with libs/protocol's frame decoder. That lets the
 * chaos harness log every masked update that leaves a site with the round.train that announced it,
 * and cut a connection exactly at a protocol stage: before a message gets through (the bytes up to
 * its first frame are forwarded, then both sockets are destroyed) or just after it.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { decodeFrame, parameterLimit } from '@confide/protocol';

/** Who sent a message: the site (up) or the aggregator (down). */
export type Direction = 'up' | 'down';

/** One protocol message that crossed the proxy. */
export interface SeenMessage {
  conn: number;
  /** The site's name, once its login went up on this connection. */
  site: string | null;
  dir: Direction;
  type: string;
  /** A text message's JSON or a binary frame's header. */
  header: Record<string, unknown>;
  /** A binary frame's vector length (null for text). */
  elements: number | null;
  /** False for a message a cut stopped at the proxy (it left the site but never arrived). */
  delivered: boolean;
  at: number;
}

/** A one-shot cut: the first matching message closes its connection, before or after it passes. */
export interface CutRule {
  type: string;
  dir: Direction;
  when: 'before' | 'after';
  /** Only this site's connection (any when absent). */
  site?: string;
  /** Called when the rule fires. */
  onFire?: (m: SeenMessage) => void;
}

/** One WebSocket message as the reader completes it, with the stream offsets of its frames. */
interface ReadMessage {
  opcode: number;
  payload: Buffer;
  /** Offset in the stream of the message's first frame, and just past its last. */
  start: number;
  end: number;
}

/** Caps what the reader buffers: far above any frame of the small models the harness runs. */
const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

/** Reassembles the WebSocket messages of one direction of a connection, after its HTTP head. */
class WsReader {
  private buf: Buffer = Buffer.alloc(0);
  /** Stream offset of buf[0]. */
  private base = 0;
  private inHead = true;
  private fragments: Buffer[] = [];
  private fragOpcode = 0;
  private fragStart = 0;
  broken: string | null = null;

  /** Appends a chunk; returns the messages it completed. */
  push(chunk: Buffer): ReadMessage[] {
    if (this.broken) return [];
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const out: ReadMessage[] = [];
    if (this.inHead) {
      const i = this.buf.indexOf('\r\n\r\n');
      if (i < 0) return out;
      this.consume(i + 4);
      this.inHead = false;
    }
    for (;;) {
      const f = this.frame();
      if (!f) return out;
      if (f.opcode >= 8) {
        // Control frames (close, ping, pong) may come between fragments.
        out.push({ opcode: f.opcode, payload: f.payload, start: f.start, end: f.end });
        continue;
      }
      if (f.opcode !== 0) {
        this.fragments = [];
        this.fragOpcode = f.opcode;
        this.fragStart = f.start;
      }
      this.fragments.push(f.payload);
      if (f.fin) {
        const payload = Buffer.concat(this.fragments);
        this.fragments = [];
        out.push({ opcode: this.fragOpcode, payload, start: this.fragStart, end: f.end });
      }
    }
  }

  private consume(n: number): void {
    this.buf = this.buf.subarray(n);
    this.base += n;
  }

  private frame(): {
    fin: boolean;
    opcode: number;
    payload: Buffer;
    start: number;
    end: number;
  } | null {
    const b = this.buf;
    if (b.length < 2) return null;
    const fin = (b[0]! & 0x80) !== 0;
    const opcode = b[0]! & 0x0f;
    const masked = (b[1]! & 0x80) !== 0;
    let len = b[1]! & 0x7f;
    let off = 2;
    if (len === 126) {
      if (b.length < 4) return null;
      len = b.readUInt16BE(2);
      off = 4;
    } else if (len === 127) {
      if (b.length < 10) return null;
      const big = b.readBigUInt64BE(2);
      if (big > BigInt(MAX_MESSAGE_BYTES)) {
        this.broken = `a frame of ${big} bytes`;
        return null;
      }
      len = Number(big);
      off = 10;
    }
    if (len > MAX_MESSAGE_BYTES) {
      this.broken = `a frame of ${len} bytes`;
      return null;
    }
    const maskOff = off;
    if (masked) off += 4;
    if (b.length < off + len) return null;
    const payload = Buffer.from(b.subarray(off, off + len));
    if (masked) for (let i = 0; i < len; i++) payload[i]! ^= b[maskOff + (i & 3)]!;
    const start = this.base;
    this.consume(off + len);
    return { fin, opcode, payload, start, end: this.base };
  }
}

/** A running proxy. */
export interface ChaosProxy {
  port: number;
  /** Every protocol message seen, in order. */
  messages: SeenMessage[];
  /** Messages that could not be decoded (the bytes went through all the same). */
  undecodable: Array<{ conn: number; dir: Direction; error: string }>;
  /** Arms a one-shot cut. */
  arm(rule: CutRule): void;
  /** Drops every armed cut that has not fired. */
  disarm(): void;
  /** Called for every message (after any cut it caused). */
  onMessage(listener: (m: SeenMessage) => void): void;
  /** Called for every message before the armed cuts are matched against it (to arm new ones). */
  beforeRules(listener: (m: SeenMessage) => void): void;
  /** Destroys every connection now (as a network outage would). */
  cutAll(): number;
  close(): Promise<void>;
}

/**
 * Listens on a free loopback port and forwards each connection to `127.0.0.1:targetPort`. `sites`
 * maps a site's public key (as its login carries it) to its name.
 */
export async function startProxy(
  targetPort: number,
  sites: ReadonlyMap<string, string>,
): Promise<ChaosProxy> {
  const messages: SeenMessage[] = [];
  const undecodable: ChaosProxy['undecodable'] = [];
  let rules: CutRule[] = [];
  const listeners: Array<(m: SeenMessage) => void> = [];
  const early: Array<(m: SeenMessage) => void> = [];
  const live = new Set<Socket>();
  let nextConn = 1;

  const decode = (
    m: ReadMessage,
  ): { type: string; header: Record<string, unknown>; n: number | null } => {
    if (m.opcode === 2) {
      const f = decodeFrame(m.payload, parameterLimit);
      return { type: String(f.header['type']), header: f.header, n: f.vector.length };
    }
    const header = JSON.parse(m.payload.toString('utf8')) as Record<string, unknown>;
    return { type: String(header['type']), header, n: null };
  };

  const server: Server = createServer((client) => {
    const conn = nextConn++;
    const upstream = connect(targetPort, '127.0.0.1');
    live.add(client);
    live.add(upstream);
    let site: string | null = null;
    let dead = false;
    const kill = (): void => {
      dead = true;
      client.destroy();
      upstream.destroy();
    };
    const pipe = (from: Socket, to: Socket, dir: Direction): void => {
      const reader = new WsReader();
      let offset = 0;
      from.on('data', (chunk: Buffer) => {
        if (dead) return;
        const chunkStart = offset;
        offset += chunk.length;
        let seen: SeenMessage[] = [];
        let cutAt: number | null = null;
        for (const raw of reader.push(chunk)) {
          if (raw.opcode !== 1 && raw.opcode !== 2) continue;
          let d: ReturnType<typeof decode>;
          try {
            d = decode(raw);
          } catch (e) {
            undecodable.push({ conn, dir, error: (e as Error).message });
            continue;
          }
          if (d.type === 'login' && typeof d.header['publicKey'] === 'string') {
            site = sites.get(d.header['publicKey']) ?? null;
          }
          const m: SeenMessage = {
            conn,
            site,
            dir,
            type: d.type,
            header: d.header,
            elements: d.n,
            delivered: true,
            at: Date.now(),
          };
          for (const l of early) l(m);
          const rule = rules.find(
            (r) => r.type === m.type && r.dir === dir && (r.site === undefined || r.site === site),
          );
          if (rule) {
            rules = rules.filter((r) => r !== rule);
            cutAt = rule.when === 'before' ? raw.start : raw.end;
            m.delivered = rule.when === 'after';
            seen.push(m);
            rule.onFire?.(m);
            break;
          }
          seen.push(m);
        }
        if (cutAt === null) {
          to.write(chunk);
        } else {
          const keep = Math.max(0, cutAt - chunkStart);
          if (keep > 0) to.write(chunk.subarray(0, keep));
          // Let what was kept leave before the cut, as a connection dropping just after would.
          to.end(() => kill());
          setTimeout(kill, 200).unref();
          dead = true;
        }
        for (const m of seen) {
          messages.push(m);
          for (const l of listeners) l(m);
        }
        seen = [];
        if (reader.broken) undecodable.push({ conn, dir, error: reader.broken });
      });
    };
    pipe(client, upstream, 'up');
    pipe(upstream, client, 'down');
    const gone = (s: Socket) => (): void => {
      live.delete(s);
      kill();
    };
    client.on('close', gone(client));
    upstream.on('close', gone(upstream));
    client.on('error', () => kill());
    upstream.on('error', () => kill());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const port = (server.address() as { port: number }).port;
  return {
    port,
    messages,
    undecodable,
    arm: (rule) => rules.push(rule),
    disarm: () => {
      rules = [];
    },
    onMessage: (l) => listeners.push(l),
    beforeRules: (l) => early.push(l),
    cutAll: () => {
      const n = live.size;
      for (const s of live) s.destroy();
      return n;
    },
    close: async () => {
      for (const s of live) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
