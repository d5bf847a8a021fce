import {
  createPrivateKey,
  createPublicKey,
  sign as cryptoSign,
  verify as cryptoVerify,
  type KeyObject,
} from 'node:crypto';
import { PKCS8_PREFIX, SPKI_PREFIX } from './ed25519';
import { fromBase64, toBase64 } from './encoding';
import { encodeFrame, frameHeader } from './frames';
import { keyFingerprint, type IdentityKeyPair } from './identity';

/** The prefix of every byte string the aggregator signs; a new encoding gets a new prefix. */
export const SERVER_MESSAGE_DOMAIN = 'confide/server-message/v1\n';

/**
 * JSON with object keys sorted at every level and no whitespace, so that signer and verifier hash
 * the same bytes whatever order a JSON library wrote the members in. Undefined members are dropped
 * (as JSON.stringify does); numbers print as JSON.stringify prints them.
 * @example canonicalMessageJson({ b: 1, a: [2, { d: 3, c: 4 }] }) // '{"a":[2,{"c":4,"d":3}],"b":1}'
 */
export function canonicalMessageJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    const s = JSON.stringify(value);
    if (s === undefined) throw new Error(`cannot encode ${typeof value} in a signed message`);
    return s;
  }
  // Plain loops and string concatenation: a site checks the signature of every message, among them
  // a round's list of advertisements (thousands of members).
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) {
      if (i > 0) out += ',';
      out += canonicalMessageJson((value[i] as unknown) ?? null);
    }
    return `${out}]`;
  }
  const record = value as Record<string, unknown>;
  // The default sort compares UTF-16 code units, as `<` does.
  const keys = Object.keys(record).sort();
  let out = '{';
  for (const key of keys) {
    const v = record[key];
    if (v === undefined) continue;
    if (out.length > 1) out += ',';
    out += `${JSON.stringify(key)}:${canonicalMessageJson(v)}`;
  }
  return `${out}}`;
}

/** The bytes the aggregator signs for a message: the domain, then the message without `sig`, canonical. */
export function serverMessageBytes(message: object): Buffer {
  const { sig: _sig, ...body } = message as Record<string, unknown>;
  return Buffer.from(SERVER_MESSAGE_DOMAIN + canonicalMessageJson(body), 'utf8');
}

/**
 * The aggregator's Ed25519 identity, held as node:crypto key objects (signing every message a
 * round is configured with must be cheap: tweetnacl's sign is ~30x slower).
 */
export class ServerSigner {
  readonly publicKey: string;
  readonly fingerprint: string;
  private readonly key: KeyObject;

  constructor(identity: IdentityKeyPair) {
    const secret = fromBase64(identity.secretKey, 64);
    this.key = createPrivateKey({
      key: Buffer.concat([PKCS8_PREFIX, secret.subarray(0, 32)]),
      format: 'der',
      type: 'pkcs8',
    });
    secret.fill(0);
    this.publicKey = identity.publicKey;
    this.fingerprint = keyFingerprint(identity.publicKey);
  }

  /** Signs raw bytes; base64 detached signature. */
  signBytes(bytes: Uint8Array): string {
    return toBase64(cryptoSign(null, bytes, this.key));
  }

  /**
   * Returns the message with its `sig` member: the signature over serverMessageBytes(message).
   * @example ws.send(JSON.stringify(signer.sign({ v: 2, type: 'round.end', ... })))
   */
  sign<T extends object>(message: T): T & { sig: string } {
    return { ...message, sig: this.signBytes(serverMessageBytes(message)) };
  }

  /**
   * A binary frame whose header (with the payload's dtype and length) carries the signature; the
   * payload itself is bound by a hash in the header (a model's `modelHash`), checked by the site.
   * @example ws.send(signer.frame({ v: 2, type: 'round.train', ... }, weights), { binary: true })
   */
  frame(header: object, vector: Float32Array | Uint32Array): Buffer {
    return encodeFrame(this.sign(frameHeader(header, vector)), vector);
  }
}

const publicKeys = new Map<string, KeyObject>();

/** A node:crypto key object for a base64 Ed25519 public key (cached: a node verifies many messages). */
function publicKeyObject(publicKey: string): KeyObject {
  let k = publicKeys.get(publicKey);
  if (!k) {
    k = createPublicKey({
      key: Buffer.concat([SPKI_PREFIX, fromBase64(publicKey, 32)]),
      format: 'der',
      type: 'spki',
    });
    if (publicKeys.size > 64) publicKeys.clear();
    publicKeys.set(publicKey, k);
  }
  return k;
}

/** Verifies a detached signature over raw bytes; false (never a throw) on any malformed input. */
export function verifyServerBytes(
  publicKey: string,
  bytes: Uint8Array,
  signature: unknown,
): boolean {
  if (typeof signature !== 'string') return false;
  try {
    return cryptoVerify(null, bytes, publicKeyObject(publicKey), fromBase64(signature, 64));
  } catch {
    return false;
  }
}

/**
 * True when `message.sig` is the aggregator's signature over the rest of the message.
 * @example if (!verifyServerMessage(pinnedKey, header)) refuse('BAD_SERVER_SIGNATURE')
 */
export function verifyServerMessage(publicKey: string, message: Record<string, unknown>): boolean {
  return verifyServerBytes(publicKey, serverMessageBytes(message), message['sig']);
}

/**
 * The bytes of the challenge signature: the aggregator proves it holds its key on this very
 * connection (the nonce is fresh per connection), so a pinned key cannot be answered by a relay
 * that does not hold it.
 */
export function challengeBytes(serverId: string, nonce: string, serverKey: string): Buffer {
  return Buffer.from(['confide/challenge/v1', serverId, nonce, serverKey].join('\n'), 'utf8');
}
