import { createCipheriv } from 'node:crypto';
import { compareIds, utf8 } from './bytes';
import { SecAggError } from './errors';
import { hkdfSha256, LABELS } from './kdf';

/** The neighbour graph of a round: complete, or a randomly permuted Harary graph of even degree k. */
export type GraphKind = 'complete' | 'harary';

/** The threat models of Bell et al. 2020 that the library supports. */
export type ThreatModel = 'semi-honest' | 'semi-malicious';

/**
 * A uniformly random permutation of 0..n-1 derived from the session id (Fisher-Yates on an
 * AES-256-CTR stream keyed by HKDF(sessionId, info = LABELS.graph), with rejection sampling), so every
 * party computes the same one and nobody chooses it after seeing the keys.
 *
 * @example
 * graphPermutation(sessionId, 5); // e.g. Uint32Array [3, 0, 4, 1, 2]
 */
export function graphPermutation(sessionId: Uint8Array, n: number): Uint32Array {
  if (!(sessionId instanceof Uint8Array) || sessionId.length !== 32) {
    throw new SecAggError('BAD_INPUT', 'session id must be 32 bytes');
  }
  if (!Number.isSafeInteger(n) || n < 1 || n > 2 ** 24) {
    throw new SecAggError('BAD_INPUT', 'graph size must be an integer in [1, 2^24]');
  }
  const key = hkdfSha256(sessionId, new Uint8Array(0), utf8(LABELS.graph), 32);
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  key.fill(0);
  const zero = Buffer.alloc(4 * 1024);
  let words = new Uint32Array(0);
  let next = 0;
  const draw = (): number => {
    if (next >= words.length) {
      const ks = cipher.update(zero);
      words = new Uint32Array(ks.buffer.slice(ks.byteOffset, ks.byteOffset + ks.byteLength));
      next = 0;
    }
    return words[next++] as number;
  };
  const perm = new Uint32Array(n);
  for (let i = 0; i < n; i++) perm[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const range = i + 1;
    const limit = 2 ** 32 - (2 ** 32 % range);
    let r = draw();
    while (r >= limit) r = draw();
    const j = r % range;
    const tmp = perm[i] as number;
    perm[i] = perm[j] as number;
    perm[j] = tmp;
  }
  return perm;
}

/**
 * The positions adjacent to `position` in the Harary graph H(k, n) for even k: the k/2 nearest on
 * each side of a ring of n. With k >= n - 1 that is every other position (the complete graph).
 *
 * @example
 * hararyRing(10, 4, 0); // [8, 9, 1, 2]
 */
export function hararyRing(n: number, k: number, position: number): number[] {
  if (!Number.isSafeInteger(n) || n < 1) throw new SecAggError('BAD_INPUT', 'n must be >= 1');
  if (!Number.isSafeInteger(k) || k < 2 || k % 2 !== 0) {
    throw new SecAggError('BAD_INPUT', 'Harary degree k must be an even integer >= 2');
  }
  if (!Number.isSafeInteger(position) || position < 0 || position >= n) {
    throw new SecAggError('BAD_INPUT', 'position out of range');
  }
  if (k >= n - 1) {
    const all: number[] = [];
    for (let p = 0; p < n; p++) if (p !== position) all.push(p);
    return all;
  }
  const out: number[] = [];
  for (let d = k / 2; d >= 1; d--) out.push((position - d + n) % n);
  for (let d = 1; d <= k / 2; d++) out.push((position + d) % n);
  return out;
}

/** The neighbour lists of every site of a round, each sorted by id. */
export type Neighbourhoods = ReadonlyMap<string, readonly string[]>;

/**
 * The neighbours of one site (sorted), without building the whole graph: O(n) for the complete graph
 * and O(n + k) for Harary graphs, which is what a site needs.
 *
 * @example
 * neighboursOf(['a', 'b', 'c'], sessionId, { graph: 'complete' }, 'b'); // ['a', 'c']
 */
export function neighboursOf(
  siteIds: readonly string[],
  sessionId: Uint8Array,
  options: { graph: GraphKind; k?: number | undefined },
  siteId: string,
): string[] {
  const ids = [...siteIds].sort(compareIds);
  const me = ids.indexOf(siteId);
  if (me < 0) throw new SecAggError('UNKNOWN_SITE', `${siteId} is not in the graph`);
  const n = ids.length;
  if (options.graph === 'complete' || (options.k !== undefined && options.k >= n - 1)) {
    return ids.filter((id) => id !== siteId);
  }
  const k = options.k;
  if (k === undefined) throw new SecAggError('BAD_PARAMS', 'a Harary graph needs a degree k');
  const perm = graphPermutation(sessionId, n);
  const atPosition = new Array<string>(n);
  ids.forEach((id, i) => {
    atPosition[perm[i] as number] = id;
  });
  return hararyRing(n, k, perm[me] as number)
    .map((p) => atPosition[p] as string)
    .sort(compareIds);
}

/**
 * The neighbours of every site. `siteIds` are all sites that advertised keys; with 'complete' every
 * site neighbours every other; with 'harary' site number i (in id order) sits at ring position
 * perm[i] of H(k, n), perm = graphPermutation(sessionId, n).
 *
 * @example
 * const nb = neighbourhoods(['a', 'b', 'c'], sessionId, { graph: 'complete' });
 * nb.get('a'); // ['b', 'c']
 */
export function neighbourhoods(
  siteIds: readonly string[],
  sessionId: Uint8Array,
  options: { graph: GraphKind; k?: number | undefined },
): Neighbourhoods {
  const ids = [...siteIds].sort(compareIds);
  for (let i = 1; i < ids.length; i++) {
    if (ids[i] === ids[i - 1]) throw new SecAggError('DUPLICATE_SITE', `${ids[i]} appears twice`);
  }
  const n = ids.length;
  const out = new Map<string, string[]>();
  if (options.graph === 'complete' || (options.k !== undefined && options.k >= n - 1)) {
    for (const id of ids)
      out.set(
        id,
        ids.filter((other) => other !== id),
      );
    return out;
  }
  const k = options.k;
  if (k === undefined) throw new SecAggError('BAD_PARAMS', 'a Harary graph needs a degree k');
  const perm = graphPermutation(sessionId, n);
  const atPosition = new Array<string>(n);
  ids.forEach((id, i) => {
    atPosition[perm[i] as number] = id;
  });
  ids.forEach((id, i) => {
    const nbrs = hararyRing(n, k, perm[i] as number).map((p) => atPosition[p] as string);
    out.set(id, nbrs.sort(compareIds));
  });
  return out;
}

/** Options of chooseGraphParameters. */
export interface GraphRequirements {
  /** Expected fraction of sites that drop out during a round, in [0, 1). */
  dropoutRate: number;
  /** 'semi-honest' (curious server) or 'semi-malicious' (server may lie about dropouts). */
  threatModel: ThreatModel;
  /** Fraction of sites that may collude with the server, in [0, 1) (default 0.05). */
  adversarialRate?: number;
  /** Statistical security parameter sigma: privacy fails with probability < 2^-sigma (default 40). */
  securityBits?: number;
  /** Correctness parameter eta: the round fails with probability < 2^-eta (default 20). */
  failureBits?: number;
  /** Largest federation that still uses the complete graph (default 64). */
  completeUpTo?: number;
}

/** What chooseGraphParameters returns: the graph, its degree and the Shamir threshold. */
export interface GraphParameters {
  graph: GraphKind;
  /** Neighbours per site (n - 1 for the complete graph). */
  k: number;
  /** Shamir threshold t: shares needed to reconstruct a secret. */
  t: number;
}

const logFactorials: number[] = [0];
function logFactorial(n: number): number {
  for (let i = logFactorials.length; i <= n; i++) {
    logFactorials.push((logFactorials[i - 1] as number) + Math.log(i));
  }
  return logFactorials[n] as number;
}

function logChoose(a: number, b: number): number {
  if (b < 0 || b > a) return -Infinity;
  return logFactorial(a) - logFactorial(b) - logFactorial(a - b);
}

/** P[X = x] for X ~ Hypergeometric(population, marked, draws). */
function hypergeometric(population: number, marked: number, draws: number, x: number): number {
  return Math.exp(
    logChoose(marked, x) + logChoose(population - marked, draws - x) - logChoose(population, draws),
  );
}

/** Keeps floating-point rounding from tipping a bound the insecure way. */
const TINY = 1e-14;

/**
 * Condition 1 of Bell et al. 2020 for H(k, n): disconnecting the honest survivors needs two k/2-runs
 * of `bad` (adversarial or dropped) sites in the ring; true when that happens with probability below
 * `securityPerEvent` (union bound over pairs of gaps).
 */
function honestSurvivorsConnected(
  n: number,
  k: number,
  bad: number,
  securityPerEvent: number,
): boolean {
  if (k > bad) return true;
  const logGapPairs = Math.log(n) + Math.log(n - k - 1) - Math.log(2);
  const logAllBad =
    logFactorial(bad) + logFactorial(n - k) - logFactorial(n) - logFactorial(bad - k);
  return logGapPairs + logAllBad < Math.log(securityPerEvent);
}

/**
 * Condition 2 of Bell et al. 2020: t1, the largest a with P[adversarial neighbours >= a] above
 * `securityPerEvent` / n (hypergeometric), with the semi-malicious adjustment; a threshold of t1 + 1
 * or more keeps a site's secrets from its corrupt neighbours.
 */
function corruptNeighbourBound(
  n: number,
  k: number,
  adversarial: number,
  securityPerEvent: number,
  malicious: boolean,
): number {
  let t1 = -1;
  let tail = 0;
  for (let a = k; a >= 0; a--) {
    tail += hypergeometric(n, adversarial, k, a);
    if (tail > securityPerEvent / n) {
      t1 = a;
      break;
    }
  }
  return malicious ? Math.ceil((t1 + k - 1.25) / 2) : t1;
}

/**
 * What a Harary graph H(k, n) announced by the aggregator must satisfy, recomputed by a site with
 * conditions 1 and 2 of chooseGraphParameters: `connected` (condition 1 with no dropouts, the most
 * lenient case: only adversarial sites are bad) and `minThreshold` = max(t1 + 1, 2), the smallest
 * Shamir threshold that keeps a site's secrets from its corrupt neighbours. chooseGraphParameters
 * picks the same t1, so its t always equals minThreshold for its k.
 *
 * @example
 * hararyRequirements(1000, 30, { threatModel: 'semi-honest' }); // { connected: true, minThreshold: 17 }
 */
export function hararyRequirements(
  n: number,
  k: number,
  req: { threatModel: ThreatModel; adversarialRate?: number; securityBits?: number },
): { connected: boolean; minThreshold: number } {
  const gamma = req.adversarialRate ?? 0.05;
  const sigma = req.securityBits ?? 40;
  if (!Number.isSafeInteger(n) || n < 4 || n > 1_000_000) {
    throw new SecAggError('BAD_PARAMS', 'n must be an integer in [4, 1000000]');
  }
  if (!Number.isSafeInteger(k) || k < 2 || k % 2 !== 0 || k >= n - 1) {
    throw new SecAggError('BAD_PARAMS', 'Harary degree k must be an even integer in [2, n - 2]');
  }
  if (typeof gamma !== 'number' || !(gamma >= 0 && gamma < 1)) {
    throw new SecAggError('BAD_PARAMS', 'adversarialRate must be in [0, 1)');
  }
  if (!(sigma > 0)) throw new SecAggError('BAD_PARAMS', 'bits must be positive');
  if (req.threatModel !== 'semi-honest' && req.threatModel !== 'semi-malicious') {
    throw new SecAggError('BAD_PARAMS', "threatModel must be 'semi-honest' or 'semi-malicious'");
  }
  const adversarial = Math.floor((gamma + TINY) * n);
  const securityPerEvent = Math.pow(2, -(sigma + 1));
  const t1 = corruptNeighbourBound(
    n,
    k,
    adversarial,
    securityPerEvent,
    req.threatModel === 'semi-malicious',
  );
  return {
    connected: honestSurvivorsConnected(n, k, adversarial, securityPerEvent),
    minThreshold: Math.max(t1 + 1, 2),
  };
}

/**
 * The graph, degree k and threshold t for n sites, after Bell et al. 2020 ("Secure Single-Server
 * Aggregation with (Poly)Logarithmic Overhead", CCS), with the search of their parameter finder:
 * up to `completeUpTo` sites (64) the complete graph; above, the smallest even k such that, with
 * gamma = adversarialRate and delta = dropoutRate,
 *  1. the graph of honest survivors stays connected except with probability < 2^-(sigma+1)
 *     (union bound over pairs of k/2-gaps in the ring);
 *  2. t1 = the largest a with P[adversarial neighbours >= a] > 2^-(sigma+1)/n (hypergeometric),
 *     so a site has t1 + 1 or more corrupt neighbours with probability <= 2^-(sigma+1)/n;
 *     semi-malicious: t1 := ceil((t1 + k - 1.25) / 2), so two disjoint t-sets cannot both answer;
 *  3. t2 = the largest s with P[surviving neighbours < s] <= 2^-eta/n;
 * and t = max(t1 + 1, 2) when t1 < t2. For the complete graph t = floor(n/2) + 1 (semi-honest) or
 * floor((n + ceil(gamma n))/2) + 1 (semi-malicious), checked against ceil((1 - delta) n) survivors.
 *
 * Defaults sigma = 40, eta = 20, gamma = 0.05 give (examples):
 *
 * | n     | delta | semi-honest k, t | semi-malicious k, t |
 * |-------|-------|------------------|---------------------|
 * | 100   | 0.05  | 12, 6            | 16, 11              |
 * | 100   | 0.10  | 16, 6            | 26, 16              |
 * | 500   | 0.05  | 28, 16           | 44, 31              |
 * | 500   | 0.10  | 32, 17           | 66, 44              |
 * | 500   | 0.30  | 58, 20           | 212, 119            |
 * | 1000  | 0.05  | 30, 17           | 52, 37              |
 * | 1000  | 0.10  | 36, 19           | 78, 52              |
 * | 1000  | 0.30  | 66, 23           | 314, 179            |
 * | 10000 | 0.05  | 34, 20           | 62, 44              |
 * | 10000 | 0.10  | 42, 22           | 96, 64              |
 *
 * Throws BAD_PARAMS when no parameters meet the targets (too many dropouts for n).
 *
 * @example
 * chooseGraphParameters(1000, { dropoutRate: 0.05, threatModel: 'semi-honest' });
 * // { graph: 'harary', k: 30, t: 17 }
 */
export function chooseGraphParameters(n: number, req: GraphRequirements): GraphParameters {
  const gamma = req.adversarialRate ?? 0.05;
  const delta = req.dropoutRate;
  const sigma = req.securityBits ?? 40;
  const eta = req.failureBits ?? 20;
  const completeUpTo = req.completeUpTo ?? 64;
  if (!Number.isSafeInteger(n) || n < 2 || n > 1_000_000) {
    throw new SecAggError('BAD_PARAMS', 'n must be an integer in [2, 1000000]');
  }
  for (const [name, v] of [
    ['dropoutRate', delta],
    ['adversarialRate', gamma],
  ] as const) {
    if (typeof v !== 'number' || !(v >= 0 && v < 1)) {
      throw new SecAggError('BAD_PARAMS', `${name} must be in [0, 1)`);
    }
  }
  if (!(sigma > 0) || !(eta > 0)) throw new SecAggError('BAD_PARAMS', 'bits must be positive');
  if (req.threatModel !== 'semi-honest' && req.threatModel !== 'semi-malicious') {
    throw new SecAggError('BAD_PARAMS', "threatModel must be 'semi-honest' or 'semi-malicious'");
  }
  const malicious = req.threatModel === 'semi-malicious';
  const complete = (): GraphParameters => {
    const adversarial = Math.ceil(gamma * n - TINY);
    const t = malicious ? Math.floor((n + adversarial) / 2) + 1 : Math.floor(n / 2) + 1;
    const survivors = Math.ceil((1 - delta) * n - TINY);
    if (t > survivors) {
      throw new SecAggError(
        'BAD_PARAMS',
        `threshold ${t} exceeds the ${survivors} expected survivors of ${n} sites`,
      );
    }
    return { graph: 'complete', k: n - 1, t: Math.max(2, t) };
  };
  if (n <= completeUpTo) return complete();

  const adversarial = Math.floor((gamma + TINY) * n);
  const bad = adversarial + Math.floor((delta + TINY) * n);
  const surviving = Math.ceil((1 - delta - TINY) * n);
  const securityPerEvent = Math.pow(2, -(sigma + 1));
  for (let k = 2; k < n - 1; k += 2) {
    if (!honestSurvivorsConnected(n, k, bad, securityPerEvent)) continue;
    const t1 = corruptNeighbourBound(n, k, adversarial, securityPerEvent, malicious);
    // 3. t2: too few surviving neighbours only with probability <= 2^-eta / n.
    let t2 = 0;
    let below = 0;
    for (let s = 0; s <= k; s++) {
      if (below > Math.pow(2, -eta) / n) break;
      t2 = s;
      below += hypergeometric(n, surviving, k, s);
    }
    if (t2 > t1) return { graph: 'harary', k, t: Math.max(t1 + 1, 2) };
  }
  return complete();
}

/**
 * The smallest Shamir threshold above half (semi-honest) or two thirds (semi-malicious) of a site's
 * `neighbours`, at least 2: then no two disjoint sets of neighbours, one revealing the site's
 * self-mask shares and one its mask-key shares, can each reach the threshold, so an aggregator that
 * lies about who survived still cannot unmask the site's input alone (Bonawitz et al. 2017). Sites'
 * default policies require it on every graph; SecAgg+'s own bound (chooseGraphParameters) is often
 * below it on sparse graphs.
 * @example majorityThreshold(9, 'semi-malicious') // 7
 */
export function majorityThreshold(neighbours: number, threatModel: ThreatModel): number {
  if (!Number.isSafeInteger(neighbours) || neighbours < 1) {
    throw new SecAggError('BAD_PARAMS', 'neighbours must be a positive integer');
  }
  const t =
    threatModel === 'semi-malicious'
      ? Math.floor((2 * neighbours) / 3) + 1
      : Math.floor(neighbours / 2) + 1;
  return Math.max(2, t);
}
