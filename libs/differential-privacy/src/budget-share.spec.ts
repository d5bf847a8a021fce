import { describe, expect, it } from 'vitest';
import { gaussianZcdp, shareNoiseMultiplier, zcdpOfBudget } from './index';
import { computeEpsilon } from './accountant';

describe('budget shares through zCDP', () => {
  it('inverts the Bun-Steinke conversion: rho + 2 sqrt(rho ln 1/delta) = epsilon', () => {
    for (const [eps, delta] of [
      [1, 1e-5],
      [0.1, 1e-6],
      [8, 1e-3],
    ] as const) {
      const rho = zcdpOfBudget(eps, delta);
      expect(rho + 2 * Math.sqrt(rho * Math.log(1 / delta))).toBeCloseTo(eps, 12);
    }
  });

  it('gives releases that together use exactly the share of rho', () => {
    const z = shareNoiseMultiplier({ epsilon: 1, delta: 1e-5, share: 0.1, releases: 11 });
    expect(11 * gaussianZcdp(z)).toBeCloseTo(0.1 * zcdpOfBudget(1, 1e-5), 14);
  });

  it("is conservative: releases using a whole budget's rho, accounted exactly by RDP, stay within its epsilon", () => {
    for (const releases of [1, 11, 200]) {
      const z = Math.sqrt(releases / (2 * zcdpOfBudget(1, 1e-5)));
      const eps = computeEpsilon({ q: 1, sigma: z, steps: releases }, 1e-5).epsilon;
      expect(eps).toBeLessThanOrEqual(1);
      expect(eps).toBeGreaterThan(0.8);
    }
  });

  it('refuses shares, budgets and counts out of range, naming them', () => {
    expect(() => zcdpOfBudget(0, 1e-5)).toThrow(/epsilon/);
    expect(() => zcdpOfBudget(1, 1)).toThrow(/delta/);
    expect(() => shareNoiseMultiplier({ epsilon: 1, delta: 1e-5, share: 1, releases: 1 })).toThrow(
      /share/,
    );
    expect(() =>
      shareNoiseMultiplier({ epsilon: 1, delta: 1e-5, share: 0.1, releases: 0 }),
    ).toThrow(/releases/);
    expect(() => gaussianZcdp(-1)).toThrow(/noise multiplier/);
  });
});
