// The contract every Grid keeps, as vitest tests: `gridContract(name, makeHarness)` registers them
// for one implementation (the in-memory Grid on a fake clock, the WebSocket Grid on real sockets).
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { binaryMessage, jsonMessage, type Grid, type Inbound, type Verdict } from './grid';

/** What a test site saw: a JSON message's parsed body, or a binary frame's bytes. */
export type Received = { kind: 'json'; body: unknown } | { kind: 'binary'; bytes: Uint8Array };

/** A site driven by the contract; each action resolves once the Grid has seen its effect. */
export interface ContractSite {
  readonly id: string;
  /** Waits until this site has received `count` messages, and returns all it received. */
  messages(count: number): Promise<Received[]>;
  /** Sends a reply for `round`, with `vector` when given; resolves once the Grid's side has it. */
  reply(round: number, vector?: Float32Array): Promise<void>;
  /** Drops the connection; resolves once the Grid has seen it go. */
  disconnect(): Promise<void>;
  /** Connects again; resolves once the Grid lists the site. */
  connect(): Promise<void>;
}

export interface GridHarness<M> {
  readonly grid: Grid<M>;
  /** Three sites, connected. */
  readonly sites: readonly [ContractSite, ContractSite, ContractSite];
  /** A span of time the harness can order events within: deadlines are a few of these. */
  readonly unit: number;
  /** Lets `ms` pass on the Grid's clock (a fake clock moves; a real one is waited for). */
  advance(ms: number): Promise<void>;
  /** The round a reply carries, as `ContractSite.reply` built it; null for anything else. */
  roundOf(message: M): number | null;
  close(): Promise<void>;
}

/** Registers the Grid contract's tests for one implementation. */
export function gridContract<M>(name: string, makeHarness: () => Promise<GridHarness<M>>): void {
  describe(`Grid contract: ${name}`, () => {
    let h: GridHarness<M>;
    let a: ContractSite;
    let b: ContractSite;
    let c: ContractSite;
    beforeEach(async () => {
      h = await makeHarness();
      [a, b, c] = h.sites;
    });
    afterEach(async () => {
      await h.close();
    });

    const forRound =
      (round: number, reject?: number) =>
      (reply: Inbound<M>): Verdict => {
        const r = h.roundOf(reply.message);
        if (r === round) return true;
        return r === reject ? 'reject' : false;
      };
    const ids = (...sites: ContractSite[]): Set<string> => new Set(sites.map((s) => s.id));
    const deadline = (units: number): number => h.grid.clock.now() + units * h.unit;
    const marker = { type: 'marker' };

    it('lists the connected sites', () => {
      expect(h.grid.connected()).toEqual(ids(a, b, c));
      expect(h.grid.isConnected(a.id)).toBe(true);
      expect(h.grid.isConnected('no-such-site')).toBe(false);
    });

    it('sends to the named site only, JSON and binary frames intact', async () => {
      const frame = new Uint8Array([1, 2, 3, 250]);
      expect(h.grid.send(a.id, jsonMessage({ type: 'hello', n: 1 }))).toBe(true);
      expect(h.grid.send(b.id, binaryMessage(frame))).toBe(true);
      expect(h.grid.send('no-such-site', jsonMessage(marker))).toBe(false);
      // A marker to all, after: what each site has before it is what the Grid sent it.
      expect(h.grid.broadcast([a.id, b.id, c.id], jsonMessage(marker)).sort()).toEqual(
        [a.id, b.id, c.id].sort(),
      );
      expect(await a.messages(2)).toEqual([
        { kind: 'json', body: { type: 'hello', n: 1 } },
        { kind: 'json', body: marker },
      ]);
      const bGot = await b.messages(2);
      expect(bGot[0]?.kind).toBe('binary');
      expect([...(bGot[0]?.kind === 'binary' ? bGot[0].bytes : [])]).toEqual([...frame]);
      expect(await c.messages(1)).toEqual([{ kind: 'json', body: marker }]);
    });

    it('broadcasts to the named connected sites and says which it reached', async () => {
      await c.disconnect();
      const reached = h.grid.broadcast([a.id, c.id, 'no-such-site'], jsonMessage({ type: 'x' }));
      expect(reached).toEqual([a.id]);
      expect(h.grid.send(c.id, jsonMessage(marker))).toBe(false);
      h.grid.broadcast([a.id, b.id], jsonMessage(marker));
      expect(await a.messages(2)).toEqual([
        { kind: 'json', body: { type: 'x' } },
        { kind: 'json', body: marker },
      ]);
      expect(await b.messages(1)).toEqual([{ kind: 'json', body: marker }]);
    });

    it('collects the replies that arrive before the deadline, not the late ones', async () => {
      const done = h.grid.collect({ from: ids(a, b, c), accept: forRound(3), until: deadline(10) });
      await a.reply(3, new Float32Array([0.5, -1]));
      await h.advance(5 * h.unit);
      await b.reply(3);
      await h.advance(6 * h.unit);
      await c.reply(3);
      const result = await done;
      expect(result.ended).toBe('deadline');
      expect([...result.replies.keys()]).toEqual([a.id, b.id]);
      expect([...(result.replies.get(a.id)?.vector ?? [])]).toEqual([0.5, -1]);
      expect(result.missing).toEqual(ids(c));
      expect(result.disconnected).toEqual(new Set());
    });

    it('ends as soon as every awaited site has answered', async () => {
      const done = h.grid.collect({ from: ids(a, b), accept: forRound(1), until: deadline(1000) });
      await b.reply(1);
      await c.reply(1);
      await a.reply(1);
      const result = await done;
      expect(result.ended).toBe('complete');
      expect([...result.replies.keys()]).toEqual([b.id, a.id]);
      expect(result.missing.size).toBe(0);
    });

    it('reports a rejected reply and keeps awaiting a site whose message it ignores', async () => {
      const done = h.grid.collect({
        from: ids(a, b, c),
        accept: forRound(4, 99),
        until: deadline(1000),
      });
      await a.reply(99);
      await b.reply(2);
      await b.reply(4);
      await c.reply(4);
      await a.reply(4);
      const result = await done;
      expect(result.ended).toBe('complete');
      expect([...result.rejected.keys()]).toEqual([a.id]);
      expect(result.replies.has(a.id)).toBe(false);
      expect([...result.replies.keys()]).toEqual([b.id, c.id]);
    });

    it('counts a site that disconnects mid-collect as no answer', async () => {
      const done = h.grid.collect({
        from: ids(a, b, c),
        accept: forRound(5),
        until: deadline(1000),
      });
      await a.reply(5);
      await b.disconnect();
      await c.reply(5);
      const result = await done;
      expect(result.ended).toBe('complete');
      expect(result.missing).toEqual(ids(b));
      expect(result.disconnected).toEqual(ids(b));
    });

    it('counts a site not connected when the collect starts as no answer', async () => {
      await c.disconnect();
      const done = h.grid.collect({ from: ids(a, c), accept: forRound(5), until: deadline(1000) });
      await a.reply(5);
      const result = await done;
      expect(result.ended).toBe('complete');
      expect(result.disconnected).toEqual(ids(c));
    });

    it('takes the answer of a site that reconnects when told to wait for it', async () => {
      const done = h.grid.collect({
        from: ids(a, b),
        accept: forRound(6),
        until: deadline(1000),
        onDisconnect: 'wait',
      });
      await b.disconnect();
      await a.reply(6);
      await b.connect();
      await b.reply(6);
      const result = await done;
      expect(result.ended).toBe('complete');
      expect([...result.replies.keys()]).toEqual([a.id, b.id]);
    });

    it('a site still away at the deadline is missing and disconnected', async () => {
      const done = h.grid.collect({
        from: ids(a, b),
        accept: forRound(6),
        until: deadline(10),
        onDisconnect: 'wait',
      });
      await b.disconnect();
      await a.reply(6);
      await h.advance(11 * h.unit);
      const result = await done;
      expect(result.ended).toBe('deadline');
      expect(result.missing).toEqual(ids(b));
      expect(result.disconnected).toEqual(ids(b));
    });

    it('drops a site away for longer than its reconnect grace, before the deadline', async () => {
      const done = h.grid.collect({
        from: ids(a, b),
        accept: forRound(6),
        until: deadline(1000),
        onDisconnect: 'wait',
        reconnectGraceMs: 3 * h.unit,
      });
      await b.disconnect();
      await a.reply(6);
      await h.advance(4 * h.unit);
      const result = await done;
      expect(result.ended).toBe('complete');
      expect(result.missing).toEqual(ids(b));
      expect(result.disconnected).toEqual(ids(b));
    });

    it('takes the answer of a site back within its reconnect grace', async () => {
      const done = h.grid.collect({
        from: ids(a, b),
        accept: forRound(6),
        until: deadline(1000),
        onDisconnect: 'wait',
        reconnectGraceMs: 5 * h.unit,
      });
      await b.disconnect();
      await a.reply(6);
      await h.advance(h.unit);
      await b.connect();
      await h.advance(5 * h.unit);
      await b.reply(6);
      const result = await done;
      expect(result.ended).toBe('complete');
      expect([...result.replies.keys()]).toEqual([a.id, b.id]);
    });

    it('shows a reconnect in connected() and to its listeners', async () => {
      const changes: Array<[string, boolean]> = [];
      const stop = h.grid.onChange((ch) => changes.push([ch.siteId, ch.connected]));
      await a.disconnect();
      expect(h.grid.connected()).toEqual(ids(b, c));
      await a.connect();
      expect(h.grid.connected()).toEqual(ids(a, b, c));
      stop();
      await c.disconnect();
      expect(changes).toEqual([
        [a.id, false],
        [a.id, true],
      ]);
      // A reconnected site is sent to like any other.
      expect(h.grid.send(a.id, jsonMessage(marker))).toBe(true);
      expect(await a.messages(1)).toEqual([{ kind: 'json', body: marker }]);
    });

    it('ends when its signal aborts, with what arrived so far', async () => {
      const abort = new AbortController();
      const done = h.grid.collect({
        from: ids(a, b),
        accept: forRound(7),
        until: deadline(1000),
        signal: abort.signal,
      });
      await a.reply(7);
      abort.abort();
      const result = await done;
      expect(result.ended).toBe('aborted');
      expect([...result.replies.keys()]).toEqual([a.id]);
      expect(result.missing).toEqual(ids(b));
    });

    it('ends at the deadline on its clock when nobody answers', async () => {
      const done = h.grid.collect({ from: ids(a), accept: forRound(8), until: deadline(10) });
      await h.advance(11 * h.unit);
      const result = await done;
      expect(result.ended).toBe('deadline');
      expect(result.missing).toEqual(ids(a));
    });

    it('ends at once when its deadline has already passed, and takes nothing after', async () => {
      const result = await h.grid.collect({
        from: ids(a, b),
        accept: forRound(9),
        until: h.grid.clock.now() - 1,
      });
      await a.reply(9);
      expect(result.ended).toBe('deadline');
      expect(result.missing).toEqual(ids(a, b));
      expect(result.replies.size).toBe(0);
    });

    it('lets concurrent collects each take what they accept', async () => {
      const first = h.grid.collect({ from: ids(a, b), accept: forRound(1), until: deadline(1000) });
      const second = h.grid.collect({ from: ids(a), accept: forRound(2), until: deadline(1000) });
      await a.reply(2);
      await a.reply(1);
      await b.reply(1);
      expect([...(await first).replies.keys()]).toEqual([a.id, b.id]);
      expect((await second).ended).toBe('complete');
    });
  });
}
