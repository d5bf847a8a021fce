/**
 * FFTs for the privacy-loss-distribution accountant: a radix-2 complex FFT on split real/imaginary
 * Float64Arrays (twiddles computed directly, cos/sin of 2 pi k / n, not by recurrence, so the
 * transform keeps full double accuracy at 2^23 points), real-input transforms built on it, and
 * double-double transforms for raising a spectrum to a large power (see pld.ts).
 */

import { type DDTwiddles, twoProdErr } from './dd';

const twiddleCache = new Map<string, { cos: Float64Array; sin: Float64Array }>();

function cached(
  key: string,
  make: () => { cos: Float64Array; sin: Float64Array },
): { cos: Float64Array; sin: Float64Array } {
  let t = twiddleCache.get(key);
  if (!t) {
    t = make();
    // Keep only the most recent tables: a 2^23 one is 64 MB.
    if (twiddleCache.size >= 4) twiddleCache.clear();
    twiddleCache.set(key, t);
  }
  return t;
}

/** cos and sin of 2 pi k / n for k < n/2. */
function twiddles(n: number): { cos: Float64Array; sin: Float64Array } {
  return cached(`half:${n}`, () => {
    const half = n >>> 1;
    const cos = new Float64Array(half);
    const sin = new Float64Array(half);
    for (let k = 0; k < half; k++) {
      const a = (2 * Math.PI * k) / n;
      cos[k] = Math.cos(a);
      sin[k] = Math.sin(a);
    }
    return { cos, sin };
  });
}

/**
 * Twiddles of the radix-4 Stockham passes of a length-n transform: for the pass on blocks of size
 * L (= n, n/4, ...), cos and sin of 2 pi r p / L for p < L/4 and r = 1, 2, 3, laid out
 * contiguously ([w1, w2, w3] per p) so that each pass reads them in order.
 */
function stockhamTwiddles(n: number): { cos: Float64Array; sin: Float64Array } {
  return cached(`stockham:${n}`, () => {
    let total = 0;
    for (let len = n; len >= 4; len /= 4) total += 3 * (len / 4);
    const cos = new Float64Array(Math.max(1, total));
    const sin = new Float64Array(Math.max(1, total));
    let o = 0;
    for (let len = n; len >= 4; len /= 4) {
      for (let p = 0; p < len / 4; p++) {
        for (let r = 1; r <= 3; r++) {
          const a = (2 * Math.PI * r * p) / len;
          cos[o] = Math.cos(a);
          sin[o] = Math.sin(a);
          o++;
        }
      }
    }
    return { cos, sin };
  });
}

/** The smallest power of two >= n. */
export function nextPow2(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

/**
 * In-place FFT of (re, im), whose common length must be a power of two. `inverse` computes the
 * inverse transform including the 1/n factor. Radix-4 Stockham passes (plus one radix-2 pass
 * when log2 n is odd) between the arrays and a scratch pair: every pass streams through memory,
 * with no bit-reversal permutation (which alone costs more than the arithmetic at 2^22 points).
 */
export function fft(re: Float64Array, im: Float64Array, inverse = false): void {
  const n = re.length;
  if (n !== im.length || (n & (n - 1)) !== 0) {
    throw new RangeError(`fft: length must be a power of two; got ${n}`);
  }
  if (n <= 1) return;
  const { cos, sin } = stockhamTwiddles(n);
  const sign = inverse ? 1 : -1;
  let xr: Float64Array = re;
  let xi: Float64Array = im;
  let yr: Float64Array = new Float64Array(n);
  let yi: Float64Array = new Float64Array(n);
  let s = 1; // stride: the number of interleaved sub-transforms
  let o = 0; // twiddle offset of the pass
  for (let len = n; len >= 4; len /= 4) {
    const m = len / 4;
    for (let p = 0; p < m; p++) {
      const t = o + 3 * p;
      const w1r = cos[t]!;
      const w1i = sign * sin[t]!;
      const w2r = cos[t + 1]!;
      const w2i = sign * sin[t + 1]!;
      const w3r = cos[t + 2]!;
      const w3i = sign * sin[t + 2]!;
      const ia = s * p;
      const ib = s * (p + m);
      const ic = s * (p + 2 * m);
      const id = s * (p + 3 * m);
      const oy = s * 4 * p;
      for (let q = 0; q < s; q++) {
        const ar = xr[ia + q]!;
        const ai = xi[ia + q]!;
        const br = xr[ib + q]!;
        const bi = xi[ib + q]!;
        const cr = xr[ic + q]!;
        const ci = xi[ic + q]!;
        const dr = xr[id + q]!;
        const di = xi[id + q]!;
        const apcR = ar + cr;
        const apcI = ai + ci;
        const amcR = ar - cr;
        const amcI = ai - ci;
        const bpdR = br + dr;
        const bpdI = bi + di;
        // (b - d) times e^(sign i pi/2) = sign * i
        const bmdR = -sign * (bi - di);
        const bmdI = sign * (br - dr);
        yr[oy + q] = apcR + bpdR;
        yi[oy + q] = apcI + bpdI;
        let ur = amcR + bmdR;
        let ui = amcI + bmdI;
        yr[oy + s + q] = ur * w1r - ui * w1i;
        yi[oy + s + q] = ur * w1i + ui * w1r;
        ur = apcR - bpdR;
        ui = apcI - bpdI;
        yr[oy + 2 * s + q] = ur * w2r - ui * w2i;
        yi[oy + 2 * s + q] = ur * w2i + ui * w2r;
        ur = amcR - bmdR;
        ui = amcI - bmdI;
        yr[oy + 3 * s + q] = ur * w3r - ui * w3i;
        yi[oy + 3 * s + q] = ur * w3i + ui * w3r;
      }
    }
    o += 3 * m;
    s *= 4;
    let t = xr;
    xr = yr;
    yr = t;
    t = xi;
    xi = yi;
    yi = t;
  }
  if (s < n) {
    // The last radix-2 pass (len = 2, twiddle 1).
    for (let q = 0; q < s; q++) {
      const ar = xr[q]!;
      const ai = xi[q]!;
      const br = xr[s + q]!;
      const bi = xi[s + q]!;
      yr[q] = ar + br;
      yi[q] = ai + bi;
      yr[s + q] = ar - br;
      yi[s + q] = ai - bi;
    }
    let t = xr;
    xr = yr;
    yr = t;
    t = xi;
    xi = yi;
    yi = t;
  }
  const scale = inverse ? 1 / n : 1;
  if (xr !== re) {
    for (let i = 0; i < n; i++) {
      re[i] = xr[i]! * scale;
      im[i] = xi[i]! * scale;
    }
  } else if (inverse) {
    for (let i = 0; i < n; i++) {
      re[i] = re[i]! * scale;
      im[i] = im[i]! * scale;
    }
  }
}

/**
 * Linear convolution of two real sequences by FFT (scipy.signal.fftconvolve, mode 'full'). Both
 * are packed into one complex transform (a + ib), so a convolution costs two transforms of the
 * output's size; squaring (a === b) needs no unpacking.
 */
export function convolve(a: Float64Array, b: Float64Array): Float64Array {
  const outLen = a.length + b.length - 1;
  const n = nextPow2(outLen);
  const re = new Float64Array(n);
  const im = new Float64Array(n);
  re.set(a);
  if (a === b) {
    fft(re, im);
    for (let k = 0; k < n; k++) {
      const x = re[k]!;
      const y = im[k]!;
      re[k] = x * x - y * y;
      im[k] = 2 * x * y;
    }
  } else {
    im.set(b);
    fft(re, im);
    // With Z = FFT(a + ib): A_k = (Z_k + conj Z_{n-k}) / 2, B_k = (Z_k - conj Z_{n-k}) / (2i), and
    // A_k B_k = (Z_k^2 - conj(Z_{n-k})^2) / (4i). Pairs (k, n-k) are updated together.
    for (let k = 0; k <= n / 2; k++) {
      const j = (n - k) % n;
      const zr = re[k]!;
      const zi = im[k]!;
      const wr = re[j]!;
      const wi = -im[j]!; // conj Z_{n-k}
      // P_k = (Z_k^2 - W^2) / (4i), with W = conj Z_{n-k}
      const pr = (2 * zr * zi - 2 * wr * wi) / 4;
      const pi = -(zr * zr - zi * zi - (wr * wr - wi * wi)) / 4;
      // P_{n-k} from Z_{n-k} and conj Z_k
      const ur = re[j]!;
      const ui = im[j]!;
      const vr = zr;
      const vi = -zi;
      const qr = (2 * ur * ui - 2 * vr * vi) / 4;
      const qi = -(ur * ur - ui * ui - (vr * vr - vi * vi)) / 4;
      re[k] = pr;
      im[k] = pi;
      re[j] = qr;
      im[j] = qi;
    }
  }
  fft(re, im, true);
  return re.slice(0, outLen);
}

// ---------------------------------------------------------------- real transforms

/**
 * The DFT X_k = sum_j x_j e^(-2 pi i j k / n), k = 0..n/2, of a real sequence zero-padded to n (a
 * power of two >= 2), by one complex transform of length n/2 on (x_0 + i x_1, x_2 + i x_3, ...).
 */
export function realFft(x: Float64Array, n: number): { re: Float64Array; im: Float64Array } {
  const half = n >>> 1;
  if (half < 1 || (n & (n - 1)) !== 0 || x.length > n) {
    throw new RangeError(`realFft: n must be a power of two >= 2 and >= ${x.length}; got ${n}`);
  }
  const zr = new Float64Array(half);
  const zi = new Float64Array(half);
  for (let j = 0; j < x.length; j++) {
    if (j & 1) zi[j >> 1] = x[j]!;
    else zr[j >> 1] = x[j]!;
  }
  fft(zr, zi);
  const { cos, sin } = twiddles(n);
  const re = new Float64Array(half + 1);
  const im = new Float64Array(half + 1);
  for (let k = 0; k <= half; k++) {
    const a = k % half;
    const b = (half - k) % half;
    const ar = zr[a]!;
    const ai = zi[a]!;
    const br = zr[b]!;
    const bi = -zi[b]!; // conj Z_{N-k}
    const er = (ar + br) / 2;
    const ei = (ai + bi) / 2;
    // O = (A - B) / (2i)
    const or = (ai - bi) / 2;
    const oi = -(ar - br) / 2;
    // w^k = e^(-2 pi i k / n)
    const wr = k < half ? cos[k]! : -1;
    const wi = k < half ? -sin[k]! : 0;
    re[k] = er + (wr * or - wi * oi);
    im[k] = ei + (wr * oi + wi * or);
  }
  return { re, im };
}

/**
 * The real sequence y (length n, a power of two >= 2) whose DFT is the Hermitian spectrum with
 * X_k = re[k] + i im[k] for k = 0..n/2 (the imaginary parts of X_0 and X_{n/2} are ignored, as
 * numpy's real(ifft(...)) ignores them): the inverse of realFft, with the 1/n factor.
 */
export function inverseRealFft(re: Float64Array, im: Float64Array, n: number): Float64Array {
  const half = n >>> 1;
  if (half < 1 || (n & (n - 1)) !== 0 || re.length !== half + 1 || im.length !== half + 1) {
    throw new RangeError(`inverseRealFft: expected n/2 + 1 coefficients for n = ${n}`);
  }
  const { cos, sin } = twiddles(n);
  const zr = new Float64Array(half);
  const zi = new Float64Array(half);
  for (let k = 0; k < half; k++) {
    const ar = re[k]!;
    const ai = k === 0 ? 0 : im[k]!;
    const m = half - k;
    const br = re[m]!;
    const bi = m === half || m === 0 ? 0 : -im[m]!; // conj X_{N-k}
    const er = (ar + br) / 2;
    const ei = (ai + bi) / 2;
    // O = (A - B) conj(w^k) / 2 with w^k = e^(-2 pi i k / n)
    const dr = (ar - br) / 2;
    const di = (ai - bi) / 2;
    const wr = cos[k]!;
    const wi = sin[k]!; // conj(w^k) = cos + i sin
    const or = dr * wr - di * wi;
    const oi = dr * wi + di * wr;
    // Z = E + i O
    zr[k] = er - oi;
    zi[k] = ei + or;
  }
  fft(zr, zi, true);
  const y = new Float64Array(n);
  for (let j = 0; j < half; j++) {
    y[2 * j] = zr[j]!;
    y[2 * j + 1] = zi[j]!;
  }
  return y;
}

// ---------------------------------------------------------------- double-double transforms

/** A complex double-double vector, or single values, as four parallel arrays. */
export interface DDComplex {
  reHi: Float64Array;
  reLo: Float64Array;
  imHi: Float64Array;
  imLo: Float64Array;
}

const EMPTY_TABLE = {
  cosHi: new Float64Array(0),
  cosLo: new Float64Array(0),
  sinHi: new Float64Array(0),
  sinLo: new Float64Array(0),
};

/** The twiddle e^(-2 pi i j / n) = cos - i sin, as re hi, re lo, im hi, im lo in out. */
function ddTwiddleAt(tw: DDTwiddles, j: number, out: Float64Array): void {
  tw.at(j, out);
  out[2] = -out[2]!;
  out[3] = -out[3]!;
}

/**
 * X_k = sum_j x_j e^(-2 pi i j k / n) in double-double at the frequencies `ks` (0 <= k <= n/2),
 * by direct summation. Twiddles come from the full double-double table when there are many terms,
 * else each from its two-entry product (no n/2-entry table to build).
 */
export function dftDDAt(x: Float64Array, tw: DDTwiddles, ks: ArrayLike<number>): DDComplex {
  const n = tw.n;
  const half = n / 2;
  let first = 0;
  while (first < x.length && x[first] === 0) first++;
  let last = x.length - 1;
  while (last > first && x[last] === 0) last--;
  const out: DDComplex = {
    reHi: new Float64Array(ks.length),
    reLo: new Float64Array(ks.length),
    imHi: new Float64Array(ks.length),
    imLo: new Float64Array(ks.length),
  };
  if (first > last) return out;
  const useTable = ks.length * (last - first + 1) >= n / 4;
  const { cosHi, cosLo, sinHi, sinLo } = useTable ? tw.table() : EMPTY_TABLE;
  const t = new Float64Array(4);
  for (let q = 0; q < ks.length; q++) {
    const k = ks[q]!;
    let aRh = 0;
    let aRl = 0;
    let aIh = 0;
    let aIl = 0;
    let idx = (k * first) % n;
    for (let j = first; j <= last; j++, idx += k) {
      if (idx >= n) idx -= n;
      const v = x[j]!;
      if (v === 0) continue;
      // e^(-i t) = cos t - i sin t; the second half turn is minus the first.
      let ch: number;
      let cl: number;
      let sh: number;
      let sl: number;
      if (!useTable) {
        tw.at(idx, t);
        ch = t[0]!;
        cl = t[1]!;
        sh = -t[2]!;
        sl = -t[3]!;
      } else if (idx < half) {
        ch = cosHi[idx]!;
        cl = cosLo[idx]!;
        sh = -sinHi[idx]!;
        sl = -sinLo[idx]!;
      } else {
        const m = idx - half;
        ch = -cosHi[m]!;
        cl = -cosLo[m]!;
        sh = sinHi[m]!;
        sl = sinLo[m]!;
      }
      // acc += v * (c + i s)
      let p = ch * v;
      let e = twoProdErr(ch, v, p) + cl * v;
      let s = aRh + p;
      let bb = s - aRh;
      let err = aRh - (s - bb) + (p - bb) + (aRl + e);
      aRh = s + err;
      aRl = err - (aRh - s);
      p = sh * v;
      e = twoProdErr(sh, v, p) + sl * v;
      s = aIh + p;
      bb = s - aIh;
      err = aIh - (s - bb) + (p - bb) + (aIl + e);
      aIh = s + err;
      aIl = err - (aIh - s);
    }
    out.reHi[q] = aRh;
    out.reLo[q] = aRl;
    out.imHi[q] = aIh;
    out.imLo[q] = aIl;
  }
  return out;
}

/** (ah + al)(bh + bl) as a double-double [hi, lo]. */
function ddMulParts(ah: number, al: number, bh: number, bl: number): [number, number] {
  const p = ah * bh;
  const e = twoProdErr(ah, bh, p) + (ah * bl + al * bh);
  const hi = p + e;
  return [hi, e - (hi - p)];
}

/**
 * The DFT of a real sequence zero-padded to n (a power of two >= 4) in double-double at the
 * frequencies `ks` (0 <= k <= n/2): one complex radix-2 transform of length n/2 on the packed
 * sequence (x_0 + i x_1, x_2 + i x_3, ...), then the even/odd split at the requested k.
 */
export function realFftDDAt(x: Float64Array, tw: DDTwiddles, ks: ArrayLike<number>): DDComplex {
  const n = tw.n;
  const half = n >>> 1;
  const zrh = new Float64Array(half);
  const zrl = new Float64Array(half);
  const zih = new Float64Array(half);
  const zil = new Float64Array(half);
  for (let j = 0; j < x.length; j++) {
    if (j & 1) zih[j >> 1] = x[j]!;
    else zrh[j >> 1] = x[j]!;
  }
  fftDD(zrh, zrl, zih, zil, tw);
  const out: DDComplex = {
    reHi: new Float64Array(ks.length),
    reLo: new Float64Array(ks.length),
    imHi: new Float64Array(ks.length),
    imLo: new Float64Array(ks.length),
  };
  const t = new Float64Array(4);
  for (let q = 0; q < ks.length; q++) {
    const k = ks[q]!;
    const a = k % half;
    const b = (half - k) % half;
    // E = (A + conj B) / 2, D = (A - conj B) / 2, O = -i D; halving is exact.
    const er = ddSumParts(zrh[a]!, zrl[a]!, zrh[b]!, zrl[b]!, 0.5);
    const ei = ddSumParts(zih[a]!, zil[a]!, -zih[b]!, -zil[b]!, 0.5);
    const dr = ddSumParts(zrh[a]!, zrl[a]!, -zrh[b]!, -zrl[b]!, 0.5);
    const di = ddSumParts(zih[a]!, zil[a]!, zih[b]!, zil[b]!, 0.5);
    // O = (di, -dr)
    const orh = di[0];
    const orl = di[1];
    const oih = -dr[0];
    const oil = -dr[1];
    ddTwiddleAt(tw, k, t);
    // w O
    const p1 = ddMulParts(t[0]!, t[1]!, orh, orl);
    const p2 = ddMulParts(t[2]!, t[3]!, oih, oil);
    const p3 = ddMulParts(t[0]!, t[1]!, oih, oil);
    const p4 = ddMulParts(t[2]!, t[3]!, orh, orl);
    const wr = ddSumParts(p1[0], p1[1], -p2[0], -p2[1], 1);
    const wi = ddSumParts(p3[0], p3[1], p4[0], p4[1], 1);
    const xr = ddSumParts(er[0], er[1], wr[0], wr[1], 1);
    const xi = ddSumParts(ei[0], ei[1], wi[0], wi[1], 1);
    out.reHi[q] = xr[0];
    out.reLo[q] = xr[1];
    out.imHi[q] = xi[0];
    out.imLo[q] = xi[1];
  }
  return out;
}

/** (ah + al + bh + bl) * scale (scale a power of two) as a double-double. */
function ddSumParts(
  ah: number,
  al: number,
  bh: number,
  bl: number,
  scale: number,
): [number, number] {
  const s = ah + bh;
  const bb = s - ah;
  const err = ah - (s - bb) + (bh - bb) + (al + bl);
  const hi = s + err;
  return [hi * scale, (err - (hi - s)) * scale];
}

/** In-place forward radix-2 complex FFT in double-double (length n/2 of the table's n). */
function fftDD(
  reH: Float64Array,
  reL: Float64Array,
  imH: Float64Array,
  imL: Float64Array,
  tw: DDTwiddles,
): void {
  const n = reH.length;
  if ((n & (n - 1)) !== 0 || 2 * n > tw.n) throw new RangeError('fftDD: bad length');
  for (let i = 1, j = 0; i < n; i++) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) {
      let t = reH[i]!;
      reH[i] = reH[j]!;
      reH[j] = t;
      t = reL[i]!;
      reL[i] = reL[j]!;
      reL[j] = t;
      t = imH[i]!;
      imH[i] = imH[j]!;
      imH[j] = t;
      t = imL[i]!;
      imL[i] = imL[j]!;
      imL[j] = t;
    }
  }
  const { cosHi, cosLo, sinHi, sinLo } = tw.table();
  for (let size = 2; size <= n; size *= 2) {
    const half = size >>> 1;
    const step = tw.n / size;
    for (let start = 0; start < n; start += size) {
      for (let k = 0, ti = 0; k < half; k++, ti += step) {
        const a = start + k;
        const b = a + half;
        // w = e^(-2 pi i k / size) = cos - i sin
        const wrh = cosHi[ti]!;
        const wrl = cosLo[ti]!;
        const wih = -sinHi[ti]!;
        const wil = -sinLo[ti]!;
        const brh = reH[b]!;
        const brl = reL[b]!;
        const bih = imH[b]!;
        const bil = imL[b]!;
        // x = w * v[b]
        let p = wrh * brh;
        let e = twoProdErr(wrh, brh, p) + (wrh * brl + wrl * brh);
        const p1h = p + e;
        const p1l = e - (p1h - p);
        p = wih * bih;
        e = twoProdErr(wih, bih, p) + (wih * bil + wil * bih);
        const p2h = p + e;
        const p2l = e - (p2h - p);
        p = wrh * bih;
        e = twoProdErr(wrh, bih, p) + (wrh * bil + wrl * bih);
        const p3h = p + e;
        const p3l = e - (p3h - p);
        p = wih * brh;
        e = twoProdErr(wih, brh, p) + (wih * brl + wil * brh);
        const p4h = p + e;
        const p4l = e - (p4h - p);
        let s = p1h - p2h;
        let bb = s - p1h;
        let err = p1h - (s - bb) + (-p2h - bb) + (p1l - p2l);
        const xrh = s + err;
        const xrl = err - (xrh - s);
        s = p3h + p4h;
        bb = s - p3h;
        err = p3h - (s - bb) + (p4h - bb) + (p3l + p4l);
        const xih = s + err;
        const xil = err - (xih - s);
        const arh = reH[a]!;
        const arl = reL[a]!;
        const aih = imH[a]!;
        const ail = imL[a]!;
        s = arh + xrh;
        bb = s - arh;
        err = arh - (s - bb) + (xrh - bb) + (arl + xrl);
        let h = s + err;
        reH[a] = h;
        reL[a] = err - (h - s);
        s = aih + xih;
        bb = s - aih;
        err = aih - (s - bb) + (xih - bb) + (ail + xil);
        h = s + err;
        imH[a] = h;
        imL[a] = err - (h - s);
        s = arh - xrh;
        bb = s - arh;
        err = arh - (s - bb) + (-xrh - bb) + (arl - xrl);
        h = s + err;
        reH[b] = h;
        reL[b] = err - (h - s);
        s = aih - xih;
        bb = s - aih;
        err = aih - (s - bb) + (-xih - bb) + (ail - xil);
        h = s + err;
        imH[b] = h;
        imL[b] = err - (h - s);
      }
    }
  }
}

/**
 * z^n for a complex double-double z and an integer n >= 1, by binary powering in double-double
 * (relative error about n * 1e-32); returns the result rounded to doubles in out[0], out[1].
 */
export function ddComplexPow(
  rh: number,
  rl: number,
  ih: number,
  il: number,
  n: number,
  out: Float64Array,
): void {
  let yRh = 1;
  let yRl = 0;
  let yIh = 0;
  let yIl = 0;
  let bRh = rh;
  let bRl = rl;
  let bIh = ih;
  let bIl = il;
  let m = n;
  let firstFactor = true;
  for (;;) {
    if (m % 2 === 1) {
      if (firstFactor) {
        yRh = bRh;
        yRl = bRl;
        yIh = bIh;
        yIl = bIl;
        firstFactor = false;
      } else {
        const c = ddComplexMul(yRh, yRl, yIh, yIl, bRh, bRl, bIh, bIl);
        yRh = c[0];
        yRl = c[1];
        yIh = c[2];
        yIl = c[3];
      }
    }
    m = Math.floor(m / 2);
    if (m === 0) break;
    const c = ddComplexMul(bRh, bRl, bIh, bIl, bRh, bRl, bIh, bIl);
    bRh = c[0];
    bRl = c[1];
    bIh = c[2];
    bIl = c[3];
  }
  out[0] = yRh + yRl;
  out[1] = yIh + yIl;
}

function ddComplexMul(
  arh: number,
  arl: number,
  aih: number,
  ail: number,
  brh: number,
  brl: number,
  bih: number,
  bil: number,
): [number, number, number, number] {
  const rr = ddMulParts(arh, arl, brh, brl);
  const ii = ddMulParts(aih, ail, bih, bil);
  const ri = ddMulParts(arh, arl, bih, bil);
  const ir = ddMulParts(aih, ail, brh, brl);
  const re = ddSumParts(rr[0], rr[1], -ii[0], -ii[1], 1);
  const im = ddSumParts(ri[0], ri[1], ir[0], ir[1], 1);
  return [re[0], re[1], im[0], im[1]];
}
