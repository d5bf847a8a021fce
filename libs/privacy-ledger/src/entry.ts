/**
 * Ledger entries, their hash chain and the sites' signatures.
 *
 * Hash of an entry (hex, lower case):
 *   SHA-256( UTF-8("confide-ledger-entry/1\n") || UTF-8(canonicalJson(U)) )
 * where U is the entry without `hash` and `signature`, i.e. exactly these 15 members (the mechanism
 * with exactly its 7, or 10 with the distributed discrete Gaussian: see MechanismParams): seq,
 * federationId, siteId, siteName, round, mechanism, rdp, ordersHash, delta, cumulativeEpsilon,
 * epsilonLimit, createdAt, sitePublicKey, prevHash; canonicalJson is RFC 8785
 * (see canonical.ts). `signature` is the site's Ed25519 detached signature over the 32 raw bytes of
 * that hash (not its hex), in padded base64.
 *
 * One chain per federation: every site's entries interleaved in `seq` order (1, 2, ...), each entry's
 * `prevHash` the previous entry's `hash`, the first one's 64 zeros. Since each site signs a hash that
 * covers `prevHash`, the aggregator cannot delete, reorder or insert a row anywhere in the
 * federation's history without breaking a link it cannot re-sign; per-site chains would let it drop
 * a site's latest release unnoticed by everyone but that site.
 */
import { createPublicKey, verify as cryptoVerify } from 'node:crypto';
import nacl from 'tweetnacl';
import { composeHistory, cumulativeEpsilon, type SiteHistory } from './budget';
import {
  canonicalJson,
  fromCanonicalBase64,
  fromHex,
  isHash,
  isIsoInstant,
  sha256Hex,
  toBase64,
} from './canonical';
import { LedgerError, LedgerErrorCode } from './errors';
import { type Fail, failWith, inRange, integer, record, text } from './fields';
import {
  type LedgerAccountant,
  type MechanismParams,
  ordersFingerprint,
  releaseCurve,
  validateMechanism,
} from './mechanism';

/** `prevHash` of a federation's first entry. */
export const GENESIS_HASH = '0'.repeat(64);

/** The prefix of every entry's hash preimage; a new encoding gets a new prefix. */
export const ENTRY_HASH_DOMAIN = 'confide-ledger-entry/1\n';

/** What a release records, before its place in the chain and its signature. */
export interface LedgerEntryBody {
  /** Position in the federation's chain, from 1. */
  seq: number;
  federationId: string;
  siteId: string;
  /** The site's name at the time of the release. */
  siteName: string;
  round: number;
  mechanism: MechanismParams;
  /** This release's RDP curve over the orders whose fingerprint is `ordersHash`. */
  rdp: number[];
  /** `ordersFingerprint(orders)`; the orders themselves travel once, in the export header. */
  ordersHash: string;
  delta: number;
  /** The site's epsilon after this release: all its curves so far added, then converted at `delta`. */
  cumulativeEpsilon: number;
  epsilonLimit: number;
  /** ISO-8601 UTC with milliseconds, as `Date.prototype.toISOString` writes it. */
  createdAt: string;
  /** The site's Ed25519 public key, padded base64. */
  sitePublicKey: string;
}

/** An entry ready to hash: the body and its link to the previous entry. */
export interface UnsignedLedgerEntry extends LedgerEntryBody {
  /** The previous entry's `hash`; `GENESIS_HASH` for seq 1. */
  prevHash: string;
}

/** One append-only ledger row, as stored, exported and kept in a site's local ledger. */
export interface LedgerEntry extends UnsignedLedgerEntry {
  /** Hex SHA-256 of `canonicalEncoding` of the entry without `hash` and `signature`. */
  hash: string;
  /** The site's Ed25519 signature over the hash's 32 bytes, padded base64. */
  signature: string;
}

const BODY_KEYS = [
  'seq',
  'federationId',
  'siteId',
  'siteName',
  'round',
  'mechanism',
  'rdp',
  'ordersHash',
  'delta',
  'cumulativeEpsilon',
  'epsilonLimit',
  'createdAt',
  'sitePublicKey',
] as const;
const UNSIGNED_KEYS = [...BODY_KEYS, 'prevHash'] as const;
const ENTRY_KEYS = [...UNSIGNED_KEYS, 'hash', 'signature'] as const;

/**
 * Checks an entry body and returns a copy with exactly its fields; throws INVALID_ENTRY (or
 * INVALID_MECHANISM) naming the field. With `strict`, unknown fields are refused too.
 * @example validateEntryBody(JSON.parse(row), 'entries[3]', true)
 */
export function validateEntryBody(x: unknown, path = 'entry', strict = false): LedgerEntryBody {
  const fail: Fail = failWith(LedgerErrorCode.INVALID_ENTRY);
  const e = record(x, path, fail, strict ? BODY_KEYS : undefined);
  const rdp = e.rdp;
  if (!Array.isArray(rdp) || rdp.length === 0) fail(`${path}.rdp`, 'must be a non-empty array');
  if (!isHash(e.ordersHash)) fail(`${path}.ordersHash`, 'must be 64 lower-case hex characters');
  if (!isIsoInstant(e.createdAt)) {
    fail(`${path}.createdAt`, 'must be an ISO-8601 UTC instant like 2025-01-31T12:00:00.000Z');
  }
  if (fromCanonicalBase64(e.sitePublicKey, nacl.sign.publicKeyLength) === null) {
    fail(`${path}.sitePublicKey`, 'must be a 32-byte Ed25519 public key in padded base64');
  }
  return {
    seq: integer(e.seq, `${path}.seq`, fail, 1),
    federationId: text(e.federationId, `${path}.federationId`, fail),
    siteId: text(e.siteId, `${path}.siteId`, fail),
    siteName: text(e.siteName, `${path}.siteName`, fail),
    round: integer(e.round, `${path}.round`, fail, 0),
    mechanism: validateMechanism(e.mechanism, `${path}.mechanism`),
    rdp: (rdp as unknown[]).map((v, i) =>
      inRange(v, `${path}.rdp[${i}]`, fail, { ge: 0 }, 'finite and >= 0'),
    ),
    ordersHash: e.ordersHash,
    delta: inRange(e.delta, `${path}.delta`, fail, { gt: 0, lt: 1 }, 'in (0, 1)'),
    cumulativeEpsilon: inRange(
      e.cumulativeEpsilon,
      `${path}.cumulativeEpsilon`,
      fail,
      { ge: 0 },
      '>= 0',
    ),
    epsilonLimit: inRange(e.epsilonLimit, `${path}.epsilonLimit`, fail, { gt: 0 }, '> 0'),
    createdAt: e.createdAt,
    sitePublicKey: e.sitePublicKey as string,
  };
}

/**
 * Checks a whole entry (body, prevHash, hash and signature formats; not the hash's value nor the
 * signature's validity, which `verifyReceipt` checks) and returns a copy with exactly its fields.
 * @example const entry = validateLedgerEntry(JSON.parse(line), 'line 3', true)
 */
export function validateLedgerEntry(x: unknown, path = 'entry', strict = false): LedgerEntry {
  const fail: Fail = failWith(LedgerErrorCode.INVALID_ENTRY);
  const e = record(x, path, fail, strict ? ENTRY_KEYS : undefined);
  const body = validateEntryBody(x, path);
  if (!isHash(e.prevHash)) fail(`${path}.prevHash`, 'must be 64 lower-case hex characters');
  if (!isHash(e.hash)) fail(`${path}.hash`, 'must be 64 lower-case hex characters');
  if (fromCanonicalBase64(e.signature, nacl.sign.signatureLength) === null) {
    fail(`${path}.signature`, 'must be a 64-byte Ed25519 signature in padded base64');
  }
  return { ...body, prevHash: e.prevHash, hash: e.hash, signature: e.signature as string };
}

/**
 * The exact bytes an entry's hash is taken over: the domain line, then the canonical JSON of its 15
 * hashed members (see the file comment). Fields other than those are ignored; bad values throw.
 * @example sha256Hex(canonicalEncoding({ ...body, prevHash: GENESIS_HASH }))
 */
export function canonicalEncoding(entry: UnsignedLedgerEntry): Uint8Array {
  const body = validateEntryBody(entry);
  if (!isHash(entry.prevHash)) {
    throw new LedgerError(
      LedgerErrorCode.INVALID_ENTRY,
      'prevHash must be 64 lower-case hex characters',
    );
  }
  const hashed: UnsignedLedgerEntry = { ...body, prevHash: entry.prevHash };
  return new TextEncoder().encode(ENTRY_HASH_DOMAIN + canonicalJson(hashed));
}

/**
 * The hex SHA-256 that links an entry into the chain and that the site signs.
 * @example entryHash(body, GENESIS_HASH) // '3f0c…' (64 hex)
 */
export function entryHash(body: LedgerEntryBody, prevHash: string): string {
  return sha256Hex(canonicalEncoding({ ...body, prevHash }));
}

/**
 * Where the next entry of a federation goes: seq and prevHash after `last` (or the genesis).
 * @example const { seq, prevHash } = chainHead(await repo.lastEntry(federationId))
 */
export function chainHead(last?: Pick<LedgerEntry, 'seq' | 'hash'>): {
  seq: number;
  prevHash: string;
} {
  return last ? { seq: last.seq + 1, prevHash: last.hash } : { seq: 1, prevHash: GENESIS_HASH };
}

/** What `createReceipt` needs; `siteHistory` is this site's earlier entries in this federation. */
export interface ReceiptInput {
  seq: number;
  federationId: string;
  siteId: string;
  siteName: string;
  round: number;
  mechanism: MechanismParams;
  delta: number;
  epsilonLimit: number;
  createdAt: string;
  sitePublicKey: string;
  /** The site's earlier releases in this federation, oldest first; their recorded curves are composed. */
  siteHistory: SiteHistory;
}

/**
 * Builds the body of a release's receipt: this release's RDP curve from the accountant and the site's
 * cumulative epsilon after it. Both sides can build it (the aggregator proposes, the site recomputes
 * and compares hashes before signing). Throws BUDGET_EXCEEDED when the release would pass the limit.
 * @example const body = createReceipt({ ...chainHead(last), federationId, siteId, ... }, accountant)
 */
export function createReceipt(input: ReceiptInput, accountant: LedgerAccountant): LedgerEntryBody {
  for (const past of input.siteHistory as readonly Partial<LedgerEntry>[]) {
    if (
      (past.siteId !== undefined && past.siteId !== input.siteId) ||
      (past.federationId !== undefined && past.federationId !== input.federationId)
    ) {
      throw new LedgerError(
        LedgerErrorCode.INVALID_ARGUMENT,
        `siteHistory holds an entry of another site or federation (seq ${past.seq ?? '?'})`,
      );
    }
  }
  const rdp = releaseCurve(accountant, input.mechanism);
  const { epsilon } = cumulativeEpsilon(
    composeHistory(input.siteHistory),
    rdp,
    input.delta,
    accountant,
  );
  const body = validateEntryBody({
    seq: input.seq,
    federationId: input.federationId,
    siteId: input.siteId,
    siteName: input.siteName,
    round: input.round,
    mechanism: input.mechanism,
    rdp,
    ordersHash: ordersFingerprint(accountant.orders),
    delta: input.delta,
    cumulativeEpsilon: epsilon,
    epsilonLimit: input.epsilonLimit,
    createdAt: input.createdAt,
    sitePublicKey: input.sitePublicKey,
  });
  if (body.cumulativeEpsilon > body.epsilonLimit) {
    throw new LedgerError(
      LedgerErrorCode.BUDGET_EXCEEDED,
      `site ${body.siteId}: this release would bring its epsilon to ${body.cumulativeEpsilon}, ` +
        `past its limit ${body.epsilonLimit}`,
    );
  }
  return body;
}

/**
 * The site's side: hashes the body it is about to release, linked to `prevHash`, and signs the hash
 * with its Ed25519 secret key (64 bytes, or padded base64 of them). Throws KEY_MISMATCH when the key
 * is not the body's `sitePublicKey`.
 * @example const entry = signReceipt(body, prevHash, identity.secretKey)
 */
export function signReceipt(
  body: LedgerEntryBody,
  prevHash: string,
  siteSecretKey: Uint8Array | string,
): LedgerEntry {
  const sk =
    typeof siteSecretKey === 'string'
      ? fromCanonicalBase64(siteSecretKey, nacl.sign.secretKeyLength)
      : siteSecretKey.length === nacl.sign.secretKeyLength
        ? siteSecretKey
        : null;
  if (sk === null) {
    throw new LedgerError(
      LedgerErrorCode.INVALID_KEY,
      'the secret key must be 64 bytes of Ed25519 (tweetnacl) key',
    );
  }
  const clean = validateEntryBody(body);
  const publicKey = toBase64(nacl.sign.keyPair.fromSecretKey(sk).publicKey);
  if (publicKey !== clean.sitePublicKey) {
    throw new LedgerError(
      LedgerErrorCode.KEY_MISMATCH,
      `the secret key belongs to ${publicKey}, not to the receipt's site key ${clean.sitePublicKey}`,
    );
  }
  const hash = entryHash(clean, prevHash);
  const signature = toBase64(nacl.sign.detached(fromHex(hash), sk));
  return { ...clean, prevHash, hash, signature };
}

/**
 * True when the entry's hash is the hash of its content and its signature verifies under `publicKey`
 * (the enrolled key; by default the entry's own `sitePublicKey`, which must then be the same key).
 * Never throws.
 * @example verifyReceipt(entry, enrolledKeys.get(entry.siteId))
 */
export function verifyReceipt(entry: LedgerEntry, publicKey?: string): boolean {
  try {
    const e = validateLedgerEntry(entry);
    const key = publicKey ?? e.sitePublicKey;
    if (key !== e.sitePublicKey) return false;
    const hash = entryHash(e, e.prevHash);
    return hash === e.hash && signatureHolds(hash, e.signature, key);
  } catch {
    return false;
  }
}

/**
 * True when `signature` is a valid Ed25519 signature by `publicKey` over the hash's bytes. Verified
 * with node:crypto (OpenSSL), about 60 times faster than tweetnacl, which matters to an auditor
 * checking a whole federation's history, and strict RFC 8032 (it refuses a malleable S >= L).
 */
export function signatureHolds(hash: string, signature: string, publicKey: string): boolean {
  const pk = fromCanonicalBase64(publicKey, nacl.sign.publicKeyLength);
  const sig = fromCanonicalBase64(signature, nacl.sign.signatureLength);
  if (pk === null || sig === null || !isHash(hash)) return false;
  try {
    const key = createPublicKey({
      key: Buffer.concat([ED25519_SPKI_PREFIX, pk]),
      format: 'der',
      type: 'spki',
    });
    return cryptoVerify(null, fromHex(hash), key, sig);
  } catch {
    return false;
  }
}

// DER SubjectPublicKeyInfo header of an Ed25519 key (RFC 8410); the raw 32 bytes follow it.
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
