import { describe, expect, it } from 'vitest';
import { AuthFailureLimiter } from './auth-failure-limiter';

describe('AuthFailureLimiter', () => {
  const clock = () => {
    let t = 1_000_000;
    return { now: () => t, advance: (ms: number) => (t += ms) };
  };

  it('limits an address after `limit` failures in the window, until the oldest leaves it', () => {
    const c = clock();
    const l = new AuthFailureLimiter(3, 60_000, c.now);
    l.recordFailure('a');
    c.advance(10_000);
    l.recordFailure('a');
    expect(l.retryAfterMs('a')).toBe(0);
    c.advance(10_000);
    l.recordFailure('a');
    // The first failure leaves the window 40 s from now.
    expect(l.retryAfterMs('a')).toBe(40_000);
    expect(l.retryAfterMs('b')).toBe(0);
    c.advance(39_999);
    expect(l.retryAfterMs('a')).toBe(1);
    c.advance(1);
    expect(l.retryAfterMs('a')).toBe(0);
  });

  it('forgets addresses whose failures all left the window', () => {
    const c = clock();
    const l = new AuthFailureLimiter(2, 1000, c.now);
    l.recordFailure('a');
    l.recordFailure('b');
    c.advance(1000);
    expect(l.retryAfterMs('a')).toBe(0);
    expect(l.retryAfterMs('b')).toBe(0);
    expect(l.size).toBe(0);
  });

  it('keeps no more than `limit` failures per address', () => {
    const c = clock();
    const l = new AuthFailureLimiter(2, 1000, c.now);
    for (let i = 0; i < 100; i++) {
      l.recordFailure('a');
      c.advance(5);
    }
    // Limited until the second-to-last failure leaves the window.
    expect(l.retryAfterMs('a')).toBe(1000 - 10);
  });

  it('refuses a limit or window that is not positive', () => {
    expect(() => new AuthFailureLimiter(0, 1000)).toThrow(RangeError);
    expect(() => new AuthFailureLimiter(1, 0)).toThrow(RangeError);
  });
});
