import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { MAX_CONTROL_BYTES } from '@confide/protocol';
import {
  largestSiteVector,
  MAX_WS_PAYLOAD,
  setMessageLimit,
  siteMessageLimit,
} from './frame-limits';

describe('largestSiteVector and siteMessageLimit', () => {
  it('cover the update and the fixed-point sums of statistics and evaluation, whichever is longest', () => {
    // 8 limbs for each of 1 + 2 x 30 statistics (wide fixed point), over 31 parameters + 1 weight.
    expect(largestSiteVector({ kind: 'logistic', inputDim: 30 })).toBe(8 * 61);
    // The parameters dominate a real MLP.
    expect(
      largestSiteVector({ kind: 'mlp', inputDim: 784, hidden: [128], output: { classes: 10 } }),
    ).toBe(784 * 128 + 128 + 128 * 10 + 10 + 1);
    // Many classes and few parameters: the confusion matrix is the longest.
    expect(largestSiteVector({ kind: 'logistic', inputDim: 2, output: { classes: 1000 } })).toBe(
      8 * (1 + 1000 * 1000),
    );
  });

  it('leave room for a header of MAX_CONTROL_BYTES and stay under MAX_WS_PAYLOAD', () => {
    const small = siteMessageLimit({ kind: 'logistic', inputDim: 30 });
    expect(small.elements).toBe(8 * 61);
    expect(small.bytes).toBeGreaterThanOrEqual(MAX_CONTROL_BYTES + 8 + 8 + 4 * 8 * 61);
    const huge = siteMessageLimit({
      kind: 'mlp',
      inputDim: 100_000,
      hidden: [100_000, 100_000],
      output: 'binary',
    });
    expect(huge.bytes).toBeLessThanOrEqual(MAX_WS_PAYLOAD);
  });
});

describe('setMessageLimit', () => {
  let server: WebSocketServer | undefined;
  afterEach(async () => {
    await new Promise((r) => server?.close(r));
    server = undefined;
  });

  /** A server with a 16-byte limit that raises it to `raiseTo` for each connection; the client's close code. */
  async function send(
    bytes: number,
    raiseTo: number | null,
  ): Promise<{ received: number | null; closed: number | null }> {
    server = new WebSocketServer({ port: 0, host: '127.0.0.1', maxPayload: 16 });
    await new Promise((r) => server!.once('listening', r));
    const received = new Promise<number>((resolve) =>
      server!.on('connection', (ws) => {
        ws.on('error', () => undefined);
        if (raiseTo !== null) setMessageLimit(ws, raiseTo);
        ws.on('message', (data: Buffer) => resolve(data.length));
      }),
    );
    const client = new WebSocket(`ws://127.0.0.1:${(server.address() as AddressInfo).port}`);
    client.on('error', () => undefined);
    await new Promise((r) => client.once('open', r));
    const closed = new Promise<number>((resolve) => client.once('close', (code) => resolve(code)));
    client.send(Buffer.alloc(bytes));
    const first = await Promise.race([
      received.then((n) => ({ received: n, closed: null })),
      closed.then((code) => ({ received: null, closed: code })),
    ]);
    client.terminate();
    return first;
  }

  it("raises one connection's limit above the server's", async () => {
    expect(await send(1000, 1024)).toEqual({ received: 1000, closed: null });
  });

  it('still closes with 1009 above the raised limit, and above the server limit without it', async () => {
    expect(await send(2000, 1024)).toEqual({ received: null, closed: 1009 });
    expect(await send(1000, null)).toEqual({ received: null, closed: 1009 });
  });
});
