// tsyringe, which @peculiar/x509 uses internally, throws on import unless Reflect.getMetadata exists.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { X509Certificate, webcrypto } from 'node:crypto';
import { isIP } from 'node:net';

/** What `createThrowawayCa` makes: a private CA and one server certificate it signed. */
export interface ThrowawayCa {
  /** The CA certificate (PEM): what clients pass as `--ca` / `ca` to trust the server. */
  caCertPem: string;
  /** The server certificate (PEM), for `https.createServer({ cert, key })`. */
  certPem: string;
  /** The server's private key (PKCS#8 PEM). */
  keyPem: string;
  /** SHA-256 of the CA certificate, `AB:CD:...`, as Node's `X509Certificate.fingerprint256` prints it. */
  caFingerprint: string;
}

export interface ThrowawayCaOptions {
  /** DNS names the server certificate covers, in addition to `localhost`. */
  hostnames: string[];
  /** IP addresses the server certificate covers, in addition to 127.0.0.1 and ::1. */
  ips?: string[];
  /** Validity in days of both certificates (default 7, at most 397). */
  days?: number;
}

const LOOPBACK_NAMES = ['localhost'];
const LOOPBACK_IPS = ['127.0.0.1', '::1'];
const DEFAULT_DAYS = 7;
// The CA/Browser Forum limit for server certificates; a throwaway CA has no business exceeding it.
const MAX_DAYS = 397;
// Certificates are valid from a little before now, so a peer whose clock lags still accepts them.
const CLOCK_SKEW_MS = 5 * 60 * 1000;
const DNS_LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/i;

const ECDSA_P256: EcKeyGenParams & EcdsaParams = {
  name: 'ECDSA',
  namedCurve: 'P-256',
  hash: 'SHA-256',
};

/**
 * Creates a fresh private CA and a server certificate signed by it (ECDSA P-256, serverAuth), for
 * serving https/wss to clients that trust that CA explicitly. The CA's private key is never
 * exported: once this returns, nothing more can be signed by it.
 *
 * The server certificate always covers `localhost`, 127.0.0.1 and ::1, plus `hostnames` and `ips`.
 *
 * @example
 * const tls = await createThrowawayCa({ hostnames: ['aggregator.local'] });
 * https.createServer({ cert: tls.certPem, key: tls.keyPem }, app);
 * fs.writeFileSync('ca.pem', tls.caCertPem); // clients: --ca ca.pem
 */
export async function createThrowawayCa(options: ThrowawayCaOptions): Promise<ThrowawayCa> {
  const days = options.days ?? DEFAULT_DAYS;
  if (!Number.isInteger(days) || days < 1 || days > MAX_DAYS)
    throw new Error(`days must be a whole number from 1 to ${MAX_DAYS}; got ${days}`);
  const hostnames = unique([...LOOPBACK_NAMES, ...options.hostnames.map(checkHostname)]);
  const ips = unique([...LOOPBACK_IPS, ...(options.ips ?? []).map(checkIp)]);

  const crypto = webcrypto as Crypto;
  const notBefore = new Date(Date.now() - CLOCK_SKEW_MS);
  const notAfter = new Date(notBefore.getTime() + days * 24 * 60 * 60 * 1000 + CLOCK_SKEW_MS);
  const label = Buffer.from(crypto.getRandomValues(new Uint8Array(4))).toString('hex');

  const caKeys = await crypto.subtle.generateKey(ECDSA_P256, false, ['sign', 'verify']);
  const caCert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: serialNumber(crypto),
      name: `CN=Confide throwaway CA ${label}`,
      notBefore,
      notAfter,
      keys: caKeys,
      signingAlgorithm: ECDSA_P256,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(
          x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
          true,
        ),
        await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey, false, crypto),
      ],
    },
    crypto,
  );

  const serverKeys = await crypto.subtle.generateKey(ECDSA_P256, true, ['sign', 'verify']);
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: serialNumber(crypto),
      subject: `CN=${hostnames.find((h) => h !== 'localhost') ?? 'localhost'}`,
      issuer: caCert.subject,
      notBefore,
      notAfter,
      publicKey: serverKeys.publicKey,
      signingKey: caKeys.privateKey,
      signingAlgorithm: ECDSA_P256,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
        new x509.SubjectAlternativeNameExtension([
          ...hostnames.map((value): x509.JsonGeneralName => ({ type: x509.DNS, value })),
          ...ips.map((value): x509.JsonGeneralName => ({ type: x509.IP, value })),
        ]),
        await x509.SubjectKeyIdentifierExtension.create(serverKeys.publicKey, false, crypto),
        await x509.AuthorityKeyIdentifierExtension.create(caCert, false, crypto),
      ],
    },
    crypto,
  );

  const pkcs8 = await crypto.subtle.exportKey('pkcs8', serverKeys.privateKey);
  const caCertPem = caCert.toString('pem');
  return {
    caCertPem,
    certPem: cert.toString('pem'),
    keyPem: x509.PemConverter.encode(pkcs8, 'PRIVATE KEY'),
    caFingerprint: new X509Certificate(caCertPem).fingerprint256,
  };
}

/** A positive 128-bit serial (the top bit clear, so DER needs no sign byte; never all zero). */
function serialNumber(crypto: Crypto): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[0] = ((bytes[0] ?? 0) & 0x7f) | 0x01;
  return Buffer.from(bytes).toString('hex');
}

function checkHostname(name: string): string {
  const host = name.toLowerCase().replace(/\.$/, '');
  if (isIP(host) !== 0)
    throw new Error(`hostnames takes DNS names; put the address "${name}" in ips instead`);
  if (host.length > 253 || !host.split('.').every((label) => DNS_LABEL.test(label)))
    throw new Error(`"${name}" is not a DNS name a certificate can cover`);
  return host;
}

function checkIp(ip: string): string {
  const bare = ip.replace(/^\[(.*)\]$/, '$1');
  if (isIP(bare) === 0) throw new Error(`"${ip}" is not an IPv4 or IPv6 address`);
  return bare.toLowerCase();
}

function unique(values: string[]): string[] {
  return [...new Set(values)];
}
