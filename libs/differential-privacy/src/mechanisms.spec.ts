import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  addGaussianNoise,
  clipFactors,
  clipL2,
  distributedNoiseShare,
  DpError,
  DpErrorCode,
  gaussianNoise,
  sampleDiscreteGaussian,
  sampleSkellam,
} from './index';
import { ndtr } from './special';
import { chiSquareCritical, mean, seededRandomSource, variance } from './test-support';

const Z_001 = 3.0902; // upper 0.001 quantile of N(0, 1)

function l2(v: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i]! ** 2;
  return Math.sqrt(s);
}

function errorCode(f: () => unknown): DpErrorCode | undefined {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(DpError);
    return (e as DpError).code;
  }
  return undefined;
}

describe('clipL2', () => {
  it('scales a long vector to norm c and leaves a short one alone', () => {
    const { clipped, norm, factor } = clipL2(Float32Array.of(3, 4), 1);
    expect(norm).toBe(5);
    expect(factor).toBeCloseTo(0.2, 6);
    expect(l2(clipped)).toBeLessThanOrEqual(1);
    expect(l2(clipped)).toBeCloseTo(1, 6);
    const short = Float32Array.of(0.3, 0.4);
    const r = clipL2(short, 1);
    expect(r.factor).toBe(1);
    expect([...r.clipped]).toEqual([...short]);
    expect(r.clipped).not.toBe(short);
  });

  it('never leaves a norm above c despite float32 rounding', () => {
    fc.assert(
      fc.property(
        fc.float32Array({ minLength: 1, maxLength: 300, noNaN: true, noDefaultInfinity: true }),
        fc.double({ min: 1e-6, max: 1e3, noNaN: true }),
        (v, c) => {
          const { clipped, norm } = clipL2(v, c);
          expect(l2(clipped)).toBeLessThanOrEqual(c);
          if (norm <= c) expect([...clipped]).toEqual([...v]);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('refuses NaN entries, non-Float32Array input and a non-positive c', () => {
    expect(errorCode(() => clipL2(Float32Array.of(1, NaN), 1))).toBe(DpErrorCode.INVALID_VECTOR);
    expect(errorCode(() => clipL2([1, 2] as unknown as Float32Array, 1))).toBe(
      DpErrorCode.INVALID_VECTOR,
    );
    expect(errorCode(() => clipL2(Float32Array.of(1), 0))).toBe(DpErrorCode.INVALID_CLIP_NORM);
  });

  it('gives per-example factors for a batch', () => {
    const { norms, factors } = clipFactors(Float32Array.of(3, 4, 0.3, 0.4, 0, 0), 3, 1);
    expect([...norms]).toEqual([5, expect.closeTo(0.5, 6), 0]);
    expect(factors[0]).toBeCloseTo(0.2, 6);
    expect(factors[0]! * 5).toBeLessThanOrEqual(1);
    expect([factors[1], factors[2]]).toEqual([1, 1]);
    expect(errorCode(() => clipFactors(new Float32Array(5), 2, 1))).toBe(
      DpErrorCode.INVALID_ARGUMENT,
    );
  });
});

describe('gaussianNoise', () => {
  const n = 20_000;

  it('has mean 0, variance sigma^2 and passes Kolmogorov-Smirnov at alpha = 0.001', () => {
    const sigma = 2.5;
    const x = gaussianNoise(n, sigma, seededRandomSource('gaussian-ks'));
    expect(Math.abs(mean(x))).toBeLessThan((Z_001 * sigma) / Math.sqrt(n));
    expect(Math.abs(variance(x) / sigma ** 2 - 1)).toBeLessThan(Z_001 * Math.sqrt(2 / n));
    const sorted = [...x].sort((a, b) => a - b);
    let d = 0;
    sorted.forEach((v, i) => {
      const f = ndtr(v / sigma);
      d = Math.max(d, (i + 1) / n - f, f - i / n);
    });
    // Asymptotic critical value sqrt(-ln(alpha / 2) / 2) / sqrt(n) for alpha = 0.001.
    const critical = Math.sqrt(-Math.log(0.001 / 2) / 2) / Math.sqrt(n);
    expect(d).toBeLessThan(critical);
  });

  it('draws from the CSPRNG, never the non-cryptographic Math generator', () => {
    const spy = vi.spyOn(Math, 'random').mockImplementation(() => {
      throw new Error('the non-cryptographic Math generator was used');
    });
    const x = gaussianNoise(1001, 1);
    expect(x).toHaveLength(1001);
    expect(new Set(x).size).toBe(1001);
    expect(sampleDiscreteGaussian(2, 100)).toHaveLength(100);
    expect(sampleSkellam(20, 100)).toHaveLength(100);
    spy.mockRestore();
  });

  it('adds noise to a copy of the vector', () => {
    const v = new Float32Array(10_000).fill(3);
    const noisy = addGaussianNoise(v, 0.5, seededRandomSource('add'));
    expect(noisy).toBeInstanceOf(Float32Array);
    expect(v[0]).toBe(3);
    expect(mean(noisy)).toBeCloseTo(3, 1);
    expect(Math.sqrt(variance(noisy))).toBeCloseTo(0.5, 1);
    expect(addGaussianNoise(Float64Array.of(1), 0)[0]).toBe(1);
  });

  it('refuses a negative sigma or count', () => {
    expect(errorCode(() => gaussianNoise(10, -1))).toBe(DpErrorCode.INVALID_NOISE_MULTIPLIER);
    expect(errorCode(() => gaussianNoise(-1, 1))).toBe(DpErrorCode.INVALID_ARGUMENT);
    expect(errorCode(() => gaussianNoise(1.5, 1))).toBe(DpErrorCode.INVALID_ARGUMENT);
  });
});

/** Chi-square goodness of fit of integer samples to a pmf, tails merged until expected >= 5. */
function chiSquare(samples: Int32Array, pmf: (k: number) => number, span: number): void {
  const n = samples.length;
  let lo = -span;
  let hi = span;
  while (pmf(lo) * n < 5) lo++;
  while (pmf(hi) * n < 5) hi--;
  const observed = new Map<number, number>();
  for (const x of samples) {
    const k = Math.min(hi, Math.max(lo, x));
    observed.set(k, (observed.get(k) ?? 0) + 1);
  }
  let stat = 0;
  let mass = 0;
  for (let k = lo; k <= hi; k++) {
    let p = pmf(k);
    if (k === lo) for (let j = -span * 4; j < lo; j++) p += pmf(j);
    if (k === hi) for (let j = hi + 1; j <= span * 4; j++) p += pmf(j);
    mass += p;
    const e = p * n;
    stat += ((observed.get(k) ?? 0) - e) ** 2 / e;
  }
  expect(mass).toBeCloseTo(1, 9);
  expect(stat).toBeLessThan(chiSquareCritical(hi - lo, Z_001));
}

function discreteGaussianPmf(sigma2: number): (k: number) => number {
  let z = 0;
  const lim = Math.ceil(40 * Math.sqrt(sigma2)) + 40;
  for (let k = -lim; k <= lim; k++) z += Math.exp(-(k * k) / (2 * sigma2));
  return (k) => Math.exp(-(k * k) / (2 * sigma2)) / z;
}

describe('sampleDiscreteGaussian (Canonne, Kamath, Steinke 2020)', () => {
  const n = 20_000;

  for (const sigma2 of [0.1, 1, 2.5, 7]) {
    it(`matches the pmf of N_Z(0, ${sigma2}) by chi-square at alpha = 0.001`, () => {
      const x = sampleDiscreteGaussian(sigma2, n, seededRandomSource(`dg-${sigma2}`));
      chiSquare(x, discreteGaussianPmf(sigma2), 60);
    });
  }

  it('has mean 0 and the exact variance for large sigma', () => {
    const sigma2 = 1e6;
    const x = sampleDiscreteGaussian(sigma2, n, seededRandomSource('dg-var'));
    expect(Math.abs(mean(x))).toBeLessThan((Z_001 * 1e3) / Math.sqrt(n));
    expect(Math.abs(variance(x) / sigma2 - 1)).toBeLessThan(Z_001 * Math.sqrt(2 / n));
    expect(x.every(Number.isInteger)).toBe(true);
  });

  it('refuses a non-positive or enormous variance', () => {
    expect(errorCode(() => sampleDiscreteGaussian(0, 1))).toBe(DpErrorCode.INVALID_ARGUMENT);
    expect(errorCode(() => sampleDiscreteGaussian(1e20, 1))).toBe(DpErrorCode.INVALID_ARGUMENT);
  });
});

function skellamPmf(mu: number): (k: number) => number {
  const logPois = (j: number): number => {
    let lf = 0;
    for (let i = 2; i <= j; i++) lf += Math.log(i);
    return -mu + j * Math.log(mu) - lf;
  };
  const jmax = Math.ceil(mu + 40 * Math.sqrt(mu) + 40);
  const lp = Array.from({ length: jmax + 1 }, (_, j) => logPois(j));
  return (k) => {
    let s = 0;
    const a = Math.abs(k);
    for (let j = 0; j + a <= jmax; j++) s += Math.exp(lp[j]! + lp[j + a]!);
    return s;
  };
}

describe('sampleSkellam (Agarwal, Kairouz, Liu 2021)', () => {
  const n = 20_000;

  for (const mu of [0.7, 3, 50]) {
    it(`matches the Skellam(${mu}) pmf by chi-square at alpha = 0.001`, () => {
      const x = sampleSkellam(mu, n, seededRandomSource(`sk-${mu}`));
      chiSquare(x, skellamPmf(mu), 150);
    });
  }

  it('has mean 0 and variance 2 mu for large mu (PTRS Poisson draws)', () => {
    const mu = 1e7;
    const x = sampleSkellam(mu, n, seededRandomSource('sk-var'));
    expect(Math.abs(mean(x))).toBeLessThan((Z_001 * Math.sqrt(2 * mu)) / Math.sqrt(n));
    expect(Math.abs(variance(x) / (2 * mu) - 1)).toBeLessThan(Z_001 * Math.sqrt(2 / n));
  });
});

describe('distributedNoiseShare', () => {
  it('splits the variance over t honest survivors', () => {
    expect(distributedNoiseShare({ sigma: 200, t: 8 })).toEqual({
      variance: 5000,
      discreteGaussianSigma2: 5000,
      skellamMu: 2500,
    });
  });

  it('makes the sum of t Skellam shares carry variance sigma^2', () => {
    const t = 5;
    const share = distributedNoiseShare({ sigma: 30, t });
    const rng = seededRandomSource('shares');
    const parts = Array.from({ length: t }, () => sampleSkellam(share.skellamMu, 20_000, rng));
    const sum = parts[0]!.map((_, i) => parts.reduce((s, p) => s + p[i]!, 0));
    expect(Math.abs(variance(sum) / 900 - 1)).toBeLessThan(Z_001 * Math.sqrt(2 / 20_000));
  });

  it('refuses a non-integer t', () => {
    expect(errorCode(() => distributedNoiseShare({ sigma: 1, t: 0 }))).toBe(
      DpErrorCode.INVALID_ARGUMENT,
    );
    expect(errorCode(() => distributedNoiseShare({ sigma: -1, t: 2 }))).toBe(
      DpErrorCode.INVALID_ARGUMENT,
    );
  });
});

afterEach(() => vi.restoreAllMocks());
