import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { float32ToBytes, sha256Hex } from '@confide/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient, ApiRequestError } from './api-client';
import { createThrowawayCa, type ThrowawayCa } from './tls-ca';

const WEIGHTS = float32ToBytes(new Float32Array([0.5, -1, 2]));

describe('ApiClient over https with a private CA', () => {
  let tls: ThrowawayCa;
  let server: https.Server;
  let base: string;
  const authorizations: (string | undefined)[] = [];

  beforeAll(async () => {
    tls = await createThrowawayCa({ hostnames: [] });
    server = https.createServer({ cert: tls.certPem, key: tls.keyPem }, (req, res) => {
      authorizations.push(req.headers.authorization);
      if (req.url === '/api/v1/status')
        return res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
      if (req.url === '/api/v1/federations/f1/models/current/weights')
        return res
          .writeHead(200, { 'x-model-hash': sha256Hex(WEIGHTS), 'x-model-version': 'v7' })
          .end(WEIGHTS);
      res
        .writeHead(404, { 'content-type': 'application/json' })
        .end('{"error":{"code":"NOT_FOUND","message":"no such thing"}}');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it('talks to an aggregator whose certificate the given CA signed', async () => {
    const api = new ApiClient(base, 'tok', { ca: tls.caCertPem });
    await expect(api.get('/api/v1/status')).resolves.toEqual({ ok: true });
    expect(authorizations.at(-1)).toBe('Bearer tok');
  });

  it('downloads model weights through the same CA', async () => {
    const api = new ApiClient(base, 'tok', { ca: tls.caCertPem });
    const model = await api.modelWeights('f1');
    expect([...model.weights]).toEqual([0.5, -1, 2]);
    expect(model).toMatchObject({ hash: sha256Hex(WEIGHTS), versionId: 'v7' });
  });

  it('keeps the code and message of an error the aggregator answers over https', async () => {
    const api = new ApiClient(base, 'tok', { ca: tls.caCertPem });
    await expect(api.post('/api/v1/missing')).rejects.toMatchObject({
      status: 404,
      code: 'NOT_FOUND',
      message: 'POST /api/v1/missing: no such thing',
    });
  });

  it('without the CA fails as unreachable, naming the certificate problem', async () => {
    const api = new ApiClient(base, 'tok');
    const err = await api.get('/api/v1/status').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiRequestError);
    expect(err).toMatchObject({
      status: 0,
      code: 'UNREACHABLE',
      message: `cannot reach the aggregator at ${base}: fetch failed (UNABLE_TO_VERIFY_LEAF_SIGNATURE)`,
    });
    await expect(api.modelWeights('f1')).rejects.toMatchObject({ code: 'UNREACHABLE' });
  });

  it('with a CA that did not sign the certificate fails as unreachable too', async () => {
    const other = await createThrowawayCa({ hostnames: [] });
    const api = new ApiClient(base, 'tok', { ca: other.caCertPem });
    await expect(api.get('/api/v1/status')).rejects.toMatchObject({
      code: 'UNREACHABLE',
      message: expect.stringContaining('(UNABLE_TO_VERIFY_LEAF_SIGNATURE)') as string,
    });
  });
});
