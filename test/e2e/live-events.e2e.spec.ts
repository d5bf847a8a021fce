import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningAggregator } from '@confide/aggregator';
import { parsePolicy, type ClientNode } from '@confide/client-node';
import type { ApiClient } from '../../apps/cli/src/api-client';
import { databaseKind } from '../support/database';
import {
  createFederation,
  enrolSites,
  startNode,
  testAggregator,
  waitForRun,
  waitUntil,
  type TestSite,
} from '../support/federation';

interface ApiErrorBody {
  error: { code: string; message: string };
}

interface Event {
  event: string;
  data: any;
}

/** Reads a server-sent event stream into `events` until it ends or is aborted. */
function listen(url: string, headers: Record<string, string> = {}) {
  const events: Event[] = [];
  const ctl = new AbortController();
  const ready = fetch(url, { headers, signal: ctl.signal });
  const done = ready.then(async (res) => {
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let buf = '';
    try {
      for (;;) {
        const { value, done: end } = await reader.read();
        if (end) return;
        buf += decoder.decode(value, { stream: true });
        let i: number;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (event && data !== undefined) events.push({ event, data: JSON.parse(data) });
        }
      }
    } catch {
      // aborted
    }
  });
  return { events, ready, done, close: () => ctl.abort() };
}

describe(`live federation events over server-sent events (${databaseKind})`, () => {
  let agg: RunningAggregator;
  let api: ApiClient;
  let close: () => Promise<void>;
  let fedId: string;
  let sites: TestSite[];
  const nodes: ClientNode[] = [];
  let auditorToken: string;

  beforeAll(async () => {
    ({ agg, api, close } = await testAggregator());
    fedId = (await createFederation(api, { minSites: 2 })).id;
    sites = await enrolSites(api, fedId, 2);
    auditorToken = await agg.createToken('auditor', 'audit');
  });

  afterAll(async () => {
    for (const n of nodes) n.stop();
    await close?.();
  });

  it('refuses a stream without a valid token, and for an unknown federation', async () => {
    const base = `${agg.url}/api/v1/federations/${fedId}/events`;
    const none = await fetch(base);
    expect(none.status).toBe(401);
    expect(((await none.json()) as ApiErrorBody).error.message).toMatch(/\?token=/);
    const bad = await fetch(`${base}?token=cfd_admin_${'x'.repeat(43)}`);
    expect(bad.status).toBe(401);
    expect(((await bad.json()) as ApiErrorBody).error.message).toBe('the API token is unknown');
    const unknown = await fetch(
      `${agg.url}/api/v1/federations/00000000-0000-4000-8000-000000000000/events?token=${auditorToken}`,
    );
    expect(unknown.status).toBe(404);
  });

  it('pushes site connections, every phase and participant change of a round, and the run ending', async () => {
    const stream = listen(`${agg.url}/api/v1/federations/${fedId}/events?token=${auditorToken}`);
    const res = await stream.ready;
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    await waitUntil(() => stream.events.length >= 2, 5000, 'the initial events');
    expect(stream.events.slice(0, 2)).toEqual([
      { event: 'round', data: null },
      { event: 'sites', data: expect.objectContaining({ connectedSiteIds: [] }) },
    ]);

    // Two sites: their policies allow secure sums of two.
    const policy = parsePolicy({ minSitesPerSum: 2 });
    for (const s of sites) nodes.push((await startNode(agg, fedId, s, { policy })).node);
    await waitUntil(
      () => stream.events.filter((e) => e.event === 'sites' && e.data.connected).length === 2,
      5000,
      'two site connect events',
    );
    const lastSites = stream.events.filter((e) => e.event === 'sites').at(-1)!.data;
    expect([...lastSites.connectedSiteIds].sort()).toEqual(sites.map((s) => s.siteId).sort());

    const run = await api.post<{ id: string }>(`/api/v1/federations/${fedId}/runs`, { rounds: 1 });
    expect(await waitForRun(api, fedId, run.id, 30_000)).toMatchObject({ status: 'completed' });
    await waitUntil(
      () => stream.events.filter((e) => e.event === 'run').length >= 2,
      5000,
      'run started and ended events',
    );
    const rounds = stream.events.filter((e) => e.event === 'round' && e.data).map((e) => e.data);
    expect(rounds.every((r) => r.number === 1)).toBe(true);
    // Stages in order (consecutive duplicates dropped), ending committed; the secure-aggregation
    // stages appear when the federation masks its updates.
    const fed = await api.get<{ config: { secureAggregation?: { enabled: boolean } } }>(
      `/api/v1/federations/${fedId}`,
    );
    const masked = fed.config.secureAggregation?.enabled === true;
    const phases = rounds.map((r) => r.phase).filter((p, i, a) => p !== a[i - 1]);
    expect(phases).toEqual(
      masked
        ? [
            'selecting',
            'stats',
            'advertising',
            'sharing',
            'collecting',
            'unmasking',
            'aggregating',
            'evaluating',
            'closing',
          ]
        : ['selecting', 'stats', 'collecting', 'aggregating', 'evaluating', 'closing'],
    );
    expect(rounds.at(-1)).toMatchObject({ state: 'committed' });
    // Each site's state as it moved: selected first, evaluated last, its update in between.
    for (const s of sites) {
      const states = rounds
        .map((r) => r.participants.find((p: any) => p.siteId === s.siteId)?.status)
        .filter((x, i, a) => x && x !== a[i - 1]);
      expect(states[0]).toBe('selected');
      expect(states).toContain('submitted');
      expect(states.at(-1)).toBe('evaluated');
    }
    stream.close();
  }, 45_000);

  it('accepts the token as a bearer header too, sends the round in progress first, and ends streams on shutdown', async () => {
    // No site of this federation is connected: its round waits in selection.
    const idle = (await createFederation(api, { minSites: 2 })).id;
    await api.post(`/api/v1/federations/${idle}/runs`, { rounds: 1 });
    await waitUntil(
      // waitUntil takes null for an answer: ask for a non-null live round.
      async () =>
        (await api.get<{ live: unknown }>(`/api/v1/federations/${idle}/rounds`)).live ?? undefined,
      5000,
      'the round to start',
    );
    const stream = listen(`${agg.url}/api/v1/federations/${idle}/events`, {
      authorization: `Bearer ${auditorToken}`,
    });
    expect((await stream.ready).status).toBe(200);
    await waitUntil(() => stream.events.length >= 2, 5000, 'the initial events');
    expect(stream.events[0]).toEqual({
      event: 'round',
      data: { number: 1, phase: 'selecting', state: 'scheduled', participants: [] },
    });
    expect(stream.events[1]!.data.connectedSiteIds).toEqual([]);
    await agg.close();
    await stream.done;
  }, 20_000);
});
