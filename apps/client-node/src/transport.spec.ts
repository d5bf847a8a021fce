import http from 'node:http';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { createThrowawayCa, type ThrowawayCa } from '../../cli/src/tls-ca';
import { isLoopbackHost, proxyForUrl, socketOptions } from './transport';

/**
 * A minimal HTTP CONNECT proxy that records what it was asked to reach and what it relayed. Like a
 * real one, it resolves the target's name itself; `hosts` stands in for its DNS.
 */
class ConnectProxy {
  constructor(private readonly hosts: Record<string, string> = {}) {}

  readonly targets: string[] = [];
  readonly authorizations: (string | undefined)[] = [];
  /** The bytes the client sent into each tunnel, as the proxy saw them. */
  readonly relayed: Buffer[] = [];
  private readonly server = http.createServer((_req, res) => res.writeHead(405).end());
  private readonly sockets = new Set<net.Socket>();

  async start(): Promise<number> {
    this.server.on('connect', (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
      this.targets.push(req.url ?? '');
      this.authorizations.push(req.headers['proxy-authorization']);
      const seen: Buffer[] = [head];
      this.relayed.push(Buffer.alloc(0));
      const index = this.relayed.length - 1;
      client.on('data', (chunk: Buffer) => {
        seen.push(chunk);
        this.relayed[index] = Buffer.concat(seen);
      });
      const url = new URL(`http://${req.url ?? ''}`);
      const hostname = url.hostname.replace(/^\[|\]$/g, '');
      const upstream = net.connect(Number(url.port), this.hosts[hostname] ?? hostname, () => {
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        upstream.write(head);
        upstream.pipe(client);
        client.pipe(upstream);
      });
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
      }
      upstream.on('error', () => client.end('HTTP/1.1 502 Bad Gateway\r\n\r\n'));
      client.on('error', () => upstream.destroy());
    });
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return (this.server.address() as AddressInfo).port;
  }

  reset(): void {
    this.targets.length = 0;
    this.authorizations.length = 0;
    this.relayed.length = 0;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

/** Opens a WebSocket, sends one message and resolves with the server's echo; rejects on error. */
function roundTrip(url: string, options: WebSocket.ClientOptions): Promise<string> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { handshakeTimeout: 5_000, ...options });
    ws.on('open', () => ws.send('ping'));
    ws.on('message', (data: Buffer) => {
      ws.close();
      resolve(data.toString());
    });
    ws.on('error', reject);
  });
}

async function listen(server: http.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

function echoOn(server: http.Server): WebSocketServer {
  const wss = new WebSocketServer({ server, path: '/v1/fl' });
  wss.on('connection', (ws) =>
    ws.on('message', (data: Buffer) => ws.send(`echo ${data.toString()}`)),
  );
  return wss;
}

describe('socketOptions against a real wss aggregator', () => {
  let tls: ThrowawayCa;
  let httpsServer: https.Server;
  let httpServer: http.Server;
  const sockets: WebSocketServer[] = [];
  const proxy = new ConnectProxy({ 'aggregator.test': '127.0.0.1', 'elsewhere.test': '127.0.0.1' });
  let wssUrl: string;
  let wsUrl: string;
  let proxyPort: number;

  beforeAll(async () => {
    tls = await createThrowawayCa({ hostnames: ['aggregator.test'] });
    httpsServer = https.createServer({ cert: tls.certPem, key: tls.keyPem });
    httpServer = http.createServer();
    sockets.push(echoOn(httpsServer), echoOn(httpServer));
    wssUrl = `wss://127.0.0.1:${await listen(httpsServer)}/v1/fl`;
    wsUrl = `ws://127.0.0.1:${await listen(httpServer)}/v1/fl`;
    proxyPort = await proxy.start();
  });

  beforeEach(() => proxy.reset());

  afterAll(async () => {
    for (const wss of sockets) for (const client of wss.clients) client.terminate();
    await proxy.stop();
    for (const server of [httpsServer, httpServer]) {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('connects over wss when given the CA that signed the aggregator certificate', async () => {
    const echo = await roundTrip(wssUrl, socketOptions(wssUrl, { ca: tls.caCertPem, env: {} }));
    expect(echo).toBe('echo ping');
  });

  it('accepts the CA as a Buffer, as read from --ca FILE', async () => {
    const ca = Buffer.from(tls.caCertPem);
    await expect(roundTrip(wssUrl, socketOptions(wssUrl, { ca, env: {} }))).resolves.toBe(
      'echo ping',
    );
  });

  it('fails the wss handshake on the certificate without the CA', async () => {
    await expect(roundTrip(wssUrl, socketOptions(wssUrl, { env: {} }))).rejects.toMatchObject({
      code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
    });
  });

  it('tunnels wss through HTTPS_PROXY with CONNECT, TLS running end to end inside', async () => {
    const env = { HTTPS_PROXY: `http://127.0.0.1:${proxyPort}` };
    const echo = await roundTrip(wssUrl, socketOptions(wssUrl, { ca: tls.caCertPem, env }));
    expect(echo).toBe('echo ping');
    expect(proxy.targets).toEqual([new URL(wssUrl).host]);
    // The proxy relayed a TLS handshake record, and never saw the WebSocket upgrade in the clear.
    const relayed = proxy.relayed[0] ?? Buffer.alloc(0);
    expect(relayed[0]).toBe(0x16);
    expect(relayed.toString('latin1')).not.toMatch(/upgrade|websocket|\/v1\/fl/i);
  });

  it('through the proxy still refuses a certificate the CA did not sign', async () => {
    const other = await createThrowawayCa({ hostnames: [] });
    const env = { https_proxy: `127.0.0.1:${proxyPort}` };
    await expect(
      roundTrip(wssUrl, socketOptions(wssUrl, { ca: other.caCertPem, env })),
    ).rejects.toMatchObject({ code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' });
    expect(proxy.targets).toEqual([new URL(wssUrl).host]);
  });

  it('through the proxy checks the certificate against the host name in the URL', async () => {
    // The client never resolves these names: the proxy does, and maps both to the test server.
    const url = wssUrl.replace('127.0.0.1', 'aggregator.test');
    const env = { HTTPS_PROXY: `http://127.0.0.1:${proxyPort}` };
    const echo = await roundTrip(url, socketOptions(url, { ca: tls.caCertPem, env }));
    expect(echo).toBe('echo ping');
    expect(proxy.targets).toEqual([new URL(url).host]);
    const wrong = wssUrl.replace('127.0.0.1', 'elsewhere.test');
    await expect(
      roundTrip(wrong, socketOptions(wrong, { ca: tls.caCertPem, env })),
    ).rejects.toMatchObject({ code: 'ERR_TLS_CERT_ALTNAME_INVALID' });
  });

  it('sends the credentials in the proxy URL as Proxy-Authorization', async () => {
    const env = { HTTPS_PROXY: `http://site%2D1:s3cret@127.0.0.1:${proxyPort}` };
    await roundTrip(wssUrl, socketOptions(wssUrl, { ca: tls.caCertPem, env }));
    expect(proxy.authorizations).toEqual([
      `Basic ${Buffer.from('site-1:s3cret').toString('base64')}`,
    ]);
  });

  it('bypasses the proxy for a host NO_PROXY names', async () => {
    const env = { HTTPS_PROXY: `http://127.0.0.1:${proxyPort}`, NO_PROXY: 'example.com,127.0.0.1' };
    const echo = await roundTrip(wssUrl, socketOptions(wssUrl, { ca: tls.caCertPem, env }));
    expect(echo).toBe('echo ping');
    expect(proxy.targets).toEqual([]);
  });

  it('tunnels plain ws through HTTP_PROXY, and HTTPS_PROXY alone leaves it direct', async () => {
    const viaHttps = { HTTPS_PROXY: `http://127.0.0.1:${proxyPort}` };
    await expect(roundTrip(wsUrl, socketOptions(wsUrl, { env: viaHttps }))).resolves.toBe(
      'echo ping',
    );
    expect(proxy.targets).toEqual([]);
    const viaHttp = { http_proxy: `http://127.0.0.1:${proxyPort}` };
    await expect(roundTrip(wsUrl, socketOptions(wsUrl, { env: viaHttp }))).resolves.toBe(
      'echo ping',
    );
    expect(proxy.targets).toEqual([new URL(wsUrl).host]);
  });

  it('refuses a --ca file that holds no PEM certificate', () => {
    expect(() => socketOptions(wssUrl, { ca: 'not a certificate', env: {} })).toThrow(
      '--ca must be a PEM file',
    );
  });
});

describe('proxyForUrl', () => {
  const PROXY = 'http://proxy.internal:3128/';

  it.each([
    ['wss://agg.example/v1/fl', { HTTPS_PROXY: PROXY }, PROXY],
    ['https://agg.example/', { https_proxy: 'proxy.internal:3128' }, PROXY],
    ['wss://agg.example/v1/fl', { HTTP_PROXY: PROXY }, undefined],
    ['ws://agg.example/v1/fl', { HTTP_PROXY: PROXY }, PROXY],
    ['ws://agg.example/v1/fl', { HTTPS_PROXY: PROXY }, undefined],
    ['wss://agg.example/', { https_proxy: PROXY, HTTPS_PROXY: 'http://other:1/' }, PROXY],
    ['wss://agg.example/', { https_proxy: ' ', HTTPS_PROXY: PROXY }, PROXY],
    ['wss://agg.example/', {}, undefined],
  ])('%s with %j goes through %s', (url, env, expected) => {
    expect(proxyForUrl(url, env)?.href).toBe(expected);
  });

  it.each([
    ['*', 'wss://agg.example/', true],
    ['agg.example', 'wss://agg.example/', true],
    ['example', 'wss://agg.example/', true],
    ['.example', 'wss://agg.example/', true],
    ['*.example', 'wss://agg.example/', true],
    ['ample', 'wss://agg.example/', false],
    ['other.example, agg.example', 'wss://agg.example/', true],
    ['AGG.EXAMPLE.', 'wss://agg.example/', true],
    ['agg.example:443', 'wss://agg.example/', true],
    ['agg.example:8443', 'wss://agg.example/', false],
    ['agg.example:8443', 'wss://agg.example:8443/', true],
    ['10.0.0.0/8', 'wss://10.20.30.40/', true],
    ['10.0.0.0/8', 'wss://11.0.0.1/', false],
    ['10.20.30.40', 'wss://10.20.30.40:8443/', true],
    ['[::1]:8443', 'wss://[::1]:8443/', true],
    ['::1', 'wss://[::1]/', true],
    ['fd00::/8', 'wss://[fd12::5]/', true],
    ['', 'wss://localhost/', false],
    ['', 'wss://127.0.0.1/', false],
    ['localhost', 'wss://localhost/', true],
  ])('NO_PROXY=%j exempts %s: %s', (noProxy, url, exempt) => {
    const proxy = proxyForUrl(url, { HTTPS_PROXY: PROXY, NO_PROXY: noProxy });
    expect(proxy === undefined).toBe(exempt);
  });

  it('refuses a proxy it cannot tunnel through, naming the variable', () => {
    expect(() => proxyForUrl('wss://a.example/', { HTTPS_PROXY: 'socks5://proxy:1080' })).toThrow(
      'HTTPS_PROXY must be an http:// or https:// proxy',
    );
    expect(() => proxyForUrl('ftp://a.example/', {})).toThrow('must use ws, wss, http or https');
  });
});

describe('isLoopbackHost', () => {
  it.each([
    ['localhost', true],
    ['LocalHost.', true],
    ['127.0.0.1', true],
    ['127.255.0.9', true],
    ['::1', true],
    ['[::1]', true],
    ['::ffff:127.0.0.1', true],
    ['128.0.0.1', false],
    ['10.0.0.1', false],
    ['::2', false],
    ['localhost.example.com', false],
    ['aggregator.example', false],
  ])('%s: %s', (host, loopback) => {
    expect(isLoopbackHost(host)).toBe(loopback);
  });
});
