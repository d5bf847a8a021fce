/**
 * Double-double arithmetic (a value as hi + lo, about 106 bits) for the PLD accountant's FFT
 * power: raising a transform to the power 10^6 multiplies its relative rounding errors by 10^6,
 * so the transform and the power are computed with ~1e-32 relative error (see pld.ts, fft.ts).
 *
 * The primitives are Dekker's and Knuth's error-free transformations (T. J. Dekker, "A
 * floating-point technique for extending the available precision", Numer. Math. 18 (1971); Y. Hida,
 * X. S. Li, D. H. Bailey, "Library for double-double and quad-double arithmetic", 2000). JS has no
 * fused multiply-add, so products split their factors (Veltkamp's splitter 2^27 + 1).
 */

const SPLITTER = 134217729; // 2^27 + 1

/** The rounding error of a * b, given p = fl(a * b): a * b = p + twoProdErr(a, b, p) exactly. */
export function twoProdErr(a: number, b: number, p: number): number {
  let t = SPLITTER * a;
  const ah = t - (t - a);
  const al = a - ah;
  t = SPLITTER * b;
  const bh = t - (t - b);
  const bl = b - bh;
  return ah * bh - p + ah * bl + al * bh + al * bl;
}

/** A double-double value hi + lo, |lo| <= ulp(hi) / 2. */
export interface DD {
  hi: number;
  lo: number;
}

export function ddAdd(a: DD, b: DD): DD {
  const s = a.hi + b.hi;
  const bb = s - a.hi;
  let e = a.hi - (s - bb) + (b.hi - bb);
  const t = a.lo + b.lo;
  const bb2 = t - a.lo;
  const f = a.lo - (t - bb2) + (b.lo - bb2);
  e += t;
  let hi = s + e;
  let lo = e - (hi - s);
  lo += f;
  const h2 = hi + lo;
  lo = lo - (h2 - hi);
  hi = h2;
  return { hi, lo };
}

export function ddMul(a: DD, b: DD): DD {
  const p = a.hi * b.hi;
  let e = twoProdErr(a.hi, b.hi, p);
  e += a.hi * b.lo + a.lo * b.hi;
  const hi = p + e;
  return { hi, lo: e - (hi - p) };
}

export function ddNeg(a: DD): DD {
  return { hi: -a.hi, lo: -a.lo };
}

/** The double-double nearest to num / den (exact rationals, den > 0). */
export function ddFromRational(num: bigint, den: bigint): DD {
  const hi = nearestDouble(num, den);
  const [m, e] = binary(hi);
  // rest = num/den - m * 2^e
  const restNum = e >= 0 ? num - den * (m << BigInt(e)) : (num << BigInt(-e)) - den * m;
  const restDen = e >= 0 ? den : den << BigInt(-e);
  return { hi, lo: restNum === 0n ? 0 : nearestDouble(restNum, restDen) };
}

/** The double nearest to num / den (round half to even). */
function nearestDouble(num: bigint, den: bigint): number {
  if (num === 0n) return 0;
  const neg = num < 0n;
  const n = neg ? -num : num;
  // Scale so the integer quotient has 53 bits (or 54, then drop one).
  let shift = 53 - (n.toString(2).length - den.toString(2).length);
  let q = (n << BigInt(Math.max(shift, 0))) / (den << BigInt(Math.max(-shift, 0)));
  while (q.toString(2).length < 53) {
    shift += 1;
    q = (n << BigInt(Math.max(shift, 0))) / (den << BigInt(Math.max(-shift, 0)));
  }
  while (q.toString(2).length > 53) {
    shift -= 1;
    q = (n << BigInt(Math.max(shift, 0))) / (den << BigInt(Math.max(-shift, 0)));
  }
  const sn = n << BigInt(Math.max(shift, 0));
  const sd = den << BigInt(Math.max(-shift, 0));
  const r2 = 2n * (sn - q * sd);
  if (r2 > sd || (r2 === sd && (q & 1n) === 1n)) q += 1n;
  const v = Number(q) * 2 ** -shift;
  return neg ? -v : v;
}

/** A finite double as m * 2^e with m an integer. */
function binary(x: number): [bigint, number] {
  let e = 0;
  let v = x;
  while (!Number.isInteger(v)) {
    v *= 2;
    e -= 1;
  }
  return [BigInt(v), e];
}

/** pi to 122 decimals. */
const PI_NUM =
  314159265358979323846264338327950288419716939937510582097494459230781640628620899862803482534211706798214808651328230664709n;
const PI_DEN = 10n ** BigInt(PI_NUM.toString().length - 1);

/** 2 pi as a double-double. */
export const TWO_PI: DD = ddFromRational(2n * PI_NUM, PI_DEN);

/** 1/k! for k = 0..28 as double-doubles. */
const INV_FACT: DD[] = (() => {
  const out: DD[] = [];
  let f = 1n;
  for (let k = 0; k <= 28; k++) {
    if (k > 0) f *= BigInt(k);
    out.push(ddFromRational(1n, f));
  }
  return out;
})();

/** sin and cos of a double-double |r| <= pi/4, by their Taylor series to r^28 (< 1e-33). */
export function ddSinCos(r: DD): { s: DD; c: DD } {
  const r2 = ddMul(r, r);
  let s = ddNeg(INV_FACT[27]!);
  for (let k = 12; k >= 0; k--) {
    const coef = INV_FACT[2 * k + 1]!;
    s = ddAdd(ddMul(s, r2), k % 2 === 0 ? coef : ddNeg(coef));
  }
  s = ddMul(s, r);
  let c: DD = INV_FACT[28]!;
  for (let k = 13; k >= 0; k--) {
    const coef = INV_FACT[2 * k]!;
    c = ddAdd(ddMul(c, r2), k % 2 === 0 ? coef : ddNeg(coef));
  }
  return { s, c };
}

/** cos and sin of 2 pi x / n in double-double, for integers 0 <= x < n, n a power of two. */
function ddCosSinTurn(x: number, n: number): { c: DD; s: DD } {
  if (n < 4) return { c: { hi: x === 0 ? 1 : -1, lo: 0 }, s: { hi: 0, lo: 0 } };
  // 2 pi x / n = m pi/2 + r with |r| <= pi/4, the quadrant m found in exact integer arithmetic.
  const quarter = n / 4;
  const m = Math.round(x / quarter);
  const r = ddMul(TWO_PI, { hi: (x - m * quarter) / n, lo: 0 }); // exact scaling by 1/n
  const { s, c } = ddSinCos(r);
  switch (m % 4) {
    case 0:
      return { c, s };
    case 1:
      return { c: ddNeg(s), s: c };
    case 2:
      return { c: ddNeg(c), s: ddNeg(s) };
    default:
      return { c: s, s: ddNeg(c) };
  }
}

/**
 * Double-double twiddles cos(2 pi j / n) + i sin(2 pi j / n), n a power of two: each the product
 * of two entries of short tables (j = a B + b, B ~ sqrt(n)) computed from the Taylor series.
 * `at` gives any one; `table` all of the first half turn (for an FFT).
 */
export class DDTwiddles {
  private readonly b: number;
  private readonly t1: Float64Array; // [cos hi, cos lo, sin hi, sin lo] per entry
  private readonly t2: Float64Array;
  private full: {
    cosHi: Float64Array;
    cosLo: Float64Array;
    sinHi: Float64Array;
    sinLo: Float64Array;
  } | null = null;

  constructor(readonly n: number) {
    if (n < 2 || (n & (n - 1)) !== 0) throw new RangeError('DDTwiddles: n must be a power of two');
    let b = 1;
    while (b * b < n) b *= 2;
    this.b = b;
    const fill = (count: number, stride: number): Float64Array => {
      const t = new Float64Array(4 * count);
      for (let i = 0; i < count; i++) {
        const { c, s } = ddCosSinTurn((i * stride) % n, n);
        t[4 * i] = c.hi;
        t[4 * i + 1] = c.lo;
        t[4 * i + 2] = s.hi;
        t[4 * i + 3] = s.lo;
      }
      return t;
    };
    this.t1 = fill(Math.ceil(n / b), b);
    this.t2 = fill(b, 1);
  }

  /** cos and sin of 2 pi j / n (any integer j) into out[0..3] as cos hi, cos lo, sin hi, sin lo. */
  at(j: number, out: Float64Array): void {
    let m = j % this.n;
    if (m < 0) m += this.n;
    turnProduct(this.t1, 4 * Math.floor(m / this.b), this.t2, 4 * (m % this.b), out);
  }

  /** The first half turn, j = 0..n/2 - 1, as four arrays (built once, 16 n bytes). */
  table(): { cosHi: Float64Array; cosLo: Float64Array; sinHi: Float64Array; sinLo: Float64Array } {
    if (!this.full) {
      const half = this.n / 2;
      const f = {
        cosHi: new Float64Array(half),
        cosLo: new Float64Array(half),
        sinHi: new Float64Array(half),
        sinLo: new Float64Array(half),
      };
      const t = new Float64Array(4);
      for (let j = 0; j < half; j++) {
        turnProduct(this.t1, 4 * Math.floor(j / this.b), this.t2, 4 * (j % this.b), t);
        f.cosHi[j] = t[0]!;
        f.cosLo[j] = t[1]!;
        f.sinHi[j] = t[2]!;
        f.sinLo[j] = t[3]!;
      }
      this.full = f;
    }
    return this.full;
  }
}

/**
 * (c1 + i s1)(c2 + i s2) in double-double from table entries t1[u..u+3] and t2[v..v+3]
 * ([cos hi, cos lo, sin hi, sin lo]), written to out[0..3]; no allocation.
 */
function turnProduct(
  t1: Float64Array,
  u: number,
  t2: Float64Array,
  v: number,
  out: Float64Array,
): void {
  const c1h = t1[u]!;
  const c1l = t1[u + 1]!;
  const s1h = t1[u + 2]!;
  const s1l = t1[u + 3]!;
  const c2h = t2[v]!;
  const c2l = t2[v + 1]!;
  const s2h = t2[v + 2]!;
  const s2l = t2[v + 3]!;
  let p = c1h * c2h;
  let e = twoProdErr(c1h, c2h, p) + (c1h * c2l + c1l * c2h);
  const cch = p + e;
  const ccl = e - (cch - p);
  p = s1h * s2h;
  e = twoProdErr(s1h, s2h, p) + (s1h * s2l + s1l * s2h);
  const ssh = p + e;
  const ssl = e - (ssh - p);
  p = c1h * s2h;
  e = twoProdErr(c1h, s2h, p) + (c1h * s2l + c1l * s2h);
  const csh = p + e;
  const csl = e - (csh - p);
  p = s1h * c2h;
  e = twoProdErr(s1h, c2h, p) + (s1h * c2l + s1l * c2h);
  const sch = p + e;
  const scl = e - (sch - p);
  let sum = cch - ssh;
  let bb = sum - cch;
  let err = cch - (sum - bb) + (-ssh - bb) + (ccl - ssl);
  let hi = sum + err;
  out[0] = hi;
  out[1] = err - (hi - sum);
  sum = csh + sch;
  bb = sum - csh;
  err = csh - (sum - bb) + (sch - bb) + (csl + scl);
  hi = sum + err;
  out[2] = hi;
  out[3] = err - (hi - sum);
}
