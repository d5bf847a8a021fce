import { describe, expect, it } from 'vitest';
import { sampleSites, sampleSize } from './site-sampling';

const SITES = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j'];

describe('sampleSize', () => {
  it('takes ceil(fraction x connected), floored at minSites and capped at everyone', () => {
    expect(sampleSize(5, 0.4, 2)).toBe(2);
    expect(sampleSize(5, 0.5, 1)).toBe(3);
    expect(sampleSize(10, 0.7, 1)).toBe(7); // 0.7 x 10 is a hair above 7 in floating point
    expect(sampleSize(10, 0.1, 4)).toBe(4);
    expect(sampleSize(3, 0.1, 5)).toBe(3);
    expect(sampleSize(7, 1, 2)).toBe(7);
    expect(sampleSize(0, 0.5, 2)).toBe(0);
  });

  it('refuses a fraction outside (0, 1] and a minSites below 1', () => {
    expect(() => sampleSize(5, 0, 2)).toThrow(/fraction/);
    expect(() => sampleSize(5, 1.5, 2)).toThrow(/fraction/);
    expect(() => sampleSize(5, Number.NaN, 2)).toThrow(/fraction/);
    expect(() => sampleSize(5, 0.5, 0)).toThrow(/minSites/);
    expect(() => sampleSize(-1, 0.5, 1)).toThrow(/connected/);
  });
});

describe('sampleSites', () => {
  it('draws the right number of distinct connected sites, in their given order', () => {
    for (let t = 0; t < 200; t++) {
      const got = sampleSites(SITES, 0.3, 2);
      expect(got).toHaveLength(3);
      expect(new Set(got).size).toBe(3);
      for (const s of got) expect(SITES).toContain(s);
      expect(got).toEqual([...got].sort((x, y) => SITES.indexOf(x) - SITES.indexOf(y)));
    }
  });

  it('takes at least minSites even when the fraction asks for fewer', () => {
    const got = sampleSites(SITES, 0.05, 4);
    expect(got).toHaveLength(4);
    expect(new Set(got).size).toBe(4);
  });

  it('takes everyone with fraction 1, drawing no randomness', () => {
    const never = (): number => {
      throw new Error('drew randomness');
    };
    expect(sampleSites(SITES, 1, 2, never)).toEqual(SITES);
    expect(sampleSites(['a', 'b'], 0.1, 3, never)).toEqual(['a', 'b']);
  });

  it('reaches every site and every pair (a uniform draw)', () => {
    const seen = new Map<string, number>();
    const pairs = new Set<string>();
    const five = SITES.slice(0, 5);
    for (let t = 0; t < 2000; t++) {
      const got = sampleSites(five, 0.4, 2);
      pairs.add(got.join(''));
      for (const s of got) seen.set(s, (seen.get(s) ?? 0) + 1);
    }
    // 10 possible pairs; missing one in 2000 draws has probability about 10 x 0.9^2000.
    expect(pairs.size).toBe(10);
    // Each site is in 2/5 of the draws (800 expected); 600..1000 is over 10 standard deviations.
    for (const s of five) {
      expect(seen.get(s)).toBeGreaterThan(600);
      expect(seen.get(s)).toBeLessThan(1000);
    }
  });

  it('is the partial Fisher-Yates shuffle of the given random source', () => {
    // Always the last index: position 0 takes e (a moves last), then position 1 takes a back.
    const last = (_min: number, max: number): number => max - 1;
    expect(sampleSites(['a', 'b', 'c', 'd', 'e'], 0.4, 1, last)).toEqual(['a', 'e']);
    expect(() => sampleSites(['a', 'b', 'c'], 0.3, 1, () => 7)).toThrow(/random source/);
  });
});
