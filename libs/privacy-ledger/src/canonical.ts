/**
 * Canonical JSON: the one byte encoding every hash in the ledger is taken over.
 *
 * It is RFC 8785 (JSON Canonicalization Scheme) restricted to the values a ledger holds, so an auditor
 * can re-implement it in any language (or use a JCS library):
 * - objects: members sorted by key, comparing keys as sequences of UTF-16 code units (JavaScript's
 *   default `Array.prototype.sort`); no whitespace anywhere; no member may be `undefined`;
 * - arrays: elements in order;
 * - strings: as `JSON.stringify` writes them (ECMAScript, the same escapes as JCS); strings with lone
 *   surrogates are refused;
 * - numbers: as `JSON.stringify` writes them, i.e. ECMAScript Number::toString, the shortest decimal
 *   that reads back to the same double (what JCS prescribes): `0.1`, `1e-7`, `1e+21`, `12`. NaN,
 *   Infinity and -0 are refused (JSON cannot say them, and -0 would print as `0`, losing a bit);
 * - `true`, `false`, `null` as themselves.
 * The text is then encoded as UTF-8.
 */
import { createHash } from 'node:crypto';
import { LedgerError, LedgerErrorCode } from './errors';

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** The canonical JSON text of a value (sorted keys, shortest round-trip numbers; see the file comment). */
export function canonicalJson(value: unknown): string {
  return encode(value, '$');
}

function encode(value: unknown, path: string): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      if (!Number.isFinite(value)) throw notCanonical(path, `${String(value)} is not finite`);
      if (Object.is(value, -0)) throw notCanonical(path, '-0 has no canonical form');
      return JSON.stringify(value);
    case 'string':
      if (LONE_SURROGATE.test(value)) throw notCanonical(path, 'the string has a lone surrogate');
      return JSON.stringify(value);
    case 'object': {
      if (Array.isArray(value)) {
        return `[${value.map((v, i) => encode(v, `${path}[${i}]`)).join(',')}]`;
      }
      const record = value as Record<string, unknown>;
      const members = Object.keys(record)
        .sort()
        .map((k) => {
          if (LONE_SURROGATE.test(k)) throw notCanonical(path, 'a key has a lone surrogate');
          return `${JSON.stringify(k)}:${encode(record[k], `${path}.${k}`)}`;
        });
      return `{${members.join(',')}}`;
    }
    case 'undefined':
    case 'bigint':
    case 'function':
    case 'symbol':
    default:
      throw notCanonical(path, `a ${typeof value} has no JSON form`);
  }
}

function notCanonical(path: string, why: string): LedgerError {
  return new LedgerError(LedgerErrorCode.NOT_CANONICAL, `${path}: ${why}`);
}

/** Lower-case hex SHA-256 of bytes or of a string's UTF-8. */
export function sha256Hex(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** True when `text` is a lower-case hex SHA-256 digest (64 characters). */
export function isHash(text: unknown): text is string {
  return typeof text === 'string' && /^[0-9a-f]{64}$/.test(text);
}

/** Standard padded base64 of bytes. */
export function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

/**
 * The bytes of canonical padded base64 of exactly `length` bytes, or null. Canonical means the text is
 * what `toBase64` writes for those bytes, so two different strings never name the same key or signature.
 */
export function fromCanonicalBase64(text: unknown, length: number): Uint8Array | null {
  if (typeof text !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) {
    return null;
  }
  const bytes = new Uint8Array(Buffer.from(text, 'base64'));
  if (bytes.length !== length || toBase64(bytes) !== text) return null;
  return bytes;
}

/** Bytes of a lower-case hex string (the caller has checked it). */
export function fromHex(hex: string): Uint8Array {
  return new Uint8Array(Buffer.from(hex, 'hex'));
}

/** True when `text` is an instant as `Date.prototype.toISOString` writes it (UTC, milliseconds, `Z`). */
export function isIsoInstant(text: unknown): text is string {
  if (typeof text !== 'string' || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/.test(text)) {
    return false;
  }
  const t = Date.parse(text);
  return Number.isFinite(t) && new Date(t).toISOString() === text;
}
