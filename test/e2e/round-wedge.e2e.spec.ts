import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiClient } from '../../apps/cli/src/api-client';
import { databaseKind } from '../support/database';
import {
  createFederation,
  enrolSites,
  listRounds,
  testAggregator,
  waitForRun,
  waitUntil,
} from '../support/federation';
import { RawSite, type Received } from '../support/raw-site';

const PLAIN = {
  secureAggregation: { enabled: false },
  standardization: 'local',
  evaluation: { enabled: false },
  minSites: 2,
};

describe(`a failure inside a round never wedges its run (${databaseKind})`, () => {
  let env: Awaited<ReturnType<typeof testAggregator>>;
  let api: ApiClient;
  const raws: RawSite[] = [];

  beforeAll(async () => {
    env = await testAggregator();
    api = env.api;
  });
  afterAll(async () => {
    for (const r of raws) r.ws.terminate();
    await env?.close();
  });

  /** A raw site that sends a small update once `go` resolves. */
  async function site(
    fedId: string,
    identity: Parameters<RawSite['login']>[0],
    go: Promise<void>,
  ): Promise<{ raw: RawSite; trained: Promise<void> }> {
    const raw = await RawSite.connect(env.agg.wsUrl);
    raws.push(raw);
    let trained!: () => void;
    const got = new Promise<void>((r) => (trained = r));
    raw.onMessage((r: Received) => {
      if (r.type !== 'round.train') return;
      trained();
      void go.then(() =>
        raw.sendFrame(
          {
            type: 'round.update',
            runId: r.msg['runId'],
            round: r.msg['round'],
            numExamples: 10,
            trainLoss: 0.5,
          },
          new Float32Array(31).fill(0.001),
        ),
      );
    });
    expect((await raw.login(identity, fedId)).type).toBe('welcome');
    return { raw, trained: got };
  }

  it('aborts the round with its reason, tells every site, and ends the run when storing the model fails', async () => {
    const fedId = (await createFederation(api, PLAIN)).id;
    const sites = await enrolSites(api, fedId, 2);
    let release!: () => void;
    const go = new Promise<void>((r) => (release = r));
    const a = await site(fedId, sites[0]!.identity, go);
    const b = await site(fedId, sites[1]!.identity, go);
    const run = await api.post<{ id: string }>(`/api/v1/federations/${fedId}/runs`, {
      rounds: 2,
    });
    await Promise.all([a.trained, b.trained]);
    // The model table goes away under the running round: its aggregation step fails.
    await env.agg.db.manager.query('ALTER TABLE model_version RENAME TO model_version_hidden');
    try {
      release();
      const ended = await waitForRun(api, fedId, run.id, 15_000);
      expect(ended.status).toBe('stopped');
      expect(ended.reason).toMatch(/^round 1 aborted: the round failed while aggregating: /);
      const [round] = await listRounds(api, fedId);
      expect(round).toMatchObject({ state: 'aborted' });
      expect(round!.reason).toMatch(/model_version/);
      for (const s of [a, b]) {
        const end = await s.raw.waitFor((r) => r.type === 'round.end', 5000, 'round.end');
        expect(end.msg).toMatchObject({ outcome: 'aborted', round: 1 });
      }
    } finally {
      await env.agg.db.manager.query('ALTER TABLE model_version_hidden RENAME TO model_version');
    }
    // The federation is free again: a new run starts (no 409) and commits.
    const again = await api.post<{ id: string }>(`/api/v1/federations/${fedId}/runs`, {
      rounds: 1,
    });
    expect(await waitForRun(api, fedId, again.id, 15_000)).toMatchObject({
      status: 'completed',
      roundsDone: 1,
    });
    await waitUntil(
      async () => (await listRounds(api, fedId)).find((r) => r.number === 2)?.state === 'committed',
      5000,
      'round 2 committed',
    );
  }, 40_000);
});
