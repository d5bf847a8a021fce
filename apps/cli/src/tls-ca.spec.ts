import { X509Certificate } from 'node:crypto';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createThrowawayCa, type ThrowawayCa } from './tls-ca';

/** GETs / from the test server on 127.0.0.1; resolves with the body and the CA the client saw. */
function get(
  port: number,
  opts: { ca?: string; servername?: string },
): Promise<{ body: string; issuerFingerprint: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = https.get({ host: '127.0.0.1', port, path: '/', agent: false, ...opts }, (res) => {
      const peer = (res.socket as TLSSocket).getPeerCertificate(true);
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () =>
        resolve({ body, issuerFingerprint: peer.issuerCertificate?.fingerprint256 }),
      );
    });
    req.on('error', reject);
  });
}

describe('createThrowawayCa', () => {
  let tls: ThrowawayCa;
  let server: https.Server;
  let port: number;

  beforeAll(async () => {
    tls = await createThrowawayCa({ hostnames: ['aggregator.test'], ips: ['10.1.2.3'], days: 2 });
    server = https.createServer({ cert: tls.certPem, key: tls.keyPem }, (_req, res) =>
      res.end('hello over tls'),
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it('serves https that a client trusting only the throwaway CA accepts', async () => {
    const r = await get(port, { ca: tls.caCertPem });
    expect(r.body).toBe('hello over tls');
    expect(r.issuerFingerprint).toBe(tls.caFingerprint);
  });

  it('is accepted under each DNS name it was made for, localhost included', async () => {
    for (const servername of ['aggregator.test', 'localhost']) {
      const r = await get(port, { ca: tls.caCertPem, servername });
      expect(r.body).toBe('hello over tls');
    }
  });

  it('is refused with a certificate error by a client that does not trust the CA', async () => {
    await expect(get(port, {})).rejects.toMatchObject({
      code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
    });
  });

  it('is refused by a client that trusts another throwaway CA', async () => {
    const other = await createThrowawayCa({ hostnames: ['aggregator.test'] });
    expect(other.caFingerprint).not.toBe(tls.caFingerprint);
    await expect(get(port, { ca: other.caCertPem })).rejects.toMatchObject({
      code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
    });
  });

  it('is refused for a host name it does not cover, even by a client trusting the CA', async () => {
    await expect(
      get(port, { ca: tls.caCertPem, servername: 'elsewhere.example' }),
    ).rejects.toMatchObject({ code: 'ERR_TLS_CERT_ALTNAME_INVALID' });
  });

  it('makes a CA certificate and a short-lived serverAuth certificate it signed', () => {
    const ca = new X509Certificate(tls.caCertPem);
    const cert = new X509Certificate(tls.certPem);
    expect(ca.ca).toBe(true);
    expect(cert.ca).toBe(false);
    expect(cert.checkIssued(ca)).toBe(true);
    expect(cert.verify(ca.publicKey)).toBe(true);
    expect(ca.fingerprint256).toBe(tls.caFingerprint);
    expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1']); // Node names the extended key usages here
    expect(cert.publicKey.asymmetricKeyDetails).toMatchObject({ namedCurve: 'prime256v1' });
    const lifetimeDays = (Date.parse(cert.validTo) - Date.parse(cert.validFrom)) / 86_400_000;
    expect(lifetimeDays).toBeGreaterThanOrEqual(2);
    expect(lifetimeDays).toBeLessThan(2.01);
  });

  it('covers localhost, 127.0.0.1 and ::1 besides the names and addresses asked for', () => {
    const cert = new X509Certificate(tls.certPem);
    for (const host of ['localhost', 'aggregator.test'])
      expect(cert.checkHost(host, { wildcards: false })).toBe(host);
    for (const ip of ['127.0.0.1', '::1', '10.1.2.3']) expect(cert.checkIP(ip)).toBe(ip);
    expect(cert.checkHost('other.test')).toBeUndefined();
    expect(cert.checkIP('10.1.2.4')).toBeUndefined();
  });

  it('gives a fresh CA and keys on every call', async () => {
    const again = await createThrowawayCa({ hostnames: [] });
    expect(again.caFingerprint).not.toBe(tls.caFingerprint);
    expect(again.keyPem).not.toBe(tls.keyPem);
    expect(new X509Certificate(again.certPem).checkHost('localhost')).toBe('localhost');
  });

  it('refuses names and lifetimes a certificate cannot carry, saying which', async () => {
    await expect(createThrowawayCa({ hostnames: ['bad_name.example'] })).rejects.toThrow(
      '"bad_name.example" is not a DNS name',
    );
    await expect(createThrowawayCa({ hostnames: ['10.0.0.1'] })).rejects.toThrow(
      'put the address "10.0.0.1" in ips',
    );
    await expect(createThrowawayCa({ hostnames: [], ips: ['10.0.0.256'] })).rejects.toThrow(
      '"10.0.0.256" is not an IPv4 or IPv6 address',
    );
    await expect(createThrowawayCa({ hostnames: [], days: 0 })).rejects.toThrow(
      'days must be a whole number from 1 to 397',
    );
  });
});
