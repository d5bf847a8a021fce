import { describe, expect, it } from 'vitest';
import { DDTwiddles, ddAdd, ddMul } from './dd';
import { ddComplexPow, dftDDAt, inverseRealFft, realFft, realFftDDAt } from './fft';
import { seededRandomSource } from './test-support';

/** Deterministic uniforms in [0, 1) from the test CSPRNG. */
function uniforms(n: number, seed: string): Float64Array {
  const words = new Uint32Array(n);
  seededRandomSource(seed).fill(words);
  return Float64Array.from(words, (w) => w / 2 ** 32);
}

/** Naive DFT in double, X_k for k = 0..n/2. */
function naiveDft(x: Float64Array, n: number): { re: number[]; im: number[] } {
  const re: number[] = [];
  const im: number[] = [];
  for (let k = 0; k <= n / 2; k++) {
    let r = 0;
    let i = 0;
    for (let j = 0; j < x.length; j++) {
      const a = (-2 * Math.PI * ((j * k) % n)) / n;
      r += x[j]! * Math.cos(a);
      i += x[j]! * Math.sin(a);
    }
    re.push(r);
    im.push(i);
  }
  return { re, im };
}

const SCALE = 2n ** 200n;

/** z^n in 200-bit fixed point with BigInt: a reference for the double-double power. */
function bigPow(re: number, im: number, n: number): [number, number] {
  // Exact for |x| >= 2^-47: x * 2^100 is then an integer.
  const fix = (x: number): bigint => BigInt(Math.round(x * 2 ** 100)) * 2n ** 100n;
  const mul = (a: [bigint, bigint], b: [bigint, bigint]): [bigint, bigint] => [
    (a[0] * b[0] - a[1] * b[1]) / SCALE,
    (a[0] * b[1] + a[1] * b[0]) / SCALE,
  ];
  let y: [bigint, bigint] = [SCALE, 0n];
  let b: [bigint, bigint] = [fix(re), fix(im)];
  for (let m = n; m > 0; m = Math.floor(m / 2)) {
    if (m % 2 === 1) y = mul(y, b);
    b = mul(b, b);
  }
  const toNumber = (v: bigint): number => Number((v * 2n ** 60n) / SCALE) / 2 ** 60;
  return [toNumber(y[0]), toNumber(y[1])];
}

describe('real FFTs', () => {
  it('realFft matches a direct DFT and inverseRealFft inverts it', () => {
    for (const [len, n] of [
      [5, 8],
      [100, 128],
      [1000, 4096],
    ] as const) {
      const x = uniforms(len, `fft-${n}`);
      const got = realFft(x, n);
      const want = naiveDft(x, n);
      for (let k = 0; k <= n / 2; k++) {
        expect(Math.abs(got.re[k]! - want.re[k]!)).toBeLessThan(1e-12 * len);
        expect(Math.abs(got.im[k]! - want.im[k]!)).toBeLessThan(1e-12 * len);
      }
      const back = inverseRealFft(got.re, got.im, n);
      for (let j = 0; j < n; j++) {
        expect(Math.abs(back[j]! - (j < len ? x[j]! : 0))).toBeLessThan(1e-14);
      }
    }
  });

  it('refuses lengths that are not powers of two', () => {
    expect(() => realFft(new Float64Array(3), 6)).toThrow(RangeError);
    expect(() => inverseRealFft(new Float64Array(4), new Float64Array(4), 8)).toThrow(RangeError);
  });
});

describe('double-double transforms', () => {
  it('twiddles lie on the unit circle to ~1e-31 and agree with Math.cos/sin', () => {
    const tw = new DDTwiddles(1 << 12);
    const t = new Float64Array(4);
    for (const j of [0, 1, 7, 512, 1000, 2047, 3000, 4095]) {
      tw.at(j, t);
      const c = { hi: t[0]!, lo: t[1]! };
      const s = { hi: t[2]!, lo: t[3]! };
      const c2 = ddMul(c, c);
      const s2 = ddMul(s, s);
      const err = ddAdd(ddAdd(c2, s2), { hi: -1, lo: 0 });
      expect(Math.abs(err.hi)).toBeLessThan(1e-30);
      expect(Math.abs(t[0]! - Math.cos((2 * Math.PI * j) / 4096))).toBeLessThan(1e-15);
      expect(Math.abs(t[2]! - Math.sin((2 * Math.PI * j) / 4096))).toBeLessThan(1e-15);
    }
  });

  it('direct sums and the double-double FFT agree to ~1e-28 and with the double FFT', () => {
    const n = 1 << 11;
    const x = uniforms(700, 'dd-dft');
    const tw = new DDTwiddles(n);
    const ks = [0, 1, 2, 3, 17, 255, 511, 1000, 1023, 1024];
    const a = dftDDAt(x, tw, ks);
    const b = realFftDDAt(x, tw, ks);
    const d = realFft(x, n);
    ks.forEach((k, q) => {
      const reA = a.reHi[q]! + a.reLo[q]!;
      expect(Math.abs(a.reHi[q]! - b.reHi[q]! + (a.reLo[q]! - b.reLo[q]!))).toBeLessThan(1e-25);
      expect(Math.abs(a.imHi[q]! - b.imHi[q]! + (a.imLo[q]! - b.imLo[q]!))).toBeLessThan(1e-25);
      expect(Math.abs(reA - d.re[k]!)).toBeLessThan(1e-12);
    });
  });

  it('raises to the power 10^6 with ~1e-15 relative error, where double loses ~1e-10', () => {
    const out = new Float64Array(2);
    const words = uniforms(8, 'dd-pow');
    for (let i = 0; i < 4; i++) {
      const r = 1 - words[2 * i]! * 1e-5;
      const th = (words[2 * i + 1]! - 0.5) * 6;
      const re = r * Math.cos(th);
      const im = r * Math.sin(th);
      const n = 1_000_000;
      ddComplexPow(re, 0, im, 0, n, out);
      const [wr, wi] = bigPow(re, im, n);
      const mod = Math.hypot(wr, wi);
      expect(Math.hypot(out[0]! - wr, out[1]! - wi) / mod).toBeLessThan(1e-14);
    }
  });
});
