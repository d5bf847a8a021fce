import { describe, expect, it } from 'vitest';
import { layoutChart, niceTicks } from './charts';
import { strategyCatalog } from '@confide/federated';
import { capabilitiesFromOpenApi, namedStrategy, strategiesFromApi } from './api';
import { federationHref, parseRoute } from './router';
import { limitLines } from './pages/privacy';
import { ledgerPath, ledgerQuery } from './pages/ledger';
import { metricSeries } from './pages/metrics';
import { currentStage, roundStages } from './components/live-round';
import type { Round } from './types';

describe('chart geometry', () => {
  it('picks round tick values', () => {
    expect(niceTicks(0, 1)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(niceTicks(0.913, 0.987)).toEqual([0.9, 0.92, 0.94, 0.96, 0.98, 1]);
    expect(niceTicks(0, 7.3)).toEqual([0, 2, 4, 6, 8]);
    const flat = niceTicks(5, 5);
    expect(flat).toContain(5);
    expect(flat[0]).toBeLessThan(5);
    expect(flat[flat.length - 1]).toBeGreaterThan(5);
  });

  it('maps points into the plot area, y upwards, with limit lines inside the axis range', () => {
    const L = layoutChart({
      title: 't',
      xLabel: 'Round',
      yLabel: 'ε',
      integerX: true,
      yMin: 0,
      width: 400,
      height: 200,
      series: [
        {
          name: 'a',
          points: [
            { x: 1, y: 1 },
            { x: 3, y: 4 },
            { x: 2, y: 2 },
          ],
        },
      ],
      limits: [{ y: 8, label: 'limit' }],
    });
    expect(L.xTicks.map((t) => t.value)).toEqual([1, 2, 3]);
    expect(L.yTicks[0]!.value).toBe(0);
    expect(L.yTicks[L.yTicks.length - 1]!.value).toBeGreaterThanOrEqual(8);
    const [p1, p2, p3] = L.lines[0]!.points;
    expect(p1!.cx).toBe(L.plot.left);
    expect(p3!.cx).toBe(L.plot.right);
    expect(p1!.cy).toBeGreaterThan(p2!.cy);
    expect(L.lines[0]!.d).toMatch(/^M[\d.]+,[\d.]+ L[\d.]+,[\d.]+ L[\d.]+,[\d.]+$/);
    expect(L.limits[0]!.pos).toBeGreaterThanOrEqual(L.plot.top);
    expect(L.limits[0]!.pos).toBeLessThan(p3!.cy);
  });

  it('draws one round on an axis from 1 to 2 rather than a zero-width one', () => {
    const L = layoutChart({
      title: 't',
      xLabel: 'Round',
      yLabel: 'y',
      integerX: true,
      series: [{ name: 'a', points: [{ x: 1, y: 0.9 }] }],
    });
    expect(L.xTicks.map((t) => t.value)).toEqual([1, 2]);
    expect(Number.isFinite(L.lines[0]!.points[0]!.cy)).toBe(true);
  });

  it('labels one limit line, or each distinct limit with its sites', () => {
    const site = (name: string, limit: number) => ({
      siteId: name,
      name,
      epsilon: 1,
      limit,
      roundsLeft: 3,
      history: [],
    });
    expect(limitLines([site('a', 8), site('b', 8)])).toEqual([{ y: 8, label: 'limit ε = 8' }]);
    expect(limitLines([site('a', 8), site('b', 4)])).toEqual([
      { y: 8, label: 'limit ε = 8 (a)' },
      { y: 4, label: 'limit ε = 4 (b)' },
    ]);
  });

  it('charts committed rounds only', () => {
    const round = (number: number, state: string, accuracy: number | null) =>
      ({
        number,
        state,
        metrics: accuracy === null ? null : { trainLoss: 0.3, evaluation: { accuracy } },
      }) as unknown as Round;
    expect(
      metricSeries(
        [round(1, 'committed', 0.9), round(2, 'aborted', null), round(3, 'committed', 0.95)],
        (r) => r.metrics?.evaluation?.accuracy,
      ),
    ).toEqual([
      { x: 1, y: 0.9 },
      { x: 3, y: 0.95 },
    ]);
  });
});

describe('routes, capabilities and the ledger query', () => {
  it('parses hash routes', () => {
    expect(parseRoute('')).toEqual({ page: 'federations' });
    expect(parseRoute('#/signin')).toEqual({ page: 'signin' });
    expect(parseRoute('#/federations/new')).toEqual({ page: 'new-federation' });
    const r = parseRoute('#/federations/abc/ledger?page=2&site=s1');
    expect(r).toMatchObject({ page: 'federation', id: 'abc', tab: 'ledger' });
    expect(r.page === 'federation' && r.query.get('page')).toBe('2');
    expect(parseRoute('#/federations/abc')).toMatchObject({ tab: 'overview' });
    expect(parseRoute('#/federations/abc/bogus')).toEqual({
      page: 'not-found',
      path: '/federations/abc/bogus',
    });
    expect(federationHref('abc', 'ledger', { page: 2, site: '' })).toBe(
      '#/federations/abc/ledger?page=2',
    );
  });

  it('reads optional settings from the OpenAPI document', () => {
    const doc = (props: Record<string, unknown>) => ({
      paths: {
        '/api/v1/federations': {
          post: {
            requestBody: { content: { 'application/json': { schema: { properties: props } } } },
          },
        },
      },
    });
    expect(
      capabilitiesFromOpenApi(doc({ name: {}, strategy: { enum: ['fedavg', 'fedadam'] } })),
    ).toEqual({
      dp: false,
      secureAggregation: false,
      strategies: [namedStrategy('fedavg'), namedStrategy('fedadam')],
    });
    expect(capabilitiesFromOpenApi(doc({ dp: {}, secureAggregation: {} }))).toMatchObject({
      dp: true,
      secureAggregation: true,
    });
    expect(capabilitiesFromOpenApi(null)).toEqual({
      dp: false,
      secureAggregation: false,
      strategies: [namedStrategy('fedavg')],
    });
  });

  it('reads the strategies endpoint, refusing an answer that is not a list of strategies', () => {
    const catalog = JSON.parse(JSON.stringify(strategyCatalog())) as unknown;
    expect(strategiesFromApi(catalog)).toEqual(strategyCatalog());
    expect(strategiesFromApi([])).toBeNull();
    expect(strategiesFromApi({ name: 'fedavg' })).toBeNull();
    expect(
      strategiesFromApi([
        { name: 'Bad Name', summary: '', needsIndividualUpdates: false, configSchema: {} },
      ]),
    ).toBeNull();
    expect(strategiesFromApi([{ name: 'fedavg', summary: 'x', configSchema: {} }])).toBeNull();
  });

  it('builds ledger requests from the route query', () => {
    const q = ledgerQuery(new URLSearchParams('page=3&round=x&site=s1'));
    expect(q).toEqual({ page: 3, site: 's1', round: '' });
    expect(ledgerPath('f', q)).toBe('/api/v1/federations/f/ledger?page=3&pageSize=50&site=s1');
    expect(ledgerPath('f', { page: 1, site: '', round: '4' }, false)).toBe(
      '/api/v1/federations/f/ledger?round=4',
    );
  });

  it('lays out the round stages, with the secure-aggregation ones when it is on', () => {
    expect(roundStages(false)).toEqual(['selecting', 'collecting', 'evaluating', 'committed']);
    expect(roundStages(true)).toEqual([
      'selecting',
      'advertising',
      'sharing',
      'collecting',
      'unmasking',
      'evaluating',
      'committed',
    ]);
    const stages = roundStages(false, 'stats');
    expect(stages).toEqual(['selecting', 'stats', 'collecting', 'evaluating', 'committed']);
    expect(currentStage(stages, { phase: 'collecting', state: 'collecting' })).toBe(2);
    expect(currentStage(stages, { phase: 'closing', state: 'aggregated' })).toBe(3);
    expect(currentStage(stages, { phase: 'closing', state: 'committed' })).toBe(5);
  });
});
