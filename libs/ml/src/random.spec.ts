import { describe, expect, it } from 'vitest';
import { dirichletSample, logGammaSample, seededRandom } from './random';

describe('seededRandom', () => {
  it('repeats its stream for a seed and stays in [0, 1)', () => {
    const a = seededRandom(123);
    const b = seededRandom(123);
    const xs = Array.from({ length: 1000 }, () => a());
    expect(xs).toEqual(Array.from({ length: 1000 }, () => b()));
    expect(Math.min(...xs)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...xs)).toBeLessThan(1);
    expect(xs.reduce((s, x) => s + x, 0) / xs.length).toBeCloseTo(0.5, 1);
  });

  it('gives different streams for seeds that differ only above 32 bits', () => {
    expect(seededRandom(1)()).not.toBe(seededRandom(1 + 2 ** 32)());
  });

  it('refuses non-integer seeds', () => {
    expect(() => seededRandom(0.5)).toThrow('seed must be an integer');
  });
});

describe('gamma and Dirichlet sampling', () => {
  it.each([0.1, 0.5, 1, 3, 20])('Gamma(%d) samples have mean close to the shape', (shape) => {
    const rng = seededRandom(shape * 1000);
    const n = 20_000;
    let sum = 0;
    for (let i = 0; i < n; i++) sum += Math.exp(logGammaSample(shape, rng));
    expect(sum / n).toBeGreaterThan(shape * 0.95);
    expect(sum / n).toBeLessThan(shape * 1.05);
  });

  it('Dirichlet samples sum to one even for tiny alpha', () => {
    const rng = seededRandom(9);
    for (const alpha of [0.001, 0.1, 10]) {
      const p = dirichletSample(6, alpha, rng);
      expect(p.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
      p.forEach((x) => expect(x).toBeGreaterThanOrEqual(0));
    }
  });
});
