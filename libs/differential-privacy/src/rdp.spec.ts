import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import fixture from './fixtures/opacus-rdp.json';
import {
  composeRdp,
  computeEpsilon,
  DEFAULT_ORDERS,
  DpError,
  DpErrorCode,
  rdpSubsampledGaussian,
  rdpToEpsilon,
} from './index';

type Row = [number, number, number, number, number, number, number, number];
const rows = fixture.cases as Row[];
const relErr = (a: number, b: number): number =>
  b === 0 ? Math.abs(a) : Math.abs(a - b) / Math.abs(b);

describe('RDP accountant against Opacus (fixtures/opacus-rdp.json)', () => {
  it('uses exactly Opacus DEFAULT_ALPHAS', () => {
    // [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))
    const expected = [
      ...Array.from({ length: 99 }, (_, i) => 1 + (i + 1) / 10.0),
      ...Array.from({ length: 52 }, (_, i) => 12 + i),
    ];
    expect([...DEFAULT_ORDERS]).toEqual(expected);
    expect(DEFAULT_ORDERS).toHaveLength(151);
  });

  it(`equals Opacus' epsilon to 1e-6 relative over ${rows.length} (q, sigma, steps, delta) points`, () => {
    let worst = 0;
    for (const [q, sigma, steps, delta, eps, order] of rows) {
      const got = computeEpsilon({ q, sigma, steps }, delta);
      // Opacus may return a negative epsilon (Theorem 21 at tiny RDP); we report 0 instead.
      const want = Math.max(0, eps);
      const err = want === 0 ? got.epsilon : relErr(got.epsilon, want);
      worst = Math.max(worst, err);
      expect(err, `q=${q} sigma=${sigma} steps=${steps} delta=${delta}`).toBeLessThan(1e-6);
      if (eps > 0) expect(got.order).toBe(order);
    }
    expect(worst).toBeLessThan(1e-7); // measured: 7e-9
  });

  it('covers the corners of the stated ranges', () => {
    const corner = (q: number, sigma: number, steps: number, delta: number): boolean =>
      rows.some((r) => r[0] === q && r[1] === sigma && r[2] === steps && r[3] === delta);
    for (const q of [1e-6, 1])
      for (const sigma of [0.3, 100])
        for (const steps of [1, 1e6])
          for (const delta of [1e-10, 0.1]) expect(corner(q, sigma, steps, delta)).toBe(true);
  });

  it('equals the classic (Mironov 2017) conversion of the same curves', () => {
    for (const [q, sigma, steps, delta, , , epsC, orderC] of rows) {
      const got = computeEpsilon({ q, sigma, steps }, delta, { conversion: 'classic' });
      expect(relErr(got.epsilon, epsC)).toBeLessThan(1e-6);
      expect(got.order).toBe(orderC);
    }
  });

  it('reproduces whole per-step RDP curves', () => {
    for (const c of fixture.curves) {
      const got = rdpSubsampledGaussian(c.q, c.sigma, DEFAULT_ORDERS);
      c.rdp.forEach((want, k) => {
        // Absolute floor: at q = 1e-6 the series' own rounding is about 1e-16 of log A.
        expect(Math.abs(got[k]! - want)).toBeLessThanOrEqual(1e-6 * Math.abs(want) + 1e-13);
      });
    }
  });

  it("matches Opacus' own unit test (accountants_test.py: 7.32911117143)", () => {
    const { epsilon } = computeEpsilon({ q: 0.04, sigma: 1.5, steps: Math.floor(90 / 0.04) }, 1e-5);
    expect(epsilon).toBeCloseTo(7.32911117143, 10);
  });
});

describe('RDP accountant against published values', () => {
  it('gives Abadi et al. 2016 (MNIST, q = 0.01, sigma = 4, 10^4 steps): (1.26, 1e-5)', () => {
    // Section 5 of "Deep Learning with Differential Privacy": the moments accountant (integer
    // moments, classic conversion) gives epsilon 1.26 at delta 1e-5.
    const orders = Array.from({ length: 63 }, (_, k) => k + 2);
    const { epsilon } = computeEpsilon({ q: 0.01, sigma: 4, steps: 10_000 }, 1e-5, {
      orders,
      conversion: 'classic',
    });
    expect(epsilon.toFixed(2)).toBe('1.26');
  });

  it("gives TensorFlow Privacy's compute_dp_sgd_privacy example: (2.92, 1e-5)", () => {
    // tensorflow_privacy/privacy/analysis/compute_dp_sgd_privacy.py: N=60000, batch 256,
    // noise 1.12, 60 epochs, delta 1e-5 "satisfies (2.92, 1e-5)-DP" with its order list and the
    // conversion of its time (classic).
    const orders = [
      1.25,
      1.5,
      1.75,
      2,
      2.25,
      2.5,
      3,
      3.5,
      4,
      4.5,
      ...Array.from({ length: 59 }, (_, k) => k + 5),
      128,
      256,
      512,
    ];
    const steps = Math.ceil((60 * 60000) / 256);
    const { epsilon } = computeEpsilon({ q: 256 / 60000, sigma: 1.12, steps }, 1e-5, {
      orders,
      conversion: 'classic',
    });
    expect(epsilon.toPrecision(3)).toBe('2.92');
    // The Balle conversion is tighter on the same curve.
    const balle = computeEpsilon({ q: 256 / 60000, sigma: 1.12, steps }, 1e-5, { orders });
    expect(balle.epsilon).toBeLessThan(epsilon);
  });
});

describe('RDP accountant properties', () => {
  const q = fc.double({ min: 1e-5, max: 1, noNaN: true });
  const sigma = fc.double({ min: 0.3, max: 50, noNaN: true });
  const steps = fc.integer({ min: 1, max: 1e6 });
  const delta = fc.double({ min: 1e-10, max: 0.1, noNaN: true });

  it('epsilon is non-decreasing in steps', () => {
    fc.assert(
      fc.property(q, sigma, steps, steps, delta, (q, sigma, a, b, delta) => {
        const [lo, hi] = a <= b ? [a, b] : [b, a];
        const e1 = computeEpsilon({ q, sigma, steps: lo }, delta).epsilon;
        const e2 = computeEpsilon({ q, sigma, steps: hi }, delta).epsilon;
        expect(e2).toBeGreaterThanOrEqual(e1 * (1 - 1e-12));
      }),
      { numRuns: 60 },
    );
  });

  it('epsilon is non-decreasing in q and non-increasing in sigma', () => {
    fc.assert(
      fc.property(q, q, sigma, sigma, steps, delta, (q1, q2, s1, s2, steps, delta) => {
        const [qa, qb] = q1 <= q2 ? [q1, q2] : [q2, q1];
        const [sa, sb] = s1 <= s2 ? [s1, s2] : [s2, s1];
        const byQ = [qa, qb].map((q) => computeEpsilon({ q, sigma: sa, steps }, delta).epsilon);
        expect(byQ[1]!).toBeGreaterThanOrEqual(byQ[0]! * (1 - 1e-9));
        const byS = [sa, sb].map((s) => computeEpsilon({ q: qa, sigma: s, steps }, delta).epsilon);
        expect(byS[1]!).toBeLessThanOrEqual(byS[0]! * (1 + 1e-9) + 1e-12);
      }),
      { numRuns: 40 },
    );
  });

  it("composing a history equals adding the entries' curves", () => {
    const entry = fc.record({ q, sigma, steps: fc.integer({ min: 0, max: 5000 }) });
    fc.assert(
      fc.property(fc.array(entry, { minLength: 1, maxLength: 5 }), (history) => {
        const composed = composeRdp(history);
        const summed = new Float64Array(DEFAULT_ORDERS.length);
        for (const e of history) {
          const c = rdpSubsampledGaussian(e.q, e.sigma);
          c.forEach((v, k) => (summed[k] = summed[k]! + v * e.steps));
        }
        composed.forEach((v, k) => expect(v).toBeCloseTo(summed[k]!, 9));
        // and the same split into pieces gives the same epsilon
        const split = history.flatMap((e) => [
          { ...e, steps: Math.floor(e.steps / 2) },
          { ...e, steps: e.steps - Math.floor(e.steps / 2) },
        ]);
        expect(computeEpsilon({ history: split }, 1e-5).epsilon).toBeCloseTo(
          computeEpsilon({ history }, 1e-5).epsilon,
          9,
        );
      }),
      { numRuns: 50 },
    );
  });

  it('q = 1 is the plain Gaussian mechanism: alpha / (2 sigma^2)', () => {
    fc.assert(
      fc.property(sigma, (sigma) => {
        const c = rdpSubsampledGaussian(1, sigma);
        DEFAULT_ORDERS.forEach((a, k) => expect(c[k]).toBe(a / (2 * sigma ** 2)));
      }),
    );
  });

  it('q = 0 costs nothing and sigma = 0 gives no privacy', () => {
    expect([...composeRdp([{ q: 0, sigma: 1, steps: 100 }])].every((r) => r === 0)).toBe(true);
    expect(computeEpsilon({ q: 0, sigma: 1, steps: 100 }, 1e-5)).toEqual({
      epsilon: 0,
      order: null,
    });
    expect(computeEpsilon({ history: [] }, 1e-5)).toEqual({ epsilon: 0, order: null });
    expect(computeEpsilon({ q: 0.1, sigma: 0, steps: 1 }, 1e-5)).toEqual({
      epsilon: Infinity,
      order: null,
    });
  });
});

describe('RDP input checks', () => {
  const code = (f: () => unknown): string | undefined => {
    try {
      f();
    } catch (e) {
      expect(e).toBeInstanceOf(DpError);
      return (e as DpError).code;
    }
    return undefined;
  };

  it('refuses bad q, sigma, steps, delta, orders and curves with a code', () => {
    expect(code(() => rdpSubsampledGaussian(1.5, 1))).toBe(DpErrorCode.INVALID_SAMPLING_RATE);
    expect(code(() => rdpSubsampledGaussian(0.1, -1))).toBe(DpErrorCode.INVALID_NOISE_MULTIPLIER);
    expect(code(() => rdpSubsampledGaussian(0.1, 1, [0.5]))).toBe(DpErrorCode.INVALID_ORDERS);
    expect(code(() => computeEpsilon({ q: 0.1, sigma: 1, steps: 1.5 }, 1e-5))).toBe(
      DpErrorCode.INVALID_STEPS,
    );
    expect(code(() => computeEpsilon({ q: 0.1, sigma: 1, steps: 1 }, 0))).toBe(
      DpErrorCode.INVALID_DELTA,
    );
    expect(code(() => rdpToEpsilon([1, 2], DEFAULT_ORDERS, 1e-5))).toBe(DpErrorCode.INVALID_RDP);
    expect(code(() => rdpToEpsilon([1], [2], 1e-5, 'other' as 'balle'))).toBe(
      DpErrorCode.INVALID_ARGUMENT,
    );
  });
});
