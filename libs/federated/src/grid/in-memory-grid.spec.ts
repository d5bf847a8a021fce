import { describe, expect, it } from 'vitest';
import { FakeClock } from './fake-clock';
import { gridContract, type ContractSite, type Received } from './grid-contract';
import { jsonMessage, type Outbound } from './grid';
import { InMemoryGrid, type InMemorySite } from './in-memory-grid';

interface Reply {
  type: 'reply';
  round: number;
}

function received(m: Outbound): Received {
  return m.kind === 'json'
    ? { kind: 'json', body: structuredClone(m.body) }
    : { kind: 'binary', bytes: m.frame };
}

function contractSite(site: InMemorySite<Reply>): ContractSite {
  return {
    id: site.id,
    messages: (count) => {
      if (site.received.length < count) {
        throw new Error(`site ${site.id} has ${site.received.length} messages, not ${count}`);
      }
      return Promise.resolve(site.received.map(received));
    },
    reply: (round, vector) => {
      site.reply({ type: 'reply', round }, vector ?? null, vector ? vector.byteLength : 16);
      return Promise.resolve();
    },
    disconnect: () => Promise.resolve(site.disconnect()),
    connect: () => Promise.resolve(site.connect()),
  };
}

gridContract<Reply>('in-memory, fake clock', () => {
  const clock = new FakeClock(1_000_000);
  const grid = new InMemoryGrid<Reply>(clock);
  const [a, b, c] = ['site-a', 'site-b', 'site-c'].map((id) => contractSite(grid.addSite(id)));
  return Promise.resolve({
    grid,
    sites: [a!, b!, c!],
    unit: 1000,
    advance: (ms) => clock.advance(ms),
    roundOf: (m) => (m.type === 'reply' ? m.round : null),
    close: async () => {
      // Nothing may be left waiting on the clock once a test is done.
      await clock.advance(1_000_000_000);
      expect(clock.pending).toBe(0);
    },
  });
});

describe('InMemoryGrid', () => {
  it('lets a site answer what it is sent, within one collect', async () => {
    const grid = new InMemoryGrid<Reply>(new FakeClock());
    for (const id of ['a', 'b']) {
      const site = grid.addSite(id);
      site.onMessage(() => site.reply({ type: 'reply', round: 1 }));
    }
    const done = grid.collect({
      from: new Set(['a', 'b']),
      accept: (r) => r.message.round === 1,
      until: grid.clock.now() + 1000,
    });
    grid.broadcast(['a', 'b'], jsonMessage({ type: 'train' }));
    const result = await done;
    expect(result.ended).toBe('complete');
    expect([...result.replies.keys()]).toEqual(['a', 'b']);
  });

  it('refuses a second site with the same id and a reply from a site that is away', () => {
    const grid = new InMemoryGrid<Reply>(new FakeClock());
    const site = grid.addSite('a', { connected: false });
    expect(() => grid.addSite('a')).toThrow(/already exists/);
    expect(() => site.reply({ type: 'reply', round: 1 })).toThrow(/not connected/);
  });

  it('refuses a collect without a finite deadline', async () => {
    const grid = new InMemoryGrid<Reply>(new FakeClock());
    await expect(
      grid.collect({ from: new Set(['a']), accept: () => true, until: Number.NaN }),
    ).rejects.toThrow(/finite deadline/);
  });
});

describe('FakeClock', () => {
  it('wakes sleepers in deadline order and only when time reaches them', async () => {
    const clock = new FakeClock();
    const woke: string[] = [];
    void clock.sleep(20).then(() => woke.push(`late@${clock.now()}`));
    void clock.sleep(10).then(() => woke.push(`early@${clock.now()}`));
    await clock.advance(15);
    expect(woke).toEqual(['early@10']);
    await clock.advance(5);
    expect(woke).toEqual(['early@10', 'late@20']);
    expect(clock.now()).toBe(20);
  });

  it('wakes a sleeper whose signal aborts without moving time', async () => {
    const clock = new FakeClock();
    const abort = new AbortController();
    const slept = clock.sleep(1000, abort.signal);
    abort.abort();
    await slept;
    expect(clock.now()).toBe(0);
    expect(clock.pending).toBe(0);
  });
});
