import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiClient } from '../../apps/cli/src/api-client';
import { databaseKind } from '../support/database';
import {
  createFederation,
  enrolSites,
  listRounds,
  testAggregator,
  waitForRun,
  type TestSite,
} from '../support/federation';
import { RawSite, type Received } from '../support/raw-site';

/**
 * The property of issue 14's "a round never wedges a run": whatever the sites of a round send (valid,
 * malformed, out of order, out of range, duplicated, or nothing), the round ends by its deadline plus
 * a grace, every site still connected hears round.end, the run ends, and a committed model holds only
 * finite values made from valid updates.
 */

const PARAMETERS = 31; // logistic regression over 30 features
const DEADLINE_S = 2;
/** Past the deadline: the round's own steps, then the run's end written and read back. */
const GRACE_MS = 4000;
const SITES = 3;
/** Sequences per property run, run side by side in their own federations. */
const PARALLEL = 8;
const RUNS = 25; // x PARALLEL = 200 generated sequences

const ACTIONS = [
  'valid',
  'malformedJson',
  'unknownType',
  'wrongLength',
  'nonFinite',
  'hugeNorm',
  'hugeWeight',
  'wrongRun',
  'wrongRound',
  'metricsNow',
  'statsNow',
  'decline',
  'binaryGarbage',
  'disconnect',
] as const;
type Action = (typeof ACTIONS)[number];

/** What a site does once it has the round's round.train: its actions in order, with small pauses. */
type Script = Array<{ action: Action; delayMs: number }>;

const script: fc.Arbitrary<Script> = fc.array(
  fc.record({ action: fc.constantFrom(...ACTIONS), delayMs: fc.integer({ min: 0, max: 300 }) }),
  { minLength: 0, maxLength: 4 },
);

/** The update each valid message carries, one per site. */
const updateOf = (site: number): Float32Array =>
  Float32Array.from({ length: PARAMETERS }, (_, i) => 0.001 * (site + 1) * Math.cos(i));

function perform(raw: RawSite, train: Received, site: number, action: Action): void {
  const runId = train.msg['runId'];
  const round = train.msg['round'] as number;
  const update = (header: Record<string, unknown>, v: Float32Array): void =>
    raw.sendFrame({ type: 'round.update', runId, round, numExamples: 20, ...header }, v);
  switch (action) {
    case 'valid':
      return update({ trainLoss: 0.3 }, updateOf(site));
    case 'malformedJson':
      return raw.sendText('{"type":"round.update",');
    case 'unknownType':
      return raw.sendJson({ type: 'round.bogus', runId, round });
    case 'wrongLength':
      return update({}, new Float32Array(7));
    case 'nonFinite':
      return update({}, new Float32Array(PARAMETERS).fill(Number.NaN));
    case 'hugeNorm':
      return update({}, new Float32Array(PARAMETERS).fill(3.4e38));
    case 'hugeWeight':
      return update({ numExamples: Number.MAX_SAFE_INTEGER }, updateOf(site));
    case 'wrongRun':
      return update({ runId: '00000000-0000-4000-8000-000000000000' }, updateOf(site));
    case 'wrongRound':
      return update({ round: round + 1 }, updateOf(site));
    case 'metricsNow':
      return raw.sendJson({
        type: 'round.metrics',
        runId,
        round,
        modelVersionId: String(train.msg['modelVersionId']),
        metrics: { loss: 1, accuracy: 7, auc: null, f1: 0.5, numExamples: 3 },
      });
    case 'statsNow':
      return raw.sendJson({
        type: 'stats.report',
        runId,
        round,
        count: 5,
        sum: new Array<number>(30).fill(1e200),
        sumSq: new Array<number>(30).fill(1),
      });
    case 'decline':
      return raw.sendJson({
        type: 'round.decline',
        runId,
        round,
        code: 'FUZZ',
        reason: 'declined by the fuzzer',
      });
    case 'binaryGarbage':
      return raw.ws.send(Buffer.from([1, 2, 3, 4, 250, 251, 252]), { binary: true });
    case 'disconnect':
      return raw.ws.terminate();
  }
}

describe(`a round never wedges its run, whatever its sites send (${databaseKind})`, () => {
  let env: Awaited<ReturnType<typeof testAggregator>>;
  let api: ApiClient;

  beforeAll(async () => {
    env = await testAggregator();
    api = env.api;
  });
  afterAll(async () => {
    await env?.close();
  });

  async function oneFederation(scripts: Script[]): Promise<void> {
    const fedId = (
      await createFederation(api, {
        secureAggregation: { enabled: false },
        standardization: 'local',
        evaluation: { enabled: false },
        minSites: 2,
        roundTimeoutSeconds: DEADLINE_S,
      })
    ).id;
    const sites: TestSite[] = await enrolSites(api, fedId, SITES);
    const raws: RawSite[] = [];
    /** Sites whose first message that counts was a valid update. */
    const validSenders = new Set<string>();
    try {
      for (let i = 0; i < SITES; i++) {
        const raw = await RawSite.connect(env.agg.wsUrl);
        raws.push(raw);
        expect((await raw.login(sites[i]!.identity, fedId)).type).toBe('welcome');
        raw.onMessage((r) => {
          if (r.type !== 'round.train') return;
          void (async () => {
            for (const step of scripts[i]!) {
              await new Promise((res) => setTimeout(res, step.delayMs));
              if (!raw.isOpen) return;
              if (step.action === 'valid') validSenders.add(sites[i]!.name);
              perform(raw, r, i, step.action);
            }
          })();
        });
      }
      const started = Date.now();
      const run = await api.post<{ id: string }>(`/api/v1/federations/${fedId}/runs`, {
        rounds: 1,
      });
      const ended = await waitForRun(api, fedId, run.id, DEADLINE_S * 1000 + GRACE_MS);
      expect(Date.now() - started).toBeLessThanOrEqual(DEADLINE_S * 1000 + GRACE_MS);
      expect(['completed', 'stopped']).toContain(ended.status);
      const rounds = await listRounds(api, fedId);
      expect(rounds).toHaveLength(1);
      const round = rounds[0]!;
      expect(['committed', 'aborted']).toContain(round.state);
      expect(round.endedAt).not.toBeNull();
      expect(ended.status === 'completed').toBe(round.state === 'committed');
      for (const p of round.participants) {
        if (p.status === 'submitted') expect(validSenders.has(p.name)).toBe(true);
      }
      if (round.state === 'committed') {
        const { weights } = await api.modelWeights(fedId, 'current');
        expect(weights.every(Number.isFinite)).toBe(true);
      }
      // Every site still connected is told how the round ended.
      for (const raw of raws) {
        if (!raw.isOpen) continue;
        const end = await raw.waitFor((r) => r.type === 'round.end', 2000, 'round.end');
        expect(end.msg['outcome']).toBe(round.state);
      }
      // Nothing is left running: the federation takes a new run at once.
      const runs = await api.get<Array<{ status: string }>>(`/api/v1/federations/${fedId}/runs`);
      expect(runs.filter((r) => r.status === 'running')).toEqual([]);
    } finally {
      for (const raw of raws) raw.ws.terminate();
    }
  }

  it(`ends every round by its deadline plus ${GRACE_MS} ms for ${RUNS * PARALLEL} generated sequences`, async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.array(script, { minLength: SITES, maxLength: SITES }), {
          minLength: PARALLEL,
          maxLength: PARALLEL,
        }),
        async (federations) => {
          await Promise.all(federations.map((scripts) => oneFederation(scripts)));
        },
      ),
      { numRuns: RUNS },
    );
  }, 300_000);
});
