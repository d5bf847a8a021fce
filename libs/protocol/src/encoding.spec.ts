import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bytesToFloat32, float32ToBytes, fromBase64, sha256Hex, toBase64 } from './index';

describe('base64', () => {
  it('round-trips any bytes, including views into larger buffers', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), fc.nat({ max: 5 }), (bytes, shift) => {
        const backing = new Uint8Array(bytes.length + shift + 3);
        backing.set(bytes, shift);
        const view = backing.subarray(shift, shift + bytes.length);
        expect(toBase64(view)).toBe(Buffer.from(bytes).toString('base64'));
        expect(fromBase64(toBase64(view), bytes.length)).toEqual(bytes);
      }),
    );
  });

  it.each([
    ['missing padding', 'QQ'],
    ['too much padding', 'QQ==='],
    ['padding in the middle', 'QQ==QQ=='],
    ['whitespace', 'QUJD\nREVG'],
    ['a space', 'QUJD REVG'],
    ['the URL-safe alphabet', 'a-_b'],
    ['a length that is not a multiple of 4', 'QUJDR'],
    ['non-ASCII letters', 'QUJé'],
  ])('fromBase64 rejects non-canonical input: %s', (_what, text) => {
    expect(() => fromBase64(text)).toThrow('not valid base64');
  });

  // Buffer ignores non-zero padding bits ('QR==' and 'QQ==' decode alike); fromBase64 must not.
  it('fromBase64 rejects non-canonical input: non-zero padding bits', () => {
    expect(() => fromBase64('QR==')).toThrow('not valid base64');
  });

  it('fromBase64 rejects a wrong length with both lengths in the message', () => {
    expect(() => fromBase64(toBase64(new Uint8Array(31)), 32)).toThrow('expected 32 bytes, got 31');
    expect(() => fromBase64(toBase64(new Uint8Array(33)), 32)).toThrow('expected 32 bytes, got 33');
    expect(() => fromBase64('', 1)).toThrow('expected 1 bytes, got 0');
    expect(fromBase64('')).toEqual(new Uint8Array(0));
  });
});

describe('float32 bytes', () => {
  it('round-trip bit for bit through little-endian bytes, from any alignment', () => {
    fc.assert(
      fc.property(fc.float32Array({ maxLength: 64 }), fc.nat({ max: 3 }), (v, shift) => {
        const bytes = float32ToBytes(v);
        expect(bytes.byteLength).toBe(v.byteLength);
        const unaligned = new Uint8Array(bytes.length + shift).subarray(shift);
        unaligned.set(bytes);
        const back = bytesToFloat32(unaligned);
        expect(back.byteOffset).toBe(0);
        expect(new Uint8Array(back.buffer)).toEqual(bytes);
      }),
    );
  });

  it('are little-endian on the wire', () => {
    expect([...float32ToBytes(new Float32Array([1]))]).toEqual([0x00, 0x00, 0x80, 0x3f]);
  });

  it('refuse a byte length that is not a multiple of 4', () => {
    expect(() => bytesToFloat32(new Uint8Array(6))).toThrow('byte length is not a multiple of 4');
  });
});

describe('sha256Hex', () => {
  it('matches the FIPS 180-2 test vectors', () => {
    expect(sha256Hex(new Uint8Array(0))).toBe(
      'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    );
    expect(sha256Hex(new TextEncoder().encode('abc'))).toBe(
      'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    );
  });
});
