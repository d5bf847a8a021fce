import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  composeHistory,
  cumulativeEpsilon,
  forecastRoundsLeft,
  LedgerError,
  projectNextRound,
} from './index';
import {
  classicEpsilon,
  gaussianRdp,
  mechanism,
  referenceAccountant,
  TEST_DELTA,
  TEST_ORDERS,
} from './testing';

const accountant = referenceAccountant();
const eps = (steps: number, sigma: number): number =>
  classicEpsilon(gaussianRdp(steps, sigma, TEST_ORDERS), TEST_ORDERS, TEST_DELTA).epsilon;
const history = (releases: number, sigma = 1.1): { rdp: number[] }[] =>
  Array.from({ length: releases }, () => ({ rdp: gaussianRdp(1, sigma, TEST_ORDERS) }));

describe('cumulative epsilon', () => {
  it('adds RDP curves and converts once, never adding epsilons', () => {
    const one = gaussianRdp(1, 1.1, TEST_ORDERS);
    const { epsilon, rdpSum } = cumulativeEpsilon(one, one, TEST_DELTA, accountant);
    expect(rdpSum).toEqual(gaussianRdp(2, 1.1, TEST_ORDERS));
    expect(epsilon).toBeCloseTo(eps(2, 1.1), 12);
    expect(epsilon).toBeLessThan(2 * eps(1, 1.1));
  });

  it('treats an empty previous sum as no release yet', () => {
    const one = gaussianRdp(1, 1.1, TEST_ORDERS);
    expect(cumulativeEpsilon([], one, TEST_DELTA, accountant).epsilon).toBe(eps(1, 1.1));
  });

  it('refuses curves over another order grid', () => {
    expect(() =>
      cumulativeEpsilon([1, 2], gaussianRdp(1, 1, TEST_ORDERS), TEST_DELTA, accountant),
    ).toThrow(LedgerError);
  });
});

describe('projecting the next round', () => {
  it('allows a site whose projected epsilon stays within its limit', () => {
    const p = projectNextRound(history(3), mechanism(), TEST_DELTA, 100, accountant);
    expect(p.currentEpsilon).toBeCloseTo(eps(3, 1.1), 12);
    expect(p.projectedEpsilon).toBeCloseTo(eps(4, 1.1), 12);
    expect(p.allowed).toBe(true);
    expect(p.remaining).toBeCloseTo(100 - eps(4, 1.1), 12);
  });

  it('refuses a round that would exceed the site epsilon budget', () => {
    const limit = (eps(3, 1.1) + eps(4, 1.1)) / 2;
    const p = projectNextRound(history(3), mechanism(), TEST_DELTA, limit, accountant);
    expect(p.allowed).toBe(false);
    expect(p.remaining).toBeLessThan(0);
  });

  it('starts from zero epsilon for a site with no releases', () => {
    expect(projectNextRound([], mechanism(), TEST_DELTA, 100, accountant).currentEpsilon).toBe(0);
  });
});

describe('forecasting rounds left', () => {
  it('agrees with a linear scan over further identical releases', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 20 }),
        fc.double({ min: 0.5, max: 5, noNaN: true }),
        fc.double({ min: 1, max: 60, noNaN: true }),
        (past, sigma, limit) => {
          const h = history(past, sigma);
          let scan = 0;
          while (scan < 5000 && eps(past + scan + 1, sigma) <= limit) scan += 1;
          if (past > 0 && eps(past, sigma) > limit) scan = 0;
          const k = forecastRoundsLeft(
            h,
            mechanism({ noiseMultiplier: sigma }),
            TEST_DELTA,
            limit,
            accountant,
            5000,
          );
          // Floating point may put the boundary one release either way of the closed form.
          expect(Math.abs(k - scan)).toBeLessThanOrEqual(1);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('is consistent with projectNextRound: k more rounds fit, the one after does not', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 10 }),
        fc.double({ min: 0.7, max: 3, noNaN: true }),
        fc.double({ min: 2, max: 40, noNaN: true }),
        (past, sigma, limit) => {
          const m = mechanism({ noiseMultiplier: sigma });
          const k = forecastRoundsLeft(history(past, sigma), m, TEST_DELTA, limit, accountant);
          const after = (n: number) =>
            projectNextRound(history(past + n, sigma), m, TEST_DELTA, limit, accountant);
          if (k > 0) expect(after(k - 1).allowed).toBe(true);
          expect(after(k).allowed).toBe(false);
        },
      ),
      { numRuns: 40 },
    );
  });

  it('is 0 for a site that has spent its budget, and stops at the cap', () => {
    expect(forecastRoundsLeft(history(50), mechanism(), TEST_DELTA, 5, accountant)).toBe(0);
    const light = mechanism({ noiseMultiplier: 1e4 });
    expect(forecastRoundsLeft([], light, TEST_DELTA, 50, accountant, 1000)).toBe(1000);
  });

  it('never grows as the history grows', () => {
    const counts = [0, 5, 10, 20].map((n) =>
      forecastRoundsLeft(history(n), mechanism(), TEST_DELTA, 30, accountant),
    );
    expect([...counts].sort((a, b) => b - a)).toEqual(counts);
    expect(composeHistory(history(2))).toEqual(gaussianRdp(2, 1.1, TEST_ORDERS));
  });
});
