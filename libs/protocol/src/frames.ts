import { ErrorCode, ProtocolError } from './errors';
import { MAX_CONTROL_BYTES } from './messages';

/** Element types a binary frame can carry. */
export type FrameDType = 'float32' | 'uint32';

const MAGIC = 0x42444643; // 'CFDB' read as little-endian u32
const PREFIX = 8;

/** A decoded binary frame: its JSON header (an envelope, not yet validated) and its raw payload. */
export interface DecodedFrame {
  header: Record<string, unknown>;
  dtype: FrameDType;
  /**
   * A view on the frame's own bytes when the payload is 4-byte aligned in memory (no copy), else an
   * aligned copy. Either way it aliases nothing but the frame: do not reuse the frame's buffer.
   */
  vector: Float32Array | Uint32Array;
}

const pad8 = (n: number): number => (n + 7) & ~7;

/**
 * Encodes an envelope and a vector as one binary frame:
 * `'CFDB' | u32 LE header length | header JSON | zero padding to 8 | little-endian elements`.
 * @example encodeFrame({ v: 1, type: 'round.update', id: 'x' }, new Float32Array([1, 2]))
 */
export function encodeFrame(header: object, vector: Float32Array | Uint32Array): Buffer {
  const json = headerJson(header, vector);
  const payloadOffset = pad8(PREFIX + json.length);
  const out = Buffer.allocUnsafe(payloadOffset + vector.byteLength);
  writeFrameHead(out, json, payloadOffset);
  Buffer.from(vector.buffer, vector.byteOffset, vector.byteLength).copy(out, payloadOffset);
  return out;
}

/**
 * Bytes to leave free just before a vector that encodeFrameInPlace will frame: room for a header of
 * up to 16 KiB (an update's header, receipt included, is well under 4 KiB).
 */
export const FRAME_HEADER_ROOM = 16 * 1024;

/**
 * encodeFrame without copying the vector (4 MB for 1M parameters): the prefix, header and padding
 * are written into the bytes just before `vector` in its buffer, which the caller left free for
 * this (FRAME_HEADER_ROOM of them, or `room`), and the frame is returned as a view of that buffer.
 * Bytes of the buffer outside the room and the vector are not touched. Falls back to encodeFrame (a
 * copy) when the header does not fit the room. Same bytes as encodeFrame.
 *
 * @example
 * const buf = new ArrayBuffer(FRAME_HEADER_ROOM + 4 * n);
 * const v = new Uint32Array(buf, FRAME_HEADER_ROOM, n); // ... fill v ...
 * ws.send(encodeFrameInPlace(header, v));
 */
export function encodeFrameInPlace(
  header: object,
  vector: Float32Array | Uint32Array,
  room: number = FRAME_HEADER_ROOM,
): Buffer {
  if (!Number.isSafeInteger(room) || room < 0 || room > vector.byteOffset) {
    throw new RangeError(
      `room must be an integer in [0, ${vector.byteOffset}] (bytes before the vector)`,
    );
  }
  const json = headerJson(header, vector);
  const payloadOffset = pad8(PREFIX + json.length);
  if (payloadOffset > room) return encodeFrame(header, vector);
  const start = vector.byteOffset - payloadOffset;
  const out = Buffer.from(vector.buffer, start, payloadOffset + vector.byteLength);
  writeFrameHead(out, json, payloadOffset);
  return out;
}

/**
 * The header a frame of `vector` carries: the envelope with the payload's dtype and length (what a
 * signature over the header must cover).
 * @example frameHeader({ v: 2, type: 'round.train', id: 'x' }, new Float32Array(3)) // { ..., dtype: 'float32', length: 3 }
 */
export function frameHeader(
  header: object,
  vector: Float32Array | Uint32Array,
): Record<string, unknown> {
  const dtype: FrameDType = vector instanceof Float32Array ? 'float32' : 'uint32';
  return { ...header, dtype, length: vector.length };
}

function headerJson(header: object, vector: Float32Array | Uint32Array): Buffer {
  return Buffer.from(JSON.stringify(frameHeader(header, vector)), 'utf8');
}

/** Writes the magic, the header length, the header and the zero padding before the payload. */
function writeFrameHead(out: Buffer, json: Buffer, payloadOffset: number): void {
  out.writeUInt32LE(MAGIC, 0);
  out.writeUInt32LE(json.length, 4);
  json.copy(out, PREFIX);
  out.fill(0, PREFIX + json.length, payloadOffset);
}

/**
 * Decodes a binary frame, checking its framing and the header's declared length against the bytes.
 * `maxElements` bounds the payload (FRAME_TOO_LARGE above it).
 */
export function decodeFrame(data: Uint8Array, maxElements: number): DecodedFrame {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (buf.length < PREFIX || buf.readUInt32LE(0) !== MAGIC) {
    throw new ProtocolError(
      ErrorCode.MALFORMED_MESSAGE,
      'binary frame does not start with the CFDB magic',
    );
  }
  const headerLength = buf.readUInt32LE(4);
  if (headerLength > MAX_CONTROL_BYTES) {
    throw new ProtocolError(
      ErrorCode.FRAME_TOO_LARGE,
      `frame header of ${headerLength} bytes exceeds the ${MAX_CONTROL_BYTES}-byte limit`,
    );
  }
  if (PREFIX + headerLength > buf.length) {
    throw new ProtocolError(
      ErrorCode.MALFORMED_MESSAGE,
      'binary frame is shorter than its header length',
    );
  }
  let header: unknown;
  try {
    header = JSON.parse(buf.toString('utf8', PREFIX, PREFIX + headerLength));
  } catch {
    throw new ProtocolError(ErrorCode.MALFORMED_MESSAGE, 'binary frame header is not valid JSON');
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw new ProtocolError(
      ErrorCode.MALFORMED_MESSAGE,
      'binary frame header must be a JSON object',
    );
  }
  const h = header as Record<string, unknown>;
  const dtype = h['dtype'];
  const length = h['length'];
  if (dtype !== 'float32' && dtype !== 'uint32') {
    throw new ProtocolError(
      ErrorCode.MALFORMED_MESSAGE,
      'binary frame dtype must be float32 or uint32',
    );
  }
  if (typeof length !== 'number' || !Number.isInteger(length) || length < 0) {
    throw new ProtocolError(
      ErrorCode.MALFORMED_MESSAGE,
      'binary frame length must be a non-negative integer',
    );
  }
  if (length > maxElements) {
    throw new ProtocolError(
      ErrorCode.FRAME_TOO_LARGE,
      `frame carries ${length} elements; the limit is ${maxElements}`,
    );
  }
  const offset = pad8(PREFIX + headerLength);
  if (buf.length - offset !== length * 4) {
    throw new ProtocolError(
      ErrorCode.MALFORMED_MESSAGE,
      `binary frame declares ${length} elements but carries ${Math.max(0, buf.length - offset)} payload bytes`,
    );
  }
  // A view on the received bytes when they are 4-byte aligned (as a freshly received frame is): no
  // copy of a vector that can be hundreds of MB; otherwise an aligned copy.
  const at = buf.byteOffset + offset;
  if (at % 4 === 0) {
    const vector =
      dtype === 'float32'
        ? new Float32Array(buf.buffer, at, length)
        : new Uint32Array(buf.buffer, at, length);
    return { header: h, dtype, vector };
  }
  const vector = dtype === 'float32' ? new Float32Array(length) : new Uint32Array(length);
  new Uint8Array(vector.buffer).set(buf.subarray(offset));
  return { header: h, dtype, vector };
}

/** Throws NON_FINITE_VALUES naming the first bad index when `v` holds NaN or ±Infinity. */
export function assertFinite(v: Float32Array, what = 'vector'): void {
  squaredNorm(v, what);
}

/**
 * The squared L2 norm of `v` in float64, or NON_FINITE_VALUES naming the first NaN or Infinity: one
 * pass serves both checks, since the float64 sum of squares of float32 values is finite exactly when
 * every value is (the largest float32 squared, times any length a frame can have, is far from the
 * float64 limit).
 */
export function squaredNorm(v: Float32Array, what = 'vector'): number {
  let sq = 0;
  for (let i = 0; i < v.length; i++) {
    const x = v[i]!;
    sq += x * x;
  }
  if (Number.isFinite(sq)) return sq;
  for (let i = 0; i < v.length; i++) {
    if (!Number.isFinite(v[i])) {
      throw new ProtocolError(
        ErrorCode.NON_FINITE_VALUES,
        `${what} holds ${String(v[i])} at index ${i}; NaN and Infinity are refused`,
      );
    }
  }
  return sq;
}

/** Throws WRONG_VECTOR_LENGTH unless `v` has exactly `expected` elements. */
export function assertLength(v: ArrayLike<number>, expected: number, what = 'vector'): void {
  if (v.length !== expected) {
    throw new ProtocolError(
      ErrorCode.WRONG_VECTOR_LENGTH,
      `${what} has ${v.length} elements; the model has ${expected} parameters`,
    );
  }
}

/** The most elements a peer accepts in one frame by default (512 MiB of float32). */
export const parameterLimit = 128 * 1024 * 1024;
