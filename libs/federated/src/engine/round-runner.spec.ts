import { describe, expect, it } from 'vitest';
import { FakeClock } from '../grid/fake-clock';
import { InMemoryGrid, type InMemorySite } from '../grid/in-memory-grid';
import { buildStrategy } from '../strategies/registry';
import { seededUniformRandom } from '../strategies/random';
import type { EvaluationMetrics } from '../strategies/types';
import { engineRequestOf, type EngineReply, type EngineRequest } from './messages';
import { MemoryRoundStore } from './round-store';
import { RoundRunner, type RoundRunnerOptions } from './round-runner';

/** How a scripted site answers a request: its reply, or nothing (it stays silent). */
type Behaviour = (
  req: EngineRequest,
  site: InMemorySite<EngineReply>,
) => { reply: EngineReply; vector?: Float32Array } | null;

const metrics = (accuracy: number, numExamples: number): EvaluationMetrics => ({
  loss: 1 - accuracy,
  accuracy,
  f1: accuracy,
  auc: null,
  numExamples,
});

/** An honest site: its delta is `delta` everywhere, its weight `examples`. */
function honest(delta: number, examples: number, accuracy = 0.8): Behaviour {
  return (req) => {
    if (req.type === 'train') {
      return {
        reply: { type: 'update', round: req.round, numExamples: examples, trainLoss: delta },
        vector: new Float32Array(req.weights.length).fill(delta),
      };
    }
    if (req.type === 'evaluate') {
      return {
        reply: { type: 'metrics', round: req.round, metrics: metrics(accuracy, examples) },
      };
    }
    return null;
  };
}

const silent: Behaviour = () => null;

function federation(behaviours: Record<string, Behaviour>, length = 4) {
  const clock = new FakeClock(1_000);
  const grid = new InMemoryGrid<EngineReply>(clock);
  const sites = new Map<string, InMemorySite<EngineReply>>();
  const trainedBy: string[] = [];
  for (const [id, behave] of Object.entries(behaviours)) {
    const site = grid.addSite(id);
    sites.set(id, site);
    site.onMessage((m) => {
      if (m.kind !== 'json') return;
      const req = engineRequestOf(m.body);
      if (!req) return;
      if (req.type === 'train') trainedBy.push(id);
      const out = behave(req, site);
      if (out && site.isConnected) site.reply(out.reply, out.vector ?? null, 64);
    });
  }
  const store = new MemoryRoundStore(new Float32Array(length));
  const runner = (overrides: Partial<RoundRunnerOptions> = {}) =>
    new RoundRunner({
      grid,
      store,
      strategy: buildStrategy('fedavg', {}),
      minSites: 2,
      roundTimeoutMs: 30_000,
      ...overrides,
    });
  return { clock, grid, sites, store, runner, trainedBy };
}

describe('RoundRunner on the in-memory Grid', () => {
  it('runs a round: FedAvg of the updates weighted by examples, evaluated, committed', async () => {
    const f = federation({ a: honest(1, 10, 0.9), b: honest(4, 30, 0.7), c: honest(-2, 10, 0.5) });
    const outcome = await f.runner().runRound();
    expect(outcome.status).toBe('committed');
    // (1*10 + 4*30 - 2*10) / 50 = 2.2
    const head = await f.store.head();
    expect(head.round).toBe(1);
    for (const w of head.weights) expect(w).toBeCloseTo(2.2, 5);
    expect(outcome.participants.map((p) => p.status)).toEqual([
      'submitted',
      'submitted',
      'submitted',
    ]);
    // accuracy weighted by examples: (0.9*10 + 0.7*30 + 0.5*10) / 50 = 0.7
    expect(outcome.evaluation?.accuracy).toBeCloseTo(0.7, 10);
    expect(outcome.evaluation?.sites).toBe(3);
    // trainLoss weighted the same way, from the sites' reported losses (here equal to their deltas)
    expect(outcome.trainLoss).toBeCloseTo(2.2, 10);
    expect(f.clock.pending).toBe(0);
  });

  it('a site that drops before answering is recorded as dropped; the round still commits', async () => {
    const dropOut: Behaviour = (req, site) => {
      if (req.type === 'train') site.disconnect();
      return null;
    };
    const f = federation({ a: honest(1, 10), b: honest(3, 10), c: dropOut });
    const outcome = await f.runner().runRound();
    expect(outcome.status).toBe('committed');
    expect(outcome.participants.find((p) => p.siteId === 'c')?.status).toBe('dropped');
    for (const w of (await f.store.head()).weights) expect(w).toBeCloseTo(2, 5);
  });

  it('a site that reconnects within its grace is sent the stage again and continues', async () => {
    let cuts = 0;
    const flaky: Behaviour = (req, site) => {
      if (req.type === 'train' && cuts++ === 0) {
        site.disconnect();
        return null;
      }
      return honest(7, 10)(req, site);
    };
    const f = federation({ a: honest(1, 10), b: honest(4, 10), c: flaky });
    const done = f.runner({ reconnectGraceMs: 10_000 }).runRound();
    await f.clock.advance(5_000);
    f.sites.get('c')!.connect();
    const outcome = await done;
    expect(outcome.status).toBe('committed');
    expect(outcome.participants.map((p) => p.status)).toEqual([
      'submitted',
      'submitted',
      'submitted',
    ]);
    for (const w of (await f.store.head()).weights) expect(w).toBeCloseTo(4, 5);
    expect(f.trainedBy.filter((id) => id === 'c')).toHaveLength(2);
  });

  it('a site away for longer than its grace is dropped then, not at the deadline', async () => {
    const gone: Behaviour = (req, site) => {
      if (req.type === 'train') site.disconnect();
      return null;
    };
    const f = federation({ a: honest(1, 10), b: honest(3, 10), c: gone });
    const done = f.runner({ reconnectGraceMs: 10_000, evaluate: false }).runRound();
    await f.clock.advance(10_000);
    const outcome = await done;
    expect(outcome.status).toBe('committed');
    expect(outcome.endedAt! - outcome.startedAt).toBe(10_000);
    expect(outcome.participants.find((p) => p.siteId === 'c')?.status).toBe('dropped');
  });

  it('a silent site holds the round until its deadline, then counts as dropped', async () => {
    const f = federation({ a: honest(1, 10), b: honest(3, 10), c: silent });
    const done = f.runner({ evaluate: false }).runRound();
    let settled = false;
    void done.then(() => (settled = true));
    await f.clock.advance(29_999);
    expect(settled).toBe(false);
    await f.clock.advance(1);
    const outcome = await done;
    expect(outcome.status).toBe('committed');
    expect(outcome.participants.find((p) => p.siteId === 'c')).toMatchObject({ status: 'dropped' });
    expect(outcome.endedAt! - outcome.startedAt).toBe(30_000);
  });

  it('too few updates by the deadline abort the round with its reason; the model stays', async () => {
    const f = federation({ a: honest(1, 10), b: silent, c: silent });
    const done = f.runner().runRound();
    await f.clock.advance(30_000);
    const outcome = await done;
    expect(outcome.status).toBe('aborted');
    expect(outcome.reason).toContain('only 1 update(s) arrived; the round needs minSites=2');
    expect((await f.store.head()).round).toBe(0);
    // every participant hears the round ended
    const last = f.sites.get('b')!.received.at(-1)!;
    expect(last.kind === 'json' && engineRequestOf(last.body)).toMatchObject({
      type: 'round.end',
      outcome: 'aborted',
    });
  });

  it('waits for enough sites to connect, and aborts when they never do', async () => {
    const f = federation({ a: honest(1, 10), b: honest(3, 10) });
    f.sites.get('b')!.disconnect();
    const done = f.runner({ evaluate: false }).runRound();
    await f.clock.advance(5_000);
    f.sites.get('b')!.connect();
    expect((await done).status).toBe('committed');

    f.sites.get('b')!.disconnect();
    const next = f.runner().runRound();
    await f.clock.advance(30_000);
    const outcome = await next;
    expect(outcome).toMatchObject({ round: 2, status: 'aborted' });
    expect(outcome.reason).toContain('only 1 site(s) connected before the deadline');
  });

  it('a malformed update costs only its sender the round', async () => {
    const nan: Behaviour = (req) =>
      req.type === 'train'
        ? {
            reply: { type: 'update', round: req.round, numExamples: 10, trainLoss: 0 },
            vector: new Float32Array(req.weights.length).fill(Number.NaN),
          }
        : null;
    const short: Behaviour = (req) =>
      req.type === 'train'
        ? {
            reply: { type: 'update', round: req.round, numExamples: 10, trainLoss: 0 },
            vector: new Float32Array(1),
          }
        : null;
    const heavy: Behaviour = (req) =>
      req.type === 'train'
        ? {
            reply: { type: 'update', round: req.round, numExamples: 1e12, trainLoss: 0 },
            vector: new Float32Array(req.weights.length).fill(100),
          }
        : null;
    const f = federation({ a: honest(1, 10), b: honest(3, 10), c: nan, d: short, e: heavy });
    const outcome = await f.runner({ maxExamples: 1_000 }).runRound();
    expect(outcome.status).toBe('committed');
    const byId = new Map(outcome.participants.map((p) => [p.siteId, p]));
    expect(byId.get('c')).toMatchObject({ status: 'rejected' });
    expect(byId.get('c')?.detail).toContain('not finite');
    expect(byId.get('d')?.detail).toContain('the update has 1 values; the model has 4');
    expect(byId.get('e')?.detail).toContain('numExamples must be an integer in [1, 1000]');
    for (const w of (await f.store.head()).weights) expect(w).toBeCloseTo(2, 5);
  });

  it('a site that declines is recorded with its reason', async () => {
    const decline: Behaviour = (req) =>
      req.type === 'train'
        ? { reply: { type: 'decline', round: req.round, reason: 'budget spent' } }
        : null;
    const f = federation({ a: honest(1, 10), b: honest(3, 10), c: decline });
    const outcome = await f.runner().runRound();
    expect(outcome.participants.find((p) => p.siteId === 'c')).toMatchObject({
      status: 'declined',
      detail: 'budget spent',
    });
  });

  it('a runner restarted mid-round records that round as aborted and continues from the head', async () => {
    const f = federation({ a: honest(1, 10), b: honest(3, 10), c: silent });
    const first = f.runner({ evaluate: false }).runRound();
    await f.clock.advance(30_000);
    expect(await first).toMatchObject({ round: 1, status: 'committed' });
    // A process that began round 2 over the same store and died with it: its sites never answer
    // and its clock never moves again.
    const deadGrid = new InMemoryGrid<EngineReply>(new FakeClock(50_000));
    deadGrid.addSite('a');
    deadGrid.addSite('b');
    const ghost = new RoundRunner({
      grid: deadGrid,
      store: f.store,
      strategy: buildStrategy('fedavg', {}),
      minSites: 2,
      roundTimeoutMs: 30_000,
    });
    void ghost.runRound();
    await f.clock.advance(1);
    expect((await f.store.unfinished())?.round).toBe(2);
    // The new runner over the same store takes over.
    const outcome = f.runner({ evaluate: false }).runRound();
    await f.clock.advance(30_000);
    expect(await outcome).toMatchObject({ round: 3, status: 'committed' });
    const rounds = await f.store.rounds();
    expect(rounds.map((r) => [r.round, r.status])).toEqual([
      [1, 'committed'],
      [2, 'aborted'],
      [3, 'committed'],
    ]);
    expect(rounds[1]?.reason).toContain('stopped mid-round');
    for (const w of (await f.store.head()).weights) expect(w).toBeCloseTo(4, 5);
  });

  it('a stateful strategy continues exactly across a restart between rounds', async () => {
    const strategy = () => buildStrategy('fedadam', { serverLearningRate: 0.1 });
    const deltas = { a: honest(1, 10), b: honest(-0.5, 30) };
    const kept = federation(deltas);
    const one = kept.runner({ strategy: strategy(), evaluate: false });
    await one.run(3);
    const restarted = federation(deltas);
    for (let i = 0; i < 3; i++) {
      await restarted.runner({ strategy: strategy(), evaluate: false }).runRound();
    }
    const [a, b] = [await kept.store.head(), await restarted.store.head()];
    expect(b.strategyState?.steps).toBe(3);
    expect([...b.weights]).toEqual([...a.weights]);
    // and it is not FedAvg's result (the Adam step moved differently): the state mattered
    expect(a.weights[0]).not.toBeCloseTo(3 * ((10 * 1 - 0.5 * 30) / 40), 3);
  });

  it('a robust strategy sees each update: the median ignores an outlier', async () => {
    const f = federation({
      a: honest(1, 10),
      b: honest(2, 10),
      c: honest(3, 10),
      evil: honest(1_000, 10),
    });
    const outcome = await f.runner({ strategy: buildStrategy('median', {}) }).runRound();
    expect(outcome.status).toBe('committed');
    for (const w of (await f.store.head()).weights) expect(w).toBeCloseTo(2.5, 5);
  });

  it('client sampling draws the round sites from the seeded source and records the draw', async () => {
    const f = federation({
      a: honest(1, 10),
      b: honest(1, 10),
      c: honest(1, 10),
      d: honest(1, 10),
      e: honest(1, 10),
    });
    const outcome = await f
      .runner({ fraction: 0.4, random: seededUniformRandom(7), evaluate: false })
      .runRound();
    expect(outcome.sampling).toEqual({ fraction: 0.4, eligible: 5, drawn: 2 });
    expect(outcome.participants).toHaveLength(2);
    expect(new Set(f.trainedBy)).toEqual(new Set(outcome.participants.map((p) => p.siteId)));
    // the same seed draws the same sites
    const g = federation({
      a: honest(1, 10),
      b: honest(1, 10),
      c: honest(1, 10),
      d: honest(1, 10),
      e: honest(1, 10),
    });
    const again = await g
      .runner({ fraction: 0.4, random: seededUniformRandom(7), evaluate: false })
      .runRound();
    expect(again.participants.map((p) => p.siteId)).toEqual(
      outcome.participants.map((p) => p.siteId),
    );
  });

  it('metrics out of range are refused and left out of the evaluation', async () => {
    const liar: Behaviour = (req) => {
      if (req.type === 'train') return honest(1, 10)(req, undefined as never);
      if (req.type === 'evaluate') {
        return { reply: { type: 'metrics', round: req.round, metrics: metrics(7, 10) } };
      }
      return null;
    };
    const f = federation({ a: honest(1, 10, 0.6), b: honest(1, 10, 0.8), c: liar });
    const outcome = await f.runner().runRound();
    expect(outcome.evaluation).toMatchObject({ sites: 2 });
    expect(outcome.evaluation?.accuracy).toBeCloseTo(0.7, 10);
  });

  it('a stopped run aborts its round at once', async () => {
    const f = federation({ a: honest(1, 10), b: silent });
    const stop = new AbortController();
    const done = f.runner().runRound(stop.signal);
    await f.clock.advance(10);
    stop.abort();
    const outcome = await done;
    expect(outcome.status).toBe('aborted');
    expect(outcome.reason).toBe('the run was stopped');
  });
});
