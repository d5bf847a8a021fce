import { describe, expect, it } from 'vitest';
import { UsageError } from './command';
import { parseDuration } from './duration';

describe('parseDuration', () => {
  it('reads a whole number and one unit into seconds', () => {
    expect(parseDuration('45s', 'expires-in')).toBe(45);
    expect(parseDuration('30m', 'expires-in')).toBe(1800);
    expect(parseDuration('12h', 'expires-in')).toBe(43_200);
    expect(parseDuration('90d', 'expires-in')).toBe(7_776_000);
    expect(parseDuration('2w', 'expires-in')).toBe(1_209_600);
  });

  it('refuses anything else with a usage error naming the option and the input', () => {
    for (const bad of ['', '90', 'd', '0d', '-1d', '1.5h', '90x', '1h30m', '90 d', '12H', 'P90D']) {
      expect(() => parseDuration(bad, 'expires-in')).toThrow(UsageError);
      expect(() => parseDuration(bad, 'expires-in')).toThrow(
        `--expires-in must be a duration such as 30m, 12h or 90d (a positive whole number and one of the units s, m, h, d, w); got "${bad}"`,
      );
    }
  });
});
