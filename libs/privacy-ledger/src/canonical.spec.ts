import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalJson, LedgerError, LedgerErrorCode, sha256Hex } from './index';

describe('canonical JSON', () => {
  it('matches the RFC 8785 (JCS) example of section 3.2.3', () => {
    const input = String.raw`{"numbers":[333333333.33333329,1E30,4.50,2e-3,0.000000000000000000000000001],"string":"\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/","literals":[null,true,false]}`;
    expect(canonicalJson(JSON.parse(input))).toBe(
      String.raw`{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}`,
    );
  });

  it('sorts keys by UTF-16 code units at every depth and writes no whitespace', () => {
    expect(canonicalJson({ b: 1, a: [true, null, 'x'], A: { z: 0, y: [] }, é: 2 })).toBe(
      '{"A":{"y":[],"z":0},"a":[true,null,"x"],"b":1,"é":2}',
    );
  });

  it('writes every finite double so that it reads back exactly', () => {
    fc.assert(
      fc.property(fc.double({ noNaN: true, noDefaultInfinity: true }), (x) => {
        fc.pre(!Object.is(x, -0));
        expect(JSON.parse(canonicalJson([x]))).toEqual([x]);
      }),
    );
  });

  it.each([
    ['NaN', NaN],
    ['Infinity', Infinity],
    ['-0', -0],
    ['undefined', { a: undefined }],
    ['a lone surrogate', '\uD800x'],
    ['a bigint', 1n],
  ])('refuses %s', (_name, value) => {
    expect(() => canonicalJson(value)).toThrow(LedgerError);
    try {
      canonicalJson(value);
    } catch (err) {
      expect((err as LedgerError).code).toBe(LedgerErrorCode.NOT_CANONICAL);
    }
  });

  it('hashes with SHA-256 in lower-case hex', () => {
    expect(sha256Hex('abc')).toBe(
      'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    );
  });
});
