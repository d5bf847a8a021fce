import { describe, expect, it } from 'vitest';
import {
  DEFAULT_ORDERS,
  quantizedDdgMechanism,
  rdpDistributedDiscreteGaussian,
  rdpSubsampledGaussian,
  rdpToEpsilon,
} from '@confide/differential-privacy';
import {
  confideAccountant,
  type LedgerEntry,
  type MechanismParams,
  projectNextRound,
  siteLevelRelease,
  verifyLedger,
} from './index';
import { buildChain, enrolled, mechanism, TEST_DELTA, testSite } from './testing';

const a = testSite(1);
const b = testSite(2);
const gaussian = mechanism({ samplingRate: 0.5, noiseMultiplier: 1.1, survivorsAssumed: 2 });
const ddg = siteLevelRelease({
  siteSamplingRate: 0.5,
  noiseMultiplier: 1.1,
  clipNorm: 1,
  survivorsAssumed: 2,
  integerNoise: { scale: 2 ** 12, dimension: 513 },
});

function verify(entries: readonly LedgerEntry[]) {
  return verifyLedger({
    entries,
    orders: confideAccountant.orders,
    accountant: confideAccountant,
    sites: enrolled(a, b),
  });
}

describe('confideAccountant', () => {
  it('accounts a continuous-Gaussian release as before: the subsampled Gaussian, steps times', () => {
    const m = mechanism({ level: 'record', samplingRate: 0.02, noiseMultiplier: 1.3, steps: 50 });
    const want = Array.from(rdpSubsampledGaussian(0.02, 1.3, DEFAULT_ORDERS), (x) => x * 50);
    expect(confideAccountant.releaseRdp(m)).toEqual(want);
  });

  it('accounts a distributed-discrete-Gaussian release with its own bound, from the recorded fields', () => {
    expect(ddg).toMatchObject({
      noise: 'distributed-discrete-gaussian',
      quantizationScale: 4096,
      dimension: 513,
      survivorsAssumed: 2,
    });
    const want = rdpDistributedDiscreteGaussian(
      0.5,
      quantizedDdgMechanism({
        noiseMultiplier: 1.1,
        clipNorm: 1,
        scale: 4096,
        dimension: 513,
        survivors: 2,
      }),
    );
    expect(confideAccountant.releaseRdp(ddg)).toEqual(Array.from(want));
    expect(confideAccountant.releaseRdp({ ...ddg, steps: 3 })).toEqual(
      Array.from(want, (x) => x * 3),
    );
    // The sqrt(d) rounding slack and Theorem 5 both cost epsilon against the continuous Gaussian.
    const eps = (m: MechanismParams) =>
      confideAccountant.epsilon(confideAccountant.releaseRdp(m), TEST_DELTA).epsilon;
    expect(eps(ddg)).toBeGreaterThan(eps(gaussian));
    expect(eps(ddg)).toBe(rdpToEpsilon(want, DEFAULT_ORDERS, TEST_DELTA).epsilon);
  });

  it('projects a site’s budget with the bound of the mechanism it will release', () => {
    const history = buildChain([{ site: a, round: 1, mechanism: ddg }], {
      accountant: confideAccountant,
    });
    const p = projectNextRound(history, ddg, TEST_DELTA, 1e4, confideAccountant);
    const twice = confideAccountant.releaseRdp(ddg).map((x) => 2 * x);
    expect(p.projectedEpsilon).toBeCloseTo(
      confideAccountant.epsilon(twice, TEST_DELTA).epsilon,
      12,
    );
  });
});

describe('a ledger mixing continuous-Gaussian and distributed-discrete-Gaussian releases', () => {
  const chain = buildChain(
    [
      { site: a, round: 1, mechanism: gaussian },
      { site: b, round: 1, mechanism: gaussian },
      { site: a, round: 2, mechanism: ddg },
      { site: b, round: 2, mechanism: ddg },
    ],
    { accountant: confideAccountant },
  );

  it('verifies: every curve and cumulative epsilon recomputed from the recorded parameters', () => {
    expect(chain[0]!.mechanism).not.toHaveProperty('noise');
    expect(chain[2]!.mechanism).toMatchObject({ noise: 'distributed-discrete-gaussian' });
    const report = verify(chain);
    expect(report.discrepancies).toEqual([]);
    expect(report.ok).toBe(true);
  });

  const curveAndHash = ['RDP_MISMATCH', 'EPSILON_MISMATCH', 'HASH_MISMATCH', 'BAD_SIGNATURE'];
  it.each<[string, (m: MechanismParams) => void, string[]]>([
    [
      'a halved quantization scale',
      (m) => (m.quantizationScale = m.quantizationScale! / 2),
      curveAndHash,
    ],
    ['a larger dimension', (m) => (m.dimension = m.dimension! * 4), curveAndHash],
    [
      'the noise rewritten as a continuous Gaussian',
      (m) => {
        delete m.noise;
        delete m.quantizationScale;
        delete m.dimension;
      },
      curveAndHash,
    ],
    // With shares of sigma ~ 3000 tau underflows, and the bound depends on t only through tau: the
    // curve stays the same, and the signed hash catches the change.
    [
      'more noise-adding survivors',
      (m) => (m.survivorsAssumed = m.survivorsAssumed! + 5),
      ['HASH_MISMATCH', 'BAD_SIGNATURE'],
    ],
  ])('catches %s', (_name, tamper, kinds) => {
    const tampered = chain.map((e) => structuredClone(e));
    tamper(tampered[2]!.mechanism);
    const found = verify(tampered).discrepancies.filter((d) => d.seq === 3);
    expect(found.map((d) => d.kind).sort()).toEqual([...kinds].sort());
  });
});
