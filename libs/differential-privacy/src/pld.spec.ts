import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import fixture from './fixtures/dp-accounting-pld.json';
import { computeEpsilon, DpError, DpErrorCode, PldAccountant, pldEpsilon } from './index';
import { ndtr } from './special';

type Row = [number, number, number, number, number, number];
const rows = fixture.cases as Row[];
const extended = fixture.extendedPrecision as [number, number, number, number, number][];

/**
 * The default run checks every fixture point whose composed PLD has at most 20k grid points, plus
 * the sigma = 0.3 and 10^6-step corners (about 20 s on an idle machine); CONFIDE_DP_FULL=1 checks
 * all 336 (a few minutes).
 */
const FULL = Boolean(process.env['CONFIDE_DP_FULL']);
const ALWAYS = ['1:0.3:1', '0.1:100:1000000'];
const included = (r: Row): boolean =>
  FULL || r[5] <= 20_000 || ALWAYS.includes(`${r[0]}:${r[1]}:${r[2]}`);

/** At 10^6 steps and delta 1e-10 both implementations are at the limit of double-precision FFTs. */
const noiseLimited = (steps: number, delta: number): boolean => steps >= 1e6 && delta <= 1e-10;

/** Groups fixture rows by (q, sigma, steps) so each PLD is built once. */
function grouped(): Map<string, Row[]> {
  const m = new Map<string, Row[]>();
  for (const r of rows) {
    if (!included(r)) continue;
    const k = `${r[0]}:${r[1]}:${r[2]}`;
    m.set(k, [...(m.get(k) ?? []), r]);
  }
  return m;
}

describe("PLD accountant against dp_accounting's PLDAccountant (fixtures/dp-accounting-pld.json)", () => {
  it('is within 1% of it and never more than 0.5% below it', () => {
    let worstAbove = 0;
    let worstBelow = 0;
    let checked = 0;
    for (const group of grouped().values()) {
      const [q, sigma, steps] = group[0]!;
      const acc = new PldAccountant().compose({ q, sigma, steps });
      for (const [, , , delta, want] of group) {
        const got = acc.getEpsilon(delta);
        const where = `q=${q} sigma=${sigma} steps=${steps} delta=${delta}: ${got} vs ${want}`;
        checked++;
        if (want === 0) {
          // Below one grid step both are 0 or a fraction of the 1e-4 interval.
          expect(got, where).toBeLessThanOrEqual(1e-4);
          continue;
        }
        // Relative error, with epsilons below the 1e-4 grid compared on that absolute floor.
        const err = (got - want) / Math.max(want, 1e-4);
        if (noiseLimited(steps, delta)) {
          // Measured up to +1.1% here; the exact-arithmetic value is checked below.
          expect(Math.abs(err), where).toBeLessThan(0.015);
          continue;
        }
        worstAbove = Math.max(worstAbove, err);
        worstBelow = Math.min(worstBelow, err);
        expect(err, where).toBeLessThan(0.01);
        expect(err, where).toBeGreaterThan(-0.005);
      }
    }
    expect(checked).toBeGreaterThan(FULL ? 330 : 140);
    // Measured over all 336 points (CONFIDE_DP_FULL=1), outside the noise-limited corner:
    // +2.1e-3 / -3.1e-4 at delta 1e-10, |err| < 5e-7 at delta 1e-5 and 0.1.
    expect(worstAbove).toBeLessThan(5e-3);
    expect(worstBelow).toBeGreaterThan(-2e-3);
  }, 300_000);

  it('stays within 2% of the extended-precision value where FFT round-off dominates', () => {
    for (const [q, sigma, steps, delta, exact] of extended) {
      if (!included(rows.find((r) => r[0] === q && r[1] === sigma && r[2] === steps)!)) continue;
      const got = pldEpsilon([{ q, sigma, steps }], delta).epsilon;
      const err = (got - exact) / Math.max(exact, 1e-4);
      expect(err, `q=${q} sigma=${sigma} steps=${steps} delta=${delta}`).toBeLessThan(0.02);
      expect(err).toBeGreaterThan(-0.005);
    }
  }, 300_000);
});

describe('PLD accountant properties', () => {
  it('is never above the RDP bound and close to it for large sigma', () => {
    for (const [q, sigma, steps] of [
      [0.01, 1, 1000],
      [0.1, 2, 100],
      [1, 5, 10],
      [0.001, 0.8, 10_000],
    ] as const) {
      const acc = new PldAccountant().compose({ q, sigma, steps });
      for (const delta of [1e-10, 1e-5, 1e-2]) {
        const rdp = computeEpsilon({ q, sigma, steps }, delta);
        expect(acc.getEpsilon(delta)).toBeLessThanOrEqual(rdp.epsilon);
      }
    }
    const pld = computeEpsilon({ q: 0.01, sigma: 1, steps: 10 }, 1e-5, { accountant: 'pld' });
    expect(pld.order).toBeNull();
    // For large sigma with q = 1 the loss is nearly Gaussian and the two agree within ~15%.
    const large = computeEpsilon({ q: 1, sigma: 50, steps: 100 }, 1e-5, { accountant: 'pld' });
    const rdp = computeEpsilon({ q: 1, sigma: 50, steps: 100 }, 1e-5);
    expect(large.epsilon / rdp.epsilon).toBeGreaterThan(0.85);
  }, 60_000);

  it('upper-bounds the exact Gaussian mechanism tightly (Balle & Wang 2018, Theorem 8)', () => {
    // q = 1 composed T times is a Gaussian mechanism with sigma / sqrt(T), whose exact delta at
    // epsilon is Phi(1/(2s) - eps s) - e^eps Phi(-1/(2s) - eps s).
    const exactDelta = (s: number, eps: number): number =>
      ndtr(1 / (2 * s) - eps * s) - Math.exp(eps) * ndtr(-1 / (2 * s) - eps * s);
    fc.assert(
      fc.property(
        fc.double({ min: 1, max: 20, noNaN: true }),
        fc.integer({ min: 1, max: 20 }),
        fc.double({ min: 1e-8, max: 1e-2, noNaN: true }),
        (sigma, steps, delta) => {
          const eps = pldEpsilon([{ q: 1, sigma, steps }], delta).epsilon;
          const s = sigma / Math.sqrt(steps);
          expect(exactDelta(s, eps)).toBeLessThanOrEqual(delta * (1 + 1e-9));
          // ...and not loose: a slightly smaller epsilon already fails.
          expect(exactDelta(s, eps - 2e-3 - 1e-3 * eps)).toBeGreaterThan(delta);
        },
      ),
      { numRuns: 8 },
    );
  }, 60_000);

  it('is monotone in steps and composes histories in any order', () => {
    const a = { q: 0.02, sigma: 1.2, steps: 300 };
    const b = { q: 0.05, sigma: 2, steps: 100 };
    const e1 = pldEpsilon([a], 1e-6).epsilon;
    const e2 = pldEpsilon([a, b], 1e-6).epsilon;
    const e3 = pldEpsilon([b, a], 1e-6).epsilon;
    expect(e2).toBeGreaterThan(e1);
    expect(e3).toBeCloseTo(e2, 9);
    const acc = new PldAccountant().compose(a).compose(b);
    expect(acc.getEpsilon(1e-6)).toBeCloseTo(e2, 9);
    // getDelta inverts getEpsilon (the hockey-stick divergence at that epsilon is <= delta).
    expect(acc.getDelta(e2)).toBeLessThanOrEqual(1e-6 * (1 + 1e-6));
    expect(acc.getDelta(e2 * 0.98)).toBeGreaterThan(1e-6);
  });

  it('coarsens the grid rather than exhausting memory, staying an upper bound', () => {
    const acc = new PldAccountant({ maxGridSize: 2 ** 16 }).compose({
      q: 0.1,
      sigma: 1,
      steps: 1000,
    });
    expect(acc.discretization).toBeGreaterThan(1e-4);
    const fine = pldEpsilon([{ q: 0.1, sigma: 1, steps: 1000 }], 1e-5).epsilon;
    const coarse = acc.getEpsilon(1e-5);
    expect(coarse).toBeGreaterThanOrEqual(fine);
    expect(coarse).toBeLessThan(fine * 1.1);
  });

  it('treats sigma = 0 as no privacy and q = 0 as nothing released', () => {
    expect(pldEpsilon([{ q: 0.1, sigma: 0, steps: 1 }], 1e-5).epsilon).toBe(Infinity);
    expect(pldEpsilon([{ q: 0, sigma: 1, steps: 10 }], 1e-5).epsilon).toBe(0);
    expect(new PldAccountant().compose({ q: 0.1, sigma: 0, steps: 1 }).getDelta(1)).toBe(1);
  });

  it('refuses bad input with a DpError code', () => {
    expect(() => pldEpsilon([{ q: 2, sigma: 1, steps: 1 }], 1e-5)).toThrow(DpError);
    expect(() => new PldAccountant({ valueDiscretizationInterval: 0 })).toThrow(DpError);
    try {
      new PldAccountant().compose({ q: 0.1, sigma: 1, steps: -1 });
    } catch (e) {
      expect((e as DpError).code).toBe(DpErrorCode.INVALID_STEPS);
    }
    expect(() =>
      computeEpsilon({ q: 0.1, sigma: 1, steps: 1 }, 1e-5, {
        accountant: 'pld',
        conversion: 'classic',
      }),
    ).toThrow(/conversion applies to the RDP accountant only/);
  });
});
