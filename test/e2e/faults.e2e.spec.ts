import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { featureStatsPartial } from '@confide/ml';
import {
  ErrorCode,
  generateIdentity,
  MAX_CONTROL_BYTES,
  parseServerMessage,
} from '@confide/protocol';
import { NodeStopped, parsePolicy, type ClientNode } from '@confide/client-node';
import type { RunningAggregator } from '@confide/aggregator';
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
  listRounds,
  type RoundView,
} from '../support/federation';
import { RawSite, type Received } from '../support/raw-site';

const RUN_TIMEOUT = 20_000;

/**
 * These cases exercise the plain (unmasked) update path with raw protocol sites; dropouts under secure
 * aggregation, which is on by default, are covered in secure-aggregation.e2e.spec.ts.
 */
const PLAIN = { secureAggregation: { enabled: false } };
/**
 * The policy of this file's client nodes: these federations run without secure aggregation (so a raw
 * site can send a bad update), and their sites agree to that and to reveal their own metrics.
 */
const OPEN_POLICY = parsePolicy({
  secureAggregation: { required: false },
  revealOwnMetrics: true,
  minSitesPerSum: 2,
});

describe(`site protocol faults against a real aggregator (${databaseKind})`, () => {
  let env: Awaited<ReturnType<typeof testAggregator>>;
  let agg: RunningAggregator;
  let api: ApiClient;
  /** Stopped after each test: nodes and raw sockets the test started. */
  let cleanup: Array<() => void> = [];

  beforeAll(async () => {
    // A grace long enough for a cut node to reconnect (100 ms delay) even on a loaded machine.
    env = await testAggregator({ reconnectGraceMs: 1500 });
    agg = env.agg;
    api = env.api;
  });
  afterEach(() => {
    for (const f of cleanup) f();
    cleanup = [];
  });
  afterAll(async () => {
    await env?.close();
  });

  async function connect(): Promise<RawSite> {
    const site = await RawSite.connect(agg.wsUrl);
    cleanup.push(() => site.ws.terminate());
    return site;
  }

  async function node(
    fedId: string,
    site: TestSite,
    extra: Parameters<typeof startNode>[3] = {},
  ): Promise<Awaited<ReturnType<typeof startNode>>> {
    const n = await startNode(agg, fedId, site, { policy: OPEN_POLICY, ...extra });
    cleanup.push(() => n.node.stop());
    return n;
  }

  /** A good site logs in on a fresh connection: the aggregator is still serving. */
  async function expectServing(fedId: string, site: TestSite): Promise<void> {
    const s = await connect();
    const answer = await s.login(site.identity, fedId);
    expect(answer.msg).toMatchObject({ type: 'welcome', siteId: site.siteId, federationId: fedId });
    s.close();
    await s.closed;
  }

  /** A fatal login refusal: the coded error, then the connection closed by the aggregator. */
  async function expectRefused(answer: Received, site: RawSite, code: ErrorCode): Promise<void> {
    expect(answer.msg).toMatchObject({ type: 'error', code, fatal: true });
    expect(String(answer.msg['message']).length).toBeGreaterThan(10);
    const closed = await site.closed;
    expect(closed).toEqual({ code: 4000, reason: code });
  }

  /** A logged-in raw site that answers the feature-statistics request honestly and hands round.train to `onTrain`. */
  async function rawParticipant(
    fedId: string,
    site: TestSite,
    onTrain: (raw: RawSite, train: Received) => void,
  ): Promise<RawSite> {
    const raw = await connect();
    raw.onMessage((r) => {
      if (r.type === 'stats.request') {
        const part = featureStatsPartial(site.data);
        raw.sendJson({
          type: 'stats.report',
          runId: r.msg['runId'],
          round: r.msg['round'],
          count: part.count,
          sum: part.sum,
          sumSq: part.sumSq,
        });
      } else if (r.type === 'round.train') {
        onTrain(raw, r);
      }
    });
    const answer = await raw.login(site.identity, fedId);
    expect(answer.type).toBe('welcome');
    return raw;
  }

  async function startRun(fedId: string, rounds = 1): Promise<string> {
    return (await api.post<{ id: string }>(`/api/v1/federations/${fedId}/runs`, { rounds })).id;
  }

  const statusByName = (round: RoundView): Record<string, string> =>
    Object.fromEntries(round.participants.map((p) => [p.name, p.status]));

  describe('malformed control messages', () => {
    let fedId: string;
    let sites: TestSite[];
    beforeAll(async () => {
      fedId = (await createFederation(api)).id;
      sites = await enrolSites(api, fedId, 2);
    });

    // Before login any error closes the connection: outsiders.e2e.spec.ts.
    it('answers a logged-in text frame that is not JSON with a non-fatal MALFORMED_MESSAGE and keeps the connection usable', async () => {
      const s = await connect();
      expect((await s.login(sites[0]!.identity, fedId)).type).toBe('welcome');
      s.sendText('{"v":1,"type":"stats.report",');
      const err = await s.errorWith(ErrorCode.MALFORMED_MESSAGE);
      expect(err.msg['fatal']).toBe(false);
      expect(String(err.msg['message'])).toMatch(/not valid JSON/);
      // Same connection: still open and still logged in.
      expect(s.isOpen).toBe(true);
      const listed = await api.get<Array<{ id: string; connected: boolean }>>(
        `/api/v1/federations/${fedId}/sites`,
      );
      expect(listed.find((x) => x.id === sites[0]!.siteId)?.connected).toBe(true);
      await expectServing(fedId, sites[1]!);
    }, 10_000);

    it('answers an unknown message type with a non-fatal UNKNOWN_MESSAGE_TYPE that refers to the message', async () => {
      const s = await connect();
      expect((await s.login(sites[0]!.identity, fedId)).type).toBe('welcome');
      s.sendJson({ id: 'msg-bogus-1', type: 'round.bogus', payload: 1 });
      const err = await s.errorWith(ErrorCode.UNKNOWN_MESSAGE_TYPE);
      expect(err.msg).toMatchObject({ fatal: false, refId: 'msg-bogus-1' });
      expect(String(err.msg['message'])).toContain('round.bogus');
      expect(s.isOpen).toBe(true);
      const listed = await api.get<Array<{ id: string; connected: boolean }>>(
        `/api/v1/federations/${fedId}/sites`,
      );
      expect(listed.find((x) => x.id === sites[0]!.siteId)?.connected).toBe(true);
      await expectServing(fedId, sites[1]!);
    }, 10_000);

    it('refuses a logged-in control message over the 1 MiB limit with FRAME_TOO_LARGE and keeps serving other sites', async () => {
      const s = await connect();
      expect((await s.login(sites[0]!.identity, fedId)).type).toBe('welcome');
      s.sendJson({
        type: 'stats.report',
        count: 1,
        sum: [],
        sumSq: [],
        padding: 'x'.repeat(MAX_CONTROL_BYTES + 1),
      });
      const err = await s.errorWith(ErrorCode.FRAME_TOO_LARGE);
      expect(err.msg['fatal']).toBe(false);
      expect(String(err.msg['message'])).toMatch(
        new RegExp(`exceeds the ${MAX_CONTROL_BYTES}-byte limit`),
      );
      expect(s.isOpen).toBe(true);
      await expectServing(fedId, sites[1]!);
    }, 10_000);
  });

  describe('login refusals', () => {
    let fedId: string;
    let good: TestSite;
    beforeAll(async () => {
      fedId = (await createFederation(api)).id;
      good = (await enrolSites(api, fedId, 1))[0]!;
    });

    it('closes the connection of a key that was never enrolled with UNKNOWN_SITE', async () => {
      const s = await connect();
      await expectRefused(await s.login(generateIdentity(), fedId), s, ErrorCode.UNKNOWN_SITE);
      await expectServing(fedId, good);
    }, 10_000);

    it('closes the connection of a revoked site with SITE_REVOKED', async () => {
      const identity = generateIdentity();
      const site = await api.post<{ id: string }>(`/api/v1/federations/${fedId}/sites`, {
        name: 'revoked-site',
        publicKey: identity.publicKey,
      });
      await api.post(`/api/v1/federations/${fedId}/sites/${site.id}/approve`);
      await api.post(`/api/v1/federations/${fedId}/sites/${site.id}/revoke`);
      const s = await connect();
      await expectRefused(await s.login(identity, fedId), s, ErrorCode.SITE_REVOKED);
      await expectServing(fedId, good);
    }, 10_000);

    it('closes the connection of an enrolled but not yet approved site with SITE_NOT_APPROVED', async () => {
      const identity = generateIdentity();
      await api.post(`/api/v1/federations/${fedId}/sites`, {
        name: 'pending-site',
        publicKey: identity.publicKey,
      });
      const s = await connect();
      await expectRefused(await s.login(identity, fedId), s, ErrorCode.SITE_NOT_APPROVED);
      await expectServing(fedId, good);
    }, 10_000);

    it('closes the connection of a login signed with another key with BAD_SIGNATURE', async () => {
      const s = await connect();
      const answer = await s.login(good.identity, fedId, { signWith: generateIdentity() });
      await expectRefused(answer, s, ErrorCode.BAD_SIGNATURE);
      await expectServing(fedId, good);
    }, 10_000);

    it('refuses a login replayed on another connection with NONCE_REPLAYED', async () => {
      const a = await connect();
      const captured = a.loginMessage(good.identity, fedId);
      expect((await a.login(good.identity, fedId, { message: captured })).type).toBe('welcome');
      const b = await connect();
      await expectRefused(
        await b.login(good.identity, fedId, { message: captured }),
        b,
        ErrorCode.NONCE_REPLAYED,
      );
      // The honest connection is untouched by the replay.
      expect(a.isOpen).toBe(true);
      const listed = await api.get<Array<{ id: string; connected: boolean }>>(
        `/api/v1/federations/${fedId}/sites`,
      );
      expect(listed.find((x) => x.id === good.siteId)?.connected).toBe(true);
    }, 10_000);
  });

  describe('bad updates during a running round', () => {
    it.each([
      {
        what: 'a weights vector of the wrong length',
        code: ErrorCode.WRONG_VECTOR_LENGTH,
        vector: () => new Float32Array(7),
      },
      {
        what: 'NaN and Infinity',
        code: ErrorCode.NON_FINITE_VALUES,
        vector: () =>
          Float32Array.from({ length: 31 }, (_, i) =>
            i === 3 ? Number.NaN : i === 4 ? Infinity : 0,
          ),
      },
    ])(
      'rejects $what with $code and commits the round with the other two sites',
      async ({ code, vector }) => {
        const fedId = (await createFederation(api, { minSites: 2, ...PLAIN })).id;
        const sites = await enrolSites(api, fedId, 3);
        await node(fedId, sites[0]!);
        await node(fedId, sites[1]!);
        const updateId = `bad-update-${code}`;
        const raw = await rawParticipant(fedId, sites[2]!, (s, train) => {
          s.sendFrame(
            {
              type: 'round.update',
              id: updateId,
              runId: train.msg['runId'],
              round: train.msg['round'],
              numExamples: 100,
              trainLoss: 0.5,
            },
            vector(),
          );
        });
        const runId = await startRun(fedId);
        const err = await raw.errorWith(code, RUN_TIMEOUT);
        expect(err.msg).toMatchObject({ fatal: false, refId: updateId });
        expect(await waitForRun(api, fedId, runId, RUN_TIMEOUT)).toMatchObject({
          status: 'completed',
          roundsDone: 1,
        });
        const [round] = await listRounds(api, fedId);
        expect(round!.state).toBe('committed');
        expect(statusByName(round!)).toEqual({
          'hospital-1': 'evaluated',
          'hospital-2': 'evaluated',
          'hospital-3': 'rejected',
        });
        expect(round!.participants.find((p) => p.name === 'hospital-3')!.detail).toBeTruthy();
        expect(round!.metrics?.evaluation?.sites).toBe(2);
        // The misbehaving site is told how the round ended, and was never disconnected.
        await raw.waitFor(
          (r) => r.type === 'round.end' && r.msg['outcome'] === 'committed',
          5000,
          'round.end',
        );
        expect(raw.isOpen).toBe(true);
      },
      30_000,
    );
  });

  describe('sites that leave', () => {
    it('stops a connected client node with SITE_REVOKED when an administrator revokes it', async () => {
      const fedId = (await createFederation(api)).id;
      const sites = await enrolSites(api, fedId, 2);
      const logs: string[] = [];
      const { stopped } = await node(fedId, sites[0]!, { log: (l) => logs.push(l) });
      await api.post(`/api/v1/federations/${fedId}/sites/${sites[0]!.siteId}/revoke`);
      const reason = await Promise.race([
        stopped,
        new Promise((_, reject) =>
          setTimeout(() => reject(new Error('node did not stop within 5 s')), 5000).unref(),
        ),
      ]);
      expect(reason).toBeInstanceOf(NodeStopped);
      expect((reason as NodeStopped).code).toBe(ErrorCode.SITE_REVOKED);
      expect((reason as NodeStopped).message).toMatch(
        /SITE_REVOKED: .*revoked by an administrator/,
      );
      // It does not come back, and other sites still log in.
      const listed = await api.get<Array<{ id: string; connected: boolean; status: string }>>(
        `/api/v1/federations/${fedId}/sites`,
      );
      expect(listed.find((x) => x.id === sites[0]!.siteId)).toMatchObject({
        connected: false,
        status: 'revoked',
      });
      expect(logs.some((l) => l.startsWith('connection lost'))).toBe(false);
      await expectServing(fedId, sites[1]!);
    }, 15_000);

    it('commits the round with the two remaining sites when a third disconnects mid-round (minSites 2)', async () => {
      const fedId = (await createFederation(api, { minSites: 2, ...PLAIN })).id;
      const sites = await enrolSites(api, fedId, 3);
      await node(fedId, sites[0]!);
      await node(fedId, sites[1]!);
      let leaver: ClientNode | null = null;
      // The node trains, then crashes before its update goes out, and stays down.
      const third = await node(fedId, sites[2]!, {
        onUpdate: () => {
          leaver?.dropConnection();
          leaver?.stop();
        },
      });
      leaver = third.node;
      const runId = await startRun(fedId);
      expect(await waitForRun(api, fedId, runId, RUN_TIMEOUT)).toMatchObject({
        status: 'completed',
        roundsDone: 1,
      });
      const [round] = await listRounds(api, fedId);
      expect(round!.state).toBe('committed');
      expect(statusByName(round!)).toEqual({
        'hospital-1': 'evaluated',
        'hospital-2': 'evaluated',
        'hospital-3': 'dropped',
      });
      expect(round!.metrics?.evaluation?.sites).toBe(2);
    }, 30_000);

    it('aborts the round naming minSites and stops the run when one of two sites disconnects mid-round (minSites 2)', async () => {
      const fedId = (await createFederation(api, { minSites: 2, ...PLAIN })).id;
      const sites = await enrolSites(api, fedId, 2);
      await node(fedId, sites[0]!);
      await rawParticipant(fedId, sites[1]!, (s) => s.close());
      const runId = await startRun(fedId, 3);
      const run = await waitForRun(api, fedId, runId, RUN_TIMEOUT);
      expect(run.status).toBe('stopped');
      expect(run.roundsDone).toBe(0);
      expect(run.reason).toMatch(/round 1 aborted: .*minSites=2/);
      const rounds = await listRounds(api, fedId);
      expect(rounds).toHaveLength(1);
      expect(rounds[0]!.state).toBe('aborted');
      expect(rounds[0]!.reason).toMatch(/minSites=2/);
      expect(statusByName(rounds[0]!)).toEqual({
        'hospital-1': 'submitted',
        'hospital-2': 'dropped',
      });
      // No new model version was committed.
      const current = await api.modelWeights(fedId, 'current');
      const fed = await api.get<{ currentModelVersionId: string }>(`/api/v1/federations/${fedId}`);
      expect(current.versionId).toBe(fed.currentModelVersionId);
      expect(await api.get<unknown[]>(`/api/v1/federations/${fedId}/models`)).toHaveLength(1);
    }, 30_000);

    it('asks a site that reconnects during the feature-statistics phase for its statistics again', async () => {
      const fedId = (await createFederation(api, { minSites: 2, ...PLAIN })).id;
      const sites = await enrolSites(api, fedId, 3);
      const nodes = [await node(fedId, sites[0]!), await node(fedId, sites[1]!)];
      // Connection 1 receives the statistics request and drops without answering.
      const first = await connect();
      first.onMessage((r) => {
        if (r.type === 'stats.request') first.ws.terminate();
      });
      expect((await first.login(sites[2]!.identity, fedId)).type).toBe('welcome');
      const runId = await startRun(fedId);
      await first.closed;
      // Connection 2 (same site) is asked again, with a request that a real node accepts.
      const second = await connect();
      expect((await second.login(sites[2]!.identity, fedId)).type).toBe('welcome');
      const again = await second.waitFor(
        (r) => r.type === 'stats.request',
        5000,
        'the repeated stats.request',
      );
      expect(() => parseServerMessage(again.msg)).not.toThrow();
      expect(again.msg['features']).toBe(30);
      const part = featureStatsPartial(sites[2]!.data);
      second.sendJson({
        type: 'stats.report',
        runId: again.msg['runId'],
        round: again.msg['round'],
        count: part.count,
        sum: part.sum,
        sumSq: part.sumSq,
      });
      const train = await second.waitFor(
        (r) => r.type === 'round.train',
        RUN_TIMEOUT,
        'round.train',
      );
      second.sendJson({
        type: 'round.decline',
        runId: train.msg['runId'],
        round: train.msg['round'],
        code: 'TEST',
        reason: 'statistics only',
      });
      expect(await waitForRun(api, fedId, runId, RUN_TIMEOUT)).toMatchObject({
        status: 'completed',
        roundsDone: 1,
      });
      const fed = await api.get<{ featureStats: { sites: number; count: number } }>(
        `/api/v1/federations/${fedId}`,
      );
      // The nodes report their training rows (their held-out rows are not part of the statistics).
      const count = nodes.reduce((a, n) => a + n.node.rows.train, 0) + sites[2]!.data.numRows;
      expect(fed.featureStats).toMatchObject({ sites: 3, count });
      const [round] = await listRounds(api, fedId);
      expect(statusByName(round!)).toEqual({
        'hospital-1': 'evaluated',
        'hospital-2': 'evaluated',
        'hospital-3': 'declined',
      });
    }, 30_000);

    it('resumes the round when a client node’s connection is cut mid-round and it reconnects on its own', async () => {
      const fedId = (await createFederation(api, { minSites: 2, ...PLAIN })).id;
      const sites = await enrolSites(api, fedId, 3);
      await node(fedId, sites[0]!);
      await node(fedId, sites[1]!);
      let cut: ClientNode | null = null;
      let welcomes = 0;
      let cuts = 0;
      const third = await node(fedId, sites[2]!, {
        onWelcome: () => welcomes++,
        onUpdate: () => {
          // Cut the network once, after training and before the update is sent.
          if (cuts++ === 0) cut?.dropConnection();
        },
      });
      cut = third.node;
      const runId = await startRun(fedId);
      expect(await waitForRun(api, fedId, runId, RUN_TIMEOUT)).toMatchObject({
        status: 'completed',
        roundsDone: 1,
      });
      expect(cuts).toBe(1); // trained once; the update was resent from memory after the reconnect
      expect(welcomes).toBe(2);
      const [round] = await listRounds(api, fedId);
      expect(round!.state).toBe('committed');
      expect(statusByName(round!)).toEqual({
        'hospital-1': 'evaluated',
        'hospital-2': 'evaluated',
        'hospital-3': 'evaluated',
      });
      expect(round!.metrics?.evaluation?.sites).toBe(3);
      await waitUntil(
        async () => {
          const listed = await api.get<Array<{ id: string; connected: boolean }>>(
            `/api/v1/federations/${fedId}/sites`,
          );
          return listed.every((x) => x.connected);
        },
        5000,
        'all three sites to be connected',
      );
    }, 30_000);
  });
});
