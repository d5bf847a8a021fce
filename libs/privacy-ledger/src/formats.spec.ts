import { describe, expect, it } from 'vitest';
import {
  LEDGER_EXPORT_FORMAT,
  LedgerError,
  LedgerErrorCode,
  type LedgerExport,
  ledgerToCsv,
  parseLedgerExport,
  parseLocalLedger,
  serializeLedgerExport,
  serializeLocalEntry,
  verifyLedgerExport,
} from './index';
import {
  buildChain,
  enrolled,
  FEDERATION,
  mechanism,
  referenceAccountant,
  TEST_ORDERS,
  testSite,
} from './testing';

const accountant = referenceAccountant();
const a = testSite(1, 'Hôpital "Nord", Lille');
const b = testSite(2, '=HYPERLINK("x")');
const ledger = buildChain([
  { site: a, round: 1 },
  { site: b, round: 1, mechanism: mechanism({ survivorsAssumed: 2 }) },
  { site: a, round: 2 },
]);
const exported: LedgerExport = {
  format: LEDGER_EXPORT_FORMAT,
  federationId: FEDERATION,
  orders: [...TEST_ORDERS],
  delta: 1e-5,
  sites: [a, b].map((s) => ({ siteId: s.siteId, name: s.siteName, publicKey: s.publicKey })),
  entries: ledger,
  exportedAt: '2025-02-01T00:00:00.000Z',
};

function errorOf(f: () => unknown): LedgerError {
  try {
    f();
  } catch (err) {
    if (err instanceof LedgerError) return err;
    throw err;
  }
  throw new Error('expected a LedgerError');
}

describe('ledger export', () => {
  it('round-trips through its JSON text and verifies', () => {
    const parsed = parseLedgerExport(serializeLedgerExport(exported));
    expect(parsed).toEqual(exported);
    expect(verifyLedgerExport(parsed, { accountant }).ok).toBe(true);
    expect(verifyLedgerExport(parsed, { accountant, sites: enrolled(a) }).ok).toBe(false);
  });

  it.each([
    ['text that is not JSON', '{', /export: not JSON/],
    [
      'another format',
      { ...exported, format: 'csv' },
      /export.format: must be 'confide-ledger\/1'/,
    ],
    [
      'a later version',
      { ...exported, format: 'confide-ledger/2' },
      /version confide-ledger\/2 is not supported/,
    ],
    ['an unknown field', { ...exported, extra: 1 }, /unknown field\(s\) extra/],
    [
      'a bad order grid',
      { ...exported, orders: [2, 1.5] },
      /export.orders\[1\]: orders must strictly increase/,
    ],
    [
      'a site listed twice',
      { ...exported, sites: [...exported.sites, exported.sites[0]] },
      /listed twice/,
    ],
    [
      'a bad key',
      { ...exported, sites: [{ ...exported.sites[0], publicKey: 'abc' }] },
      /sites\[0\].publicKey/,
    ],
    ['a bad delta', { ...exported, delta: 2 }, /export.delta: must be in \(0, 1\)/],
    [
      'a bad entry',
      {
        ...exported,
        entries: [{ ...ledger[0], mechanism: { ...ledger[0]!.mechanism, noiseMultiplier: -1 } }],
      },
      /export.entries\[0\].mechanism.noiseMultiplier: must be > 0/,
    ],
    [
      'an entry with an extra field',
      { ...exported, entries: [{ ...ledger[0], id: 7 }] },
      /export.entries\[0\]: unknown field\(s\) id/,
    ],
  ])('refuses %s with a clear error', (_name, input, message) => {
    const err = errorOf(() =>
      parseLedgerExport(typeof input === 'string' ? input : JSON.stringify(input)),
    );
    expect(err.code).toBe(LedgerErrorCode.INVALID_EXPORT);
    expect(err.message).toMatch(message);
  });
});

describe('local ledger', () => {
  const mine = ledger.filter((e) => e.siteId === a.siteId);
  const text = mine.map(serializeLocalEntry).join('');

  it('is one canonical JSON line per entry and reads back', () => {
    expect(text.split('\n')).toHaveLength(mine.length + 1);
    expect(text.split('\n')[0]).toMatch(/^\{"createdAt":/);
    expect(parseLocalLedger(text)).toEqual(mine);
    expect(parseLocalLedger(`\n${text}\n\n`)).toEqual(mine);
  });

  it('names the line of a bad entry', () => {
    const lines = text.split('\n');
    lines[1] = lines[1]!.replace('"seq":3', '"seq":0');
    const err = errorOf(() => parseLocalLedger(lines.join('\n')));
    expect(err.code).toBe(LedgerErrorCode.INVALID_LOCAL_LEDGER);
    expect(err.message).toMatch(/^line 2\.seq: must be an integer >= 1/);
  });

  it('points at an interrupted write on a torn last line', () => {
    const err = errorOf(() => parseLocalLedger(text + text.slice(0, 40)));
    expect(err.message).toMatch(/^line 3: not JSON \(the last line has no newline/);
  });
});

describe('CSV', () => {
  const csv = ledgerToCsv(ledger);
  const rows = csv.split('\r\n');

  it('has a header and one row per entry, with CRLF line ends', () => {
    expect(rows).toHaveLength(ledger.length + 2);
    expect(rows.at(-1)).toBe('');
    expect(rows[0]).toBe(
      'seq,federationId,siteId,siteName,round,level,samplingRate,noiseMultiplier,steps,clipNorm,' +
        'survivorsAssumed,accountant,noise,quantizationScale,dimension,release,delta,cumulativeEpsilon,' +
        'epsilonLimit,createdAt,ordersHash,rdp,' +
        'prevHash,hash,signature,sitePublicKey',
    );
  });

  it('flattens the mechanism and quotes the RDP curve as a JSON cell', () => {
    const first = ledger[0]!;
    expect(rows[1]).toContain(`,"[${first.rdp.join(',')}]",`);
    expect(rows[1]).toContain(',site,1,1.1,1,1,,rdp,gaussian,,,update,0.00001,');
    expect(rows[2]).toContain(',site,1,1.1,1,1,2,rdp,gaussian,,,update,');
  });

  it('flattens a distributed discrete Gaussian with its scale and dimension', () => {
    const [ddg] = buildChain([
      {
        site: a,
        round: 1,
        mechanism: mechanism({
          survivorsAssumed: 3,
          noise: 'distributed-discrete-gaussian',
          quantizationScale: 2 ** 20,
          dimension: 513,
        }),
      },
    ]);
    const row = ledgerToCsv([ddg!]).split('\r\n')[1]!;
    expect(row).toContain(
      ',site,1,1.1,1,1,3,rdp,distributed-discrete-gaussian,1048576,513,update,0.00001,',
    );
  });

  it('escapes quotes and commas, and defuses spreadsheet formulas', () => {
    expect(rows[1]).toContain(',"Hôpital ""Nord"", Lille",');
    expect(rows[2]).toContain(`,"'=HYPERLINK(""x"")",`);
  });
});
