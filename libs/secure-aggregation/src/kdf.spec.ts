import { hkdfSync } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { hkdfSha256, sha256 } from './kdf';

const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const range = (from: number, to: number): Uint8Array =>
  Uint8Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe('HKDF-SHA256', () => {
  // RFC 5869, appendix A, test cases 1-3 (SHA-256).
  it('matches RFC 5869 test case 1', () => {
    const okm = hkdfSha256(
      hex('0b'.repeat(22)),
      hex('000102030405060708090a0b0c'),
      hex('f0f1f2f3f4f5f6f7f8f9'),
      42,
    );
    expect(toHex(okm)).toBe(
      '3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865',
    );
  });

  it('matches RFC 5869 test case 2 (long inputs, 82-byte output)', () => {
    const okm = hkdfSha256(range(0x00, 0x4f), range(0x60, 0xaf), range(0xb0, 0xff), 82);
    expect(toHex(okm)).toBe(
      'b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c' +
        '59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71' +
        'cc30c58179ec3e87c14c01d5c1f3434f1d87',
    );
  });

  it('matches RFC 5869 test case 3 (empty salt and info)', () => {
    const okm = hkdfSha256(hex('0b'.repeat(22)), new Uint8Array(0), new Uint8Array(0), 42);
    expect(toHex(okm)).toBe(
      '8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8',
    );
  });

  it('agrees with node:crypto hkdfSync on random inputs', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 80 }),
        fc.uint8Array({ maxLength: 80 }),
        fc.uint8Array({ maxLength: 80 }),
        fc.integer({ min: 1, max: 200 }),
        (ikm, salt, info, length) => {
          const expected = new Uint8Array(hkdfSync('sha256', ikm, salt, info, length));
          expect(hkdfSha256(ikm, salt, info, length)).toEqual(expected);
        },
      ),
      { numRuns: 100 },
    );
  });

  it('refuses impossible output lengths', () => {
    expect(() => hkdfSha256(new Uint8Array(1), new Uint8Array(0), new Uint8Array(0), 0)).toThrow(
      /HKDF length/,
    );
    expect(() => hkdfSha256(new Uint8Array(1), new Uint8Array(0), new Uint8Array(0), 8161)).toThrow(
      /HKDF length/,
    );
  });
});

describe('SHA-256', () => {
  it('hashes "abc" to the FIPS 180-2 value', () => {
    expect(toHex(sha256(new TextEncoder().encode('abc')))).toBe(
      'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    );
  });
});
