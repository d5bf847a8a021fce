import { describe, expect, it } from 'vitest';
import { PendingLogins } from './pending-logins';

describe('PendingLogins', () => {
  it('refuses past the per-address cap, then past the total cap, and frees a slot on release', () => {
    const p = new PendingLogins(3, 2);
    expect(p.admit('a')).toBeNull();
    expect(p.admit('a')).toBeNull();
    expect(p.admit('a')).toBe('pending_logins_per_address');
    expect(p.admit('b')).toBeNull();
    expect(p.admit('c')).toBe('pending_logins');
    expect(p.size).toBe(3);
    p.release('a');
    expect(p.admit('c')).toBeNull();
    expect(p.admit('a')).toBe('pending_logins');
  });

  it('ignores a release of an address it does not count', () => {
    const p = new PendingLogins(1, 1);
    p.release('x');
    expect(p.size).toBe(0);
    expect(p.admit('x')).toBeNull();
  });

  it('refuses caps that are not positive integers', () => {
    expect(() => new PendingLogins(0, 1)).toThrow(/maxTotal/);
    expect(() => new PendingLogins(1, 1.5)).toThrow(/maxPerAddress/);
  });
});
