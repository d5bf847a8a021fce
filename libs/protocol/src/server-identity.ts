import {
  createHash,
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
 * The prefix of what the aggregator signs for a batch of messages (one step of a secure sum, each
 * site its own message): the number of messages, then the root of a Merkle tree over their bytes.
 */
export const SERVER_BATCH_DOMAIN = 'confide/server-batch/v1\n';

/**
 * Where a message sits in a signed batch (its `batch` member): its leaf's position, the number of
 * leaves and the sibling hashes from the leaf up (base64, 32 bytes each; a level of odd length
 * promotes its last node, which then has no sibling).
 */
export interface BatchPosition {
  index: number;
  count: number;
  proof: string;
}

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

/**
 * The bytes the aggregator signs for a message: the domain, then the message without `sig` (and
 * without `batch`, where a batch signature places it), canonical.
 */
export function serverMessageBytes(message: object): Buffer {
  const { sig: _sig, batch: _batch, ...body } = message as Record<string, unknown>;
  return Buffer.from(SERVER_MESSAGE_DOMAIN + canonicalMessageJson(body), 'utf8');
}

const LEAF_TAG = Buffer.of(0);
const NODE_TAG = Buffer.of(1);

/** A leaf of a batch: SHA-256(0x00 || serverMessageBytes); inner nodes are tagged 0x01. */
function batchLeaf(canonicalBody: string): Buffer {
  return createHash('sha256')
    .update(LEAF_TAG)
    .update(SERVER_MESSAGE_DOMAIN)
    .update(canonicalBody, 'utf8')
    .digest();
}

function batchNode(left: Uint8Array, right: Uint8Array): Buffer {
  return createHash('sha256').update(NODE_TAG).update(left).update(right).digest();
}

/** The bytes signed for a batch of `count` messages whose tree has this root. */
function batchBytes(count: number, root: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from(`${SERVER_BATCH_DOMAIN}${count}\n`, 'utf8'), root]);
}

/** How many sibling hashes the proof of leaf `index` of `count` holds. */
function proofLength(index: number, count: number): number {
  let length = 0;
  for (let i = index, m = count; m > 1; i = Math.floor(i / 2), m = Math.ceil(m / 2)) {
    if (i % 2 === 1 || i + 1 < m) length++;
  }
  return length;
}

/** The root a batch position leads to from a leaf; null when the position cannot be right. */
function batchRoot(leaf: Buffer, position: unknown): { root: Buffer; count: number } | null {
  if (typeof position !== 'object' || position === null) return null;
  const { index, count, proof } = position as Record<string, unknown>;
  if (
    typeof index !== 'number' ||
    typeof count !== 'number' ||
    typeof proof !== 'string' ||
    !Number.isSafeInteger(count) ||
    !Number.isSafeInteger(index) ||
    count < 1 ||
    index < 0 ||
    index >= count
  ) {
    return null;
  }
  const length = proofLength(index, count);
  let siblings: Uint8Array;
  try {
    siblings = fromBase64(proof, 32 * length);
  } catch {
    return null;
  }
  let node = leaf;
  let at = 0;
  for (let i = index, m = count; m > 1; i = Math.floor(i / 2), m = Math.ceil(m / 2)) {
    if (i % 2 === 1) {
      node = batchNode(siblings.subarray(at, at + 32), node);
      at += 32;
    } else if (i + 1 < m) {
      node = batchNode(node, siblings.subarray(at, at + 32));
      at += 32;
    }
  }
  return { root: node, count };
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
   * Signs many messages with one signature (a secure sum's step sends each site its own message):
   * the signature covers the root of a Merkle tree over the messages' bytes, and each message
   * carries it in `sig` with its own path to the root in `batch` (BatchPosition), so a site checks
   * its message with one verification and a few hashes, as verifyServerMessage does. Returns the
   * messages encoded as JSON text, in order. The messages must not have `sig` or `batch` members.
   * @example signer.signEach(ids.map((id) => stepFor(id))).forEach((text, i) => send(ids[i], text))
   */
  signEach(messages: readonly object[]): Buffer[] {
    const bodies = messages.map((m) => {
      if ('sig' in m || 'batch' in m)
        throw new Error('a message to sign has a sig or batch member');
      const text = canonicalMessageJson(m);
      if (!text.startsWith('{')) throw new Error('a signed message must be an object');
      return text;
    });
    if (bodies.length === 0) return [];
    const levels: Buffer[][] = [bodies.map(batchLeaf)];
    for (let level = levels[0]!; level.length > 1;) {
      const next: Buffer[] = [];
      for (let i = 0; i < level.length; i += 2) {
        const right = level[i + 1];
        next.push(right === undefined ? level[i]! : batchNode(level[i]!, right));
      }
      levels.push(next);
      level = next;
    }
    const count = bodies.length;
    const sig = this.signBytes(batchBytes(count, levels[levels.length - 1]![0]!));
    return bodies.map((body, index) => {
      const siblings: Buffer[] = [];
      let i = index;
      for (let l = 0; l < levels.length - 1; l++) {
        const level = levels[l]!;
        const sibling = i % 2 === 1 ? level[i - 1] : level[i + 1];
        if (sibling !== undefined) siblings.push(sibling);
        i = Math.floor(i / 2);
      }
      // The canonical text with the two members appended: members' order does not matter to JSON,
      // and the site re-encodes what it parsed canonically to check it.
      const batch: BatchPosition = { index, count, proof: toBase64(Buffer.concat(siblings)) };
      const tail = `"batch":${JSON.stringify(batch)},"sig":${JSON.stringify(sig)}}`;
      return Buffer.from(`${body.slice(0, -1)}${body.length > 2 ? ',' : ''}${tail}`, 'utf8');
    });
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
 * True when `message.sig` is the aggregator's signature over the rest of the message, or, for a
 * message with a `batch` member (ServerSigner.signEach), over the root its path leads to.
 * @example if (!verifyServerMessage(pinnedKey, header)) refuse('BAD_SERVER_SIGNATURE')
 */
export function verifyServerMessage(publicKey: string, message: Record<string, unknown>): boolean {
  if (!('batch' in message)) {
    return verifyServerBytes(publicKey, serverMessageBytes(message), message['sig']);
  }
  const { sig, batch, ...body } = message;
  const at = batchRoot(batchLeaf(canonicalMessageJson(body)), batch);
  return at !== null && verifyServerBytes(publicKey, batchBytes(at.count, at.root), sig);
}

/**
 * The bytes of the challenge signature: the aggregator proves it holds its key on this very
 * connection (the nonce is fresh per connection), so a pinned key cannot be answered by a relay
 * that does not hold it.
 */
export function challengeBytes(serverId: string, nonce: string, serverKey: string): Buffer {
  return Buffer.from(['confide/challenge/v1', serverId, nonce, serverKey].join('\n'), 'utf8');
}
