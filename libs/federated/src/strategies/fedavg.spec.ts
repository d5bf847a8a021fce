import { describe, expect, it } from 'vitest';
import {
  buildStrategy,
  IndividualUpdatesCollector,
  PlainSumCollector,
  type SiteUpdate,
} from '../index';
import { StrategyErrorCode } from './errors';
import { FedAvg } from './fedavg';
import { FedAvgM } from './fedavgm';
import { FedProx } from './fedprox';

const f32 = (...xs: number[]): Float32Array => Float32Array.from(xs);
const update = (siteId: string, delta: number[], weight: number): SiteUpdate => ({
  siteId,
  delta: f32(...delta),
  weight,
});
function sumOf(updates: SiteUpdate[]) {
  const c = new PlainSumCollector(updates[0]!.delta.length);
  for (const u of updates) c.add(u);
  return c.result();
}

describe('fedavg', () => {
  const global = f32(1, 2);
  const round = [update('a', [1, -2], 1), update('b', [3, 0], 3)];

  it('moves the global weights by the sample-weighted mean update', () => {
    const s = new FedAvg();
    const { weights, state } = s.aggregateTrain(global, sumOf(round), s.initialState());
    // mean = (1 * [1, -2] + 3 * [3, 0]) / 4 = [2.5, -0.5]
    expect(Array.from(weights)).toEqual([3.5, 1.5]);
    expect(state).toEqual({ steps: 1, vectors: {} });
  });

  it('gives the same weights from the individual updates as from their sum', () => {
    const s = new FedAvg();
    const fromSum = s.aggregateTrain(global, sumOf(round), s.initialState()).weights;
    const fromList = s.aggregateTrain(global, round, s.initialState()).weights;
    expect(Array.from(fromList)).toEqual(Array.from(fromSum));
  });

  it('keeps the aggregator’s former server step (g + fround(sum / weight)) bit for bit', () => {
    const g = Float32Array.from({ length: 50 }, (_, i) => Math.sin(i) / 3);
    const ups = [0, 1, 2].map((k) =>
      update(
        `s${k}`,
        Array.from({ length: 50 }, (_, i) => Math.cos(i * (k + 1)) / 7),
        k * 11 + 5,
      ),
    );
    const agg = sumOf(ups);
    const legacy = new Float32Array(50);
    for (let i = 0; i < 50; i++) legacy[i] = g[i]! + Math.fround(agg.sum[i]! / agg.totalWeight);
    const s = buildStrategy('fedavg');
    expect(Array.from(s.aggregateTrain(g, agg, s.initialState()).weights)).toEqual(
      Array.from(legacy),
    );
  });

  it('gets the same sum and copies of each update from the individual-updates collector', () => {
    const c = new IndividualUpdatesCollector(2);
    const first = f32(1, -2);
    c.add({ siteId: 'a', delta: first, weight: 1 });
    c.add(round[1]!);
    first.fill(9);
    expect(c.count).toBe(2);
    expect(c.has('b')).toBe(true);
    expect(c.result()).toEqual(sumOf(round));
    expect(c.updates()).toEqual(round);
    expect(() => c.add(round[0]!)).toThrow(/already contributed/);
  });

  it('refuses an aggregate of another length than the model', () => {
    const s = new FedAvg();
    expect(() => s.aggregateTrain(f32(1, 2, 3), sumOf(round), s.initialState())).toThrow(
      expect.objectContaining({ code: StrategyErrorCode.STRATEGY_INPUT_INVALID }),
    );
  });

  it('refuses an update with a non-finite value or a zero weight', () => {
    const s = new FedAvg();
    expect(() => s.aggregateTrain(global, [update('a', [NaN, 0], 1)], s.initialState())).toThrow(
      /non-finite/,
    );
    expect(() => s.aggregateTrain(global, [update('a', [0, 0], 0)], s.initialState())).toThrow(
      /weight/,
    );
  });

  it('weights the sites’ evaluations by their example counts', () => {
    const summary = new FedAvg().aggregateEvaluate({
      kind: 'by-site',
      metrics: [
        { loss: 1, accuracy: 0.5, f1: 0.4, auc: 0.6, numExamples: 10 },
        { loss: 2, accuracy: 1, f1: 1, auc: null, numExamples: 30 },
      ],
    });
    expect(summary).toEqual({
      loss: 1.75,
      accuracy: 0.875,
      f1: 0.85,
      auc: 0.6,
      numExamples: 40,
      sites: 2,
    });
    expect(new FedAvg().aggregateEvaluate({ kind: 'by-site', metrics: [] })).toBeNull();
  });
});

describe('fedprox', () => {
  it('tells every site its proximal mu', () => {
    const s = new FedProx({ proximalMu: 0.25 });
    expect(s.configureTrain(3, s.initialState())).toEqual({ proximalMu: 0.25 });
    expect(new FedAvg().configureTrain(3, s.initialState())).toEqual({});
  });

  it('takes FedAvg’s server step', () => {
    const round = [update('a', [1, -2], 1), update('b', [3, 0], 3)];
    const s = new FedProx({ proximalMu: 1 });
    const out = s.aggregateTrain(f32(1, 2), sumOf(round), s.initialState());
    expect(Array.from(out.weights)).toEqual([3.5, 1.5]);
  });
});

describe('fedavgm', () => {
  it('carries its momentum buffer from one round to the next', () => {
    const s = new FedAvgM({ serverLearningRate: 0.5, momentum: 0.9 });
    // Round 1: Delta = [2.5, -0.5]; u = Delta; x = [1, 2] + 0.5 u = [2.25, 1.75].
    const r1 = s.aggregateTrain(
      f32(1, 2),
      sumOf([update('a', [1, -2], 1), update('b', [3, 0], 3)]),
      s.initialState(),
    );
    expect(Array.from(r1.weights)).toEqual([2.25, 1.75]);
    expect(Array.from(r1.state.vectors.momentum!)).toEqual([2.5, -0.5]);
    // Round 2: Delta = [1, 1]; u = 0.9 [2.5, -0.5] + [1, 1] = [3.25, 0.55];
    // x = [2.25, 1.75] + 0.5 u = [3.875, 2.025].
    const r2 = s.aggregateTrain(r1.weights, [update('c', [1, 1], 2)], r1.state);
    expect(r2.weights[0]).toBeCloseTo(3.875, 6);
    expect(r2.weights[1]).toBeCloseTo(2.025, 6);
    expect(r2.state.vectors.momentum![1]).toBeCloseTo(0.55, 6);
    expect(r2.state.steps).toBe(2);
  });

  it('continues exactly from state written and read back between rounds', () => {
    const s = new FedAvgM({ serverLearningRate: 0.7, momentum: 0.6 });
    const r1 = s.aggregateTrain(
      f32(0.1, 0.2, 0.3),
      [update('a', [0.3, -0.1, 0.7], 1)],
      s.initialState(),
    );
    const restored = s.parseState(JSON.parse(JSON.stringify(s.serializeState(r1.state))), 3);
    const next = [update('a', [0.01, 0.2, -0.3], 2), update('b', [0.5, 0.1, 0.1], 1)];
    const straight = s.aggregateTrain(r1.weights, next, r1.state);
    const resumed = s.aggregateTrain(r1.weights, next, restored);
    expect(Array.from(resumed.weights)).toEqual(Array.from(straight.weights));
  });
});
