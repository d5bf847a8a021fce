/**
 * Radix-2 complex FFT on split real/imaginary Float64Arrays, for the privacy-loss-distribution
 * accountant's convolutions. Twiddles are computed directly (cos/sin of 2 pi k / n), not by
 * recurrence, so the transform keeps full double accuracy at 2^23 points.
 */

const twiddleCache = new Map<number, { cos: Float64Array; sin: Float64Array }>();

function twiddles(n: number): { cos: Float64Array; sin: Float64Array } {
  let t = twiddleCache.get(n);
  if (!t) {
    const half = n >>> 1;
    const cos = new Float64Array(half);
    const sin = new Float64Array(half);
    for (let k = 0; k < half; k++) {
      const a = (2 * Math.PI * k) / n;
      cos[k] = Math.cos(a);
      sin[k] = Math.sin(a);
    }
    t = { cos, sin };
    // Keep only the most recent sizes: a 2^23 table is 64 MB.
    if (twiddleCache.size >= 4) twiddleCache.clear();
    twiddleCache.set(n, t);
  }
  return t;
}

/** The smallest power of two >= n. */
export function nextPow2(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

/**
 * In-place FFT of (re, im), whose common length must be a power of two. `inverse` computes the
 * inverse transform including the 1/n factor.
 */
export function fft(re: Float64Array, im: Float64Array, inverse = false): void {
  const n = re.length;
  if (n !== im.length || (n & (n - 1)) !== 0) {
    throw new RangeError(`fft: length must be a power of two; got ${n}`);
  }
  if (n <= 1) return;
  // Bit-reversal permutation.
  for (let i = 1, j = 0; i < n; i++) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) {
      let t = re[i]!;
      re[i] = re[j]!;
      re[j] = t;
      t = im[i]!;
      im[i] = im[j]!;
      im[j] = t;
    }
  }
  const { cos, sin } = twiddles(n);
  const sign = inverse ? 1 : -1;
  for (let size = 2; size <= n; size *= 2) {
    const half = size >>> 1;
    const step = n / size;
    for (let start = 0; start < n; start += size) {
      for (let k = 0, t = 0; k < half; k++, t += step) {
        const wr = cos[t]!;
        const wi = sign * sin[t]!;
        const a = start + k;
        const b = a + half;
        const xr = re[b]! * wr - im[b]! * wi;
        const xi = re[b]! * wi + im[b]! * wr;
        re[b] = re[a]! - xr;
        im[b] = im[a]! - xi;
        re[a] = re[a]! + xr;
        im[a] = im[a]! + xi;
      }
    }
  }
  if (inverse) {
    const s = 1 / n;
    for (let i = 0; i < n; i++) {
      re[i] = re[i]! * s;
      im[i] = im[i]! * s;
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
