import { BlockList, isIP } from 'node:net';

/** A trusted-proxy entry that is neither an address nor a CIDR block. */
export class TrustedProxyError extends Error {
  constructor(entry: string, why: string) {
    super(
      `trusted proxy "${entry}" ${why}; give addresses or CIDR blocks, comma-separated (e.g. 10.0.0.0/8,fd00::/8)`,
    );
    this.name = 'TrustedProxyError';
  }
}

/** One address in canonical text: no IPv6 zone, IPv4-mapped IPv6 as plain IPv4; null when not an address. */
export function normalizeAddress(text: string): string | null {
  let a = text.trim();
  if (a.startsWith('[') && a.includes(']')) a = a.slice(1, a.indexOf(']'));
  const zone = a.indexOf('%');
  if (zone >= 0) a = a.slice(0, zone);
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(a);
  if (mapped) a = mapped[1]!;
  if (isIP(a)) return a.toLowerCase();
  // Some proxies write "address:port" for IPv4.
  const withPort = /^(\d+\.\d+\.\d+\.\d+):\d+$/.exec(a);
  return withPort && isIP(withPort[1]!) ? withPort[1]! : null;
}

function parseCidr(entry: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } {
  const [addr, prefixText, extra] = entry.trim().split('/');
  if (extra !== undefined) throw new TrustedProxyError(entry, 'has more than one "/"');
  const address = normalizeAddress(addr ?? '');
  if (address === null) throw new TrustedProxyError(entry, 'is not an IPv4 or IPv6 address');
  const family = isIP(address) === 4 ? 'ipv4' : 'ipv6';
  const max = family === 'ipv4' ? 32 : 128;
  const prefix = prefixText === undefined ? max : Number(prefixText);
  if (!/^\d+$/.test(prefixText ?? String(max)) || prefix > max) {
    throw new TrustedProxyError(entry, `has a prefix length outside 0-${max}`);
  }
  return { address, prefix, family };
}

/**
 * Works out whom a request comes from. The TCP peer is the client unless it is a trusted proxy (a
 * load balancer): then X-Forwarded-For is read from the right, skipping trusted proxies, and the
 * first address that is not one is the client. Hops left of it were written by the client itself and
 * are ignored, so a client cannot choose the address it is counted under.
 */
export class ClientAddresses {
  private readonly trusted = new BlockList();
  readonly proxies: readonly string[];

  constructor(trustedProxies: readonly string[] = []) {
    this.proxies = [...trustedProxies];
    for (const entry of trustedProxies) {
      const { address, prefix, family } = parseCidr(entry);
      this.trusted.addSubnet(address, prefix, family);
    }
  }

  /** The client's address, from the peer's address and the request's X-Forwarded-For header(s). */
  of(remoteAddress: string | undefined, forwardedFor?: string | string[]): string {
    const peer = normalizeAddress(remoteAddress ?? '') ?? 'unknown';
    if (!this.isTrusted(peer) || forwardedFor === undefined) return peer;
    const hops = (Array.isArray(forwardedFor) ? forwardedFor.join(',') : forwardedFor).split(',');
    let client = peer;
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = normalizeAddress(hops[i]!);
      // A hop a trusted proxy could not parse: the last proxy that forwarded it is all we know.
      if (hop === null) return client;
      client = hop;
      if (!this.isTrusted(hop)) return hop;
    }
    return client;
  }

  private isTrusted(address: string): boolean {
    const v = isIP(address);
    return v !== 0 && this.trusted.check(address, v === 4 ? 'ipv4' : 'ipv6');
  }
}

/**
 * The key under which an address is counted: the address itself for IPv4, its /64 for IPv6 (one
 * host usually holds a whole /64, so counting single IPv6 addresses would cap nothing).
 */
export function addressKey(address: string): string {
  if (isIP(address) !== 6) return address;
  const [head = '', tail = ''] = address.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === '' ? [] : tail.split(':');
  const groups = address.includes('::')
    ? [...left, ...new Array<string>(8 - left.length - right.length).fill('0'), ...right]
    : left;
  return `${groups
    .slice(0, 4)
    .map((g) => parseInt(g, 16).toString(16))
    .join(':')}::/64`;
}
