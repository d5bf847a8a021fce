import { createCipheriv } from 'node:crypto';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { aes256Ctr, CHUNK_ELEMENTS, expandMaskInto, MaskAccumulator, maskStreamKey } from './prg';
import { resetSimdForTests, simdModule } from './simd';

const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const bytes32 = fc.uint8Array({ minLength: 32, maxLength: 32 });

describe('AES-256-CTR', () => {
  it('matches NIST SP 800-38A F.5.5 (CTR-AES256.Encrypt)', () => {
    const key = hex('603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4');
    const iv = hex('f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff');
    const plaintext = hex(
      '6bc1bee22e409f96e93d7e117393172a ae2d8a571e03ac9c9eb76fac45af8e51' +
        '30c81c46a35ce411e5fbc1191a0a52ef f69f2445df4f9b17ad2b417be66c3710',
    );
    expect(toHex(aes256Ctr(key, iv, plaintext))).toBe(
      '601ec313775789a5b7a7f504bbf3d228' +
        'f443e3ca4d62b59aca84e990cacaf5c5' +
        '2b0930daa23de94ce87017ba2d84988d' +
        'dfc9c58db67aada613c2dd08457941a6',
    );
  });
});

describe('mask PRG', () => {
  afterEach(() => {
    delete process.env['CONFIDE_SECAGG_NO_SIMD'];
    resetSimdForTests();
  });

  it('is AES-256-CTR from a zero counter under the HKDF key, read as little-endian uint32', () => {
    const seed = new Uint8Array(32).fill(7);
    const sessionId = new Uint8Array(32).fill(9);
    const acc = new Uint32Array(9);
    expandMaskInto(acc, seed, sessionId, 'update', 1);
    const key = maskStreamKey(seed, sessionId, 'update');
    const ks = createCipheriv('aes-256-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(36));
    const expected = Array.from({ length: 9 }, (_, i) => ks.readUInt32LE(4 * i));
    expect(Array.from(acc)).toEqual(expected);
  });

  it('cancels: adding then subtracting a mask restores the vector', () => {
    fc.assert(
      fc.property(
        fc.uint32Array({ minLength: 1, maxLength: 300 }),
        bytes32,
        bytes32,
        (x, seed, sid) => {
          const y = Uint32Array.from(x);
          expandMaskInto(y, seed, sid, 'update', 1);
          expandMaskInto(y, seed, sid, 'update', -1);
          expect(y).toEqual(x);
        },
      ),
      { numRuns: 50 },
    );
  });

  it('gives a stream whose slice at an offset equals the stream read from that offset', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 40 }),
        fc.integer({ min: 1, max: 40 }),
        bytes32,
        (offset, len, seed) => {
          const sid = new Uint8Array(32).fill(1);
          const whole = new Uint32Array(offset + len);
          expandMaskInto(whole, seed, sid, 't', 1);
          const part = new Uint32Array(len);
          expandMaskInto(part, seed, sid, 't', 1, offset);
          expect(part).toEqual(whole.subarray(offset));
        },
      ),
      { numRuns: 60 },
    );
  });

  it('depends on the seed, the session id and the tensor id', () => {
    const seed = new Uint8Array(32).fill(3);
    const sid = new Uint8Array(32).fill(4);
    const mask = (s: Uint8Array, i: Uint8Array, t: string): Uint32Array => {
      const a = new Uint32Array(8);
      expandMaskInto(a, s, i, t, 1);
      return a;
    };
    const base = mask(seed, sid, 'a');
    expect(mask(new Uint8Array(32).fill(5), sid, 'a')).not.toEqual(base);
    expect(mask(seed, new Uint8Array(32).fill(6), 'a')).not.toEqual(base);
    expect(mask(seed, sid, 'b')).not.toEqual(base);
  });

  it('runs the WebAssembly SIMD kernels on this host', () => {
    expect(simdModule()).not.toBeNull();
    expect(new MaskAccumulator(4).simd).toBe(true);
  });

  it('gives the same result with the SIMD accumulator, the JavaScript accumulator and expandMaskInto', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 2 * CHUNK_ELEMENTS + 7 }),
        fc.array(fc.tuple(bytes32, fc.constantFrom<1 | -1>(1, -1)), { minLength: 1, maxLength: 4 }),
        bytes32,
        (length, streams, sid) => {
          const x = Uint32Array.from({ length }, (_, i) => (i * 2654435761) >>> 0);
          const simd = new MaskAccumulator(length);
          const js = new MaskAccumulator(length, { simd: false });
          const ref = Uint32Array.from(x);
          simd.addVector(x);
          js.addVector(x);
          for (const [seed, sign] of streams) {
            simd.addMask(seed, sid, 'update', sign);
            js.addMask(seed, sid, 'update', sign);
            expandMaskInto(ref, seed, sid, 'update', sign);
          }
          expect(js.simd).toBe(false);
          expect(simd.read()).toEqual(ref);
          expect(js.read()).toEqual(ref);
          simd.addVector(x, -1);
          js.addVector(x, -1);
          expect(simd.read()).toEqual(js.read());
        },
      ),
      { numRuns: 12 },
    );
  });

  it('adds many streams chunk by chunk exactly as one stream after another', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 2 * CHUNK_ELEMENTS + 7 }),
        fc.array(fc.tuple(bytes32, fc.constantFrom<1 | -1>(1, -1)), { minLength: 0, maxLength: 5 }),
        fc.integer({ min: 0, max: 9 }),
        fc.boolean(),
        (length, streams, offset, simd) => {
          const x = Uint32Array.from({ length }, (_, i) => (i * 2654435761) >>> 0);
          const ref = new MaskAccumulator(length, { simd });
          ref.addVector(x);
          for (const [key, sign] of streams) ref.addStream(key, sign, offset);
          const acc = new MaskAccumulator(length, { simd });
          const starts: number[] = [];
          acc.addStreams(
            streams.map(([key, sign]) => ({ key, sign })),
            (chunk, start) => {
              starts.push(start);
              chunk.set(x.subarray(start, start + chunk.length));
            },
            offset,
          );
          expect(acc.simd).toBe(simd);
          expect(Buffer.from(acc.read().buffer).equals(Buffer.from(ref.read().buffer))).toBe(true);
          expect(starts).toEqual(
            Array.from(
              { length: Math.ceil(length / CHUNK_ELEMENTS) },
              (_, i) => i * CHUNK_ELEMENTS,
            ),
          );
        },
      ),
      { numRuns: 16 },
    );
    expect(() => new MaskAccumulator(4).addStreams([{ key: new Uint8Array(31), sign: 1 }])).toThrow(
      /AES-256 key/,
    );
  });

  it('falls back to JavaScript when SIMD is disabled', () => {
    process.env['CONFIDE_SECAGG_NO_SIMD'] = '1';
    resetSimdForTests();
    expect(simdModule()).toBeNull();
    const acc = new MaskAccumulator(5);
    expect(acc.simd).toBe(false);
    acc.addVector(Uint32Array.of(1, 2, 3, 4, 0xffffffff));
    acc.addVector(Uint32Array.of(1, 1, 1, 1, 1));
    expect(Array.from(acc.read())).toEqual([2, 3, 4, 5, 0]);
  });

  it('wipes its memory', () => {
    const acc = new MaskAccumulator(10);
    acc.addMask(new Uint8Array(32).fill(1), new Uint8Array(32).fill(2), 'u', 1);
    expect(acc.read().some((v) => v !== 0)).toBe(true);
    acc.wipe();
    expect(acc.read().every((v) => v === 0)).toBe(true);
    acc.destroy();
    expect(() => acc.read()).toThrow();
    // Destroyed accumulators hand their zeroed memory to the next ones: a reused memory reads zero.
    const lengths = [3 * CHUNK_ELEMENTS + 5, 1000, 3 * CHUNK_ELEMENTS + 5, 7];
    for (const length of lengths) {
      const a = new MaskAccumulator(length);
      expect(a.read().every((v) => v === 0)).toBe(true);
      a.addMask(new Uint8Array(32).fill(3), new Uint8Array(32).fill(4), 'u', 1);
      a.destroy();
    }
  });

  it('checks its inputs', () => {
    const acc = new Uint32Array(4);
    const sid = new Uint8Array(32);
    expect(() => expandMaskInto(acc, new Uint8Array(31), sid, 'u', 1)).toThrow(/mask seed/);
    expect(() => expandMaskInto(acc, new Uint8Array(32), new Uint8Array(3), 'u', 1)).toThrow(
      /session id/,
    );
    expect(() => expandMaskInto(acc, new Uint8Array(32), sid, '', 1)).toThrow(/tensor id/);
    expect(() => expandMaskInto(acc, new Uint8Array(32), sid, 'u', 2 as 1)).toThrow(/sign/);
    expect(() => expandMaskInto(acc, new Uint8Array(32), sid, 'u', 1, -1)).toThrow(/offset/);
    expect(() => new MaskAccumulator(0)).toThrow(/length/);
    expect(() => new MaskAccumulator(3).addVector(new Uint32Array(4))).toThrow(/length 3/);
    expect(() => new MaskAccumulator(3).readInto(new Uint32Array(4))).toThrow(/length 3/);
  });

  it('reads its value into memory the caller gives, shared memory included', () => {
    for (const simd of [true, false]) {
      const acc = new MaskAccumulator(CHUNK_ELEMENTS + 3, { simd });
      acc.addMask(new Uint8Array(32).fill(5), new Uint8Array(32).fill(6), 'u', 1);
      const out = new Uint32Array(new SharedArrayBuffer(4 * acc.length));
      acc.readInto(out);
      // The reference: the same mask added by expandMaskInto into zeros.
      const want = new Uint32Array(acc.length);
      expandMaskInto(want, new Uint8Array(32).fill(5), new Uint8Array(32).fill(6), 'u', 1);
      expect(Buffer.from(out.buffer).equals(Buffer.from(want.buffer))).toBe(true);
      expect(out.some((v) => v !== 0)).toBe(true);
      acc.destroy();
    }
  });
});
