import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  startAggregator,
  type AggregatorOptions,
  type RunningAggregator,
} from '@confide/aggregator';
import { parsePolicy, type ClientNode } from '@confide/client-node';
import { generateIdentity } from '@confide/protocol';
import { ApiClient } from '../../apps/cli/src/api-client';
import { databaseKind, freshDatabaseUrl } from '../support/database';
import {
  createFederation,
  enrolSites,
  startNode,
  waitForRun,
  waitUntil,
  type TestSite,
  listRounds,
} from '../support/federation';
import { RawSite } from '../support/raw-site';

interface LiveView {
  number: number;
  phase: string;
  participants: Array<{ name: string; status: string }>;
}

/**
 * One aggregator process "crashes" mid-round (close() does not write the round's state) and a second one
 * starts on the same database and port; the client nodes reconnect on their own.
 */
describe(`an aggregator restarted mid-round (${databaseKind})`, () => {
  let db: Awaited<ReturnType<typeof freshDatabaseUrl>>;
  let dataDir: string | undefined;
  let first: RunningAggregator;
  let second: RunningAggregator | null = null;
  let api: ApiClient;
  let fedId: string;
  let runId: string;
  const nodes: ClientNode[] = [];
  let silent: RawSite;
  /** Hash of every model version that existed before the restart, by version id. */
  const before = new Map<string, string>();
  let heldRound: number;

  // One aggregator identity for both processes (its key file in the data directory on PGlite; on
  // Postgres there is none), so the key the sites pinned holds after the restart.
  const identity = generateIdentity();
  const options = (): AggregatorOptions => ({
    databaseUrl: db.url,
    dataDir,
    identity,
    // Long enough that closing the first process cannot let the held round finish on its own.
    reconnectGraceMs: 2000,
  });

  beforeAll(async () => {
    db = await freshDatabaseUrl();
    dataDir = db.url ? undefined : mkdtempSync(join(tmpdir(), 'confide-restart-'));
    first = await startAggregator(options());
    api = new ApiClient(first.url, first.initialAdminToken!);
    // Plain updates: the silent raw site speaks the unmasked protocol (it never advertises keys).
    fedId = (
      await createFederation(api, {
        minSites: 2,
        roundTimeoutSeconds: 600,
        secureAggregation: { enabled: false },
      })
    ).id;
    const sites: TestSite[] = await enrolSites(api, fedId, 3);

    // Run 1: one committed round with two client nodes.
    for (const s of sites.slice(0, 2))
      nodes.push(
        (
          await startNode(first, fedId, s, {
            reconnectDelayMs: 50,
            // A plain federation (see above), which these sites' policies allow, revealing their metrics.
            policy: parsePolicy({
              secureAggregation: { required: false },
              revealOwnMetrics: true,
              minSitesPerSum: 2,
            }),
          })
        ).node,
      );
    const run1 = await api.post<{ id: string }>(`/api/v1/federations/${fedId}/runs`, { rounds: 1 });
    expect(await waitForRun(api, fedId, run1.id, 20_000)).toMatchObject({
      status: 'completed',
      roundsDone: 1,
    });

    // Run 2: a third site is selected but never answers, so the round stays in collecting.
    silent = await RawSite.connect(first.wsUrl);
    expect((await silent.login(sites[2]!.identity, fedId)).type).toBe('welcome');
    runId = (await api.post<{ id: string }>(`/api/v1/federations/${fedId}/runs`, { rounds: 2 })).id;
    const live = await waitUntil(
      async () => {
        const { live } = await api.get<{ live: LiveView | null }>(
          `/api/v1/federations/${fedId}/rounds`,
        );
        const submitted = live?.participants.filter((p) => p.status === 'submitted').length ?? 0;
        return live?.phase === 'collecting' && submitted === 2 ? live : undefined;
      },
      20_000,
      'round 2 to hold in collecting with two updates in',
    );
    heldRound = live.number;
    await silent.waitFor((r) => r.type === 'round.train', 5000, 'round.train');

    for (const v of await api.get<Array<{ id: string; hash: string }>>(
      `/api/v1/federations/${fedId}/models`,
    )) {
      const w = await api.modelWeights(fedId, v.id);
      expect(w.hash).toBe(v.hash);
      before.set(v.id, w.hash);
    }

    // Crash, then start again on the same database and port.
    await first.close();
    second = await startAggregator({ ...options(), port: first.port });
    api = new ApiClient(second.url, first.initialAdminToken!);
  }, 60_000);

  afterAll(async () => {
    for (const n of nodes) n.stop();
    silent?.ws.terminate();
    await first?.close();
    await second?.close();
    await db?.drop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it('aborts the round that was collecting, with a reason naming the restart', async () => {
    expect(heldRound).toBe(2);
    const rounds = await listRounds(api, fedId);
    const held = rounds.find((r) => r.number === heldRound)!;
    expect(held.runId).toBe(runId);
    expect(held.state).toBe('aborted');
    expect(held.reason).toMatch(/aggregator restarted while the round was collecting/);
    expect(held.modelVersionId).toBeNull();
    expect(rounds.find((r) => r.number === 1)!.state).toBe('committed');
  }, 10_000);

  it('keeps every committed model version, byte for byte', async () => {
    expect(before.size).toBe(2); // the initial model and round 1's
    for (const [id, hash] of before) {
      const w = await api.modelWeights(fedId, id);
      expect(w.hash).toBe(hash);
      expect(w.weights.length).toBe(31);
    }
  }, 10_000);

  it('continues the run once the client nodes reconnect on their own, committing the rounds it had left', async () => {
    const run = await waitForRun(api, fedId, runId, 30_000);
    expect(run).toMatchObject({ status: 'completed', roundsDone: 2 });
    const rounds = await listRounds(api, fedId);
    expect(rounds.map((r) => [r.number, r.state])).toEqual([
      [1, 'committed'],
      [2, 'aborted'],
      [3, 'committed'],
      [4, 'committed'],
    ]);
    // Round 3 builds on round 1's model: the aborted round left nothing behind.
    const r1 = rounds.find((r) => r.number === 1)!;
    const r3 = await api.get<{ baseModelVersionId: string }>(
      `/api/v1/federations/${fedId}/rounds/3`,
    );
    expect(r3.baseModelVersionId).toBe(r1.modelVersionId);
    for (const r of rounds.slice(2)) {
      expect(r.participants.map((p) => [p.name, p.status])).toEqual([
        ['hospital-1', 'evaluated'],
        ['hospital-2', 'evaluated'],
      ]);
    }
    const current = await api.modelWeights(fedId, 'current');
    expect(current.versionId).toBe(rounds[3]!.modelVersionId);
    await waitUntil(
      async () => {
        const sites = await api.get<Array<{ name: string; connected: boolean }>>(
          `/api/v1/federations/${fedId}/sites`,
        );
        return sites.filter((s) => s.connected).length === 2;
      },
      5000,
      'both client nodes to be connected to the restarted aggregator',
    );
  }, 40_000);
});
