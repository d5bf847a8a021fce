/**
 * Special functions for the accountants, accurate to a few ulps across the double range.
 *
 * erf, erfc and erfcx follow W. J. Cody, "Rational Chebyshev approximations for the error
 * function", Math. Comp. 23 (1969) 631-638, as in his CALERF routine (netlib specfun/erf, last
 * modified 19 March 1990), with the IEEE double constants from its header. erfcx(x) = exp(x^2)
 * erfc(x) is evaluated without forming exp(-x^2), which is what keeps log erfc(x) accurate where
 * erfc itself underflows (x > 26.5); beyond XHUGE Cody's routine uses the leading asymptotic term
 * 1/(x sqrt(pi)), and we add the next terms of the series for log erfc there.
 *
 * logNdtr follows scipy.special.log_ndtr (scipy/special/_faddeeva.cxx: `log(erfcx(-t)/2) - t*t`
 * below -1, `log1p(-erfc(t)/2)` otherwise), which Opacus' `_log_erfc` and dp_accounting's Gaussian
 * privacy loss call, so that our accountants see the same values theirs do.
 */

/* eslint-disable no-loss-of-precision -- Cody's published coefficients, kept digit for digit;
   rounding them to the nearest double is what his routine does too. */
const A = [
  3.1611237438705656, 113.864154151050156, 377.485237685302021, 3209.37758913846947,
  0.185777706184603153,
];
const B = [23.6012909523441209, 244.024637934444173, 1282.61652607737228, 2844.23683343917062];
const C = [
  0.564188496988670089, 8.88314979438837594, 66.1191906371416295, 298.635138197400131,
  881.95222124176909, 1712.04761263407058, 2051.07837782607147, 1230.33935479799725,
  2.15311535474403846e-8,
];
const D = [
  15.7449261107098347, 117.693950891312499, 537.181101862009858, 1621.38957456669019,
  3290.79923573345963, 4362.61909014324716, 3439.36767414372164, 1230.33935480374942,
];
const P = [
  0.305326634961232344, 0.360344899949804439, 0.125781726111229246, 0.0160837851487422766,
  6.58749161529837803e-4, 0.0163153871373020978,
];
const Q = [
  2.56852019228982242, 1.87295284992346047, 0.527905102951428412, 0.0605183413124413191,
  0.00233520497626869185,
];
const SQRPI = 0.56418958354775628695; // 1/sqrt(pi)
const THRESH = 0.46875;
const XNEG = -26.628;
const XSMALL = 1.11e-16;
const XBIG = 26.543;
const XHUGE = 6.71e7;
const XMAX = 2.53e307;
/* eslint-enable no-loss-of-precision */

/** exp(-y^2) without the cancellation of forming y^2 directly (Cody's split at 1/16). */
function expMinusSquare(y: number): number {
  const ysq = Math.trunc(y * 16) / 16;
  const del = (y - ysq) * (y + ysq);
  return Math.exp(-ysq * ysq) * Math.exp(-del);
}

/** Cody's CALERF: jint 0 -> erf, 1 -> erfc, 2 -> erfcx. */
function calerf(x: number, jint: 0 | 1 | 2): number {
  if (Number.isNaN(x)) return NaN;
  const y = Math.abs(x);
  let result: number;
  if (y <= THRESH) {
    const ysq = y > XSMALL ? y * y : 0;
    let xnum = A[4]! * ysq;
    let xden = ysq;
    for (let i = 0; i < 3; i++) {
      xnum = (xnum + A[i]!) * ysq;
      xden = (xden + B[i]!) * ysq;
    }
    result = (x * (xnum + A[3]!)) / (xden + B[3]!);
    if (jint !== 0) result = 1 - result;
    if (jint === 2) result = Math.exp(ysq) * result;
    return result;
  } else if (y <= 4) {
    let xnum = C[8]! * y;
    let xden = y;
    for (let i = 0; i < 7; i++) {
      xnum = (xnum + C[i]!) * y;
      xden = (xden + D[i]!) * y;
    }
    result = (xnum + C[7]!) / (xden + D[7]!);
    if (jint !== 2) result = expMinusSquare(y) * result;
  } else {
    result = 0;
    let done = false;
    if (y >= XBIG) {
      if (jint !== 2 || y >= XMAX) done = true;
      else if (y >= XHUGE) {
        result = SQRPI / y;
        done = true;
      }
    }
    if (!done) {
      const ysq = 1 / (y * y);
      let xnum = P[5]! * ysq;
      let xden = ysq;
      for (let i = 0; i < 4; i++) {
        xnum = (xnum + P[i]!) * ysq;
        xden = (xden + Q[i]!) * ysq;
      }
      result = (ysq * (xnum + P[4]!)) / (xden + Q[4]!);
      result = (SQRPI - result) / y;
      if (jint !== 2) result = expMinusSquare(y) * result;
    }
  }
  // Fix up for negative argument, erf, etc.
  if (jint === 0) {
    result = 0.5 - result + 0.5;
    if (x < 0) result = -result;
  } else if (jint === 1) {
    if (x < 0) result = 2 - result;
  } else if (x < 0) {
    if (x < XNEG) result = Infinity;
    else {
      const ysq = Math.trunc(x * 16) / 16;
      const del = (x - ysq) * (x + ysq);
      const e = Math.exp(ysq * ysq) * Math.exp(del);
      result = e + e - result;
    }
  }
  return result;
}

/**
 * The error function.
 *
 * @example
 * erf(0.5); // 0.5204998778130465
 */
export function erf(x: number): number {
  return calerf(x, 0);
}

/**
 * The complementary error function 1 - erf(x), accurate in the tail until it underflows.
 *
 * @example
 * erfc(1); // 0.15729920705028516
 */
export function erfc(x: number): number {
  return calerf(x, 1);
}

/**
 * The scaled complementary error function exp(x^2) erfc(x).
 *
 * @example
 * erfcx(30); // 0.01879588886141675
 */
export function erfcx(x: number): number {
  return calerf(x, 2);
}

/**
 * log(erfc(x)) for any real x; finite for every finite x. For x beyond Cody's XHUGE the asymptotic
 * series log erfc(x) = -x^2 - log(x sqrt(pi)) + log(1 - 1/(2x^2) + 3/(4x^4) - ...) is used.
 *
 * @example
 * logErfc(30); // -903.9741171106439 (erfc(30) itself underflows to 0)
 */
export function logErfc(x: number): number {
  if (Number.isNaN(x)) return NaN;
  if (x === Infinity) return -Infinity;
  if (x > XHUGE) {
    const r = 1 / (x * x);
    return -x * x - Math.log(x) - 0.5 * Math.log(Math.PI) + Math.log1p(-0.5 * r + 0.75 * r * r);
  }
  if (x > 0.5) return Math.log(erfcx(x)) - x * x;
  return Math.log(erfc(x));
}

/**
 * The standard normal CDF, as scipy.special.ndtr.
 *
 * @example
 * ndtr(-2); // 0.0227501319481792
 */
export function ndtr(a: number): number {
  const x = a * Math.SQRT1_2;
  const z = Math.abs(x);
  if (z < Math.SQRT1_2) return 0.5 + 0.5 * erf(x);
  const y = 0.5 * erfc(z);
  return x > 0 ? 1 - y : y;
}

/**
 * log of the standard normal CDF, as scipy.special.log_ndtr (Faddeeva formulation).
 *
 * @example
 * logNdtr(-40); // -804.6084420137539
 */
export function logNdtr(a: number): number {
  if (Number.isNaN(a)) return NaN;
  if (a === -Infinity) return -Infinity;
  if (a === Infinity) return 0;
  const t = a * Math.SQRT1_2;
  if (a < -1) {
    if (-t > XHUGE) return logErfc(-t) - Math.LN2;
    return Math.log(erfcx(-t) / 2) - t * t;
  }
  return Math.log1p(-erfc(t) / 2);
}

/**
 * The inverse of the standard normal CDF for p in (0, 1): P. J. Acklam's rational approximation
 * refined by two Halley steps against ndtr (in log space in the lower tail), giving full double
 * precision down to p = 1e-300.
 */
export function ndtri(p: number): number {
  if (!(p > 0 && p < 1)) {
    if (p === 0) return -Infinity;
    if (p === 1) return Infinity;
    return NaN;
  }
  if (p > 0.5) return -ndtri(1 - p);
  // Acklam's coefficients.
  const a = [
    -3.969683028665376e1, 2.209460984245205e2, -2.759285104469687e2, 1.38357751867269e2,
    -3.066479806614716e1, 2.506628277459239,
  ];
  const b = [
    -5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1,
    -1.328068155288572e1,
  ];
  const c = [
    -7.784894002430293e-3, -3.223964580411365e-1, -2.400758277161838, -2.549732539343734,
    4.374664141464968, 2.938163982698783,
  ];
  const d = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
  let x: number;
  if (p < 0.02425) {
    const q = Math.sqrt(-2 * Math.log(p));
    x =
      (((((c[0]! * q + c[1]!) * q + c[2]!) * q + c[3]!) * q + c[4]!) * q + c[5]!) /
      ((((d[0]! * q + d[1]!) * q + d[2]!) * q + d[3]!) * q + 1);
  } else {
    const q = p - 0.5;
    const r = q * q;
    x =
      ((((((a[0]! * r + a[1]!) * r + a[2]!) * r + a[3]!) * r + a[4]!) * r + a[5]!) * q) /
      (((((b[0]! * r + b[1]!) * r + b[2]!) * r + b[3]!) * r + b[4]!) * r + 1);
  }
  // Halley refinement on f(x) = log ndtr(x) - log p, whose derivative is pdf(x) / ndtr(x).
  const logP = Math.log(p);
  for (let k = 0; k < 3; k++) {
    const lc = logNdtr(x);
    const f = lc - logP;
    // g = pdf/cdf = exp(log pdf - log cdf)
    const g = Math.exp(-0.5 * x * x - 0.5 * Math.log(2 * Math.PI) - lc);
    // f' = g, f'' = -g (x + g)
    const step = f / g / (1 + (0.5 * f * (x + g)) / g);
    x -= step;
    if (Math.abs(step) <= 1e-16 * Math.abs(x)) break;
  }
  return x;
}

/** log(exp(a) + exp(b)), exact at -Infinity. */
export function logAddExp(a: number, b: number): number {
  const mx = Math.max(a, b);
  const mn = Math.min(a, b);
  if (mn === -Infinity) return mx;
  return mx + Math.log1p(Math.exp(mn - mx));
}

/**
 * log(Gamma(x)) for x >= 1 by the Stirling series with recurrence below 7 (used for log k! in the
 * Poisson sampler; absolute error below 1e-14).
 */
export function logGamma(x: number): number {
  if (x === 1 || x === 2) return 0;
  let n = 0;
  if (x < 7) n = Math.floor(7 - x);
  let x0 = x + n;
  const x2 = 1 / (x0 * x0);
  // Bernoulli-number coefficients B_2k / (2k (2k - 1)).
  const s = [
    1 / 12,
    -1 / 360,
    1 / 1260,
    -1 / 1680,
    1 / 1188,
    -691 / 360360,
    1 / 156,
    -3617 / 122400,
    43867 / 244188,
    -174611 / 125400,
  ];
  let gl0 = s[9]!;
  for (let k = 8; k >= 0; k--) gl0 = gl0 * x2 + s[k]!;
  let gl = gl0 / x0 + 0.5 * Math.log(2 * Math.PI) + (x0 - 0.5) * Math.log(x0) - x0;
  for (let k = 1; k <= n; k++) {
    gl -= Math.log(x0 - 1);
    x0 -= 1;
  }
  return gl;
}
