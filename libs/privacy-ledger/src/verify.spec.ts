import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  chainHead,
  type DiscrepancyKind,
  entryHash,
  type LedgerEntry,
  type MechanismParams,
  ordersFingerprint,
  signReceipt,
  type VerificationReport,
  verifyLedger,
  type VerifyLedgerInput,
} from './index';
import {
  buildChain,
  enrolled,
  FEDERATION,
  mechanism,
  referenceAccountant,
  type Release,
  TEST_ORDERS,
  testSite,
} from './testing';

const accountant = referenceAccountant();
const a = testSite(1);
const b = testSite(2);
const c = testSite(3);
const sites = enrolled(a, b, c);

// Six releases over three rounds, interleaved as the aggregator would record them.
const RELEASES: Release[] = [
  { site: a, round: 1 },
  { site: b, round: 1, mechanism: mechanism({ noiseMultiplier: 1.3 }) },
  { site: a, round: 2 },
  { site: c, round: 2, mechanism: mechanism({ level: 'record', samplingRate: 0.02, steps: 40 }) },
  { site: b, round: 3, mechanism: mechanism({ noiseMultiplier: 1.3, survivorsAssumed: 2 }) },
  { site: a, round: 3 },
];

let ledger: LedgerEntry[];
// A shorter chain for the properties: tweetnacl verifies a signature in a few milliseconds.
let small: LedgerEntry[];
beforeAll(() => {
  ledger = buildChain(RELEASES);
  small = buildChain([
    { site: a, round: 1 },
    { site: b, round: 1, mechanism: mechanism({ level: 'record', samplingRate: 0.1, steps: 20 }) },
    { site: a, round: 2, mechanism: mechanism({ survivorsAssumed: 2 }) },
  ]);
});

function verify(
  entries: readonly LedgerEntry[],
  extra: Partial<VerifyLedgerInput> = {},
): VerificationReport {
  return verifyLedger({ entries, orders: TEST_ORDERS, accountant, sites, ...extra });
}

function kinds(report: VerificationReport): DiscrepancyKind[] {
  return [...new Set(report.discrepancies.map((d) => d.kind))].sort();
}

function at(entries: LedgerEntry[], i: number): LedgerEntry {
  return structuredClone(entries[i]!);
}

/** Re-hashes and re-signs entry `i` with its own site key, as a tampering site could do to its own row. */
function resign(
  entry: LedgerEntry,
  site = [a, b, c].find((s) => s.siteId === entry.siteId)!,
): LedgerEntry {
  const { prevHash, hash: _h, signature: _s, ...body } = entry;
  return signReceipt(body, prevHash, site.secretKey);
}

describe('verifyLedger on an intact ledger', () => {
  it('passes every check and lists what it checked', () => {
    const report = verify(ledger, {
      delta: 1e-5,
      federationId: FEDERATION,
      limits: new Map([[a.siteId, 1e4]]),
    });
    expect(report.discrepancies).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.checks.map((ch) => ch.name)).toEqual([
      'well-formed entries',
      'federation',
      'order grid',
      'delta',
      'sequence',
      'hash chain',
      'entry hashes',
      'signatures',
      'rdp curves',
      'cumulative epsilon',
      'limits',
    ]);
    expect(report.checks.every((ch) => ch.ok)).toBe(true);
  });

  it('passes on an empty ledger', () => {
    expect(verify([]).ok).toBe(true);
  });
});

describe('verifyLedger detects', () => {
  it('a changed epsilon', () => {
    const tampered = ledger.map((e, i) =>
      i === 2 ? { ...at(ledger, 2), cumulativeEpsilon: 0.5 } : e,
    );
    const report = verify(tampered);
    expect(report.ok).toBe(false);
    // The site signed other content, so its signature no longer holds either.
    expect(kinds(report)).toEqual(['BAD_SIGNATURE', 'EPSILON_MISMATCH', 'HASH_MISMATCH']);
    expect(report.discrepancies.find((d) => d.kind === 'EPSILON_MISMATCH')).toMatchObject({
      seq: 3,
      siteId: a.siteId,
    });
  });

  it('a changed epsilon even when the row is re-hashed', () => {
    const rehashed = { ...at(ledger, 2), cumulativeEpsilon: 0.5 };
    rehashed.hash = entryHash(rehashed, rehashed.prevHash);
    const report = verify(ledger.map((e, i) => (i === 2 ? rehashed : e)));
    expect(kinds(report)).toEqual(['BAD_SIGNATURE', 'CHAIN_BROKEN', 'EPSILON_MISMATCH']);
  });

  it('a changed noise multiplier', () => {
    const e = at(ledger, 1);
    e.mechanism.noiseMultiplier = 2.6;
    const report = verify(ledger.map((x, i) => (i === 1 ? e : x)));
    expect(report.ok).toBe(false);
    expect(kinds(report)).toContain('RDP_MISMATCH');
    expect(kinds(report)).toContain('HASH_MISMATCH');
    expect(report.discrepancies.find((d) => d.kind === 'RDP_MISMATCH')?.seq).toBe(2);
  });

  it('a changed noise multiplier re-signed by its own site (its curve and epsilon no longer follow)', () => {
    const e = at(ledger, 1);
    e.mechanism.noiseMultiplier = 2.6;
    const report = verify(ledger.map((x, i) => (i === 1 ? resign(e) : x)));
    expect(kinds(report)).toEqual(['CHAIN_BROKEN', 'EPSILON_MISMATCH', 'RDP_MISMATCH']);
  });

  it('a deleted row', () => {
    const report = verify(ledger.filter((_, i) => i !== 2));
    expect(report.ok).toBe(false);
    expect(kinds(report)).toEqual(['CHAIN_BROKEN', 'EPSILON_MISMATCH', 'SEQ_GAP']);
    expect(report.discrepancies.find((d) => d.kind === 'SEQ_GAP')).toMatchObject({ seq: 3 });
  });

  it('a deleted first row', () => {
    const report = verify(ledger.slice(1));
    expect(kinds(report)).toEqual(['CHAIN_BROKEN', 'EPSILON_MISMATCH', 'SEQ_GAP']);
  });

  it('a reordered row', () => {
    const swapped = [...ledger];
    [swapped[2], swapped[3]] = [swapped[3]!, swapped[2]!];
    const report = verify(swapped);
    expect(report.ok).toBe(false);
    expect(kinds(report)).toEqual(['CHAIN_BROKEN', 'REORDERED']);
    expect(report.discrepancies.find((d) => d.kind === 'REORDERED')).toMatchObject({ seq: 3 });
  });

  it('a duplicated row', () => {
    const report = verify([...ledger, ledger[5]!]);
    expect(kinds(report)).toContain('DUPLICATE_SEQ');
  });

  it('a forged signature', () => {
    const forger = testSite(9);
    const forged = {
      ...at(ledger, 4),
      signature: resign({ ...at(ledger, 4), sitePublicKey: forger.publicKey }, forger).signature,
    };
    const report = verify(ledger.map((e, i) => (i === 4 ? forged : e)));
    expect(report.ok).toBe(false);
    expect(kinds(report)).toEqual(['BAD_SIGNATURE']);
    expect(report.discrepancies[0]).toMatchObject({ seq: 5, siteId: b.siteId });
  });

  it('a row signed by a key that is not the site enrolled key', () => {
    const forger = testSite(9);
    const e = resign({ ...at(ledger, 0), sitePublicKey: forger.publicKey }, forger);
    const report = verify([e, ...ledger.slice(1)]);
    expect(kinds(report)).toEqual(['BAD_SIGNATURE', 'CHAIN_BROKEN', 'KEY_MISMATCH']);
  });

  it('a site that is not enrolled', () => {
    const report = verify(ledger, { sites: enrolled(a, b) });
    expect(kinds(report)).toEqual(['UNKNOWN_SITE']);
    expect(report.discrepancies[0]?.siteId).toBe(c.siteId);
  });

  it('a release past its limit, and a site past the limit in force', () => {
    const over = buildChain([{ site: a, round: 1 }]);
    const e = resign({ ...over[0]!, epsilonLimit: over[0]!.cumulativeEpsilon / 2 });
    expect(kinds(verify([e]))).toEqual(['LIMIT_EXCEEDED']);
    const report = verify(ledger, {
      limits: new Map([[a.siteId, ledger[5]!.cumulativeEpsilon - 0.1]]),
    });
    expect(kinds(report)).toEqual(['LIMIT_EXCEEDED']);
    expect(report.discrepancies[0]).toMatchObject({ seq: 6, siteId: a.siteId });
  });

  it('another federation, delta or order grid', () => {
    expect(kinds(verify(ledger, { federationId: 'fed-other' }))).toEqual(['FEDERATION_MISMATCH']);
    expect(kinds(verify(ledger, { delta: 1e-6 }))).toEqual(['DELTA_MISMATCH']);
    const report = verify(ledger, { accountant: referenceAccountant([2, 4, 8]) });
    expect(kinds(report)).toEqual(['ORDERS_MISMATCH']);
    expect(report.checks.find((ch) => ch.name === 'rdp curves')?.ok).toBe(false);
    const regrid = verify(ledger, {
      orders: [...TEST_ORDERS, 128],
      accountant: referenceAccountant([...TEST_ORDERS, 128]),
    });
    expect(kinds(regrid)).toContain('ORDERS_MISMATCH');
    expect(ordersFingerprint(TEST_ORDERS)).toBe(ledger[0]!.ordersHash);
  });

  it('a malformed row, without throwing', () => {
    const broken = { ...at(ledger, 3), rdp: 'none' } as unknown as LedgerEntry;
    const report = verify(ledger.map((e, i) => (i === 3 ? broken : e)));
    expect(kinds(report)).toContain('MALFORMED_ENTRY');
    expect(verify([null as unknown as LedgerEntry]).ok).toBe(false);
  });
});

describe('reconciling a site local ledger', () => {
  const localOf = (site: { siteId: string }, entries: LedgerEntry[] = ledger): LedgerEntry[] =>
    entries.filter((e) => e.siteId === site.siteId).map((e) => structuredClone(e));

  it('passes when the local ledger holds exactly the site entries', () => {
    const report = verify(ledger, {
      localLedgers: new Map([
        [a.siteId, localOf(a)],
        [b.siteId, localOf(b)],
      ]),
    });
    expect(report.ok).toBe(true);
    expect(report.checks.map((ch) => ch.name)).toContain(`local ledger of ${a.siteId}`);
  });

  it('fails on a local ledger that disagrees with the aggregator', () => {
    // The site signed a receipt for sigma 2.6; the aggregator's row says 1.1 for the same seq.
    const mine = localOf(a);
    const e = mine[1]!;
    e.mechanism.noiseMultiplier = 2.6;
    const { prevHash, hash: _h, signature: _s, ...body } = e;
    const signed = signReceipt(
      { ...body, rdp: accountant.releaseRdp(e.mechanism) },
      prevHash,
      a.secretKey,
    );
    mine[1] = signed;
    const report = verify(ledger, { localLedgers: new Map([[a.siteId, mine]]) });
    expect(report.ok).toBe(false);
    expect(kinds(report)).toEqual(['LOCAL_DIFFERS']);
    expect(report.discrepancies[0]?.message).toContain('mechanism.noiseMultiplier');
  });

  it('fails when the aggregator dropped the site last release (only the site can tell)', () => {
    const truncated = ledger.slice(0, 5);
    expect(verify(truncated).ok).toBe(true);
    const report = verify(truncated, { localLedgers: new Map([[a.siteId, localOf(a)]]) });
    expect(kinds(report)).toEqual(['LOCAL_EXTRA']);
    expect(report.discrepancies[0]?.seq).toBe(6);
  });

  it('fails when the aggregator charges a release the site never signed into its ledger', () => {
    const report = verify(ledger, { localLedgers: new Map([[b.siteId, localOf(b).slice(0, 1)]]) });
    expect(kinds(report)).toEqual(['LOCAL_MISSING']);
    expect(report.discrepancies[0]?.seq).toBe(5);
  });

  it('fails on a local entry whose signature does not verify', () => {
    const mine = localOf(c);
    mine[0] = { ...mine[0]!, siteName: 'renamed' };
    expect(kinds(verify(ledger, { localLedgers: new Map([[c.siteId, mine]]) }))).toEqual([
      'LOCAL_DIFFERS',
      'LOCAL_INVALID',
    ]);
  });

  it('skips the local entries of other federations', () => {
    const elsewhere = buildChain([{ site: a, round: 1 }], { federationId: 'fed-other' });
    const report = verify(ledger, {
      localLedgers: new Map([[a.siteId, [...elsewhere, ...localOf(a)]]]),
    });
    expect(report.ok).toBe(true);
  });
});

// --- properties -----------------------------------------------------------------------------------

/** A small deterministic generator (mulberry32) driven by the seed fast-check picks. */
interface Rng {
  nextInt(lo: number, hi: number): number;
}
function rng(seed: number): Rng {
  let t = seed >>> 0;
  return {
    nextInt(lo, hi) {
      t = (t + 0x6d2b79f5) >>> 0;
      let x = Math.imul(t ^ (t >>> 15), 1 | t);
      x ^= x + Math.imul(x ^ (x >>> 7), 61 | x);
      return lo + (((x ^ (x >>> 14)) >>> 0) % (hi - lo + 1));
    },
  };
}

type Mutation = (e: LedgerEntry, r: Rng) => void;

const bump = (v: number, r: Rng): number => {
  const out = [
    v * (1 + r.nextInt(1, 1000) / 1000),
    v + Number.EPSILON * Math.max(1, Math.abs(v)) * 4,
    -v,
    0,
  ][r.nextInt(0, 3)]!;
  return out === v ? v + 1 : out;
};
const flipHex = (h: string, r: Rng): string => {
  const i = r.nextInt(0, h.length - 1);
  return h.slice(0, i) + (h[i] === '0' ? '1' : '0') + h.slice(i + 1);
};

const MUTATIONS: Record<string, Mutation> = {
  seq: (e, r) => (e.seq += r.nextInt(1, 3)),
  federationId: (e) => (e.federationId += 'x'),
  siteId: (e) => (e.siteId = e.siteId === a.siteId ? b.siteId : a.siteId),
  siteName: (e) => (e.siteName = `${e.siteName} `),
  round: (e, r) => (e.round += r.nextInt(1, 3)),
  'mechanism.level': (e) => (e.mechanism.level = e.mechanism.level === 'site' ? 'record' : 'site'),
  'mechanism.samplingRate': (e, r) =>
    (e.mechanism.samplingRate = bump(e.mechanism.samplingRate, r)),
  'mechanism.noiseMultiplier': (e, r) =>
    (e.mechanism.noiseMultiplier = bump(e.mechanism.noiseMultiplier, r)),
  'mechanism.steps': (e, r) => (e.mechanism.steps += r.nextInt(1, 5)),
  'mechanism.clipNorm': (e, r) => (e.mechanism.clipNorm = bump(e.mechanism.clipNorm, r)),
  'mechanism.survivorsAssumed': (e, r) =>
    (e.mechanism.survivorsAssumed = e.mechanism.survivorsAssumed === null ? r.nextInt(1, 9) : null),
  'mechanism.accountant': (e) => ((e.mechanism as { accountant: string }).accountant = 'prv'),
  rdp: (e, r) => {
    const i = r.nextInt(0, e.rdp.length - 1);
    e.rdp[i] = bump(e.rdp[i]!, r);
  },
  'rdp.length': (e) => void e.rdp.push(1),
  ordersHash: (e, r) => (e.ordersHash = flipHex(e.ordersHash, r)),
  delta: (e, r) => (e.delta = bump(e.delta, r)),
  cumulativeEpsilon: (e, r) => (e.cumulativeEpsilon = bump(e.cumulativeEpsilon, r)),
  epsilonLimit: (e, r) => (e.epsilonLimit = bump(e.epsilonLimit, r)),
  createdAt: (e, r) =>
    (e.createdAt = new Date(Date.parse(e.createdAt) + r.nextInt(1, 9e6)).toISOString()),
  sitePublicKey: (e) =>
    (e.sitePublicKey = e.sitePublicKey === c.publicKey ? a.publicKey : c.publicKey),
  prevHash: (e, r) => (e.prevHash = flipHex(e.prevHash, r)),
  hash: (e, r) => (e.hash = flipHex(e.hash, r)),
  signature: (e) => {
    const other = small.find((x) => x.signature !== e.signature)!;
    e.signature = other.signature;
  },
};

describe('verifyLedger properties', () => {
  it('detects a mutation of each field of each entry', () => {
    for (const field of Object.keys(MUTATIONS)) {
      for (let index = 0; index < small.length; index += 1) {
        const mutated = small.map((e) => structuredClone(e));
        MUTATIONS[field]!(mutated[index]!, rng(index));
        expect(verify(mutated).ok, `${field} of seq ${index + 1}`).toBe(false);
      }
    }
  });

  it('detects any single-field mutation of any entry', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2 }),
        fc.constantFrom(...Object.keys(MUTATIONS)),
        fc.nat(),
        (index, field, seed) => {
          const mutated = small.map((e) => structuredClone(e));
          MUTATIONS[field]!(mutated[index]!, rng(seed));
          const report = verify(mutated);
          expect(report.ok, `${field} of seq ${index + 1}`).toBe(false);
          expect(report.discrepancies.length).toBeGreaterThan(0);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('passes a valid chain of any length over any sites and mechanisms', () => {
    const site = fc.constantFrom(a, b, c);
    const mech: fc.Arbitrary<MechanismParams> = fc.record({
      level: fc.constantFrom('record' as const, 'site' as const),
      samplingRate: fc.double({ min: 0.001, max: 1, noNaN: true }),
      noiseMultiplier: fc.double({ min: 0.5, max: 10, noNaN: true }),
      steps: fc.integer({ min: 1, max: 50 }),
      clipNorm: fc.double({ min: 0.01, max: 100, noNaN: true }),
      survivorsAssumed: fc.option(fc.integer({ min: 1, max: 100 })),
      accountant: fc.constant('rdp' as const),
    });
    fc.assert(
      fc.property(
        fc.array(fc.record({ site, mechanism: mech }), { minLength: 1, maxLength: 8 }),
        (releases) => {
          const chain = buildChain(releases.map((r, i) => ({ ...r, round: i + 1 })));
          expect(chain.at(-1)!.seq).toBe(releases.length);
          expect(chainHead(chain.at(-1)).seq).toBe(releases.length + 1);
          const report = verify(chain);
          expect(report.discrepancies).toEqual([]);
          expect(report.ok).toBe(true);
        },
      ),
      { numRuns: 20 },
    );
  });
});
