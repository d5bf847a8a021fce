import { BlockList, isIP } from 'node:net';
import { HttpsProxyAgent } from 'https-proxy-agent';
import type { ClientOptions } from 'ws';

/** What `socketOptions` needs besides the URL. */
export interface TransportOptions {
  /**
   * PEM bundle of the CAs to trust for a wss:// aggregator (the contents of `--ca FILE`). It
   * replaces Node's default roots and NODE_EXTRA_CA_CERTS for this connection, as curl's --cacert
   * does; without it those defaults apply.
   */
  ca?: string | Buffer;
  /** Where to read HTTPS_PROXY, HTTP_PROXY and NO_PROXY (default `process.env`). */
  env?: NodeJS.ProcessEnv;
}

/**
 * The `ws` client options that carry the node's trust and proxy settings to the aggregator; spread
 * them into the options of `new WebSocket(url, ...)`.
 *
 * With a proxy from the environment (https_proxy / HTTPS_PROXY for wss, http_proxy / HTTP_PROXY
 * for ws; no_proxy / NO_PROXY exempts hosts), the socket is an HTTP CONNECT tunnel through the
 * proxy, and TLS runs inside it end to end: the proxy sees the target host and port, never the
 * traffic, and the aggregator's certificate is still checked against `ca`.
 *
 * @example
 * const ca = args.ca ? fs.readFileSync(args.ca) : undefined;
 * const ws = new WebSocket(url, { perMessageDeflate: false, ...socketOptions(url, { ca }) });
 */
export function socketOptions(url: string, opts: TransportOptions = {}): ClientOptions {
  const options: ClientOptions = {};
  if (opts.ca !== undefined) options.ca = checkPem(opts.ca);
  const proxy = proxyForUrl(url, opts.env ?? process.env);
  // The request options (ca included) reach the agent, which starts TLS over the tunnel with them.
  if (proxy) options.agent = new HttpsProxyAgent(proxy);
  return options;
}

/**
 * The proxy a connection to `url` goes through according to `env`, or undefined to go direct.
 * Lower-case variables win over upper-case ones, as with curl; an empty one counts as unset.
 *
 * @example
 * proxyForUrl('wss://agg.example/v1/fl', { HTTPS_PROXY: 'proxy:3128' }); // URL http://proxy:3128/
 */
export function proxyForUrl(url: string, env: NodeJS.ProcessEnv = process.env): URL | undefined {
  const target = new URL(url);
  const secure = target.protocol === 'wss:' || target.protocol === 'https:';
  if (!secure && target.protocol !== 'ws:' && target.protocol !== 'http:')
    throw new Error(`the aggregator URL must use ws, wss, http or https; got "${target.protocol}"`);
  const name = secure ? 'https_proxy' : 'http_proxy';
  const raw = envVar(env, name);
  if (!raw) return undefined;
  const port = Number(target.port || (secure ? 443 : 80));
  if (bypassesProxy(target.hostname, port, envVar(env, 'no_proxy') ?? '')) return undefined;

  let proxy: URL;
  try {
    // "proxy:3128", without a scheme, is common in the wild and means an HTTP proxy.
    proxy = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `http://${raw}`);
  } catch {
    throw new Error(`${name.toUpperCase()} must be a URL such as http://proxy:3128; got "${raw}"`);
  }
  if (proxy.protocol !== 'http:' && proxy.protocol !== 'https:')
    throw new Error(
      `${name.toUpperCase()} must be an http:// or https:// proxy (HTTP CONNECT); got "${raw}"`,
    );
  return proxy;
}

/**
 * True for names that always mean this machine: `localhost`, 127.0.0.0/8 and ::1 (also written
 * `[::1]` or as IPv4-mapped `::ffff:127.x.y.z`). Other names, even ones that resolve to loopback,
 * are not.
 *
 * @example
 * if (url.protocol === 'ws:' && !isLoopbackHost(url.hostname)) warn('updates travel unencrypted');
 */
export function isLoopbackHost(hostname: string): boolean {
  const host = unbracket(hostname.toLowerCase()).replace(/\.$/, '');
  if (host === 'localhost') return true;
  const family = isIP(host);
  return family !== 0 && LOOPBACK.check(host, family === 4 ? 'ipv4' : 'ipv6');
}

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/**
 * NO_PROXY entries are comma- or space-separated: `*` (everything), a host or domain
 * (`example.com` and `.example.com` both match it and its subdomains), an IP address or CIDR
 * block, each optionally with `:port`. Loopback is not exempt unless listed.
 */
function bypassesProxy(hostname: string, port: number, noProxy: string): boolean {
  const host = unbracket(hostname.toLowerCase()).replace(/\.$/, '');
  const family = isIP(host);
  for (const raw of noProxy.toLowerCase().split(/[\s,]+/)) {
    if (!raw) continue;
    if (raw === '*') return true;
    const { entry, entryPort } = splitPort(raw);
    if (entryPort !== undefined && entryPort !== port) continue;
    if (family !== 0) {
      if (matchesAddress(host, family, entry)) return true;
      continue;
    }
    const domain = entry.replace(/^\*?\./, '').replace(/\.$/, '');
    if (domain && (host === domain || host.endsWith(`.${domain}`))) return true;
  }
  return false;
}

function matchesAddress(host: string, family: number, entry: string): boolean {
  const [base = '', bits] = entry.split('/');
  const baseFamily = isIP(base);
  if (baseFamily === 0) return false;
  const list = new BlockList();
  const type = baseFamily === 4 ? 'ipv4' : 'ipv6';
  if (bits === undefined) list.addAddress(base, type);
  else {
    const prefix = Number(bits);
    if (!Number.isInteger(prefix) || prefix < 0 || prefix > (baseFamily === 4 ? 32 : 128))
      return false;
    list.addSubnet(base, prefix, type);
  }
  return list.check(host, family === 4 ? 'ipv4' : 'ipv6');
}

/** `host:port`, `[v6]:port`, or a bare host / address / CIDR block (a bare IPv6 has no port). */
function splitPort(raw: string): { entry: string; entryPort?: number } {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(raw);
  if (bracketed) return withPort(bracketed[1] ?? '', bracketed[2]);
  const colon = raw.indexOf(':');
  if (colon !== -1 && colon === raw.lastIndexOf(':'))
    return withPort(raw.slice(0, colon), raw.slice(colon + 1));
  return { entry: raw };
}

function withPort(entry: string, port: string | undefined): { entry: string; entryPort?: number } {
  return port ? { entry, entryPort: Number(port) } : { entry };
}

function envVar(env: NodeJS.ProcessEnv, lower: string): string | undefined {
  return env[lower]?.trim() || env[lower.toUpperCase()]?.trim() || undefined;
}

function unbracket(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

function checkPem(ca: string | Buffer): string | Buffer {
  const text = typeof ca === 'string' ? ca : ca.toString('latin1');
  if (!text.includes('-----BEGIN CERTIFICATE-----'))
    throw new Error(
      '--ca must be a PEM file holding at least one "-----BEGIN CERTIFICATE-----" block',
    );
  return ca;
}
