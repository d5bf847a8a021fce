import { createHash } from 'node:crypto';

/** Standard base64 of bytes (for keys, nonces and signatures in JSON). */
export function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

/** Bytes of a standard base64 string; throws when the text is not canonical base64 of `expectedLength` bytes. */
export function fromBase64(text: string, expectedLength?: number): Uint8Array {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) {
    throw new Error('not valid base64');
  }
  const bytes = new Uint8Array(Buffer.from(text, 'base64'));
  // Non-zero padding bits would give a second spelling of the same bytes (a malleable signature).
  if (toBase64(bytes) !== text) throw new Error('not valid base64 (non-canonical encoding)');
  if (expectedLength !== undefined && bytes.length !== expectedLength) {
    throw new Error(`expected ${expectedLength} bytes, got ${bytes.length}`);
  }
  return bytes;
}

/** Lower-case hex SHA-256 of bytes, used as model hashes. */
export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** The bytes of a Float32Array in little-endian order (the wire and storage format). */
export function float32ToBytes(v: Float32Array): Uint8Array {
  if (!IS_LITTLE_ENDIAN) throw new Error('big-endian hosts are not supported');
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

/** A fresh, aligned Float32Array read from little-endian bytes. */
export function bytesToFloat32(bytes: Uint8Array): Float32Array {
  if (bytes.byteLength % 4 !== 0) throw new Error('byte length is not a multiple of 4');
  const out = new Float32Array(bytes.byteLength / 4);
  new Uint8Array(out.buffer).set(bytes);
  return out;
}

const IS_LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
