import type { AddressInfo } from 'node:net';
import WebSocket, { WebSocketServer, type RawData } from 'ws';
import { decodeFrame, parameterLimit, type FrameDType } from '@confide/protocol';

/** One WebSocket message that crossed the relay, as it crossed it. */
export interface RelayedMessage {
  /** Who sent it: the site (client node) or the aggregator. */
  from: 'site' | 'aggregator';
  binary: boolean;
  /** A text frame's JSON, or a binary frame's header; null when it could not be decoded. */
  message: Record<string, unknown> | null;
  /** A text frame's text, or a binary frame's header JSON text. */
  text: string;
  /** A binary frame's element type and vector (null for text frames). */
  dtype: FrameDType | null;
  vector: Float32Array | Uint32Array | null;
  /** Why the message could not be decoded (it was relayed all the same). */
  error?: string;
}

/**
 * What the relay does with one message: hand it on, or cut the connection (both sides, as a network
 * cut would) before or after handing it on.
 */
export type RelayAction = 'forward' | 'cut-before' | 'cut-after';

/** A relay in front of the aggregator's site socket that records every message both ways. */
export interface CapturingRelay {
  /** ws://127.0.0.1:PORT/v1/fl: give this to a client node as its server. */
  url: string;
  messages: RelayedMessage[];
  close(): Promise<void>;
}

/** Close codes a peer may send itself (1005, 1006 and 1015 only describe a close, never go on the wire). */
function sendableCode(code: number): number {
  const ok =
    code === 1000 ||
    (code >= 1001 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) ||
    (code >= 3000 && code <= 4999);
  return ok ? code : 1000;
}

function bytesOf(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

function record(from: RelayedMessage['from'], data: Buffer, binary: boolean): RelayedMessage {
  try {
    if (binary) {
      // A copy: the recorded vector must not alias the buffer handed on to the other side.
      const frame = decodeFrame(Buffer.from(data), parameterLimit);
      return {
        from,
        binary,
        message: frame.header,
        text: JSON.stringify(frame.header),
        dtype: frame.dtype,
        vector: frame.vector,
      };
    }
    const text = data.toString('utf8');
    return {
      from,
      binary,
      message: JSON.parse(text) as Record<string, unknown>,
      text,
      dtype: null,
      vector: null,
    };
  } catch (e) {
    return {
      from,
      binary,
      message: null,
      text: binary ? '' : data.toString('utf8'),
      dtype: null,
      vector: null,
      error: (e as Error).message,
    };
  }
}

/**
 * Starts a plain-ws relay on a free loopback port: each connection to it opens its own connection to
 * `target` (the aggregator's ws URL), and every message is forwarded verbatim both ways, text as text
 * and binary as binary, and recorded. It alters nothing, so the node's checks of the aggregator's
 * signatures and pinned key pass through it unchanged.
 */
export async function startCapturingRelay(
  target: string,
  intercept: (m: RelayedMessage) => RelayAction = () => 'forward',
): Promise<CapturingRelay> {
  const messages: RelayedMessage[] = [];
  const sockets = new Set<WebSocket>();
  const wss = new WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    perMessageDeflate: false,
    maxPayload: 1024 * 1024 * 1024,
  });
  await new Promise<void>((resolve, reject) => {
    wss.once('listening', resolve);
    wss.once('error', reject);
  });
  wss.on('connection', (site) => {
    const upstream = new WebSocket(target, {
      perMessageDeflate: false,
      maxPayload: 1024 * 1024 * 1024,
    });
    sockets.add(site);
    sockets.add(upstream);
    // What the site sends before the upstream connection is open waits, in order.
    const waiting: Array<{ data: Buffer; binary: boolean }> = [];
    upstream.on('open', () => {
      for (const m of waiting.splice(0)) upstream.send(m.data, { binary: m.binary });
    });
    const cut = (): void => {
      site.terminate();
      upstream.terminate();
    };
    site.on('message', (raw, binary) => {
      const data = bytesOf(raw);
      const m = record('site', data, binary);
      messages.push(m);
      const action = intercept(m);
      if (action === 'cut-before') return cut();
      if (upstream.readyState === WebSocket.OPEN) upstream.send(data, { binary });
      else waiting.push({ data, binary });
      if (action === 'cut-after') setImmediate(cut);
    });
    upstream.on('message', (raw, binary) => {
      const data = bytesOf(raw);
      const m = record('aggregator', data, binary);
      messages.push(m);
      const action = intercept(m);
      if (action === 'cut-before') return cut();
      if (site.readyState === WebSocket.OPEN) site.send(data, { binary });
      if (action === 'cut-after') setImmediate(cut);
    });
    const closeOther = (other: WebSocket, code: number, reason: Buffer): void => {
      if (other.readyState === WebSocket.OPEN) other.close(sendableCode(code), reason);
      else if (other.readyState === WebSocket.CONNECTING) other.terminate();
    };
    site.on('close', (code, reason) => {
      sockets.delete(site);
      closeOther(upstream, code, reason);
    });
    upstream.on('close', (code, reason) => {
      sockets.delete(upstream);
      closeOther(site, code, reason);
    });
    site.on('error', () => upstream.terminate());
    upstream.on('error', () => site.terminate());
  });
  const { port } = wss.address() as AddressInfo;
  return {
    url: `ws://127.0.0.1:${port}/v1/fl`,
    messages,
    close: async () => {
      for (const s of sockets) s.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}
