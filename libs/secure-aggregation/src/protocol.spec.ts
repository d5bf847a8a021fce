import fc from 'fast-check';
import nacl from 'tweetnacl';
import { describe, expect, it, onTestFinished } from 'vitest';
import { naclBackend, nodeBackend, type CryptoBackend } from './backend';
import { fromBase64, toBase64 } from './bytes';
import { SecAggClient } from './client';
import { isSecAggError, SecAggError, type SecAggErrorCode } from './errors';
import type { Advertisement, EncryptedShare, UnmaskRequest } from './messages';
import type { SecAggParams } from './params';
import { averageWeighted, dequantize, quantizeWeighted } from './quantize';
import { MaskWorkerPool } from './parallel';
import { CHUNK_ELEMENTS } from './prg';
import { SecAggServer } from './server';
import { simulateRound } from './simulate';

const IDENTITIES = Array.from({ length: 14 }, () => nacl.sign.keyPair());
const NAMES = IDENTITIES.map((_, i) => `site-${String(i).padStart(2, '0')}`);

function params(overrides: Partial<SecAggParams> = {}): SecAggParams {
  return {
    threshold: 3,
    graph: 'complete',
    threatModel: 'semi-honest',
    clip: 4,
    scale: 2 ** 16,
    maxSites: 64,
    ...overrides,
  };
}

/** A deterministic stand-in for the CSPRNG (`randomBytes` option), so a round can be replayed. */
function seeded(seed: number): (n: number) => Uint8Array {
  let k = seed;
  return (n) => {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = Math.imul(++k, 2654435761) >>> 24;
    return out;
  };
}

/** Deterministic stochastic-rounding values (`quantizeRandom` option), the same in every replay. */
function counter(): (out: Uint32Array) => void {
  let k = 0;
  return (out) => {
    for (let i = 0; i < out.length; i++) out[i] = Math.imul(++k, 2246822519) >>> 0;
  };
}

function randomInputs(n: number, m: number): Uint32Array[] {
  return Array.from({ length: n }, () => new Uint32Array(nacl.randomBytes(4 * m).buffer));
}

interface Round {
  ids: string[];
  clients: SecAggClient[];
  server: SecAggServer;
  roster: Map<string, Uint8Array>;
}

function makeRound(
  n: number,
  p: SecAggParams,
  opts: {
    round?: number;
    vectorLength?: number;
    backendFor?: (i: number) => CryptoBackend;
    randomFor?: (i: number) => ((k: number) => Uint8Array) | undefined;
    quantizeRandomFor?: (i: number) => ((out: Uint32Array) => void) | undefined;
    minSurvivorsFor?: (i: number) => number | undefined;
  } = {},
): Round {
  const ids = NAMES.slice(0, n);
  const roster = new Map(ids.map((id, i) => [id, (IDENTITIES[i] as nacl.SignKeyPair).publicKey]));
  const common = {
    roster,
    runId: 'run-1',
    round: opts.round ?? 1,
    modelHash: 'c0ffee',
    params: p,
    vectorLength: opts.vectorLength ?? 16,
  };
  const clients = ids.map((siteId, i) => {
    const random = opts.randomFor?.(i);
    const quantizeRandom = opts.quantizeRandomFor?.(i);
    const minSurvivors = opts.minSurvivorsFor?.(i);
    return new SecAggClient({
      ...common,
      siteId,
      identitySecretKey: (IDENTITIES[i] as nacl.SignKeyPair).secretKey,
      backend: opts.backendFor?.(i) ?? nodeBackend,
      ...(random ? { randomBytes: random } : {}),
      ...(quantizeRandom ? { quantizeRandom } : {}),
      ...(minSurvivors !== undefined ? { minSurvivors } : {}),
    });
  });
  return { ids, clients, server: new SecAggServer(common), roster };
}

/**
 * Runs advertise and share-keys (each site given its neighbourhood's advertisements); returns every
 * advertisement and every site's outgoing shares.
 */
function throughSharing(r: Round): { ads: Advertisement[]; shares: EncryptedShare[][] } {
  r.clients.forEach((c) => r.server.addAdvertisement(c.advertise()));
  const ads = r.server.closeAdvertising();
  const shares = r.clients.map((c, i) =>
    c.shareKeys(r.server.advertisementsFor(r.ids[i] as string)),
  );
  shares.forEach((s, i) => r.server.addShares(r.ids[i] as string, s));
  r.server.closeSharing();
  return { ads, shares };
}

/**
 * Runs advertise and share-keys, then the first `masking` sites (all by default) send their masked
 * inputs; closes the collection and returns its consistency request (semi-malicious rounds).
 */
function throughMasking(
  r: Round,
  inputs: readonly Uint32Array[],
  masking = r.clients.length,
): ReturnType<SecAggServer['closeCollection']> {
  throughSharing(r);
  r.clients.forEach((c, i) => c.receiveShares(r.server.sharesFor(r.ids[i] as string)));
  r.clients
    .slice(0, masking)
    .forEach((c, i) =>
      r.server.addMaskedInput(r.ids[i] as string, c.maskInput(inputs[i] as Uint32Array)),
    );
  return r.server.closeCollection();
}

function expectCode(f: () => unknown, code: SecAggErrorCode, message?: RegExp): SecAggError {
  try {
    f();
  } catch (e) {
    if (!isSecAggError(e)) throw e;
    expect(e.code, e.message).toBe(code);
    if (message) expect(e.message).toMatch(message);
    return e;
  }
  throw new Error(`expected ${code}`);
}

function sumOf(inputs: readonly Uint32Array[], which: readonly number[]): Uint32Array {
  const out = new Uint32Array(inputs[0]?.length ?? 0);
  for (const i of which) {
    const x = inputs[i] as Uint32Array;
    for (let j = 0; j < out.length; j++) out[j] = (out[j] as number) + (x[j] as number);
  }
  return out;
}

const subsetOf = (n: number): fc.Arbitrary<number[]> =>
  fc.subarray(
    Array.from({ length: n }, (_, i) => i),
    { maxLength: Math.max(0, Math.floor(n / 3)) },
  );

describe('a secure-aggregation round', () => {
  it('unmasks exactly the sum of the survivors for random dropouts at every stage (complete graph)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 3, max: 10 }).chain((n) =>
          fc.record({
            n: fc.constant(n),
            t: fc.integer({ min: 2, max: n }),
            threatModel: fc.constantFrom<'semi-honest' | 'semi-malicious'>(
              'semi-honest',
              'semi-malicious',
            ),
            sharing: subsetOf(n),
            masking: subsetOf(n),
            unmasking: subsetOf(n),
            m: fc.integer({ min: 1, max: 40 }),
          }),
        ),
        ({ n, t, threatModel, sharing, masking, unmasking, m }) => {
          const inputs = randomInputs(n, m);
          const p = params({ threshold: t, threatModel });
          const u2 = [...Array(n).keys()].filter((i) => !sharing.includes(i));
          const u3 = u2.filter((i) => !masking.includes(i));
          const responders = u3.filter((i) => !unmasking.includes(i));
          const ok = u2.length >= t && u3.length >= t && responders.length >= t;
          const run = (): ReturnType<typeof simulateRound> =>
            simulateRound({
              params: p,
              inputs,
              dropBeforeSharing: sharing,
              dropBeforeMasking: masking,
              dropBeforeUnmasking: unmasking,
            });
          if (!ok) {
            expectCode(run, 'TOO_FEW_SURVIVORS', /threshold|required shares/);
            return;
          }
          const { sum, survivors } = run();
          expect(survivors).toEqual(u3);
          expect(sum).toEqual(sumOf(inputs, u3));
        },
      ),
      { numRuns: 12 },
    );
  });

  it('unmasks exactly the sum of the survivors with a Harary graph, or aborts with TOO_FEW_SURVIVORS', () => {
    let completed = 0;
    fc.assert(
      fc.property(
        fc.integer({ min: 8, max: 12 }).chain((n) =>
          fc.record({
            n: fc.constant(n),
            k: fc.constantFrom(4, 6),
            t: fc.integer({ min: 2, max: 3 }),
            sharing: fc.subarray([...Array(n).keys()], { maxLength: 1 }),
            masking: fc.subarray([...Array(n).keys()], { maxLength: 2 }),
            unmasking: fc.subarray([...Array(n).keys()], { maxLength: 1 }),
          }),
        ),
        ({ n, k, t, sharing, masking, unmasking }) => {
          const inputs = randomInputs(n, 9);
          try {
            const { sum, survivors } = simulateRound({
              params: params({ graph: 'harary', k, threshold: t }),
              inputs,
              dropBeforeSharing: sharing,
              dropBeforeMasking: masking,
              dropBeforeUnmasking: unmasking,
            });
            expect(sum).toEqual(sumOf(inputs, survivors));
            completed++;
          } catch (e) {
            expect(isSecAggError(e, 'TOO_FEW_SURVIVORS'), String(e)).toBe(true);
          }
        },
      ),
      { numRuns: 10 },
    );
    expect(completed).toBeGreaterThan(4);
  });

  it('completes with dropouts at each of the three stages and aborts with a stated reason below t', () => {
    const inputs = randomInputs(8, 16);
    const p = params({ threshold: 5 });
    const { sum } = simulateRound({
      params: p,
      inputs,
      dropBeforeSharing: [1],
      dropBeforeMasking: [2],
      dropBeforeUnmasking: [3],
    });
    expect(sum).toEqual(sumOf(inputs, [0, 3, 4, 5, 6, 7]));

    expectCode(
      () => simulateRound({ params: p, inputs, absent: [0, 1, 2, 3] }),
      'TOO_FEW_SURVIVORS',
      /only 4 sites advertised keys; the threshold is 5/,
    );
    expectCode(
      () => simulateRound({ params: p, inputs, dropBeforeSharing: [0, 1, 2, 3] }),
      'TOO_FEW_SURVIVORS',
      /only 4 sites shared keys; the threshold is 5/,
    );
    expectCode(
      () => simulateRound({ params: p, inputs, dropBeforeMasking: [0, 1, 2, 3] }),
      'TOO_FEW_SURVIVORS',
      /only 4 sites sent their masked input/,
    );
    expectCode(
      () => simulateRound({ params: p, inputs, dropBeforeUnmasking: [0, 1, 2, 3] }),
      'TOO_FEW_SURVIVORS',
      /has 4 of 5 required shares/,
    );
  });

  it('records the abort reason on the server', () => {
    const r = makeRound(4, params({ threshold: 4 }));
    r.clients.slice(0, 3).forEach((c) => r.server.addAdvertisement(c.advertise()));
    expectCode(() => r.server.closeAdvertising(), 'TOO_FEW_SURVIVORS');
    expect(r.server.state).toBe('aborted');
    expect(r.server.abortReason).toMatch(/only 3 sites advertised keys; the threshold is 4/);
    expectCode(() => r.server.advertisements(), 'WRONG_STATE');
  });

  it('averages weighted updates: sum(w x) / sum(w) through quantization and masking', () => {
    const p = params({ threshold: 3, clip: 4 });
    const updates = [
      Float32Array.of(1, -1, 2),
      Float32Array.of(3, 1, 0),
      Float32Array.of(-2, 2, 1),
      Float32Array.of(0, 0, 3),
    ];
    const weights = [0.25, 0.5, 1, 0.75];
    const r = makeRound(4, p, { vectorLength: 4 });
    throughSharing(r);
    r.clients.forEach((c, i) => c.receiveShares(r.server.sharesFor(r.ids[i] as string)));
    r.clients.forEach((c, i) =>
      r.server.addMaskedInput(
        r.ids[i] as string,
        c.maskWeightedUpdate(updates[i] as Float32Array, weights[i] as number),
      ),
    );
    r.server.closeCollection();
    r.clients.forEach((c, i) =>
      r.server.addUnmaskResponse(c.unmask(r.server.unmaskRequest(r.ids[i] as string))),
    );
    const { average, totalWeight } = averageWeighted(dequantize(r.server.finish(), p));
    expect(totalWeight).toBeCloseTo(2.5, 4);
    for (let j = 0; j < 3; j++) {
      const want =
        updates.reduce((a, u, i) => a + (weights[i] as number) * (u[j] as number), 0) / 2.5;
      expect(average[j]).toBeCloseTo(want, 3);
    }
  });

  it('masks a weighted update exactly as maskInput(quantizeWeighted(...)) does, chunk by chunk and on workers', async () => {
    // Two replays of one round with the same randomness: one site quantizes and masks in one fused
    // pass, the other quantizes first; lengths straddle the CHUNK_ELEMENTS-element chunks.
    const p = params({ threshold: 2, clip: 2 });
    const pool = new MaskWorkerPool(2);
    onTestFinished(() => pool.close());
    for (const length of [5, CHUNK_ELEMENTS - 1, CHUNK_ELEMENTS, 10 * CHUNK_ELEMENTS + 3]) {
      const update = Float32Array.from({ length }, (_, i) => Math.sin(i * 0.37) * 2.5);
      const replay = (): Round =>
        makeRound(3, p, {
          vectorLength: length + 1,
          randomFor: (i) => seeded(1000 * (i + 1)),
          quantizeRandomFor: () => counter(),
        });
      const a = replay();
      const b = replay();
      const c = replay();
      for (const r of [a, b, c]) {
        throughSharing(r);
        r.clients.forEach((cl, i) => cl.receiveShares(r.server.sharesFor(r.ids[i] as string)));
      }
      const fused = a.clients[1]!.maskWeightedUpdate(update, 0.4);
      const twoPass = b.clients[1]!.maskInput(quantizeWeighted(update, 0.4, p, counter()));
      const onWorkers = await c.clients[1]!.maskWeightedUpdateOn(pool, update, 0.4);
      expect(fused.length).toBe(length + 1);
      expect(Buffer.from(fused.buffer).equals(Buffer.from(twoPass.buffer))).toBe(true);
      expect(Buffer.from(onWorkers.buffer).equals(Buffer.from(twoPass.buffer))).toBe(true);
      expect(c.clients[1]!.state).toBe('masked');
      // The pool's result unmasks like any other: a full round through it sums correctly.
      c.clients.forEach((cl, i) => {
        if (i !== 1)
          c.server.addMaskedInput(c.ids[i] as string, cl.maskWeightedUpdate(update, 0.4));
      });
      c.server.addMaskedInput(c.ids[1] as string, onWorkers);
      c.server.closeCollection();
      c.clients.forEach((cl, i) =>
        c.server.addUnmaskResponse(cl.unmask(c.server.unmaskRequest(c.ids[i] as string))),
      );
      const { average } = averageWeighted(dequantize(c.server.finish(), p));
      // Every site sent the same update (0.4 x within the clip): the average is that update, up to
      // rounding: each of 3 sites rounds 0.4 x and 0.4 with error < 2^-16, so the ratio is off by
      // < (|x| + 1) * 3 * 2^-16 / (1.2 - 3 * 2^-16) < 1.6e-4 for |x| <= 2.5.
      const x = update[length - 1]!;
      expect(Math.abs(average[length - 1]! - x)).toBeLessThan(
        ((Math.abs(x) + 1) * 3 * 2 ** -16) / (1.2 - 3 * 2 ** -16),
      );
    }
    await expect(
      makeRound(3, p, { vectorLength: 3 }).clients[0]!.maskWeightedUpdateOn(pool, [1, 2], 1),
    ).rejects.toThrow(/needs state 'ready'/);
    // A NaN is refused before masking, and the site can still mask a good update.
    const r = makeRound(3, p, { vectorLength: 3 });
    throughSharing(r);
    r.clients.forEach((c, i) => c.receiveShares(r.server.sharesFor(r.ids[i] as string)));
    expectCode(
      () => r.clients[0]!.maskWeightedUpdate(Float32Array.of(1, NaN), 1),
      'NON_FINITE_INPUT',
    );
    expect(r.clients[0]!.maskWeightedUpdate(Float32Array.of(1, 0.5), 1).length).toBe(3);
    expectCode(() => r.clients[1]!.maskWeightedUpdate(Float32Array.of(1, 0.5, 3), 1), 'BAD_INPUT');
  });

  it('masks the same with masks precomputed after sharing keys, also when a neighbour did not share', async () => {
    const p = params({ threshold: 3, clip: 2 });
    const pool = new MaskWorkerPool(1);
    onTestFinished(() => pool.close());
    const length = 3 * CHUNK_ELEMENTS + 5;
    const update = Float32Array.from({ length }, (_, i) => Math.cos(i * 0.11) * 1.5);
    for (const sharing of [
      [0, 1, 2, 3],
      [0, 1, 2],
    ]) {
      // Two replays of one round of four sites; site 3 advertises in both, shares keys in one.
      const replay = (): Round =>
        makeRound(4, p, {
          vectorLength: length + 1,
          randomFor: (i) => seeded(1000 * (i + 1)),
          quantizeRandomFor: () => counter(),
        });
      // The third replay adds an already quantized input (maskInputOn) to its precomputed masks.
      const [plain, pre, preInput] = [replay(), replay(), replay()];
      const outs: Uint32Array[] = [];
      for (const r of [plain, pre, preInput]) {
        r.clients.forEach((c) => r.server.addAdvertisement(c.advertise()));
        const ads = r.server.closeAdvertising();
        const shares = r.clients.map((c) => c.shareKeys(ads));
        if (r !== plain) {
          expectCode(
            () => r.clients[1]!.precomputeMasksOn(pool, { reserveBefore: 12 }),
            'BAD_INPUT',
            /multiple of 8/,
          );
          // The pre replay leaves room before the vector for framing it in place.
          r.clients[1]!.precomputeMasksOn(pool, { reserveBefore: r === pre ? 4096 : 0 });
          expectCode(() => r.clients[1]!.precomputeMasksOn(pool), 'WRONG_STATE', /already/);
        }
        for (const i of sharing) r.server.addShares(r.ids[i]!, shares[i]!);
        r.server.closeSharing();
        for (const i of sharing) r.clients[i]!.receiveShares(r.server.sharesFor(r.ids[i]!));
        if (r === pre) {
          // A NaN is refused before the masks are touched; the site then masks its good update.
          const bad = Float32Array.from(update);
          bad[length - 2] = NaN;
          await expect(r.clients[1]!.maskWeightedUpdateOn(pool, bad, 0.5)).rejects.toThrow(
            new RegExp(`coordinate ${length - 2} is NaN`),
          );
          expect(r.clients[1]!.state).toBe('ready');
        }
        outs.push(
          r === preInput
            ? await r.clients[1]!.maskInputOn(pool, quantizeWeighted(update, 0.5, p, counter()))
            : await r.clients[1]!.maskWeightedUpdateOn(pool, update, 0.5),
        );
      }
      const bytes = (v: Uint32Array): Buffer => Buffer.from(v.buffer, v.byteOffset, v.byteLength);
      expect(outs[1]!.byteOffset).toBe(4096);
      expect(new Uint8Array(outs[1]!.buffer, 0, 4096).every((b) => b === 0)).toBe(true);
      expect(bytes(outs[1]!).equals(bytes(outs[0]!))).toBe(true);
      expect(bytes(outs[2]!).equals(bytes(outs[0]!))).toBe(true);
      // And the round through the precomputed masks unmasks to the right sum.
      for (const i of sharing) {
        const id = pre.ids[i]!;
        pre.server.addMaskedInput(
          id,
          i === 1 ? outs[1]! : pre.clients[i]!.maskWeightedUpdate(update, 0.5),
        );
      }
      pre.server.closeCollection();
      for (const i of sharing) {
        pre.server.addUnmaskResponse(pre.clients[i]!.unmask(pre.server.unmaskRequest(pre.ids[i]!)));
      }
      const { average } = averageWeighted(dequantize(pre.server.finish(), p));
      expect(Math.abs(average[7]! - update[7]!)).toBeLessThan(1e-3);
    }
    // Precomputed masks are for the pool path only; not before keys are shared.
    const r = makeRound(3, p, { vectorLength: 3 });
    throughSharing(r);
    r.clients[0]!.precomputeMasksOn(pool);
    r.clients.forEach((c, i) => c.receiveShares(r.server.sharesFor(r.ids[i] as string)));
    expectCode(
      () => r.clients[0]!.maskWeightedUpdate(Float32Array.of(1, 0.5), 1),
      'WRONG_STATE',
      /precomputed/,
    );
    const fresh = makeRound(3, p, { vectorLength: 3 });
    fresh.clients[0]!.advertise();
    expectCode(() => fresh.clients[0]!.precomputeMasksOn(pool), 'WRONG_STATE');
  });

  it('runs with the tweetnacl reference backend, and mixes backends in one round', () => {
    const inputs = randomInputs(4, 8);
    const { sum } = simulateRound({
      params: params({ threshold: 3 }),
      inputs,
      dropBeforeMasking: [2],
      backend: naclBackend,
    });
    expect(sum).toEqual(sumOf(inputs, [0, 1, 3]));
    const r = makeRound(4, params({ threshold: 3 }), {
      vectorLength: 8,
      backendFor: (i) => (i % 2 === 0 ? naclBackend : nodeBackend),
    });
    throughMasking(r, inputs);
    r.clients.forEach((c, i) =>
      r.server.addUnmaskResponse(c.unmask(r.server.unmaskRequest(r.ids[i] as string))),
    );
    expect(r.server.finish()).toEqual(sumOf(inputs, [0, 1, 2, 3]));
  });
});

describe('attacks by the aggregator and by peers', () => {
  it('refuses a substituted public key (the aggregator swaps the key in an advertisement)', () => {
    const r = makeRound(4, params());
    r.clients.forEach((c) => r.server.addAdvertisement(c.advertise()));
    const ads = r.server.closeAdvertising();
    const evil = nacl.box.keyPair();
    const swapped = ads.map((a) =>
      a.siteId === 'site-01' ? { ...a, maskPublicKey: toBase64(evil.publicKey) } : a,
    );
    expectCode(() => r.clients[0]?.shareKeys(swapped), 'BAD_SIGNATURE', /site-01/);
    expect(r.clients[0]?.state).toBe('aborted');
    // The victim's own key swapped:
    const own = ads.map((a) =>
      a.siteId === 'site-02' ? { ...a, encPublicKey: toBase64(evil.publicKey) } : a,
    );
    expectCode(() => r.clients[2]?.shareKeys(own), 'SUBSTITUTED_KEY', /own advertisement/);
    // One site's key copied into another advertisement:
    const first = ads[0] as Advertisement;
    const copied = ads.map((a) =>
      a.siteId === 'site-03' ? { ...a, maskPublicKey: first.maskPublicKey } : a,
    );
    expectCode(() => r.clients[1]?.shareKeys(copied), 'SUBSTITUTED_KEY', /used twice/);
  });

  it('refuses a forged signature, at the aggregator and at every site', () => {
    const r = makeRound(4, params());
    const ads = r.clients.map((c) => c.advertise());
    const mallory = nacl.sign.keyPair();
    const keys = nacl.box.keyPair();
    const forged: Advertisement = {
      siteId: 'site-03',
      encPublicKey: toBase64(keys.publicKey),
      maskPublicKey: toBase64(nacl.box.keyPair().publicKey),
      signature: toBase64(nacl.sign.detached(new Uint8Array(10), mallory.secretKey)),
    };
    expectCode(() => r.server.addAdvertisement(forged), 'BAD_SIGNATURE');
    const list = ads.map((a) => (a.siteId === 'site-03' ? forged : a));
    expectCode(() => r.clients[0]?.shareKeys(list), 'BAD_SIGNATURE', /site-03/);
    const stranger = { ...forged, siteId: 'site-99' };
    expectCode(() => r.clients[1]?.shareKeys([...ads, stranger]), 'UNKNOWN_SITE');
    expectCode(() => r.clients[2]?.shareKeys([...ads, ads[0]]), 'DUPLICATE_SITE');
  });

  it('refuses a share replayed from another round', () => {
    const old = makeRound(4, params(), { round: 1 });
    const { shares: oldShares } = throughSharing(old);
    const r = makeRound(4, params(), { round: 2 });
    throughSharing(r);
    const fresh = r.server.sharesFor('site-01');
    const replayed = oldShares[0]?.find((s) => s.to === 'site-01') as EncryptedShare;
    const withReplay = fresh.map((s) => (s.from === 'site-00' ? replayed : s));
    expectCode(() => r.clients[1]?.receiveShares(withReplay), 'REPLAYED_SHARE', /another session/);
    expect(r.clients[1]?.state).toBe('aborted');
    // The same share with its clear session id rewritten still fails: the key depends on the session.
    const rewritten = { ...replayed, sessionId: r.server.sessionId as string };
    expectCode(
      () =>
        r.clients[2]?.receiveShares(
          r.server
            .sharesFor('site-02')
            .map((s) => (s.from === 'site-00' ? { ...rewritten, to: 'site-02' } : s)),
        ),
      'DECRYPTION_FAILED',
    );
    // A share re-addressed to another site, and one from a non-neighbour / twice:
    const toOther = r.server
      .sharesFor('site-03')
      .map((s) => (s.from === 'site-00' ? { ...s, to: 'site-01' } : s));
    expectCode(() => r.clients[3]?.receiveShares(toOther), 'MISDIRECTED_SHARE');
    // The aggregator refuses them too.
    const r3 = makeRound(4, params(), { round: 3 });
    r3.clients.forEach((c) => r3.server.addAdvertisement(c.advertise()));
    r3.server.closeAdvertising();
    expectCode(
      () => r3.server.addShares('site-00', oldShares[0] as EncryptedShare[]),
      'REPLAYED_SHARE',
    );
  });

  it('refuses an unmask request whose alive and dropped lists overlap, and reveals nothing afterwards', () => {
    const r = makeRound(5, params({ threshold: 3 }));
    throughMasking(r, randomInputs(5, 16));
    const req = r.server.unmaskRequest('site-00');
    const evil: UnmaskRequest = { ...req, dropped: ['site-01'] };
    expectCode(() => r.clients[0]?.unmask(evil), 'OVERLAPPING_LISTS', /both alive and dropped/);
    expect(r.clients[0]?.state).toBe('aborted');
    expectCode(() => r.clients[0]?.unmask(req), 'ABORTED');
    expect(r.clients[0]?.revealed().size).toBe(0);
  });

  it('refuses requests naming non-neighbours, leaving itself out, or with fewer than t alive', () => {
    const r = makeRound(6, params({ threshold: 4 }));
    throughMasking(r, randomInputs(6, 16));
    const req = r.server.unmaskRequest('site-00');
    expectCode(
      () => r.clients[0]?.unmask({ ...req, alive: [...req.alive, 'site-99'] }),
      'NOT_NEIGHBOUR',
    );
    const req1 = r.server.unmaskRequest('site-01');
    expectCode(
      () =>
        r.clients[1]?.unmask({
          ...req1,
          alive: req1.alive.filter((id) => id !== 'site-01'),
          dropped: ['site-01'],
        }),
      'INCONSISTENT_LISTS',
      /not alive/,
    );
    // The aggregator claims most sites dropped, to collect their mask-key shares.
    const req2 = r.server.unmaskRequest('site-02');
    const lying = {
      ...req2,
      alive: ['site-02', 'site-03'],
      dropped: ['site-00', 'site-01', 'site-04', 'site-05'],
    };
    expectCode(
      () => r.clients[2]?.unmask(lying),
      'TOO_FEW_SURVIVORS',
      /2 alive sites; the threshold is 4/,
    );
    const req3 = r.server.unmaskRequest('site-03');
    expectCode(
      () => r.clients[3]?.unmask({ ...req3, dropped: [], alive: req3.alive.slice(0, 5) }),
      'INCONSISTENT_LISTS',
    );
    expectCode(
      () =>
        r.clients[4]?.unmask({
          ...r.server.unmaskRequest('site-04'),
          sessionId: toBase64(new Uint8Array(32)),
        }),
      'SESSION_MISMATCH',
    );
  });

  it("refuses an unmask request naming fewer survivors than the site's minSurvivors, and reveals nothing", () => {
    const r = makeRound(6, params({ threshold: 3 }), { minSurvivorsFor: () => 5 });
    throughMasking(r, randomInputs(6, 16));
    // Above the threshold, below the site's floor: the aggregator would learn a sum of 4 inputs.
    const req = r.server.unmaskRequest('site-00');
    const lying = {
      ...req,
      alive: ['site-00', 'site-01', 'site-02', 'site-03'],
      dropped: ['site-04', 'site-05'],
    };
    expectCode(
      () => r.clients[0]?.unmask(lying),
      'TOO_FEW_SURVIVORS',
      /4 alive sites; this site requires at least 5 \(minSurvivors\)/,
    );
    expect(r.clients[0]?.state).toBe('aborted');
    expect(r.clients[0]?.revealed().size).toBe(0);
    expectCode(() => r.clients[0]?.unmask(req), 'ABORTED');
    // The honest request names all 6: answered.
    expect(r.clients[1]?.unmask(r.server.unmaskRequest('site-01')).selfMaskShares).toHaveLength(6);
  });

  it("completes a round whose survivors just meet every site's minSurvivors, in both threat models", () => {
    for (const threatModel of ['semi-honest', 'semi-malicious'] as const) {
      const r = makeRound(5, params({ threshold: 3, threatModel }), { minSurvivorsFor: () => 4 });
      const inputs = randomInputs(5, 16);
      const consistency = throughMasking(r, inputs, 4);
      if (consistency) {
        r.clients
          .slice(0, 4)
          .forEach((c) => r.server.addSurvivorSignature(c.confirmSurvivors(consistency)));
        r.server.closeConsistency();
      }
      r.clients
        .slice(0, 4)
        .forEach((c, i) =>
          r.server.addUnmaskResponse(c.unmask(r.server.unmaskRequest(r.ids[i] as string))),
        );
      expect(r.server.finish()).toEqual(sumOf(inputs, [0, 1, 2, 3]));
    }
  });

  it('every survivor refuses to unmask when one site dropped and minSurvivors is n', () => {
    const inputs = randomInputs(5, 16);
    const honest = makeRound(5, params({ threshold: 3 }), { minSurvivorsFor: () => 5 });
    throughMasking(honest, inputs, 4);
    honest.clients.slice(0, 4).forEach((c, i) => {
      expectCode(
        () => c.unmask(honest.server.unmaskRequest(honest.ids[i] as string)),
        'TOO_FEW_SURVIVORS',
        /4 alive sites; this site requires at least 5/,
      );
      expect(c.state).toBe('aborted');
      expect(c.revealed().size).toBe(0);
    });
    // Semi-malicious: refused already at the consistency round, before anything is signed.
    const signed = makeRound(5, params({ threshold: 3, threatModel: 'semi-malicious' }), {
      minSurvivorsFor: () => 5,
    });
    const consistency = throughMasking(signed, inputs, 4);
    signed.clients.slice(0, 4).forEach((c) => {
      expectCode(
        () => c.confirmSurvivors(consistency),
        'TOO_FEW_SURVIVORS',
        /4 survivors; this site requires at least 5/,
      );
      expect(c.state).toBe('aborted');
    });
    // And a survivor list that leaves the site itself out is refused too.
    const other = makeRound(5, params({ threshold: 3, threatModel: 'semi-malicious' }));
    const req = throughMasking(other, inputs);
    expectCode(
      () =>
        other.clients[0]?.confirmSurvivors({
          ...req,
          survivors: req?.survivors.filter((id) => id !== 'site-00'),
        }),
      'INCONSISTENT_LISTS',
      /not listed/,
    );
    expect(other.clients[0]?.state).toBe('aborted');
  });

  it('refuses a minSurvivors no request could meet, and keeps the threshold as the floor below it', () => {
    for (const bad of [0, 2.5, 65, NaN]) {
      expectCode(() => makeRound(4, params(), { minSurvivorsFor: () => bad }), 'BAD_INPUT');
    }
    // A semi-honest Harary request shows a site its k + 1 neighbourhood only.
    const harary = params({ graph: 'harary', k: 4, threshold: 3 });
    expectCode(
      () => makeRound(10, harary, { minSurvivorsFor: () => 6 }),
      'BAD_INPUT',
      /k \+ 1 = 5/,
    );
    makeRound(10, harary, { minSurvivorsFor: () => 5 });
    makeRound(10, { ...harary, threatModel: 'semi-malicious' }, { minSurvivorsFor: () => 10 });
    // minSurvivors below the threshold changes nothing: the threshold still applies.
    const r = makeRound(5, params({ threshold: 3 }), { minSurvivorsFor: () => 1 });
    throughMasking(r, randomInputs(5, 16));
    const req = r.server.unmaskRequest('site-00');
    expectCode(
      () =>
        r.clients[0]?.unmask({
          ...req,
          alive: ['site-00', 'site-01'],
          dropped: ['site-02', 'site-03', 'site-04'],
        }),
      'TOO_FEW_SURVIVORS',
      /2 alive sites; the threshold is 3/,
    );
  });

  it('refuses ids outside its neighbourhood in a Harary graph', () => {
    const r = makeRound(10, params({ graph: 'harary', k: 4, threshold: 3 }));
    throughMasking(r, randomInputs(10, 16));
    const nbrs = new Set(r.clients[0]?.neighbours);
    const outsider = r.ids.find((id) => id !== 'site-00' && !nbrs.has(id)) as string;
    const req = r.server.unmaskRequest('site-00');
    expect(req.alive.length + req.dropped.length).toBe(5);
    expectCode(
      () => r.clients[0]?.unmask({ ...req, dropped: [outsider] }),
      'NOT_NEIGHBOUR',
      new RegExp(outsider),
    );
  });

  it('answers one unmask request only, revealing one kind of share per peer', () => {
    const r = makeRound(5, params({ threshold: 3 }));
    const inputs = randomInputs(5, 16);
    throughMasking(r, inputs, 4);
    const req = r.server.unmaskRequest('site-00');
    expect(req.dropped).toEqual(['site-04']);
    const resp = r.clients[0]?.unmask(req);
    expect(resp?.maskKeyShares.map((s) => s.owner)).toEqual(['site-04']);
    expect(resp?.selfMaskShares.map((s) => s.owner)).toEqual([
      'site-00',
      'site-01',
      'site-02',
      'site-03',
    ]);
    expect(Object.fromEntries(r.clients[0]?.revealed() ?? [])).toEqual({
      'site-00': 'selfMask',
      'site-01': 'selfMask',
      'site-02': 'selfMask',
      'site-03': 'selfMask',
      'site-04': 'maskKey',
    });
    // A second request, even one flipping site-04 to alive to get its self-mask share, is refused.
    expectCode(
      () => r.clients[0]?.unmask({ ...req, alive: [...req.alive, 'site-04'], dropped: [] }),
      'REPEATED_UNMASK',
    );
    expectCode(() => r.clients[0]?.unmask(req), 'REPEATED_UNMASK');
  });

  it('the aggregator refuses a response revealing the wrong kind of share, and bad shares', () => {
    const r = makeRound(5, params({ threshold: 3 }));
    const inputs = randomInputs(5, 16);
    throughMasking(r, inputs, 4);
    const resp = r.clients[0]?.unmask(r.server.unmaskRequest('site-00'));
    if (!resp) throw new Error('no response');
    const both = {
      ...resp,
      maskKeyShares: [
        ...resp.maskKeyShares,
        { owner: 'site-01', share: resp.selfMaskShares[1]?.share as string },
      ],
    };
    expectCode(() => r.server.addUnmaskResponse(both), 'BAD_RESPONSE');
    // Corrupted mask-key shares make the rebuilt key disagree with the advertised one.
    const corrupt = {
      ...resp,
      maskKeyShares: resp.maskKeyShares.map((s) => ({
        ...s,
        share: toBase64(new Uint8Array(66).fill(1)),
      })),
    };
    r.server.addUnmaskResponse(corrupt);
    expectCode(() => r.server.addUnmaskResponse(corrupt), 'DUPLICATE_SITE');
    r.clients
      .slice(1, 4)
      .forEach((c, i) =>
        r.server.addUnmaskResponse(c.unmask(r.server.unmaskRequest(r.ids[i + 1] as string))),
      );
    expectCode(() => r.server.finish(), 'BAD_SHARE');
    expect(r.server.state).toBe('aborted');
  });

  it('unmasks past a corrupt revealed share when enough others agree, and names its sender', () => {
    // 6 sites, threshold 3: every secret has 5-6 revealed shares, so one wrong share is corrected.
    const p = params({ threshold: 3 });
    const r = makeRound(6, p, { vectorLength: 20 });
    const inputs = randomInputs(6, 20);
    // site-05 drops before its masked input: its mask key is rebuilt from the 5 others' shares.
    throughMasking(r, inputs, 5);
    const wrong = (share: string): string => {
      const bytes = fromBase64(share, 66);
      bytes[40] = (bytes[40] as number) ^ 0x5a; // still a field element, no longer the share
      return toBase64(bytes);
    };
    r.clients.slice(0, 5).forEach((c, i) => {
      const resp = c.unmask(r.server.unmaskRequest(r.ids[i] as string));
      if (i === 1) {
        // site-01 reveals a wrong share of site-03's self-mask seed and of site-05's mask key.
        resp.selfMaskShares = resp.selfMaskShares.map((s) =>
          s.owner === 'site-03' ? { ...s, share: wrong(s.share) } : s,
        );
        resp.maskKeyShares = resp.maskKeyShares.map((s) => ({ ...s, share: wrong(s.share) }));
      }
      r.server.addUnmaskResponse(resp);
    });
    expect(r.server.finish()).toEqual(sumOf(inputs, [0, 1, 2, 3, 4]));
    expect(r.server.corruptShares()).toEqual([
      { owner: 'site-03', kind: 'self-mask', senders: ['site-01'] },
      { owner: 'site-05', kind: 'mask-key', senders: ['site-01'] },
    ]);
  });

  it('checks the signed survivor list in semi-malicious mode', () => {
    const p = params({ threshold: 3, threatModel: 'semi-malicious' });
    const r = makeRound(5, p);
    const inputs = randomInputs(5, 16);
    const consistency = throughMasking(r, inputs, 4);
    expect(consistency?.survivors).toEqual(['site-00', 'site-01', 'site-02', 'site-03']);
    expectCode(() => r.clients[0]?.unmask(r.server.consistencyRequest()), 'WRONG_STATE');
    r.clients
      .slice(0, 4)
      .forEach((c) => r.server.addSurvivorSignature(c.confirmSurvivors(consistency)));
    r.server.closeConsistency();
    const req = r.server.unmaskRequest('site-00');
    expect(req.signatures).toHaveLength(4);
    const { signatures, survivors, ...bare } = req;
    void signatures;
    void survivors;
    expectCode(() => r.clients[0]?.unmask(bare), 'CONSISTENCY_FAILED', /no signed survivor list/);
    const req1 = r.server.unmaskRequest('site-01');
    expectCode(
      () =>
        r.clients[1]?.unmask({
          ...req1,
          survivors: ['site-00', 'site-01', 'site-02'],
          alive: ['site-00', 'site-01', 'site-02'],
          dropped: ['site-03', 'site-04'],
        }),
      'CONSISTENCY_FAILED',
      /differs/,
    );
    const req2 = r.server.unmaskRequest('site-02');
    const forged = req2.signatures?.map((s, i) =>
      i === 0 ? { ...s, signature: toBase64(new Uint8Array(64).fill(9)) } : s,
    );
    expectCode(
      () => r.clients[2]?.unmask({ ...req2, signatures: forged }),
      'CONSISTENCY_FAILED',
      /invalid/,
    );
    const req3 = r.server.unmaskRequest('site-03');
    expectCode(
      () => r.clients[3]?.unmask({ ...req3, signatures: req3.signatures?.slice(0, 2) }),
      'CONSISTENCY_FAILED',
      /2 sites signed/,
    );
  });

  it('enforces the order of calls on both state machines', () => {
    const r = makeRound(4, params());
    const c = r.clients[0] as SecAggClient;
    expectCode(() => c.maskInput(new Uint32Array(16)), 'WRONG_STATE', /needs state 'ready'/);
    expectCode(() => c.shareKeys([]), 'WRONG_STATE');
    expectCode(() => r.server.finish(), 'WRONG_STATE');
    expectCode(() => r.server.unmaskRequest('site-00'), 'WRONG_STATE');
    throughSharing(r);
    expectCode(() => r.server.addAdvertisement(c.advertise), 'WRONG_STATE');
    expectCode(() => c.advertise(), 'WRONG_STATE');
    expectCode(() => r.server.addMaskedInput('site-00', new Uint32Array(15)), 'BAD_INPUT');
    r.clients.forEach((cl, i) => cl.receiveShares(r.server.sharesFor(r.ids[i] as string)));
    expectCode(() => c.maskInput(new Uint32Array(15)), 'BAD_INPUT', /length 16/);
    expect(c.state).toBe('ready');
    r.server.addMaskedInput('site-00', c.maskInput(new Uint32Array(16)));
    expectCode(() => r.server.addMaskedInput('site-00', new Uint32Array(16)), 'DUPLICATE_SITE');
    expectCode(() => c.confirmSurvivors({}), 'WRONG_STATE', /semi-honest/);
  });
});

describe('what the aggregator and the sites keep', () => {
  /** Every typed array and WebAssembly memory reachable from `root`. */
  function reachableBuffers(root: unknown): Uint8Array[] {
    const out: Uint8Array[] = [];
    const seen = new Set<unknown>();
    const visit = (v: unknown): void => {
      if (v === null || (typeof v !== 'object' && typeof v !== 'function') || seen.has(v)) return;
      seen.add(v);
      if (ArrayBuffer.isView(v)) {
        out.push(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
        return;
      }
      if (v instanceof ArrayBuffer || v instanceof SharedArrayBuffer) {
        out.push(new Uint8Array(v));
        return;
      }
      if (v instanceof WebAssembly.Memory) {
        out.push(new Uint8Array(v.buffer));
        return;
      }
      if (typeof v === 'function') return;
      if (v instanceof Map) {
        for (const [k, x] of v) {
          visit(k);
          visit(x);
        }
      } else if (v instanceof Set) for (const x of v) visit(x);
      for (const key of Object.getOwnPropertyNames(v)) {
        visit((v as Record<string, unknown>)[key]);
      }
    };
    visit(root);
    return out;
  }

  function contains(haystack: Uint8Array, needle: Uint8Array): boolean {
    outer: for (let i = 0; i + needle.length <= haystack.length; i += 4) {
      for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
      return true;
    }
    return false;
  }

  it("the aggregator never holds a site's plain input, only the running masked sum", () => {
    const n = 5;
    const inputs = randomInputs(n, 32);
    const r = makeRound(n, params({ threshold: 3 }), { vectorLength: 32 });
    throughSharing(r);
    r.clients.forEach((c, i) => c.receiveShares(r.server.sharesFor(r.ids[i] as string)));
    const noPlainInput = (): void => {
      const buffers = reachableBuffers(r.server);
      for (const x of inputs) {
        const head = new Uint8Array(x.buffer, 0, 16); // 128 random bits: no chance match
        expect(buffers.some((b) => contains(b, head))).toBe(false);
      }
    };
    r.clients.forEach((c, i) => {
      const y = c.maskInput(inputs[i] as Uint32Array);
      r.server.addMaskedInput(r.ids[i] as string, y);
      y.fill(0); // the aggregator kept no reference to y: changing it changes nothing
      noPlainInput();
    });
    r.server.closeCollection();
    r.clients.forEach((c, i) => {
      r.server.addUnmaskResponse(c.unmask(r.server.unmaskRequest(r.ids[i] as string)));
      noPlainInput();
    });
    expect(r.server.finish()).toEqual(sumOf(inputs, [0, 1, 2, 3, 4]));
    // After the round it holds nothing at all.
    expect(reachableBuffers(r.server).every((b) => b.every((v) => v === 0) || b.length <= 66)).toBe(
      true,
    );
  });

  it('a site wipes its secrets on destroy and after unmasking', () => {
    const made: Uint8Array[] = [];
    const recording = (k: number): Uint8Array => {
      const b = nacl.randomBytes(k);
      if (k === 32) made.push(b); // key pairs and the self-mask seed
      return b;
    };
    const r = makeRound(4, params(), { randomFor: (i) => (i === 0 ? recording : undefined) });
    throughSharing(r);
    expect(made.length).toBeGreaterThanOrEqual(3);
    const c = r.clients[0] as SecAggClient;
    c.destroy();
    expect(c.state).toBe('destroyed');
    expect(made.every((b) => b.every((v) => v === 0))).toBe(true);
    const identityCopy = (c as unknown as { identity: Uint8Array }).identity;
    expect(identityCopy).toHaveLength(64);
    expect(identityCopy.every((v) => v === 0)).toBe(true);
    expect(
      reachableBuffers(c)
        .filter((b) => b.length === 66)
        .every((b) => b.every((v) => v === 0)),
    ).toBe(true);
    expectCode(() => c.receiveShares([]), 'WRONG_STATE');
  });
});
