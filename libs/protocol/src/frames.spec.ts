import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  assertFinite,
  assertLength,
  decodeFrame,
  encodeFrame,
  encodeFrameInPlace,
  ErrorCode,
  FRAME_HEADER_ROOM,
  MAX_CONTROL_BYTES,
  ProtocolError,
} from './index';

const LIMIT = 1_000_000;

/** Runs `fn` and returns the ProtocolError it throws; fails the test when it throws anything else. */
function protocolErrorOf(fn: () => unknown): ProtocolError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ProtocolError);
    return e as ProtocolError;
  }
  throw new Error('expected a ProtocolError, but nothing was thrown');
}

/** A frame assembled by hand, so tests can lie about the header or the payload. */
function rawFrame(
  headerJson: string,
  payload: Uint8Array,
  opts: { headerLength?: number } = {},
): Buffer {
  const json = Buffer.from(headerJson, 'utf8');
  const offset = (8 + json.length + 7) & ~7;
  const out = Buffer.alloc(offset + payload.length);
  out.write('CFDB', 0, 'latin1');
  out.writeUInt32LE(opts.headerLength ?? json.length, 4);
  json.copy(out, 8);
  out.set(payload, offset);
  return out;
}

const bytesOf = (v: Float32Array | Uint32Array): Uint8Array =>
  new Uint8Array(v.buffer, v.byteOffset, v.byteLength);

const headerKey = fc
  .string({ maxLength: 12 })
  .filter((k) => !['dtype', 'length', '__proto__'].includes(k));
const header = fc.dictionary(headerKey, fc.jsonValue({ maxDepth: 2 }), { maxKeys: 6 });

describe('binary frames', () => {
  it('round-trip float32 vectors bit for bit (NaN payloads and -0 included) with their header', () => {
    fc.assert(
      fc.property(header, fc.float32Array({ maxLength: 300 }), (h, v) => {
        const frame = decodeFrame(encodeFrame(h, v), LIMIT);
        expect(frame.dtype).toBe('float32');
        expect(frame.vector).toBeInstanceOf(Float32Array);
        expect(bytesOf(frame.vector)).toEqual(bytesOf(v));
        expect(frame.header).toEqual({
          ...(JSON.parse(JSON.stringify(h)) as object),
          dtype: 'float32',
          length: v.length,
        });
      }),
      { numRuns: 200 },
    );
  });

  it('round-trip uint32 vectors over the whole range with their header', () => {
    fc.assert(
      fc.property(header, fc.array(fc.nat({ max: 0xffffffff }), { maxLength: 300 }), (h, xs) => {
        const v = Uint32Array.from(xs);
        const frame = decodeFrame(encodeFrame(h, v), LIMIT);
        expect(frame.dtype).toBe('uint32');
        expect(frame.vector).toBeInstanceOf(Uint32Array);
        expect(Array.from(frame.vector)).toEqual(xs);
        expect(frame.header['length']).toBe(xs.length);
      }),
      { numRuns: 200 },
    );
  });

  it('encode a vector that is a view into a larger buffer without its neighbours', () => {
    const backing = new Float32Array([9, 1, 2, 3, 9]);
    const frame = decodeFrame(encodeFrame({ id: 'x' }, backing.subarray(1, 4)), LIMIT);
    expect(Array.from(frame.vector)).toEqual([1, 2, 3]);
  });

  it('start the payload on an 8-byte boundary after zero padding, whatever the header length', () => {
    for (let n = 0; n < 24; n++) {
      const v = new Float32Array([1.5, -2.5, 3]);
      const frame = encodeFrame({ id: 'x'.repeat(n) }, v);
      const headerLength = frame.readUInt32LE(4);
      const offset = frame.length - v.byteLength;
      expect(offset % 8).toBe(0);
      expect(offset - (8 + headerLength)).toBeLessThan(8);
      expect([...frame.subarray(8 + headerLength, offset)].every((b) => b === 0)).toBe(true);
      expect(
        new Float32Array(
          frame.buffer.slice(frame.byteOffset + offset, frame.byteOffset + frame.length),
        ),
      ).toEqual(v);
    }
  });

  it('frame a vector in place with the bytes encodeFrame gives, touching only the room before it', () => {
    for (const shared of [false, true]) {
      for (let n = 0; n < 20; n++) {
        const header = { v: 1, type: 'round.update', id: 'y'.repeat(n), round: 3 };
        const length = 5 + n;
        const bytes = FRAME_HEADER_ROOM + 4 * length + 8;
        const buf = shared ? new SharedArrayBuffer(bytes) : new ArrayBuffer(bytes);
        new Uint8Array(buf).fill(0xab);
        const v = new Uint32Array(buf, FRAME_HEADER_ROOM, length);
        v.forEach((_, i) => (v[i] = Math.imul(i + 1, 2654435761) >>> 0));
        const want = encodeFrame(header, v);
        const frame = encodeFrameInPlace(header, v);
        expect(Buffer.compare(frame, want)).toBe(0);
        expect(frame.buffer).toBe(buf); // no copy of the vector
        expect(frame.byteOffset + frame.length).toBe(FRAME_HEADER_ROOM + 4 * length);
        const all = new Uint8Array(buf);
        expect(all.subarray(0, frame.byteOffset).every((b) => b === 0xab)).toBe(true);
        expect(all.subarray(FRAME_HEADER_ROOM + 4 * length).every((b) => b === 0xab)).toBe(true);
        expect(Array.from(decodeFrame(frame, LIMIT).vector)).toEqual(Array.from(v));
      }
    }
  });

  it('frame a vector by copying when its header does not fit the room, and check the room', () => {
    const buf = new ArrayBuffer(64 + 12);
    const v = new Float32Array(buf, 64, 3).fill(1.5);
    const big = { id: 'x'.repeat(100) };
    const copied = encodeFrameInPlace(big, v, 64);
    expect(copied.buffer).not.toBe(buf);
    expect(Buffer.compare(copied, encodeFrame(big, v))).toBe(0);
    expect(new Uint8Array(buf, 0, 64).every((b) => b === 0)).toBe(true); // room untouched
    const small = { id: 'x' };
    expect(encodeFrameInPlace(small, v, 64).buffer).toBe(buf);
    expect(() => encodeFrameInPlace(small, v, 65)).toThrow(RangeError);
    expect(() => encodeFrameInPlace(small, v, -1)).toThrow(RangeError);
  });

  it('decode from an unaligned view into a fresh, aligned vector that does not alias the input', () => {
    const frame = encodeFrame({ id: 'x' }, new Float32Array([1, 2, 3, 4]));
    for (const shift of [1, 2, 3, 5]) {
      const big = new Uint8Array(frame.length + shift);
      big.set(frame, shift);
      const view = big.subarray(shift);
      const { vector } = decodeFrame(view, LIMIT);
      expect(vector.byteOffset).toBe(0);
      expect(vector.buffer.byteLength).toBe(16);
      expect(Array.from(vector)).toEqual([1, 2, 3, 4]);
      view.fill(0);
      expect(Array.from(vector)).toEqual([1, 2, 3, 4]);
    }
  });

  it('accept exactly maxElements and a header of exactly MAX_CONTROL_BYTES', () => {
    expect(decodeFrame(encodeFrame({}, new Float32Array(10)), 10).vector).toHaveLength(10);
    const base = Buffer.byteLength(JSON.stringify({ id: '', dtype: 'float32', length: 1 }));
    const frame = encodeFrame({ id: 'a'.repeat(MAX_CONTROL_BYTES - base) }, new Float32Array(1));
    expect(frame.readUInt32LE(4)).toBe(MAX_CONTROL_BYTES);
    expect(decodeFrame(frame, LIMIT).vector).toHaveLength(1);
  });
});

describe('decodeFrame refuses', () => {
  const good = encodeFrame({ v: 1, type: 'round.update', id: 'u1' }, new Float32Array([1, 2, 3]));

  it('every truncation of a valid frame as MALFORMED_MESSAGE', () => {
    for (let cut = 0; cut < good.length; cut++) {
      expect(protocolErrorOf(() => decodeFrame(good.subarray(0, cut), LIMIT)).code).toBe(
        ErrorCode.MALFORMED_MESSAGE,
      );
    }
  });

  it('a frame with trailing bytes after the declared payload as MALFORMED_MESSAGE', () => {
    const longer = Buffer.concat([good, Buffer.alloc(4)]);
    const err = protocolErrorOf(() => decodeFrame(longer, LIMIT));
    expect(err.code).toBe(ErrorCode.MALFORMED_MESSAGE);
    expect(err.message).toMatch(/declares 3 elements but carries 16 payload bytes/);
  });

  it('a frame without the CFDB magic as MALFORMED_MESSAGE', () => {
    for (let i = 0; i < 4; i++) {
      const bad = Buffer.from(good);
      bad[i] = bad[i]! ^ 0x20;
      const err = protocolErrorOf(() => decodeFrame(bad, LIMIT));
      expect(err.code).toBe(ErrorCode.MALFORMED_MESSAGE);
      expect(err.message).toMatch(/magic/);
    }
    expect(protocolErrorOf(() => decodeFrame(Buffer.from('{"v":1}'), LIMIT)).code).toBe(
      ErrorCode.MALFORMED_MESSAGE,
    );
  });

  it('a header length that runs past the end of the buffer as MALFORMED_MESSAGE', () => {
    const bad = Buffer.from(good);
    bad.writeUInt32LE(good.length, 4);
    const err = protocolErrorOf(() => decodeFrame(bad, LIMIT));
    expect(err.code).toBe(ErrorCode.MALFORMED_MESSAGE);
    expect(err.message).toMatch(/shorter than its header length/);
  });

  it('a declared length that does not match the payload as MALFORMED_MESSAGE', () => {
    const payload = bytesOf(new Float32Array([1, 2, 3, 4]));
    for (const length of [0, 3, 5, 1000]) {
      const err = protocolErrorOf(() =>
        decodeFrame(rawFrame(JSON.stringify({ dtype: 'float32', length }), payload), LIMIT),
      );
      expect(err.code).toBe(ErrorCode.MALFORMED_MESSAGE);
      expect(err.message).toContain(`declares ${length} elements but carries 16 payload bytes`);
    }
  });

  it('a payload that is not a whole number of elements as MALFORMED_MESSAGE', () => {
    const frame = rawFrame(JSON.stringify({ dtype: 'uint32', length: 1 }), new Uint8Array(6));
    expect(protocolErrorOf(() => decodeFrame(frame, LIMIT)).code).toBe(ErrorCode.MALFORMED_MESSAGE);
  });

  it.each([
    ['not JSON', '{"dtype":', /not valid JSON/],
    ['a JSON array', '[1,2]', /JSON object/],
    ['JSON null', 'null', /JSON object/],
    ['an unknown dtype', '{"dtype":"float64","length":0}', /dtype/],
    ['no dtype', '{"length":0}', /dtype/],
    ['a negative length', '{"dtype":"float32","length":-1}', /length/],
    ['a fractional length', '{"dtype":"float32","length":1.5}', /length/],
    ['a string length', '{"dtype":"float32","length":"0"}', /length/],
  ])('a header that is %s as MALFORMED_MESSAGE', (_what, json, message) => {
    const err = protocolErrorOf(() => decodeFrame(rawFrame(json, new Uint8Array(0)), LIMIT));
    expect(err.code).toBe(ErrorCode.MALFORMED_MESSAGE);
    expect(err.message).toMatch(message);
  });

  it('more elements than maxElements as FRAME_TOO_LARGE', () => {
    const err = protocolErrorOf(() => decodeFrame(encodeFrame({}, new Float32Array(11)), 10));
    expect(err.code).toBe(ErrorCode.FRAME_TOO_LARGE);
    expect(err.message).toBe('frame carries 11 elements; the limit is 10');
  });

  it('a huge declared length as FRAME_TOO_LARGE before looking at the payload', () => {
    const frame = rawFrame(
      JSON.stringify({ dtype: 'float32', length: 2 ** 40 }),
      new Uint8Array(0),
    );
    expect(protocolErrorOf(() => decodeFrame(frame, LIMIT)).code).toBe(ErrorCode.FRAME_TOO_LARGE);
  });

  it('a header over MAX_CONTROL_BYTES as FRAME_TOO_LARGE', () => {
    const big = encodeFrame({ id: 'a'.repeat(MAX_CONTROL_BYTES) }, new Float32Array(1));
    const err = protocolErrorOf(() => decodeFrame(big, LIMIT));
    expect(err.code).toBe(ErrorCode.FRAME_TOO_LARGE);
    expect(err.message).toMatch(`exceeds the ${MAX_CONTROL_BYTES}-byte limit`);
  });

  it('a declared header length over MAX_CONTROL_BYTES as FRAME_TOO_LARGE even when the bytes are missing', () => {
    const lying = rawFrame('{}', new Uint8Array(0), { headerLength: 0xffffffff });
    expect(protocolErrorOf(() => decodeFrame(lying, LIMIT)).code).toBe(ErrorCode.FRAME_TOO_LARGE);
  });
});

describe('assertFinite', () => {
  it.each([
    [Number.NaN, 'NaN'],
    [Number.POSITIVE_INFINITY, 'Infinity'],
    [Number.NEGATIVE_INFINITY, '-Infinity'],
  ])('refuses %s and names the index of the first bad value', (bad, shown) => {
    const v = new Float32Array([0, 1, 2, bad, 4, bad]);
    const err = protocolErrorOf(() => assertFinite(v, 'update'));
    expect(err.code).toBe(ErrorCode.NON_FINITE_VALUES);
    expect(err.message).toBe(`update holds ${shown} at index 3; NaN and Infinity are refused`);
  });

  it('finds a bad value at the very first and the very last index', () => {
    expect(protocolErrorOf(() => assertFinite(new Float32Array([Number.NaN, 1]))).message).toMatch(
      /^vector holds NaN at index 0;/,
    );
    const v = new Float32Array(1000);
    v[999] = Number.POSITIVE_INFINITY;
    expect(protocolErrorOf(() => assertFinite(v)).message).toMatch(/at index 999;/);
  });

  it('accepts every finite float32, including -0, subnormals and the extremes', () => {
    expect(() =>
      assertFinite(new Float32Array([-0, 1e-45, -3.4028234663852886e38, 3.4028234663852886e38])),
    ).not.toThrow();
    fc.assert(
      fc.property(fc.float32Array({ noDefaultInfinity: true, noNaN: true }), (v) => {
        assertFinite(v);
      }),
    );
  });
});

describe('assertLength', () => {
  it('refuses a vector of another length with WRONG_VECTOR_LENGTH naming both lengths', () => {
    for (const n of [0, 4, 6]) {
      const err = protocolErrorOf(() => assertLength(new Float32Array(n), 5, 'update'));
      expect(err.code).toBe(ErrorCode.WRONG_VECTOR_LENGTH);
      expect(err.message).toBe(`update has ${n} elements; the model has 5 parameters`);
    }
  });

  it('accepts a vector (or array) of exactly the expected length', () => {
    expect(() => assertLength(new Float32Array(5), 5)).not.toThrow();
    expect(() => assertLength([1, 2], 2)).not.toThrow();
  });
});
