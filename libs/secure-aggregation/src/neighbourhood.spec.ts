import nacl from 'tweetnacl';
import { describe, expect, it } from 'vitest';
import { nodeBackend } from './backend';
import { bytesEqual, compareIds, fromBase64, toBase64 } from './bytes';
import { SecAggClient } from './client';
import { isSecAggError, type SecAggErrorCode } from './errors';
import { merkleLevels, merkleProof, merkleRoot, merkleRootFrom } from './merkle';
import { neighboursOf } from './graph';
import {
  advertisementLeaf,
  parseAdvertisement,
  sessionIdFrom,
  validateContext,
  type Advertisement,
} from './messages';
import {
  membershipBitmap,
  type NeighbourhoodAdvertisements,
  type ProvenAdvertisement,
} from './neighbourhood';
import type { SecAggParams } from './params';
import { SecAggServer } from './server';

const N = 12;
const IDENTITIES = Array.from({ length: N }, () => nacl.sign.keyPair());
const NAMES = IDENTITIES.map((_, i) => `site-${String(i).padStart(2, '0')}`);
const ROSTER = new Map(NAMES.map((id, i) => [id, (IDENTITIES[i] as nacl.SignKeyPair).publicKey]));
const HARARY: SecAggParams = {
  threshold: 3,
  graph: 'harary',
  k: 4,
  threatModel: 'semi-honest',
  clip: 4,
  scale: 2 ** 16,
  maxSites: N,
};

function expectCode(fn: () => unknown, code: SecAggErrorCode, message?: RegExp): void {
  try {
    fn();
  } catch (e) {
    expect(isSecAggError(e) ? e.code : e).toBe(code);
    if (message) expect((e as Error).message).toMatch(message);
    return;
  }
  throw new Error(`expected ${code}`);
}

/** A round whose sites all advertised: the server past closeAdvertising, the clients advertised. */
function advertised(params: SecAggParams = HARARY, n = N) {
  const common = { roster: ROSTER, runId: 'run-1', round: 1, modelHash: 'c0ffee', params };
  const ids = NAMES.slice(0, n);
  const clients = ids.map(
    (siteId, i) =>
      new SecAggClient({
        ...common,
        vectorLength: 8,
        siteId,
        identitySecretKey: (IDENTITIES[i] as nacl.SignKeyPair).secretKey,
        backend: nodeBackend,
      }),
  );
  const server = new SecAggServer({ ...common, roster: ROSTER, vectorLength: 8 });
  const ads = clients.map((c) => c.advertise());
  ads.forEach((a) => server.addAdvertisement(a));
  server.closeAdvertising();
  return { ids, clients, server, ads };
}

/** What a lying aggregator sends: a consistent tree over `ads`, with the proofs of `include`. */
function forgedView(ads: readonly Advertisement[], include: readonly string[]) {
  const sorted = [...ads].sort((a, b) => compareIds(a.siteId, b.siteId));
  const levels = merkleLevels(sorted.map((a) => advertisementLeaf(parseAdvertisement(a))));
  const view: NeighbourhoodAdvertisements = {
    sites: membershipBitmap([...NAMES].sort(compareIds), new Set(sorted.map((a) => a.siteId))),
    root: toBase64(merkleRoot(levels)),
    advertisements: include.map((id) => {
      const i = sorted.findIndex((a) => a.siteId === id);
      return { ...(sorted[i] as Advertisement), proof: toBase64(merkleProof(levels, i)) };
    }),
  };
  return view;
}

describe('Merkle proofs of advertisements', () => {
  it('proves every leaf of trees of 1 to 20 leaves, and no leaf at another position', () => {
    for (let n = 1; n <= 20; n++) {
      const leaves = Array.from({ length: n }, () => nacl.randomBytes(32));
      const levels = merkleLevels(leaves);
      const root = merkleRoot(levels);
      for (let i = 0; i < n; i++) {
        const proof = merkleProof(levels, i);
        expect(bytesEqual(merkleRootFrom(leaves[i] as Uint8Array, i, n, proof), root)).toBe(true);
        if (n > 1) {
          const other = (i + 1) % n;
          let rebuilt: Uint8Array | undefined;
          try {
            rebuilt = merkleRootFrom(leaves[i] as Uint8Array, other, n, proof);
          } catch (e) {
            expect(isSecAggError(e, 'SUBSTITUTED_KEY')).toBe(true);
          }
          if (rebuilt) expect(bytesEqual(rebuilt, root)).toBe(false);
        }
      }
    }
  });

  it('refuses a proof of the wrong length for its position', () => {
    const leaves = Array.from({ length: 5 }, () => nacl.randomBytes(32));
    const proof = merkleProof(merkleLevels(leaves), 2);
    expectCode(
      () => merkleRootFrom(leaves[2] as Uint8Array, 2, 5, proof.subarray(32)),
      'SUBSTITUTED_KEY',
    );
  });
});

describe('a site given only its neighbourhood', () => {
  it('gets O(k) advertisements and the session id of the full list', () => {
    const r = advertised();
    const full = r.server.advertisements();
    const view = r.server.advertisementsFor('site-03');
    expect(view.advertisements).toHaveLength((HARARY.k as number) + 1);
    const shares = r.clients[3]!.shareKeys(view);
    expect(shares).toHaveLength(HARARY.k as number);
    expect(r.clients[3]!.sessionId).toBe(r.server.sessionId);
    expect(r.clients[3]!.neighbours).toEqual(r.server.neighboursOf('site-03'));
    r.clients[4]!.shareKeys(full);
    expect(r.clients[4]!.sessionId).toBe(r.server.sessionId);
  });

  it('refuses the advertisement of a site that is not its neighbour (NOT_NEIGHBOUR)', () => {
    const r = advertised();
    const mine = r.server.advertisementsFor('site-00');
    const stranger = r.ids.find(
      (id) => id !== 'site-00' && !r.server.neighboursOf('site-00').includes(id),
    )!;
    const extra = r.server
      .advertisementsFor(stranger)
      .advertisements.find((a) => a.siteId === stranger) as ProvenAdvertisement;
    // In place of a neighbour (one more would be refused for its length).
    const neighbour = r.server.neighboursOf('site-00')[0] as string;
    const view = {
      ...mine,
      advertisements: mine.advertisements.map((a) => (a.siteId === neighbour ? extra : a)),
    };
    expectCode(() => r.clients[0]!.shareKeys(view), 'NOT_NEIGHBOUR', new RegExp(stranger));
    expect(r.clients[0]!.state).toBe('aborted');
    // Another site's neighbourhood is refused as a whole.
    const r2 = advertised();
    const far = r2.ids.find(
      (id) => id !== 'site-00' && !r2.server.neighboursOf('site-00').includes(id),
    ) as string;
    expectCode(() => r2.clients[0]!.shareKeys(r2.server.advertisementsFor(far)), 'NOT_NEIGHBOUR');
  });

  it('refuses a neighbourhood with a neighbour missing, or one twice', () => {
    const r = advertised();
    const mine = r.server.advertisementsFor('site-05');
    const neighbour = r.server.neighboursOf('site-05')[0] as string;
    const missing = {
      ...mine,
      advertisements: mine.advertisements.filter((a) => a.siteId !== neighbour),
    };
    expectCode(() => r.clients[5]!.shareKeys(missing), 'SUBSTITUTED_KEY', /missing/);
    const r2 = advertised();
    const v2 = r2.server.advertisementsFor('site-05');
    const twice = [...v2.advertisements.slice(1), v2.advertisements[1] as ProvenAdvertisement];
    expectCode(() => r2.clients[5]!.shareKeys({ ...v2, advertisements: twice }), 'DUPLICATE_SITE');
  });

  it('refuses a key that is not the one the set holds (SUBSTITUTED_KEY)', () => {
    const r = advertised();
    const mine = r.server.advertisementsFor('site-02');
    const neighbour = r.server.neighboursOf('site-02')[1] as string;
    const evil = toBase64(nacl.box.keyPair().publicKey);
    const swapped = {
      ...mine,
      advertisements: mine.advertisements.map((a) =>
        a.siteId === neighbour ? { ...a, maskPublicKey: evil } : a,
      ),
    };
    expectCode(() => r.clients[2]!.shareKeys(swapped), 'SUBSTITUTED_KEY', /key set/);
  });

  it('refuses a set rebuilt around substituted keys: the proofs hold, the signatures not', () => {
    const r = advertised();
    const forged = r.ads.map((a) =>
      a.siteId === 'site-02' ? a : { ...a, maskPublicKey: toBase64(nacl.box.keyPair().publicKey) },
    );
    const nbrs = expectedNeighbours(forged, 'site-02');
    expectCode(
      () => r.clients[2]!.shareKeys(forgedView(forged, ['site-02', ...nbrs])),
      'BAD_SIGNATURE',
    );
    // More than its k neighbours and itself is refused before anything else.
    const all = r.ads.map((a) => a.siteId);
    const c = advertised();
    expectCode(() => c.clients[2]!.shareKeys(forgedView(c.ads, all)), 'BAD_INPUT', /at most 5/);
  });

  it('refuses a set without itself, or with fewer sites than the threshold', () => {
    const r = advertised();
    const others = r.ads.filter((a) => a.siteId !== 'site-07');
    expectCode(
      () => r.clients[7]!.shareKeys(forgedView(others, [])),
      'SUBSTITUTED_KEY',
      /own advertisement/,
    );
    const { k: _k, ...rest } = HARARY;
    const complete = { ...rest, graph: 'complete' as const };
    const c = advertised(complete, 4);
    const two = c.ads.slice(0, 2);
    expectCode(
      () => c.clients[0]!.shareKeys(forgedView(two, ['site-00', 'site-01'])),
      'TOO_FEW_SURVIVORS',
    );
  });

  it('refuses a sites bitmap of another size or naming sites beyond the roster', () => {
    const r = advertised();
    const mine = r.server.advertisementsFor('site-01');
    expectCode(() => r.clients[1]!.shareKeys({ ...mine, sites: 'AAAA' }), 'BAD_INPUT', /bitmap/);
    const r2 = advertised();
    const v2 = r2.server.advertisementsFor('site-01');
    // 12 sites: two bytes, the top four bits of the second are beyond the roster.
    expectCode(
      () => r2.clients[1]!.shareKeys({ ...v2, sites: toBase64(Uint8Array.of(255, 255)) }),
      'BAD_INPUT',
      /beyond the roster/,
    );
  });

  it("refuses a neighbourhood when it verifies every advertisement (verify 'all')", () => {
    const r = advertised();
    const strict = new SecAggClient({
      roster: ROSTER,
      runId: 'run-1',
      round: 1,
      modelHash: 'c0ffee',
      params: HARARY,
      vectorLength: 8,
      siteId: 'site-00',
      identitySecretKey: (IDENTITIES[0] as nacl.SignKeyPair).secretKey,
      verify: 'all',
    });
    strict.advertise();
    expectCode(() => strict.shareKeys(r.server.advertisementsFor('site-00')), 'BAD_INPUT', /all/);
  });

  it('cannot exchange shares with neighbours that were shown another key set', () => {
    const r = advertised();
    // site-00 is shown a consistent set without one of the others: its session id differs, so a
    // share it seals is refused by a neighbour given the honest set.
    const left = r.ids.find(
      (id) => id !== 'site-00' && !r.server.neighboursOf('site-00').includes(id),
    ) as string;
    const fewer = r.ads.filter((a) => a.siteId !== left);
    const own = r.clients[0]!;
    const shares = own.shareKeys(
      forgedView(fewer, ['site-00', ...expectedNeighbours(fewer, 'site-00')]),
    );
    expect(own.sessionId).not.toBe(r.server.sessionId);
    const share = shares.find((s) => r.server.neighboursOf(s.to).includes('site-00'));
    expect(share).toBeDefined();
    const peer = r.clients[r.ids.indexOf(share!.to)]!;
    peer.shareKeys(r.server.advertisementsFor(share!.to));
    expectCode(() => peer.receiveShares([share]), 'REPLAYED_SHARE');
  });
});

/** The neighbours `siteId` derives from a set of advertisements (as a lying aggregator can). */
function expectedNeighbours(ads: readonly Advertisement[], siteId: string): string[] {
  const ids = ads.map((a) => a.siteId).sort(compareIds);
  const view = forgedView(ads, []);
  const ctx = validateContext({
    runId: 'run-1',
    round: 1,
    modelHash: 'c0ffee',
    params: HARARY,
    vectorLength: 8,
    tensorId: 'update',
  });
  const sid = sessionIdFrom(ctx, ids, fromBase64(view.root, 32));
  return neighboursOf(ids, sid, HARARY, siteId);
}
