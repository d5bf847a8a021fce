import fc from 'fast-check';
import nacl from 'tweetnacl';
import { describe, expect, it } from 'vitest';
import { decodeFields, encodeFields, fromBase64, toBase64 } from './bytes';
import { isSecAggError } from './errors';
import {
  computeSessionId,
  parseAdvertisement,
  parseUnmaskRequest,
  validateContext,
  type ParsedAdvertisement,
  type RoundContext,
} from './messages';
import { validateParams, type SecAggParams } from './params';
import { openShare, sealShare, shareEncryptionKey } from './share-box';

const params: SecAggParams = {
  threshold: 3,
  graph: 'complete',
  threatModel: 'semi-honest',
  clip: 1,
  scale: 1024,
  maxSites: 10,
};
const ctx: RoundContext = {
  runId: 'run',
  round: 1,
  modelHash: 'abc',
  params,
  vectorLength: 4,
  tensorId: 'update',
};

function ad(siteId: string): ParsedAdvertisement {
  const enc = nacl.randomBytes(32);
  const mask = nacl.randomBytes(32);
  const sig = nacl.randomBytes(64);
  return parseAdvertisement({
    siteId,
    encPublicKey: toBase64(enc),
    maskPublicKey: toBase64(mask),
    signature: toBase64(sig),
  });
}

describe('encodings', () => {
  it('encodes field lists injectively and decodes them back', () => {
    const field = fc.uint8Array({ maxLength: 20 });
    fc.assert(
      fc.property(fc.array(field, { maxLength: 6 }), fc.array(field, { maxLength: 6 }), (a, b) => {
        const ea = encodeFields(a);
        expect(decodeFields(ea)).toEqual(a);
        if (JSON.stringify(a.map((x) => [...x])) !== JSON.stringify(b.map((x) => [...x]))) {
          expect(Buffer.compare(ea, encodeFields(b))).not.toBe(0);
        }
      }),
    );
    expect(() => decodeFields(Uint8Array.of(0, 0, 0, 5, 1))).toThrow(/truncated/);
  });

  it('encodes numbers as 8-byte big-endian unsigned integers and strings as UTF-8', () => {
    const hex = (fields: (Uint8Array | string | number)[]): string =>
      Buffer.from(encodeFields(fields)).toString('hex');
    expect(hex(['confide', 7])).toBe(
      `00000007${Buffer.from('confide').toString('hex')}000000080000000000000007`,
    );
    expect(hex([2 ** 53 - 1, 2 ** 32 + 5, 'é'])).toBe(
      '00000008001fffffffffffff' + '000000080000000100000005' + '00000002c3a9',
    );
    expect(() => encodeFields([-1])).toThrow(/non-negative safe integer/);
    expect(() => encodeFields([2 ** 53])).toThrow(/non-negative safe integer/);
  });

  it('accepts only canonical base64 of the expected length', () => {
    expect(fromBase64('AQID', 3)).toEqual(Uint8Array.of(1, 2, 3));
    for (const bad of [
      'AQI',
      'AQI!',
      'AQJ=',
      42,
      'AQID\n',
      ' AQID',
      '-_-_',
      'AQ==AQ==',
      'AQ=='.slice(1),
    ])
      expect(() => fromBase64(bad)).toThrow(/base64/);
    expect(() => fromBase64('AQID', 4)).toThrow(/4 bytes/);
  });
});

describe('parameters and round context', () => {
  it('refuses unsafe or inconsistent parameters', () => {
    const bad: Partial<SecAggParams>[] = [
      { threshold: 1 },
      { threshold: 11 },
      { maxSites: 1 },
      { graph: 'harary' },
      { graph: 'harary', k: 3 },
      { graph: 'harary', k: 2, threshold: 4 },
      { k: 4 },
      { threatModel: 'malicious' as 'semi-honest' },
      { clip: -1 },
      { scale: NaN },
      { scale: 2 ** 28 },
    ];
    for (const b of bad) {
      try {
        validateParams({ ...params, ...b });
        expect.unreachable(JSON.stringify(b));
      } catch (e) {
        expect(isSecAggError(e, 'BAD_PARAMS'), JSON.stringify(b)).toBe(true);
      }
    }
    expect(validateParams({ ...params, graph: 'harary', k: 4, threshold: 5 }).k).toBe(4);
  });

  it('refuses a malformed round context', () => {
    expect(() => validateContext({ ...ctx, round: -1 })).toThrow(/round/);
    expect(() => validateContext({ ...ctx, runId: '' })).toThrow(/runId/);
    expect(() => validateContext({ ...ctx, vectorLength: 0 })).toThrow(/vectorLength/);
  });
});

describe('session id', () => {
  it('ignores the order of advertisements and binds everything else', () => {
    const ads = [ad('a'), ad('b'), ad('c')];
    const sid = computeSessionId(ctx, ads);
    expect(computeSessionId(ctx, [...ads].reverse())).toEqual(sid);
    for (const other of [
      { ...ctx, round: 2 },
      { ...ctx, runId: 'run2' },
      { ...ctx, modelHash: 'abd' },
      { ...ctx, params: { ...params, threshold: 2 } },
      { ...ctx, vectorLength: 5 },
      { ...ctx, tensorId: 'other' },
    ]) {
      expect(computeSessionId(other, ads)).not.toEqual(sid);
    }
    expect(computeSessionId(ctx, ads.slice(0, 2))).not.toEqual(sid);
    expect(
      computeSessionId(ctx, [
        ads[0] as ParsedAdvertisement,
        ads[1] as ParsedAdvertisement,
        ad('c'),
      ]),
    ).not.toEqual(sid);
  });

  it('parses messages strictly', () => {
    expect(() =>
      parseAdvertisement({ siteId: 'a b', encPublicKey: '', maskPublicKey: '', signature: '' }),
    ).toThrow(/siteId/);
    const sid = toBase64(new Uint8Array(32));
    expect(() => parseUnmaskRequest({ sessionId: sid, alive: ['a', 'a'], dropped: [] })).toThrow(
      /twice/,
    );
    expect(parseUnmaskRequest({ sessionId: sid, alive: ['b', 'a'], dropped: [] }).alive).toEqual([
      'a',
      'b',
    ]);
  });
});

describe('share encryption', () => {
  const sessionId = nacl.randomBytes(32);
  const shared = nacl.randomBytes(32);
  const pair = { selfMaskShare: nacl.randomBytes(66), maskKeyShare: nacl.randomBytes(66) };

  it('opens what it seals, only for the addressed site in the same session', () => {
    const key = shareEncryptionKey(shared, sessionId, 'a', 'b');
    const msg = sealShare(key, sessionId, 'a', 'b', pair);
    expect(openShare(key, msg, { sessionId, to: 'b' })).toEqual(pair);
    const other = nacl.randomBytes(32);
    try {
      openShare(key, msg, { sessionId: other, to: 'b' });
      expect.unreachable();
    } catch (e) {
      expect(isSecAggError(e, 'REPLAYED_SHARE')).toBe(true);
    }
    expect(() => openShare(key, msg, { sessionId, to: 'c' })).toThrow(/delivered to c/);
    // The reverse direction has another key.
    expect(() =>
      openShare(shareEncryptionKey(shared, sessionId, 'b', 'a'), msg, { sessionId, to: 'b' }),
    ).toThrow(/does not authenticate/);
    // A share sealed by `a` but relabelled as coming from `c` (same key) is caught inside.
    expect(() => openShare(key, { ...msg, from: 'c' }, { sessionId, to: 'b' })).toThrow(
      /names other sites/,
    );
    const flipped = fromBase64(msg.ciphertext);
    flipped[0] = (flipped[0] as number) ^ 1;
    expect(() =>
      openShare(key, { ...msg, ciphertext: toBase64(flipped) }, { sessionId, to: 'b' }),
    ).toThrow(/does not authenticate/);
  });
});
