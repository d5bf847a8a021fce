import { describe, expect, it } from 'vitest';
import type { MessageOf, ServerMessage } from '@confide/protocol';
import { confideAccountant, scaleRdp, sumRelease } from '@confide/privacy-ledger';
import { zcdpOfBudget } from '@confide/differential-privacy';
import fixture from '../../differential-privacy/src/fixtures/opacus-rdp.json';
import { updateMechanism, withinStatisticsShare } from './site-accounting';

type TrainMsg = MessageOf<ServerMessage, 'round.train'>;
type Row = [number, number, number, number, number, number, number, number];

/** A round.train as a (possibly dishonest) aggregator sends it; only the fields accounting reads. */
function train(over: Partial<TrainMsg> = {}): TrainMsg {
  return {
    v: 2,
    id: 'm',
    type: 'round.train',
    runId: 'r',
    round: 1,
    federationId: 'f',
    modelVersionId: 'mv',
    modelHash: 'h',
    modelSpec: {},
    train: { epochs: 2, batchSize: 64, learningRate: 0.1, optimizer: 'sgd' },
    standardization: null,
    privacy: {
      level: 'site',
      noiseMultiplier: 1.1,
      clipNorm: 1,
      delta: 1e-5,
      epsilonLimit: 10,
      siteSamplingRate: 0.2,
      survivorsAssumed: 50,
    },
    secureAggregation: null,
    deadline: '2030-01-01T00:00:00.000Z',
    ...over,
  };
}

describe("a site's own accounting of its update release", () => {
  it('record level: q is the batch over its own (declared) record count, whatever else is announced', () => {
    const m = updateMechanism(
      train({
        privacy: { ...train().privacy!, level: 'record', siteSamplingRate: 0.001 },
      }),
      256,
    );
    expect(m).toMatchObject({ level: 'record', samplingRate: 0.25, steps: 2 * 4 });
  });

  it('site level without secure aggregation: its own coin rate, and no survivors sharing the noise', () => {
    // The aggregator announces 50 survivors: a site that believed it would add a fiftieth of the noise.
    expect(updateMechanism(train(), 300)).toEqual({
      level: 'site',
      samplingRate: 0.2,
      noiseMultiplier: 1.1,
      steps: 1,
      clipNorm: 1,
      survivorsAssumed: null,
      accountant: 'rdp',
    });
  });

  it('site level under secure aggregation: noise shares sized for the round threshold, not the announced survivors', () => {
    const secure = {
      params: {
        threshold: 3,
        graph: 'complete',
        threatModel: 'semi-honest',
        clip: 20,
        scale: 2 ** 20,
        maxSites: 5,
      },
      roster: [],
      weightNormalizer: 1,
      vectorLength: 32,
    } as unknown as TrainMsg['secureAggregation'];
    expect(updateMechanism(train({ secureAggregation: secure }), 300)).toMatchObject({
      survivorsAssumed: 3,
      noise: 'distributed-discrete-gaussian',
      quantizationScale: 2 ** 20,
      dimension: 31,
      samplingRate: 0.2,
    });
  });

  it("composes self-sampled site-level releases to Opacus's epsilon for the Poisson-subsampled Gaussian (fixtures)", () => {
    // k rounds in which the site's own coin (rate q) decided its participation are k releases of the
    // subsampled Gaussian: the fixture's (q, sigma, steps) with steps rounds.
    const rows = (fixture.cases as Row[]).filter(([, , steps]) => steps <= 10_000);
    expect(rows.length).toBeGreaterThan(100);
    let worst = 0;
    for (const [q, sigma, steps, delta, eps] of rows) {
      const m = updateMechanism(
        train({
          privacy: { ...train().privacy!, noiseMultiplier: sigma, siteSamplingRate: q },
        }),
        1,
      );
      const curve = scaleRdp(confideAccountant.releaseRdp(m), steps);
      const got = confideAccountant.epsilon(curve, delta).epsilon;
      const want = Math.max(0, eps);
      const err = want === 0 ? got : Math.abs(got - want) / want;
      worst = Math.max(worst, err);
    }
    expect(worst).toBeLessThan(1e-6);
  });
});

describe('the share of a budget set aside for statistics and evaluation', () => {
  const release = sumRelease({
    release: 'evaluation',
    level: 'record',
    noiseMultiplier: 10,
    sensitivity: Math.sqrt(3),
  });
  const entry = { mechanism: release } as Parameters<typeof withinStatisticsShare>[0][number];

  it('allows releases while their zCDP stays within the share, refuses the one that passes it', () => {
    const allowance = 0.1 * zcdpOfBudget(1, 1e-5); // 0.00206
    const perRelease = 1 / (2 * 10 * 10); // 0.005: none fits a share of 0.1 at epsilon 1
    expect(perRelease).toBeGreaterThan(allowance);
    expect(withinStatisticsShare([], release, 0.1, 1, 1e-5).allowed).toBe(false);
    // At epsilon 10 the share holds 0.155 / 0.005 = 31 releases.
    const history = Array.from({ length: 30 }, () => entry);
    expect(withinStatisticsShare(history, release, 0.1, 10, 1e-5).allowed).toBe(true);
    expect(withinStatisticsShare([...history, entry], release, 0.1, 10, 1e-5).allowed).toBe(false);
  });
});
