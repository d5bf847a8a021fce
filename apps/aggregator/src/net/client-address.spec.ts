import { describe, expect, it } from 'vitest';
import { addressKey, ClientAddresses, normalizeAddress, TrustedProxyError } from './client-address';

describe('ClientAddresses', () => {
  it('takes the TCP peer as the client when no proxy is trusted, whatever X-Forwarded-For says', () => {
    const a = new ClientAddresses();
    expect(a.of('203.0.113.5', '198.51.100.1')).toBe('203.0.113.5');
    expect(a.of('::ffff:203.0.113.5', undefined)).toBe('203.0.113.5');
  });

  it('reads X-Forwarded-For from the right behind trusted proxies, so a client cannot pick its address', () => {
    const a = new ClientAddresses(['10.0.0.0/8', 'fd00::/8']);
    // The client wrote 1.1.1.1 itself; the load balancer appended the address it saw.
    expect(a.of('10.1.2.3', '1.1.1.1, 203.0.113.7')).toBe('203.0.113.7');
    // Two trusted hops, given as two headers.
    expect(a.of('10.1.2.3', ['203.0.113.8, 10.9.9.9', '10.0.0.1'])).toBe('203.0.113.8');
    expect(a.of('fd00::1', '2001:db8::5')).toBe('2001:db8::5');
    // Only trusted hops: the leftmost is the best we know.
    expect(a.of('10.1.2.3', '10.0.0.7')).toBe('10.0.0.7');
    // An unparsable hop: the proxy that forwarded it.
    expect(a.of('10.1.2.3', 'garbage, 10.0.0.9')).toBe('10.0.0.9');
    // A peer outside the trusted blocks is the client.
    expect(a.of('192.0.2.1', '203.0.113.7')).toBe('192.0.2.1');
  });

  it('refuses a trusted proxy that is not an address or a CIDR block, naming it', () => {
    for (const bad of [
      '10.0.0.0/33',
      'fd00::/129',
      'example.org',
      '10.0.0.0/8/1',
      '10.0.0.0/',
      '',
    ]) {
      expect(() => new ClientAddresses([bad])).toThrow(TrustedProxyError);
    }
    expect(() => new ClientAddresses(['10.0.0.0/8', 'nope'])).toThrow(
      /"nope" is not an IPv4 or IPv6 address/,
    );
    expect(
      new ClientAddresses([' 10.0.0.0/8 ', '192.168.1.7', '::1']).of('192.168.1.7', '198.51.100.1'),
    ).toBe('198.51.100.1');
  });
});

describe('normalizeAddress and addressKey', () => {
  it('normalise mapped, bracketed, zoned and ported forms', () => {
    expect(normalizeAddress('::FFFF:192.0.2.1')).toBe('192.0.2.1');
    expect(normalizeAddress('[2001:DB8::1]')).toBe('2001:db8::1');
    expect(normalizeAddress('fe80::1%eth0')).toBe('fe80::1');
    expect(normalizeAddress('192.0.2.1:5678')).toBe('192.0.2.1');
    expect(normalizeAddress('not an address')).toBeNull();
  });

  it('count IPv4 by address and IPv6 by /64', () => {
    expect(addressKey('192.0.2.1')).toBe('192.0.2.1');
    expect(addressKey('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:db8:1:2::ffff')).toBe(addressKey('2001:db8:1:2:1:2:3:4'));
    expect(addressKey('2001:db8:1:3::1')).not.toBe(addressKey('2001:db8:1:2::1'));
    expect(addressKey('::1')).toBe('0:0:0:0::/64');
  });
});
