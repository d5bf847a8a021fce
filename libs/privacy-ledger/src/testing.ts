// Test fixtures for the privacy-ledger specs (not part of the public API): a closed-form accountant,
// seeded site identities and a chain builder. Independent of libs/differential-privacy on purpose.
import nacl from 'tweetnacl';
import { toBase64 } from './canonical';
import { chainHead, createReceipt, type LedgerEntry, signReceipt } from './entry';
import type { LedgerAccountant, MechanismParams } from './mechanism';

export const TEST_ORDERS: readonly number[] = [1.5, 2, 3, 4, 6, 8, 16, 32, 64];
export const TEST_DELTA = 1e-5;
export const FEDERATION = 'fed-7a1c';

/** RDP of `steps` compositions of the Gaussian mechanism without subsampling: steps * a / (2 sigma^2). */
export function gaussianRdp(steps: number, sigma: number, orders: readonly number[]): number[] {
  return orders.map((a) => (steps * a) / (2 * sigma * sigma));
}

/** Classic RDP -> (epsilon, delta): min over orders of rdp + log(1/delta) / (a - 1). */
export function classicEpsilon(
  rdp: readonly number[],
  orders: readonly number[],
  delta: number,
): { epsilon: number; order: number } {
  let best = { epsilon: Infinity, order: NaN };
  orders.forEach((a, i) => {
    const eps = (rdp[i] as number) + Math.log(1 / delta) / (a - 1);
    if (eps < best.epsilon) best = { epsilon: eps, order: a };
  });
  return best;
}

/**
 * The reference accountant of the specs: exact for q = 1; for q < 1 it scales by q^2 (a stand-in with
 * the right shape, not a bound), which is enough to make every parameter matter.
 */
export function referenceAccountant(orders: readonly number[] = TEST_ORDERS): LedgerAccountant {
  return {
    orders,
    releaseRdp: (m) =>
      gaussianRdp(m.steps, m.noiseMultiplier, orders).map((v) => v * m.samplingRate ** 2),
    epsilon: (rdp, delta) => classicEpsilon(rdp, orders, delta),
  };
}

export interface TestSite {
  siteId: string;
  siteName: string;
  publicKey: string;
  secretKey: string;
}

/** A site with a fixed Ed25519 key from `seed` (1..255). */
export function testSite(seed: number, name = `Hospital ${seed}`): TestSite {
  const kp = nacl.sign.keyPair.fromSeed(new Uint8Array(32).fill(seed));
  return {
    siteId: `site-${seed}`,
    siteName: name,
    publicKey: toBase64(kp.publicKey),
    secretKey: toBase64(kp.secretKey),
  };
}

export function mechanism(overrides: Partial<MechanismParams> = {}): MechanismParams {
  return {
    level: 'site',
    samplingRate: 1,
    noiseMultiplier: 1.1,
    steps: 1,
    clipNorm: 1,
    survivorsAssumed: null,
    accountant: 'rdp',
    ...overrides,
  };
}

export interface Release {
  site: TestSite;
  round: number;
  mechanism?: MechanismParams;
}

/** A valid chain: each release receipted by the aggregator's rules and signed by its site. */
export function buildChain(
  releases: readonly Release[],
  options: { accountant?: LedgerAccountant; limit?: number; federationId?: string } = {},
): LedgerEntry[] {
  const accountant = options.accountant ?? referenceAccountant();
  const chain: LedgerEntry[] = [];
  for (const r of releases) {
    const head = chainHead(chain.at(-1));
    const body = createReceipt(
      {
        seq: head.seq,
        federationId: options.federationId ?? FEDERATION,
        siteId: r.site.siteId,
        siteName: r.site.siteName,
        round: r.round,
        mechanism: r.mechanism ?? mechanism(),
        delta: TEST_DELTA,
        epsilonLimit: options.limit ?? 1e4,
        createdAt: new Date(Date.UTC(2025, 0, 31, 12) + head.seq * 1000).toISOString(),
        sitePublicKey: r.site.publicKey,
        siteHistory: chain.filter((e) => e.siteId === r.site.siteId),
      },
      accountant,
    );
    chain.push(signReceipt(body, head.prevHash, r.site.secretKey));
  }
  return chain;
}

/** siteId -> public key of the given sites. */
export function enrolled(...sites: TestSite[]): Map<string, string> {
  return new Map(sites.map((s) => [s.siteId, s.publicKey]));
}
