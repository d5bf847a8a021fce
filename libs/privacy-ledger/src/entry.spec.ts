import { createHash } from 'node:crypto';
import nacl from 'tweetnacl';
import { describe, expect, it } from 'vitest';
import {
  canonicalEncoding,
  chainHead,
  createReceipt,
  ENTRY_HASH_DOMAIN,
  entryHash,
  GENESIS_HASH,
  LedgerError,
  LedgerErrorCode,
  type LedgerEntryBody,
  ordersFingerprint,
  releaseOf,
  signReceipt,
  sumRelease,
  validateMechanism,
  verifyReceipt,
} from './index';
import {
  classicEpsilon,
  FEDERATION,
  gaussianRdp,
  mechanism,
  referenceAccountant,
  TEST_DELTA,
  TEST_ORDERS,
  testSite,
} from './testing';

const accountant = referenceAccountant();
const site = testSite(1);
const other = testSite(2);

function body(overrides: Partial<LedgerEntryBody> = {}): LedgerEntryBody {
  return {
    seq: 1,
    federationId: FEDERATION,
    siteId: site.siteId,
    siteName: site.siteName,
    round: 1,
    mechanism: mechanism(),
    rdp: [0.5, 1.5],
    ordersHash: ordersFingerprint([2, 4]),
    delta: 1e-5,
    cumulativeEpsilon: 3.25,
    epsilonLimit: 8,
    createdAt: '2025-01-31T12:00:00.000Z',
    sitePublicKey: site.publicKey,
    ...overrides,
  };
}

function codeOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (err) {
    return err instanceof LedgerError ? err.code : 'not a LedgerError';
  }
  return undefined;
}

describe('entry hash', () => {
  it('is SHA-256 of the domain line and the sorted, whitespace-free JSON of the 15 hashed fields', () => {
    // Written out by hand, as an auditor re-implementing the encoding would.
    const json =
      '{"createdAt":"2025-01-31T12:00:00.000Z","cumulativeEpsilon":3.25,"delta":0.00001,' +
      '"epsilonLimit":8,"federationId":"fed-7a1c",' +
      '"mechanism":{"accountant":"rdp","clipNorm":1,"level":"site","noiseMultiplier":1.1,' +
      '"samplingRate":1,"steps":1,"survivorsAssumed":null},' +
      `"ordersHash":"${ordersFingerprint([2, 4])}","prevHash":"${GENESIS_HASH}",` +
      '"rdp":[0.5,1.5],"round":1,"seq":1,"siteId":"site-1","siteName":"Hospital 1",' +
      `"sitePublicKey":"${site.publicKey}"}`;
    const expected = createHash('sha256')
      .update(`confide-ledger-entry/1\n${json}`, 'utf8')
      .digest('hex');
    expect(ENTRY_HASH_DOMAIN).toBe('confide-ledger-entry/1\n');
    expect(new TextDecoder().decode(canonicalEncoding({ ...body(), prevHash: GENESIS_HASH }))).toBe(
      ENTRY_HASH_DOMAIN + json,
    );
    expect(entryHash(body(), GENESIS_HASH)).toBe(expected);
  });

  it('hashes a distributed discrete Gaussian mechanism with its 10 members, sorted like the rest', () => {
    const ddg = mechanism({
      survivorsAssumed: 3,
      noise: 'distributed-discrete-gaussian',
      quantizationScale: 1048576,
      dimension: 513,
    });
    const json = new TextDecoder().decode(
      canonicalEncoding({ ...body({ mechanism: ddg }), prevHash: GENESIS_HASH }),
    );
    expect(json).toContain(
      '"mechanism":{"accountant":"rdp","clipNorm":1,"dimension":513,"level":"site",' +
        '"noise":"distributed-discrete-gaussian","noiseMultiplier":1.1,' +
        '"quantizationScale":1048576,"samplingRate":1,"steps":1,"survivorsAssumed":3},',
    );
    expect(entryHash(body({ mechanism: ddg }), GENESIS_HASH)).not.toBe(
      entryHash(body({ mechanism: { ...ddg, dimension: 514 } }), GENESIS_HASH),
    );
  });

  it('fingerprints the orders as SHA-256 of their canonical JSON', () => {
    expect(ordersFingerprint([2, 4])).toBe(createHash('sha256').update('[2,4]').digest('hex'));
  });

  it('covers prevHash and ignores properties that are not part of an entry', () => {
    expect(entryHash(body(), 'a'.repeat(64))).not.toBe(entryHash(body(), GENESIS_HASH));
    const withRowId = { ...body(), id: 42 } as LedgerEntryBody;
    expect(entryHash(withRowId, GENESIS_HASH)).toBe(entryHash(body(), GENESIS_HASH));
  });

  it('refuses a malformed prevHash or body', () => {
    expect(codeOf(() => entryHash(body(), 'xyz'))).toBe(LedgerErrorCode.INVALID_ENTRY);
    expect(codeOf(() => entryHash(body({ cumulativeEpsilon: NaN }), GENESIS_HASH))).toBe(
      LedgerErrorCode.INVALID_ENTRY,
    );
    expect(codeOf(() => entryHash(body({ createdAt: '2025-01-31' }), GENESIS_HASH))).toBe(
      LedgerErrorCode.INVALID_ENTRY,
    );
  });
});

describe('receipts', () => {
  it('signed by the site verify under its key and no other', () => {
    const entry = signReceipt(body(), GENESIS_HASH, site.secretKey);
    expect(entry.hash).toBe(entryHash(body(), GENESIS_HASH));
    expect(verifyReceipt(entry)).toBe(true);
    expect(verifyReceipt(entry, site.publicKey)).toBe(true);
    expect(verifyReceipt(entry, other.publicKey)).toBe(false);
  });

  it('no longer verify once a field changes', () => {
    const entry = signReceipt(body(), GENESIS_HASH, site.secretKey);
    expect(verifyReceipt({ ...entry, cumulativeEpsilon: 3.2 })).toBe(false);
    expect(verifyReceipt({ ...entry, prevHash: 'b'.repeat(64) })).toBe(false);
    const forged = signReceipt(
      body({ sitePublicKey: other.publicKey }),
      GENESIS_HASH,
      other.secretKey,
    );
    expect(verifyReceipt({ ...entry, signature: forged.signature })).toBe(false);
  });

  it('verify exactly as tweetnacl does for honest signatures, and refuse a malleated one', () => {
    const entry = signReceipt(body(), GENESIS_HASH, site.secretKey);
    const pk = Buffer.from(site.publicKey, 'base64');
    const sig = Buffer.from(entry.signature, 'base64');
    expect(nacl.sign.detached.verify(Buffer.from(entry.hash, 'hex'), sig, pk)).toBe(true);
    // S + L (the group order) is the same signature to a lax verifier; RFC 8032 refuses it.
    const s = BigInt(`0x${Buffer.from(sig.subarray(32)).reverse().toString('hex')}`);
    const L = 2n ** 252n + 27742317777372353535851937790883648493n;
    const malleated = Buffer.concat([
      sig.subarray(0, 32),
      Buffer.from((s + L).toString(16).padStart(64, '0'), 'hex').reverse(),
    ]);
    expect(verifyReceipt({ ...entry, signature: malleated.toString('base64') })).toBe(false);
  });

  it('cannot be signed with a key other than the receipt names', () => {
    expect(codeOf(() => signReceipt(body(), GENESIS_HASH, other.secretKey))).toBe(
      LedgerErrorCode.KEY_MISMATCH,
    );
    expect(codeOf(() => signReceipt(body(), GENESIS_HASH, 'not a key'))).toBe(
      LedgerErrorCode.INVALID_KEY,
    );
  });

  it('carry the release curve and compose RDP for the cumulative epsilon', () => {
    const m = mechanism({ noiseMultiplier: 2, steps: 3 });
    const input = {
      ...chainHead(),
      federationId: FEDERATION,
      siteId: site.siteId,
      siteName: site.siteName,
      round: 1,
      mechanism: m,
      delta: TEST_DELTA,
      epsilonLimit: 100,
      createdAt: '2025-01-31T12:00:00.000Z',
      sitePublicKey: site.publicKey,
      siteHistory: [],
    };
    const first = createReceipt(input, accountant);
    expect(first.rdp).toEqual(gaussianRdp(3, 2, TEST_ORDERS));
    expect(first.ordersHash).toBe(ordersFingerprint(TEST_ORDERS));
    const second = createReceipt({ ...input, seq: 2, round: 2, siteHistory: [first] }, accountant);
    const twice = classicEpsilon(gaussianRdp(6, 2, TEST_ORDERS), TEST_ORDERS, TEST_DELTA).epsilon;
    expect(second.cumulativeEpsilon).toBeCloseTo(twice, 12);
    expect(second.cumulativeEpsilon).toBeLessThan(2 * first.cumulativeEpsilon);
  });

  it('are refused past the site limit and for another site history', () => {
    const input = {
      seq: 1,
      federationId: FEDERATION,
      siteId: site.siteId,
      siteName: site.siteName,
      round: 1,
      mechanism: mechanism({ noiseMultiplier: 0.5 }),
      delta: TEST_DELTA,
      epsilonLimit: 1,
      createdAt: '2025-01-31T12:00:00.000Z',
      sitePublicKey: site.publicKey,
      siteHistory: [],
    };
    expect(codeOf(() => createReceipt(input, accountant))).toBe(LedgerErrorCode.BUDGET_EXCEEDED);
    const foreign = { ...body(), siteId: other.siteId };
    expect(
      codeOf(() =>
        createReceipt({ ...input, epsilonLimit: 1e4, siteHistory: [foreign] }, accountant),
      ),
    ).toBe(LedgerErrorCode.INVALID_ARGUMENT);
  });

  it('chain from the genesis hash', () => {
    expect(chainHead()).toEqual({ seq: 1, prevHash: GENESIS_HASH });
    expect(chainHead({ seq: 7, hash: 'c'.repeat(64) })).toEqual({
      seq: 8,
      prevHash: 'c'.repeat(64),
    });
  });
});

describe('mechanism parameters', () => {
  it('accept both protection levels and an assumed survivor count', () => {
    expect(
      validateMechanism(mechanism({ level: 'record', samplingRate: 0.01, steps: 50 })),
    ).toEqual(mechanism({ level: 'record', samplingRate: 0.01, steps: 50 }));
    expect(validateMechanism(mechanism({ survivorsAssumed: 8 })).survivorsAssumed).toBe(8);
  });

  it.each([
    ['q = 0', { samplingRate: 0 }],
    ['q > 1', { samplingRate: 1.5 }],
    ['sigma = 0', { noiseMultiplier: 0 }],
    ['fractional steps', { steps: 1.5 }],
    ['zero steps', { steps: 0 }],
    ['clip norm -1', { clipNorm: -1 }],
    ['no survivors', { survivorsAssumed: 0 }],
    ['another level', { level: 'user' }],
    ['another accountant', { accountant: 'prv' }],
    ['an unknown field', { batchSize: 32 }],
  ])('refuse %s', (_name, overrides) => {
    expect(codeOf(() => validateMechanism({ ...mechanism(), ...overrides }))).toBe(
      LedgerErrorCode.INVALID_MECHANISM,
    );
  });

  const ddg = {
    ...mechanism({ survivorsAssumed: 3 }),
    noise: 'distributed-discrete-gaussian',
    quantizationScale: 2 ** 20,
    dimension: 513,
  } as const;

  it('accept the distributed discrete Gaussian with its scale and dimension, and keep a Gaussian at 7 fields', () => {
    expect(validateMechanism(ddg)).toEqual(ddg);
    expect(Object.keys(validateMechanism(mechanism())).sort()).toEqual(
      [
        'accountant',
        'clipNorm',
        'level',
        'noiseMultiplier',
        'samplingRate',
        'steps',
        'survivorsAssumed',
      ].sort(),
    );
    // An undefined member is no member: nothing undefined reaches the canonical JSON.
    expect(validateMechanism({ ...mechanism(), noise: undefined, dimension: undefined })).toEqual(
      mechanism(),
    );
  });

  it.each([
    ["an explicit 'gaussian' (absent is the Gaussian's only encoding)", { noise: 'gaussian' }],
    ['another noise', { noise: 'skellam' }],
    ['record level', { level: 'record' }],
    ['no survivors assumed', { survivorsAssumed: null }],
    ['no scale', { quantizationScale: undefined }],
    ['scale 0', { quantizationScale: 0 }],
    ['an infinite scale', { quantizationScale: Infinity }],
    ['no dimension', { dimension: undefined }],
    ['dimension 0', { dimension: 0 }],
    ['a fractional dimension', { dimension: 2.5 }],
  ])('refuse a distributed discrete Gaussian with %s', (_name, overrides) => {
    const message = messageOf(() => validateMechanism({ ...ddg, ...overrides }));
    expect(codeOf(() => validateMechanism({ ...ddg, ...overrides }))).toBe(
      LedgerErrorCode.INVALID_MECHANISM,
    );
    expect(message).toMatch(/^mechanism\./);
  });

  it.each([
    ['a scale', { quantizationScale: 1024 }],
    ['a dimension', { dimension: 10 }],
  ])('refuse %s without the distributed discrete Gaussian', (_name, overrides) => {
    expect(messageOf(() => validateMechanism({ ...mechanism(), ...overrides }))).toMatch(
      /is recorded only with noise 'distributed-discrete-gaussian'/,
    );
  });
});

describe('statistics and evaluation releases', () => {
  const evaluation = sumRelease({
    release: 'evaluation',
    level: 'record',
    noiseMultiplier: 50,
    sensitivity: Math.sqrt(3),
  });

  it('record their kind, one unsampled step, and the sum’s sensitivity as the clip norm', () => {
    expect(validateMechanism(evaluation)).toEqual({
      level: 'record',
      samplingRate: 1,
      noiseMultiplier: 50,
      steps: 1,
      clipNorm: Math.sqrt(3),
      survivorsAssumed: null,
      accountant: 'rdp',
      release: 'evaluation',
    });
    expect(releaseOf(evaluation)).toBe('evaluation');
    expect(releaseOf(mechanism())).toBe('update');
  });

  it('leave update mechanisms as they were (no release member, same hash)', () => {
    expect(Object.keys(validateMechanism(mechanism()))).not.toContain('release');
  });

  it.each([
    ["an explicit 'update' (absent is the update's only encoding)", { release: 'update' }],
    ['another kind', { release: 'gradients' }],
    ['more than one step', { steps: 2 }],
    ['subsampling', { samplingRate: 0.5 }],
    [
      'the distributed discrete Gaussian',
      {
        level: 'site',
        survivorsAssumed: 3,
        noise: 'distributed-discrete-gaussian',
        quantizationScale: 1024,
        dimension: 10,
      },
    ],
  ])('refuse a sum release with %s', (_name, overrides) => {
    expect(codeOf(() => validateMechanism({ ...evaluation, ...overrides }))).toBe(
      LedgerErrorCode.INVALID_MECHANISM,
    );
  });
});

function messageOf(f: () => unknown): string {
  try {
    f();
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
  return '';
}
