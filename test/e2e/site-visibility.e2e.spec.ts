import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buildModel,
  evaluateForSum,
  evaluateModel,
  featureStatsPartial,
  metricsFromEvaluationSum,
  parseModelSpec,
  setModelWeights,
  standardize,
  statisticsFromSum,
  statisticsVector,
  stratifiedSplit,
  type Dataset,
  type EvaluationLayout,
  type FeatureStats,
  type Metrics,
  type ModelSpec,
} from '@confide/ml';
import {
  decodeWideFixedPointSum,
  encodeFixedPoint,
  encodeWideFixedPoint,
  quantizeWeighted,
} from '@confide/secure-aggregation';
import type { RoundSecAgg } from '@confide/protocol';
import type { ClientNode, LocalRoundResult } from '@confide/client-node';
import type { RunningAggregator } from '@confide/aggregator';
import { ApiRequestError, type ApiClient } from '../../apps/cli/src/api-client';
import { databaseKind } from '../support/database';
import { dumpDatabase, type StoredValue } from '../support/database-dump';
import {
  startCapturingRelay,
  type CapturingRelay,
  type RelayedMessage,
} from '../support/capturing-relay';
import {
  createFederation,
  enrolSites,
  listRounds,
  startNode,
  testAggregator,
  waitUntil,
  type RoundView,
  type TestSite,
} from '../support/federation';

/*
 * Under secure aggregation a site must put nothing in the clear that is not a sum over enough sites:
 * its record count, feature statistics, training loss and held-out metrics travel only inside masked
 * vectors. Three sites, each behind a relay that records every frame both ways, run two rounds of
 * a federation with federated standardisation and no DP (so the statistics are an exact secure sum).
 * The test then computes, from each site's own data, every per-site figure the protocol before v2
 * sent in the clear (login and round.update numExamples, round.update trainLoss, stats.report,
 * round.metrics) and looks for each of them in everything the sites sent and everything the
 * aggregator stored, where only the totals over the three sites may appear.
 */

const ROUNDS = 2;
const SITES = 3;

/** Site-sent message types of protocol v2 (round.metrics and stats.report are plain-federation only). */
const SECURE_SITE_TYPES = [
  'login',
  'secagg.advertise',
  'secagg.shares',
  'secagg.masked',
  'round.update',
  'secagg.signature',
  'secagg.unmasked',
  'ledger.reserve',
  'round.decline',
];

/** One figure of one site's own that the old protocol revealed. */
interface Figure {
  site: string;
  what: string;
  value: number;
  /** The federation-wide counterpart (same metric, same round) that may be stored: a coincidence is no leak. */
  total?: number;
}

/** What one site holds and computed, beside what it sent. */
interface SiteView {
  site: TestSite;
  node: ClientNode;
  relay: CapturingRelay;
  train: Dataset;
  eval: Dataset;
  reports: LocalRoundResult[];
  /** Per round: its metrics on its held-out rows of the committed model, and its evaluation vector. */
  evaluations: Array<{ metrics: Metrics; vector: Float64Array }>;
  figures: Figure[];
}

describe(`what a site reveals under secure aggregation (${databaseKind})`, () => {
  let env: Awaited<ReturnType<typeof testAggregator>> | undefined;
  let agg: RunningAggregator;
  let api: ApiClient;
  let fedId: string;
  let spec: ModelSpec;
  let rounds: RoundView[];
  let views: SiteView[] = [];
  const relays: CapturingRelay[] = [];
  const nodes: ClientNode[] = [];

  beforeAll(async () => {
    env = await testAggregator();
    agg = env.agg;
    api = env.api;
    const fed = await createFederation(api, { standardization: 'federated' });
    fedId = fed.id;
    const sites = await enrolSites(api, fedId, SITES);
    // Each site trains on exactly `site.data` and evaluates on a separate shard it is given, so
    // the test knows the rows behind every figure the site computes.
    const split = sites.map((s, i) => stratifiedSplit(s.data, 0.25, 101 + i));
    sites.forEach((s, i) => (s.data = split[i]!.train));
    const reports = sites.map(() => [] as LocalRoundResult[]);
    for (let i = 0; i < SITES; i++) relays.push(await startCapturingRelay(agg.wsUrl));
    await Promise.all(
      sites.map(async (s, i) => {
        const { node } = await startNode(agg, fedId, s, {
          server: relays[i]!.url,
          evalData: split[i]!.test,
          onUpdate: (r) => reports[i]!.push(r),
        });
        nodes[i] = node;
      }),
    );
    const ended = await runRounds(api, fedId, ROUNDS);
    expect(ended).toMatchObject({ status: 'completed', roundsDone: ROUNDS });
    rounds = await listRounds(api, fedId);
    spec = parseModelSpec(fromAggregator(relays[0]!, 'round.train', 1).message!['modelSpec']);

    views = [];
    for (const [i, site] of sites.entries()) {
      const view: SiteView = {
        site,
        node: nodes[i]!,
        relay: relays[i]!,
        train: site.data,
        eval: split[i]!.test,
        reports: reports[i]!,
        evaluations: [],
        figures: [],
      };
      for (const round of rounds) {
        view.evaluations.push(await evaluateAsTheSite(view, round));
      }
      views.push(view);
    }
    for (const v of views) v.figures = siteFigures(v, rounds);
  }, 180_000);

  afterAll(async () => {
    for (const n of nodes) n.stop();
    for (const r of relays) await r.close();
    await env?.close();
  });

  /** The site's metrics and evaluation vector for a round's model, computed as the node does. */
  async function evaluateAsTheSite(
    view: Pick<SiteView, 'relay' | 'eval'>,
    round: RoundView,
  ): Promise<SiteView['evaluations'][number]> {
    const train = fromAggregator(view.relay, 'round.train', round.number);
    const evaluate = fromAggregator(view.relay, 'round.evaluate', round.number);
    const stats = train.message!['standardization'] as FeatureStats;
    const layout = evaluate.message!['evaluation'] as EvaluationLayout;
    const { weights } = await api.modelWeights(fedId, round.modelVersionId!);
    const rows = standardize(view.eval, stats);
    const model = buildModel(spec);
    try {
      setModelWeights(model, weights);
      return {
        metrics: await evaluateModel(model, spec, rows),
        vector: await evaluateForSum(model, spec, rows, layout, { perSite: false }),
      };
    } finally {
      model.dispose();
    }
  }

  it('sends only control messages and masked vectors: no stats.report, no round.metrics', () => {
    for (const v of views) {
      // The relay changed nothing: the node pinned the aggregator's own key through it.
      expect(v.node.serverKey.publicKey).toBe(agg.serverKey);
      expect(v.relay.messages.filter((m) => m.error !== undefined).map((m) => m.error)).toEqual([]);
      const sent = sentBy(v);
      const types = new Set(sent.map((m) => String(m.message!['type'])));
      expect(
        [...types].filter((t) => !SECURE_SITE_TYPES.includes(t)),
        v.site.name,
      ).toEqual([]);
      expect(types.has('secagg.masked'), v.site.name).toBe(true);
      expect(types.has('round.update'), v.site.name).toBe(true);
      expect(types.has('stats.report')).toBe(false);
      expect(types.has('round.metrics')).toBe(false);
      // Every binary frame is a masked uint32 vector whose header says nothing about the site's data.
      const binary = sent.filter((m) => m.binary);
      expect(binary.length).toBe(1 + 2 * ROUNDS); // statistics once; update and evaluation per round
      for (const m of binary) {
        expect(m.dtype, `${v.site.name} ${String(m.message!['type'])}`).toBe('uint32');
        for (const field of ['numExamples', 'trainLoss', 'metrics', 'loss', 'count']) {
          expect(m.message, `${v.site.name} ${String(m.message!['type'])}`).not.toHaveProperty(
            field,
          );
        }
      }
    }
  });

  it("sends none of its own counts, feature sums, losses or metrics in any value, a frame header's included", () => {
    for (const v of views) {
      expect(v.figures.length).toBeGreaterThan(60);
      const hits: string[] = [];
      for (const [n, m] of sentBy(v).entries()) {
        const where = `${v.site.name} message ${n} (${String(m.message!['type'])})`;
        hits.push(...findFigures(v.figures, numbersIn(m.message), m.text, where));
      }
      expect(hits).toEqual([]);
    }
  });

  it('masks its statistics, its update and its evaluation counts: no masked vector is the plain one', () => {
    for (const v of views) {
      const sent = sentBy(v);
      const masked = (sum: string, round: number): Uint32Array => {
        const m = sent.find(
          (x) =>
            x.message!['round'] === round &&
            (sum === 'update'
              ? x.message!['type'] === 'round.update'
              : x.message!['type'] === 'secagg.masked' && x.message!['sum'] === sum),
        );
        expect(m, `${v.site.name}: masked ${sum} of round ${round}`).toBeDefined();
        return m!.vector as Uint32Array;
      };

      // Statistics (round 1 only): the wide fixed-point encoding of [N, sums, sums of squares].
      const stats = statisticsVector(v.train, { bounds: null, perSite: false });
      expect(stats[0]).toBe(v.node.rows.train);
      const plainStats = encodeWideFixedPoint(stats);
      const maskedStats = masked('statistics', 1);
      expect(maskedStats.length).toBe(plainStats.length);
      expect(sameCoordinates(maskedStats, plainStats)).toBeLessThan(0.05 * plainStats.length);
      const decoded = attempt(() => decodeWideFixedPointSum(maskedStats));
      if (decoded !== null) {
        expect(decoded[0]).not.toBe(stats[0]);
        expect(maxRelativeDiff(decoded, stats)).toBeGreaterThan(0.01);
      }

      for (const [r, round] of rounds.entries()) {
        // The update: the weighted, quantized update plus its weight, then masked.
        const report = v.reports[r]!;
        expect(report.round).toBe(round.number);
        const info = fromAggregator(v.relay, 'round.train', round.number).message![
          'secureAggregation'
        ] as RoundSecAgg;
        const params = info.params as { clip: number; scale: number };
        const weight = Math.min(1, report.numExamples / info.weightNormalizer);
        const quantized = quantizeWeighted(report.update, weight, params);
        const maskedUpdate = masked('update', round.number);
        expect(maskedUpdate.length).toBe(quantized.length);
        // Stochastic rounding moves a coordinate by at most one step: "close" is within one.
        expect(closeCoordinates(maskedUpdate, quantized, 1)).toBeLessThan(0.1 * quantized.length);

        // The evaluation counts of the round's model on its held-out rows, in fixed point.
        const plainEval = encodeFixedPoint(v.evaluations[r]!.vector);
        const maskedEval = masked('evaluation', round.number);
        expect(maskedEval.length).toBe(plainEval.length);
        expect(sameCoordinates(maskedEval, plainEval)).toBeLessThan(0.05 * plainEval.length);
      }
    }
  });

  it("adds up over the three sites to the aggregator's totals: the figures searched for are the sites' real ones", async () => {
    // The sum of the sites' statistics vectors is what the aggregator decoded and stored.
    const fed = await featureStats(agg, fedId);
    // Summed as the secure sum does: each vector rounded to fixed point, the sum exact.
    const sum = new Float64Array(1 + 2 * spec.inputDim);
    for (const v of views) {
      const stats = statisticsVector(v.train, { bounds: null, perSite: false });
      addTo(sum, decodeWideFixedPointSum(encodeWideFixedPoint(stats)));
    }
    const expected = statisticsFromSum(sum, {
      bounds: null,
      perSite: false,
      features: spec.inputDim,
    });
    expect(fed.count).toBe(views.reduce((a, v) => a + v.node.rows.train, 0));
    expect(fed.sites).toBe(SITES);
    expect(maxRelativeDiff(fed.mean, expected.mean)).toBeLessThan(1e-9);
    expect(maxRelativeDiff(fed.std, expected.std)).toBeLessThan(1e-9);
    // Each round's evaluation is the sum of the sites' evaluation vectors, whose metrics are the
    // site's own: accuracy weighted by held-out rows gives the round's accuracy.
    for (const [r, round] of rounds.entries()) {
      const evaluation = round.metrics!.evaluation!;
      const total = new Float64Array(views[0]!.evaluations[r]!.vector.length);
      for (const v of views) addTo(total, v.evaluations[r]!.vector);
      const layout = fromAggregator(views[0]!.relay, 'round.evaluate', round.number).message![
        'evaluation'
      ] as EvaluationLayout;
      const fromSum = metricsFromEvaluationSum(total, layout);
      expect(evaluation.numExamples).toBe(views.reduce((a, v) => a + v.node.rows.eval, 0));
      expect(evaluation.sites).toBe(SITES);
      expect(evaluation.accuracy).toBeCloseTo(fromSum.accuracy, 6);
      expect(evaluation.loss).toBeCloseTo(fromSum.loss, 5);
      const held = views.map((v) => v.evaluations[r]!.metrics);
      const weighted = held.reduce((a, m) => a + m.accuracy * m.numExamples, 0);
      expect(evaluation.accuracy).toBeCloseTo(weighted / evaluation.numExamples, 6);
    }
  });

  it('leaves no per-site figure in any table of the database, only totals over the three sites', async () => {
    const dump = await dumpDatabase(agg);
    for (const t of ['federation', 'round', 'round_event', 'site', 'model_version']) {
      expect(dump.tables).toContain(t);
    }
    const hits: string[] = [];
    for (const value of dump.values) {
      const where = `${value.table}.${value.column}`;
      const numbers = storedNumbers(value).filter((n) => !notSiteData(value, n));
      hits.push(...findFigures(storable(views), numbers, value.text, where));
    }
    expect(hits).toEqual([]);

    // The totals are there: the federation's statistics count, each round's held-out rows.
    const stored = (table: string, column: string): unknown[] =>
      dump.values
        .filter((v) => v.table === table && v.column === column)
        .map((v) => JSON.parse(v.text) as unknown);
    const trainRows = views.reduce((a, v) => a + v.node.rows.train, 0);
    const evalRows = views.reduce((a, v) => a + v.node.rows.eval, 0);
    expect(stored('federation', 'feature_stats')).toContainEqual(
      expect.objectContaining({ count: trainRows, sites: SITES }),
    );
    const metrics = stored('round', 'metrics') as Array<{
      evaluation: { numExamples: number; sites: number } | null;
    }>;
    expect(metrics).toHaveLength(ROUNDS);
    for (const m of metrics) {
      expect(m.evaluation).toMatchObject({ numExamples: evalRows, sites: SITES });
    }
  });

  it("names each participant's status in the round records, never its record count", async () => {
    const siteIds = views.map((v) => v.site.siteId).sort();
    for (const round of rounds) {
      expect(round.state).toBe('committed');
      expect(round.participants.map((p) => p.siteId).sort()).toEqual(siteIds);
      for (const p of round.participants) {
        expect(p.status).toBe('evaluated');
        expect(p).not.toHaveProperty('numExamples');
      }
    }
    const stored = await agg.db.manager.query<Array<{ participants: string }>>(
      `SELECT participants::text AS participants FROM round WHERE federation_id = $1`,
      [fedId],
    );
    expect(stored).toHaveLength(ROUNDS);
    for (const row of stored) {
      const participants = JSON.parse(row.participants) as Array<Record<string, unknown>>;
      expect(participants).toHaveLength(SITES);
      for (const p of participants) {
        expect(Object.keys(p).sort()).toEqual(expect.arrayContaining(['name', 'siteId', 'status']));
        expect(p).not.toHaveProperty('numExamples');
      }
    }
  });
});

/** Starts a run and waits for it to end, retrying a poll that meets a connection reset. */
async function runRounds(
  api: ApiClient,
  fedId: string,
  rounds: number,
): Promise<{ status: string; roundsDone: number }> {
  const run = await api.post<{ id: string }>(`/api/v1/federations/${fedId}/runs`, { rounds });
  return waitUntil(
    async () => {
      try {
        const runs = await api.get<Array<{ id: string; status: string; roundsDone: number }>>(
          `/api/v1/federations/${fedId}/runs`,
        );
        const r = runs.find((x) => x.id === run.id);
        return r && r.status !== 'running' ? r : undefined;
      } catch (e) {
        if (e instanceof ApiRequestError && e.code === 'UNREACHABLE') return undefined;
        throw e;
      }
    },
    150_000,
    `run ${run.id} to end`,
  );
}

/** The messages a site sent through its relay. */
function sentBy(v: Pick<SiteView, 'relay'>): RelayedMessage[] {
  return v.relay.messages.filter((m) => m.from === 'site');
}

/** The one message of `type` for `round` the aggregator sent through a relay. */
function fromAggregator(relay: CapturingRelay, type: string, round: number): RelayedMessage {
  const found = relay.messages.filter(
    (m) => m.from === 'aggregator' && m.message?.['type'] === type && m.message['round'] === round,
  );
  expect(found.length, `${type} of round ${round}`).toBeGreaterThanOrEqual(1);
  return found[0]!;
}

/** The federation's stored feature statistics. */
async function featureStats(
  agg: RunningAggregator,
  fedId: string,
): Promise<{ mean: number[]; std: number[]; count: number; sites: number }> {
  const [row] = await agg.db.manager.query<Array<{ stats: string }>>(
    `SELECT feature_stats::text AS stats FROM federation WHERE id = $1`,
    [fedId],
  );
  return JSON.parse(row!.stats) as { mean: number[]; std: number[]; count: number; sites: number };
}

/**
 * Every figure of a site's own that protocol v1 sent in the clear: its row counts (login and
 * round.update numExamples), its statistics (stats.report), its training loss (round.update) and
 * its held-out metrics of each committed model (round.metrics). Trivial values (small integers
 * such as 0, 1 or a round number) are left out: they say nothing and appear everywhere.
 */
function siteFigures(v: SiteView, rounds: RoundView[]): Figure[] {
  const figures: Figure[] = [];
  const add = (what: string, value: number, total?: number): void => {
    if (Number.isInteger(value) && Math.abs(value) < 10) return;
    figures.push({ site: v.site.name, what, value, ...(total !== undefined ? { total } : {}) });
  };
  const rows = v.node.rows;
  expect(rows).toEqual({ train: v.train.numRows, eval: v.eval.numRows });
  add('training rows', rows.train);
  add('held-out rows', rows.eval);
  add('rows in all', rows.train + rows.eval);
  const part = featureStatsPartial(v.train);
  part.sum.forEach((x, j) => add(`sum of feature ${j}`, x));
  part.sumSq.forEach((x, j) => add(`sum of squares of feature ${j}`, x));
  for (const [r, round] of rounds.entries()) {
    const report = v.reports[r]!;
    expect(report.numExamples).toBe(rows.train);
    add(`round ${round.number} training loss`, report.trainLoss);
    const m = v.evaluations[r]!.metrics;
    const total = round.metrics!.evaluation!;
    expect(m.numExamples).toBe(rows.eval);
    add(`round ${round.number} held-out loss`, m.loss, total.loss);
    add(`round ${round.number} accuracy`, m.accuracy, total.accuracy);
    add(`round ${round.number} F1`, m.f1, total.f1);
    if (m.auc !== null) add(`round ${round.number} AUC`, m.auc, total.auc ?? undefined);
  }
  return figures;
}

/**
 * The figures looked for in the database: every site's, less any that happens to equal the
 * federation-wide value of the same metric and round, which the aggregator does hold (a sum).
 */
function storable(views: SiteView[]): Figure[] {
  return views
    .flatMap((v) => v.figures)
    .filter((f) => f.total === undefined || !sameNumber(f.total, f.value));
}

/** A number found in a message or a stored value, with where it was. */
interface Found {
  path: string;
  value: number;
}

const NUMERIC = /^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i;

/** Every number in a JSON value: numbers, and strings or object keys that are decimal numbers. */
function numbersIn(value: unknown, path = '$', out: Found[] = []): Found[] {
  if (typeof value === 'number') {
    out.push({ path, value });
  } else if (typeof value === 'string') {
    if (NUMERIC.test(value.trim())) out.push({ path, value: Number(value.trim()) });
  } else if (Array.isArray(value)) {
    value.forEach((x, i) => numbersIn(x, `${path}[${i}]`, out));
  } else if (value !== null && typeof value === 'object') {
    for (const [k, x] of Object.entries(value)) {
      if (NUMERIC.test(k)) out.push({ path: `${path} key`, value: Number(k) });
      numbersIn(x, `${path}.${k}`, out);
    }
  }
  return out;
}

/** The numbers in a stored value: inside JSON, in a SQL array, or the value itself. */
function storedNumbers(v: StoredValue): Found[] {
  if (v.type === 'jsonb' || v.type === 'json') return numbersIn(JSON.parse(v.text));
  if (v.type === 'ARRAY') {
    return v.text
      .replace(/^\{|\}$/g, '')
      .split(',')
      .flatMap((x, i) => numbersIn(x.replace(/^"|"$/g, ''), `[${i}]`));
  }
  return numbersIn(v.text);
}

/**
 * The aggregator's own measurements (a round's wall-clock duration, the bytes it received) and
 * serial row ids: no site's data, and small integers that can equal a site's row count by chance.
 */
function notSiteData(v: StoredValue, n: Found): boolean {
  if (v.table === 'round' && v.column === 'duration_ms') return true;
  if (v.table === 'round' && v.column === 'metrics' && n.path === '$.bytesReceived') return true;
  return v.column === 'id' && v.type === 'bigint';
}

/** Integers match exactly; other figures to 1e-6 relative (a float32 copy of one still matches). */
function sameNumber(x: number, figure: number): boolean {
  if (Number.isInteger(figure)) return x === figure;
  return Math.abs(x - figure) <= 1e-6 * Math.abs(figure);
}

/**
 * Where any figure appears among `numbers`, or, for a non-integer figure, as its decimal text
 * (shortest form or 10 significant digits: too long to occur by chance) anywhere in `text`.
 */
function findFigures(figures: Figure[], numbers: Found[], text: string, where: string): string[] {
  const hits: string[] = [];
  for (const f of figures) {
    for (const n of numbers) {
      if (sameNumber(n.value, f.value)) {
        hits.push(`${where} ${n.path} = ${n.value}: ${f.site}'s ${f.what} (${f.value})`);
      }
    }
    if (!Number.isInteger(f.value)) {
      for (const form of new Set([String(f.value), f.value.toPrecision(10)])) {
        if (form.replace(/\D/g, '').length >= 9 && text.includes(form)) {
          hits.push(`${where} contains "${form}": ${f.site}'s ${f.what}`);
        }
      }
    }
  }
  return hits;
}

/** How many coordinates of two vectors are equal. */
function sameCoordinates(a: Uint32Array, b: Uint32Array): number {
  let n = 0;
  for (let k = 0; k < a.length; k++) if (a[k] === b[k]) n++;
  return n;
}

/** How many coordinates of two mod-2^32 vectors are within `steps` of each other. */
function closeCoordinates(a: Uint32Array, b: Uint32Array, steps: number): number {
  let n = 0;
  for (let k = 0; k < a.length; k++) {
    const d = (a[k]! - b[k]!) | 0;
    if (Math.abs(d) <= steps) n++;
  }
  return n;
}

/** sum += v, element-wise. */
function addTo(sum: Float64Array, v: ArrayLike<number>): void {
  expect(v.length).toBe(sum.length);
  for (let k = 0; k < sum.length; k++) sum[k] = sum[k]! + v[k]!;
}

function maxRelativeDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let k = 0; k < a.length; k++) {
    m = Math.max(m, Math.abs(a[k]! - b[k]!) / Math.max(1e-12, Math.abs(b[k]!)));
  }
  return m;
}

/** The result of `f`, or null when it throws. */
function attempt<T>(f: () => T): T | null {
  try {
    return f();
  } catch {
    return null;
  }
}
