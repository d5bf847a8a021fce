import { describe, expect, it } from 'vitest';
import { PlainSumCollector, type SiteUpdate } from '../index';
import { parseStrategyConfig } from './registry';
import { FedAdagrad, type FedAdagradConfig } from './fedadagrad';
import { FedAdam, type FedAdamConfig } from './fedadam';
import { FedYogi, type FedYogiConfig } from './fedyogi';
import type { Strategy } from './types';

const f32 = (...xs: number[]): Float32Array => Float32Array.from(xs);

// Round 1 arrives as a (secure) sum, round 2 as individual updates: the mean updates are
// Delta_1 = [0.5, -0.2] and Delta_2 = [0.1, 0.3]; the model starts at x_0 = [0, 1].
function round1(): ReturnType<PlainSumCollector['result']> {
  const c = new PlainSumCollector(2);
  c.add({ siteId: 'a', delta: f32(0.2, -0.5), weight: 1 });
  c.add({ siteId: 'b', delta: f32(0.6, -0.1), weight: 3 });
  return c.result(); // (1 [0.2, -0.5] + 3 [0.6, -0.1]) / 4 = [0.5, -0.2]
}
const round2: SiteUpdate[] = [
  { siteId: 'a', delta: f32(0.1, 0.3), weight: 5 },
  { siteId: 'c', delta: f32(0.1, 0.3), weight: 2 },
];

function twoRounds(s: Strategy) {
  const r1 = s.aggregateTrain(f32(0, 1), round1(), s.initialState());
  const r2 = s.aggregateTrain(r1.weights, round2, r1.state);
  return { r1, r2 };
}

function expectClose(actual: ArrayLike<number>, expected: number[], digits = 6): void {
  expect(actual.length).toBe(expected.length);
  expected.forEach((x, i) => expect(actual[i]).toBeCloseTo(x, digits));
}

/** Algorithm 2 of Reddi et al. 2021 in float64, as the reference. */
function reference(rule: (v: number, d2: number) => number, eta: number, b1: number, tau: number) {
  const x = [0, 1];
  const m = [0, 0];
  const v = [tau * tau, tau * tau];
  const out: number[][] = [];
  for (const delta of [
    [0.5, -0.2],
    [0.1, 0.3],
  ]) {
    for (let i = 0; i < 2; i++) {
      m[i] = b1 * m[i]! + (1 - b1) * delta[i]!;
      v[i] = rule(v[i]!, delta[i]! ** 2);
      x[i] = x[i]! + (eta * m[i]!) / (Math.sqrt(v[i]!) + tau);
    }
    out.push([...x]);
  }
  return out;
}

describe('fedadam', () => {
  const config = parseStrategyConfig('fedadam', {}) as FedAdamConfig;

  it('defaults to beta1 0.9, beta2 0.99, tau 1e-3 and eta 0.1', () => {
    expect(config).toEqual({ serverLearningRate: 0.1, beta1: 0.9, beta2: 0.99, tau: 1e-3 });
  });

  it('takes two server steps of the update equations, carrying m and v', () => {
    const { r1, r2 } = twoRounds(new FedAdam(config));
    // m_1 = 0.1 Delta_1; v_1 = 0.99 tau^2 + 0.01 Delta_1^2; x_1 = x_0 + 0.1 m_1 / (sqrt(v_1) + tau).
    expectClose(r1.state.vectors.m!, [0.05, -0.02]);
    expectClose(r1.state.vectors.v!, [0.00250099, 0.00040099], 9);
    expectClose(r1.weights, [0.0980201901, 0.9048739483]);
    // m_2 = 0.9 m_1 + 0.1 Delta_2; v_2 = 0.99 v_1 + 0.01 Delta_2^2.
    expectClose(r2.state.vectors.m!, [0.055, 0.012]);
    expectClose(r2.state.vectors.v!, [0.00257598, 0.00129698], 8);
    expectClose(r2.weights, [0.2042919348, 0.9372944553]);
    const ref = reference((v, d2) => 0.99 * v + 0.01 * d2, 0.1, 0.9, 1e-3);
    expectClose(r2.weights, ref[1]!);
    expect(r2.state.steps).toBe(2);
  });

  it('uses the configured server learning rate', () => {
    const s = new FedAdam({ ...config, serverLearningRate: 0.01 });
    const { r2 } = twoRounds(s);
    expectClose(r2.weights, reference((v, d2) => 0.99 * v + 0.01 * d2, 0.01, 0.9, 1e-3)[1]!);
  });
});

describe('fedyogi', () => {
  const config = parseStrategyConfig('fedyogi', {}) as FedYogiConfig;

  it('takes two server steps of the update equations, carrying m and v', () => {
    const { r1, r2 } = twoRounds(new FedYogi(config));
    // v_1 = tau^2 - 0.01 Delta_1^2 sign(tau^2 - Delta_1^2) = tau^2 + 0.01 Delta_1^2 (Delta^2 > tau^2).
    expectClose(r1.state.vectors.v!, [0.002501, 0.000401], 9);
    expectClose(r1.weights, [0.098019998, 0.904875078]);
    expectClose(r2.state.vectors.v!, [0.002601, 0.001301], 8);
    expectClose(r2.weights, [0.2037892288, 0.9372468112]);
    const yogi = (v: number, d2: number): number => v - 0.01 * d2 * Math.sign(v - d2);
    expectClose(r2.weights, reference(yogi, 0.1, 0.9, 1e-3)[1]!);
  });

  it('shrinks v additively once the updates become smaller than its root', () => {
    const s = new FedYogi(config);
    const big = s.aggregateTrain(
      f32(0),
      [{ siteId: 'a', delta: f32(1), weight: 1 }],
      s.initialState(),
    );
    const small = s.aggregateTrain(
      big.weights,
      [{ siteId: 'a', delta: f32(0.001), weight: 1 }],
      big.state,
    );
    // v_1 = 1e-6 + 0.01 = 0.010001 > Delta_2^2, so v_2 = v_1 - 0.01 * 1e-6.
    expect(small.state.vectors.v![0]).toBeCloseTo(0.010001 - 1e-8, 9);
  });
});

describe('fedadagrad', () => {
  const config = parseStrategyConfig('fedadagrad', {}) as FedAdagradConfig;

  it('has no beta2 and refuses one', () => {
    expect(config).toEqual({ serverLearningRate: 0.1, beta1: 0.9, tau: 1e-3 });
    expect(() => parseStrategyConfig('fedadagrad', { beta2: 0.9 })).toThrow(/beta2/);
  });

  it('takes two server steps of the update equations, carrying m and v', () => {
    const { r1, r2 } = twoRounds(new FedAdagrad(config));
    // v_1 = tau^2 + Delta_1^2; v_2 = v_1 + Delta_2^2.
    expectClose(r1.state.vectors.v!, [0.250001, 0.040001]);
    expectClose(r1.weights, [0.00998002, 0.990049875]);
    expectClose(r2.state.vectors.v!, [0.260001, 0.130001]);
    expectClose(r2.weights, [0.0207452743, 0.9933688582]);
    expectClose(r2.weights, reference((v, d2) => v + d2, 0.1, 0.9, 1e-3)[1]!);
  });
});

describe('adaptive state', () => {
  it.each([
    ['fedadam', (c: unknown) => new FedAdam(c as FedAdamConfig)],
    ['fedyogi', (c: unknown) => new FedYogi(c as FedYogiConfig)],
    ['fedadagrad', (c: unknown) => new FedAdagrad(c as FedAdagradConfig)],
  ] as const)('%s continues exactly after its state is written and read back', (name, make) => {
    const s = make(parseStrategyConfig(name, {}));
    const r1 = s.aggregateTrain(f32(0, 1), round1(), s.initialState());
    const text = JSON.stringify(s.serializeState(r1.state));
    const resumed = make(parseStrategyConfig(name, {}));
    const restored = resumed.parseState(JSON.parse(text), 2);
    const straight = s.aggregateTrain(r1.weights, round2, r1.state);
    const again = resumed.aggregateTrain(r1.weights, round2, restored);
    expect(Array.from(again.weights)).toEqual(Array.from(straight.weights));
    expect(Array.from(again.state.vectors.v!)).toEqual(Array.from(straight.state.vectors.v!));
  });

  it('leaves the state it was given untouched', () => {
    const s = new FedAdam(parseStrategyConfig('fedadam', {}) as FedAdamConfig);
    const r1 = s.aggregateTrain(f32(0, 1), round1(), s.initialState());
    const before = Array.from(r1.state.vectors.m!);
    s.aggregateTrain(r1.weights, round2, r1.state);
    expect(Array.from(r1.state.vectors.m!)).toEqual(before);
  });

  it('refuses state kept for a model of another size', () => {
    const s = new FedAdam(parseStrategyConfig('fedadam', {}) as FedAdamConfig);
    const r1 = s.aggregateTrain(f32(0, 1), round1(), s.initialState());
    expect(() => s.aggregateTrain(f32(0, 1, 2), [], r1.state)).toThrow();
    expect(() =>
      s.aggregateTrain(f32(0, 1, 2), [{ siteId: 'a', delta: f32(1, 1, 1), weight: 1 }], r1.state),
    ).toThrow(/state vector "m" has 2 values, the model 3/);
  });
});
