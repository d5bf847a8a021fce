import nacl from 'tweetnacl';
import { describe, expect, it } from 'vitest';
import { FakeClock } from '../grid/fake-clock';
import { InMemoryGrid } from '../grid/in-memory-grid';
import { buildStrategy } from '../strategies/registry';
import { EngineSite } from './engine-site';
import { engineRequestOf, type EngineReply, type EngineRequest } from './messages';
import { MemoryRoundStore } from './round-store';
import { RoundRunner, type RoundRunnerOptions } from './round-runner';

const LENGTH = 6;

/** When a site walks away: as it is asked this request (by type or secure step). */
type Cut = 'secure.train' | 'advertisements' | 'deliver' | 'consistency' | 'unmask';

function stepOf(req: EngineRequest): Cut | null {
  if (req.type === 'secure.train') return 'secure.train';
  if (req.type === 'secure.step') return req.step;
  return null;
}

interface SiteSpec {
  delta: number;
  examples: number;
  /** Disconnects when first asked this. */
  cut?: Cut;
  /** ...and comes back after this many ms (never, if absent). */
  backAfterMs?: number;
}

function secureFederation(
  specs: Record<string, SiteSpec>,
  threatModel: 'semi-honest' | 'semi-malicious' = 'semi-honest',
) {
  const clock = new FakeClock(1_000);
  const grid = new InMemoryGrid<EngineReply>(clock);
  const keys = new Map<string, nacl.SignKeyPair>();
  const seen: EngineReply[] = [];
  const vectors: Array<Float32Array | Uint32Array> = [];
  for (const [id, spec] of Object.entries(specs)) {
    const identity = nacl.sign.keyPair();
    keys.set(id, identity);
    const site = grid.addSite(id);
    const runtime = new EngineSite({
      siteId: id,
      identitySecretKey: identity.secretKey,
      train: ({ weights }) =>
        Promise.resolve({
          delta: new Float32Array(weights.length).fill(spec.delta),
          numExamples: spec.examples,
          trainLoss: 0.5,
        }),
    });
    let cut = false;
    site.onMessage((m) => {
      if (m.kind !== 'json') return;
      const req = engineRequestOf(m.body);
      if (!req) return;
      if (!cut && spec.cut && stepOf(req) === spec.cut) {
        cut = true;
        site.disconnect();
        if (spec.backAfterMs !== undefined) {
          void clock.sleep(spec.backAfterMs).then(() => site.connect());
        }
        return;
      }
      void runtime.answer(req).then((a) => {
        if (!a || !site.isConnected) return;
        seen.push(a.reply);
        if (a.vector) vectors.push(a.vector);
        site.reply(a.reply, a.vector ?? null, 64);
      });
    });
  }
  const store = new MemoryRoundStore(new Float32Array(LENGTH));
  const runner = (overrides: Partial<RoundRunnerOptions> = {}) =>
    new RoundRunner({
      grid,
      store,
      strategy: buildStrategy('fedavg', {}),
      minSites: 2,
      roundTimeoutMs: 30_000,
      evaluate: false,
      secure: {
        threatModel,
        dropoutRate: 0.1,
        clip: 4,
        weightNormalizer: 100,
        runId: 'run-1',
        publicKey: (id) => keys.get(id)!.publicKey,
      },
      ...overrides,
    });
  return { clock, grid, store, runner, seen, vectors };
}

/** The weighted mean the sum should give: weights min(1, examples / 100). */
function expectedMean(sites: Array<[number, number]>): number {
  const w = sites.map(([, n]) => Math.min(1, n / 100));
  return sites.reduce((a, [d], i) => a + d * w[i]!, 0) / w.reduce((a, x) => a + x, 0);
}

async function settle(clock: FakeClock, round: Promise<unknown>, ms = 30_000): Promise<void> {
  let done = false;
  void round.finally(() => (done = true));
  for (let t = 0; t < ms && !done; t += 1_000) await clock.advance(1_000);
}

describe('secure rounds (SecAgg+) on the in-memory Grid', () => {
  it('commits the weighted mean of the masked updates; only masked vectors travel', async () => {
    const f = secureFederation({
      a: { delta: 1, examples: 20 },
      b: { delta: -0.5, examples: 60 },
      c: { delta: 2, examples: 20 },
    });
    const outcome = await f.runner().runRound();
    expect(outcome.status).toBe('committed');
    expect(outcome.trainLoss).toBeNull();
    const mean = expectedMean([
      [1, 20],
      [-0.5, 60],
      [2, 20],
    ]);
    for (const w of (await f.store.head()).weights) expect(w).toBeCloseTo(mean, 4);
    // Every vector a site sent is masked: none is near its update (or anything small).
    expect(f.vectors).toHaveLength(3);
    for (const v of f.vectors) {
      expect(v).toBeInstanceOf(Uint32Array);
      const big = [...v].filter((x) => x > 2 ** 20 && x < 2 ** 32 - 2 ** 20).length;
      expect(big).toBeGreaterThan(v.length / 2);
    }
  });

  it.each<[string, Cut, boolean]>([
    ['before sharing keys', 'advertisements', false],
    ['before its masked input', 'deliver', false],
    ['after its masked input, before unmasking', 'unmask', true],
  ])('a site that drops %s is handled; the sum is right', async (_label, cut, counted) => {
    const f = secureFederation({
      a: { delta: 1, examples: 50 },
      b: { delta: 3, examples: 50 },
      c: { delta: 2, examples: 50 },
      d: { delta: 6, examples: 50, cut },
    });
    const round = f.runner().runRound();
    await settle(f.clock, round);
    const outcome = await round;
    expect(outcome.status).toBe('committed');
    const d = outcome.participants.find((p) => p.siteId === 'd')!;
    expect(d.status).toBe(counted ? 'submitted' : 'dropped');
    const mean = counted ? (1 + 3 + 2 + 6) / 4 : 2;
    for (const w of (await f.store.head()).weights) expect(w).toBeCloseTo(mean, 4);
  });

  it('a site back within its grace continues the sum with the same round keys', async () => {
    const f = secureFederation({
      a: { delta: 1, examples: 50 },
      b: { delta: 3, examples: 50 },
      c: { delta: 2, examples: 50, cut: 'deliver', backAfterMs: 2_000 },
    });
    const round = f.runner({ reconnectGraceMs: 5_000 }).runRound();
    await settle(f.clock, round);
    const outcome = await round;
    expect(outcome.status).toBe('committed');
    expect(outcome.participants.map((p) => p.status)).toEqual([
      'submitted',
      'submitted',
      'submitted',
    ]);
    for (const w of (await f.store.head()).weights) expect(w).toBeCloseTo(2, 4);
  });

  it('runs the consistency check under the semi-malicious threat model', async () => {
    const f = secureFederation(
      {
        a: { delta: 1, examples: 50 },
        b: { delta: 2, examples: 50 },
        c: { delta: 3, examples: 50 },
        d: { delta: 4, examples: 50 },
      },
      'semi-malicious',
    );
    const outcome = await f.runner().runRound();
    expect(outcome.status).toBe('committed');
    expect(f.seen.filter((r) => r.type === 'secure.reply' && r.step === 'signature')).toHaveLength(
      4,
    );
    for (const w of (await f.store.head()).weights) expect(w).toBeCloseTo(2.5, 4);
  });

  it('aborts with the reason when too few sites are left to unmask the sum', async () => {
    const f = secureFederation({
      a: { delta: 1, examples: 50 },
      b: { delta: 3, examples: 50, cut: 'advertisements' },
      c: { delta: 2, examples: 50, cut: 'advertisements' },
    });
    const round = f.runner().runRound();
    await settle(f.clock, round);
    const outcome = await round;
    expect(outcome.status).toBe('aborted');
    expect(outcome.reason).toMatch(/^secure aggregation: /);
    expect((await f.store.head()).round).toBe(0);
  });

  it('refuses a strategy that needs each update', () => {
    const f = secureFederation({ a: { delta: 1, examples: 1 }, b: { delta: 1, examples: 1 } });
    expect(() => f.runner({ strategy: buildStrategy('median', {}) })).toThrow(
      'strategy "median" needs each site\'s update, which secure aggregation hides',
    );
  });
});
