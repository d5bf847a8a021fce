import { describe, expect, it } from 'vitest';
import { generateIdentity } from '@confide/protocol';
import {
  GENESIS_HASH,
  recordLevelRelease,
  sumRelease,
  verifyReceipt,
  type LedgerEntry,
} from '@confide/privacy-ledger';
import { memoryContributionStore } from './contributions';
import { parsePolicy } from './policy';
import { Refused } from './refusal';
import { SiteBudget, type GrantedSlot } from '@confide/site-runtime';

const identity = generateIdentity();
const site = { siteId: 's1', siteName: 'clinic', identity };
/** One DP-SGD epoch over 1,000 records: about 0.94 epsilon at delta 1e-5, two 1.23, three 1.46. */
const update = recordLevelRelease({
  batchSize: 100,
  epochs: 1,
  numExamples: 1000,
  noiseMultiplier: 2,
  clipNorm: 1,
});

function budget(
  policy: unknown = { dp: { level: 'record', epsilonLimit: 3 } },
  stored: LedgerEntry[] = [],
) {
  const appended: LedgerEntry[] = [];
  const b = new SiteBudget({
    federationId: 'fed',
    siteId: () => 's1',
    policy: parsePolicy(policy),
    ledgerStore: { load: async () => [...stored], append: async (e) => void appended.push(e) },
    contributions: memoryContributionStore(),
  });
  return { b, appended };
}

function slot(over: Partial<GrantedSlot> = {}): GrantedSlot {
  return {
    seq: 1,
    prevHash: GENESIS_HASH,
    createdAt: '2026-12-07T00:00:00.000Z',
    epsilonLimit: 100,
    delta: 1e-5,
    ...over,
  };
}

describe("a site's own budget", () => {
  it('signs a verifiable receipt, stores it, and counts it in the next projection', async () => {
    const { b, appended } = budget();
    await b.load();
    const entry = await b.sign(slot(), { round: 1, sum: 'update' }, update, site);
    expect(verifyReceipt(entry, identity.publicKey)).toBe(true);
    expect(appended).toEqual([entry]);
    expect(b.entries()).toEqual([entry]);
    expect(entry.cumulativeEpsilon).toBeGreaterThan(0);
    expect(entry.cumulativeEpsilon).toBeLessThan(3);
    // Its limit is its own (3), not the 100 the slot announces.
    const again = await b.sign(
      slot({ seq: 2, prevHash: entry.hash }),
      { round: 2, sum: 'update' },
      update,
      site,
    );
    expect(again.cumulativeEpsilon).toBeGreaterThan(entry.cumulativeEpsilon);
  });

  it('refuses a slot at a larger delta than its own, and a release past its own limit', async () => {
    const { b } = budget({ dp: { level: 'record', epsilonLimit: 0.05 } });
    await b.load();
    await expect(
      b.sign(slot({ delta: 1e-3 }), { round: 1, sum: 'update' }, update, site),
    ).rejects.toMatchObject({ code: 'POLICY_DELTA' });
    await expect(b.sign(slot(), { round: 1, sum: 'update' }, update, site)).rejects.toMatchObject({
      code: 'BUDGET_EXCEEDED',
    });
    expect(b.entries()).toEqual([]);
  });

  it('counts held releases as spent until they are signed or dropped', async () => {
    const { b } = budget({ dp: { level: 'record', epsilonLimit: 1.3 } });
    await b.load();
    expect(() => b.check(update, 1.3)).not.toThrow();
    b.hold('run/1/update', update);
    b.hold('run/1/evaluation', update);
    expect(() => b.check(update, 1.3)).toThrow(Refused);
    b.dropRound('run', 1);
    expect(() => b.check(update, 1.3)).not.toThrow();
  });

  it('keeps statistics and evaluation within their share of the budget', async () => {
    const { b } = budget({ dp: { level: 'record', epsilonLimit: 1, statisticsShare: 0.1 } });
    await b.load();
    const small = sumRelease({
      release: 'evaluation',
      level: 'record',
      noiseMultiplier: 50,
      sensitivity: 1,
    });
    const large = sumRelease({
      release: 'evaluation',
      level: 'record',
      noiseMultiplier: 1,
      sensitivity: 1,
    });
    expect(() => b.checkSumBudget(small, { epsilonLimit: 1, statisticsShare: 0.5 })).not.toThrow();
    expect(() => b.checkSumBudget(large, { epsilonLimit: 1, statisticsShare: 0.5 })).toThrow(
      /share of the site's budget/,
    );
  });

  it('refuses a second sum of the same values without DP, and allows it with DP', async () => {
    const { b } = budget();
    await b.load();
    expect(b.contributionKey('statistics/fed', null)).toBe('statistics/fed');
    await b.recordContribution('statistics/fed');
    expect(() => b.contributionKey('statistics/fed', null)).toThrow(/already put these values/);
    expect(b.contributionKey('statistics/fed', { level: 'record' })).toBeNull();
  });

  it('reads its earlier entries at load and accounts them in this federation only', async () => {
    const first = budget();
    await first.b.load();
    const entry = await first.b.sign(slot(), { round: 1, sum: 'update' }, update, site);
    const other = { ...entry, federationId: 'other' };
    const { b } = budget({ dp: { level: 'record', epsilonLimit: 3 } }, [entry, other]);
    await b.load();
    expect(b.entries()).toHaveLength(2);
    const next = await b.sign(
      slot({ seq: 2, prevHash: entry.hash }),
      { round: 2, sum: 'update' },
      update,
      site,
    );
    // Built on the one entry of this federation: the same total as two releases from scratch.
    const fresh = budget();
    await fresh.b.load();
    await fresh.b.sign(slot(), { round: 1, sum: 'update' }, update, site);
    const second = await fresh.b.sign(
      slot({ seq: 2, prevHash: entry.hash }),
      { round: 2, sum: 'update' },
      update,
      site,
    );
    expect(next.cumulativeEpsilon).toBeCloseTo(second.cumulativeEpsilon, 12);
  });
});
