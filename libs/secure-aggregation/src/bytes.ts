import nacl from 'tweetnacl';
import { SecAggError } from './errors';

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const SITE_ID = /^[A-Za-z0-9._:@-]{1,128}$/;
const ENCODER = new TextEncoder();

/**
 * Standard base64 of bytes, the encoding of every byte field in protocol messages.
 *
 * @example
 * toBase64(new Uint8Array([1, 2, 3])); // 'AQID'
 */
export function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

/**
 * Bytes of a canonical base64 string; throws BAD_INPUT when `text` is not base64 (of `expectedLength`
 * bytes when given), so a malformed message never reaches the cryptography.
 *
 * @example
 * fromBase64('AQID', 3); // Uint8Array [1, 2, 3]
 */
export function fromBase64(text: unknown, expectedLength?: number, what = 'field'): Uint8Array {
  if (typeof text !== 'string') throw new SecAggError('BAD_INPUT', `${what} is not valid base64`);
  // Decoding skips what is not base64, so printing the bytes back gives `text` only when it is
  // canonical base64 (alphabet, padding, zero spare bits): one native round trip, no regex.
  const decoded = Buffer.from(text, 'base64');
  if (decoded.toString('base64') !== text) {
    throw new SecAggError(
      'BAD_INPUT',
      text.length % 4 !== 0 || !BASE64.test(text)
        ? `${what} is not valid base64`
        : `${what} is not canonical base64`,
    );
  }
  // A copy: small Buffers share a pool, which callers must not see (or wipe).
  const bytes = new Uint8Array(decoded);
  if (expectedLength !== undefined && bytes.length !== expectedLength) {
    throw new SecAggError(
      'BAD_INPUT',
      `${what} must be ${expectedLength} bytes, got ${bytes.length}`,
    );
  }
  return bytes;
}

/**
 * UTF-8 bytes of a string.
 *
 * @example
 * utf8('ab'); // Uint8Array [97, 98]
 */
export function utf8(text: string): Uint8Array {
  return ENCODER.encode(text);
}

/**
 * The concatenation of byte arrays.
 *
 * @example
 * concatBytes(new Uint8Array([1]), new Uint8Array([2])); // Uint8Array [1, 2]
 */
export function concatBytes(...parts: readonly Uint8Array[]): Uint8Array {
  let length = 0;
  for (const p of parts) length += p.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

/**
 * An injective encoding of a list of fields: each field is a 4-byte big-endian length then its bytes
 * (strings as UTF-8, numbers as 8-byte big-endian unsigned integers). Used for every byte string that
 * is signed, hashed or fed to HKDF, so no two different lists encode alike.
 *
 * @example
 * encodeFields(['confide', 7]); // 00000007 'confide' 00000008 0000000000000007
 */
export function encodeFields(fields: readonly (Uint8Array | string | number)[]): Uint8Array {
  // Sized first and written into one buffer: a session id encodes every advertisement of the round.
  const encoded: (Uint8Array | number)[] = [];
  let length = 0;
  for (const f of fields) {
    if (typeof f === 'number') {
      if (!Number.isSafeInteger(f) || f < 0) {
        throw new SecAggError('BAD_INPUT', `cannot encode ${f}: not a non-negative safe integer`);
      }
      encoded.push(f);
      length += 12;
    } else {
      const bytes = typeof f === 'string' ? utf8(f) : f;
      encoded.push(bytes);
      length += 4 + bytes.length;
    }
  }
  const out = new Uint8Array(length);
  const view = new DataView(out.buffer);
  let offset = 0;
  for (const e of encoded) {
    if (typeof e === 'number') {
      view.setUint32(offset, 8);
      // A safe integer is below 2^53: high and low 32-bit words.
      view.setUint32(offset + 4, Math.floor(e / 2 ** 32));
      view.setUint32(offset + 8, e >>> 0);
      offset += 12;
    } else {
      view.setUint32(offset, e.length);
      out.set(e, offset + 4);
      offset += 4 + e.length;
    }
  }
  return out;
}

/**
 * Equality of two byte arrays in time that depends only on their lengths.
 *
 * @example
 * bytesEqual(new Uint8Array([1]), new Uint8Array([1])); // true
 */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= (a[i] ?? 0) ^ (b[i] ?? 0);
  return diff === 0;
}

/**
 * Overwrites arrays with zeros (secrets after use). Ignores undefined entries.
 *
 * @example
 * const key = new Uint8Array(32); wipe(key);
 */
export function wipe(...arrays: readonly (Uint8Array | Uint32Array | undefined)[]): void {
  for (const a of arrays) a?.fill(0);
}

/**
 * Checks a site id: 1-128 characters of `[A-Za-z0-9._:@-]`, so ids sort and encode the same in every
 * language (ASCII order is byte order).
 *
 * @example
 * assertSiteId('site-1'); // ok; assertSiteId('') throws BAD_INPUT
 */
export function assertSiteId(id: unknown, what = 'site id'): asserts id is string {
  if (typeof id !== 'string' || !SITE_ID.test(id)) {
    throw new SecAggError('BAD_INPUT', `${what} must be 1-128 characters of [A-Za-z0-9._:@-]`);
  }
}

/**
 * The canonical order of site ids (byte order of their ASCII text).
 *
 * @example
 * ['b', 'a'].sort(compareIds); // ['a', 'b']
 */
export function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Checks that `value` is an array of site ids without repeats and returns a sorted copy.
 *
 * @example
 * parseIdList(['b', 'a'], 'alive'); // ['a', 'b']
 */
export function parseIdList(value: unknown, what: string): string[] {
  if (!Array.isArray(value)) throw new SecAggError('BAD_INPUT', `${what} must be an array of ids`);
  const out: string[] = [];
  const seen = new Set<string>();
  for (const id of value as unknown[]) {
    assertSiteId(id, `${what} entry`);
    if (seen.has(id)) throw new SecAggError('BAD_INPUT', `${what} lists ${id} twice`);
    seen.add(id);
    out.push(id);
  }
  return out.sort(compareIds);
}

/**
 * The inverse of encodeFields for byte fields: splits length-prefixed fields; throws BAD_INPUT when
 * the bytes are not exactly such a list.
 *
 * @example
 * decodeFields(encodeFields([utf8('a'), utf8('bc')])); // [Uint8Array [97], Uint8Array [98, 99]]
 */
export function decodeFields(bytes: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let offset = 0;
  while (offset < bytes.length) {
    if (offset + 4 > bytes.length) throw new SecAggError('BAD_INPUT', 'truncated field length');
    const len = view.getUint32(offset);
    offset += 4;
    if (offset + len > bytes.length) throw new SecAggError('BAD_INPUT', 'truncated field');
    out.push(bytes.subarray(offset, offset + len));
    offset += len;
  }
  return out;
}

/**
 * Bytes from the CSPRNG (tweetnacl's randomBytes: node:crypto in Node, WebCrypto in browsers).
 *
 * @example
 * const seed = randomBytes(32);
 */
export function randomBytes(n: number): Uint8Array {
  return nacl.randomBytes(n);
}
