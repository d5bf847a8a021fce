import { describe, expect, it } from 'vitest';
import { chooseScale } from '@confide/secure-aggregation';
import type { LedgerEntry } from '@confide/privacy-ledger';
import type { FederationRow } from '../database/rows';
import { secureQuantization } from '../rounds/secure-quantization';
import { integerNoiseFor, nextRelease } from './next-release';

const DP = {
  level: 'site',
  noiseMultiplier: 1.1,
  clipNorm: 0.5,
  delta: 1e-5,
  epsilonLimit: 8,
} as const;
const SECAGG = {
  enabled: true,
  graph: 'auto',
  threatModel: 'semi-honest',
  clip: 10,
  dropoutRate: 0.1,
} as const;

function federation(config: Partial<FederationRow['config']> = {}): FederationRow {
  return {
    id: 'fed',
    name: 'bc',
    modelSpec: { kind: 'logistic', inputDim: 30 },
    strategy: 'fedavg',
    config: {
      dp: DP,
      secureAggregation: SECAGG,
      minSites: 3,
      roundTimeoutMs: 60_000,
      evaluationTimeoutMs: 20_000,
      train: { epochs: 1, batchSize: 32, learningRate: 0.05, optimizer: 'sgd' },
      seed: 7,
      ...config,
    },
    featureStats: null,
    currentModelVersionId: null,
    createdAt: new Date(0),
  };
}

describe('secureQuantization', () => {
  it('leaves headroom for n sites and 10 standard deviations of one noise share', () => {
    const { clip, scale } = secureQuantization(10, null, 5, 3);
    expect(clip).toBe(10);
    expect(scale).toBe(chooseScale(10, 5));
    const dp = secureQuantization(10, { noiseMultiplier: 0.001, clipNorm: 1 }, 5, 4);
    expect(dp.clip).toBe(10 + (10 * 0.001) / 2);
    expect(dp.scale).toBe(chooseScale(dp.clip, 5));
  });

  it('coarsens the scale until a share is drawable, and never shrinks it for fewer sites', () => {
    const { scale } = secureQuantization(10, { noiseMultiplier: 1, clipNorm: 1 }, 3, 2);
    expect(scale ** 2 / 2).toBeLessThanOrEqual(1e14);
    expect((2 * scale) ** 2 / 2).toBeGreaterThan(1e14);
    for (let n = 2; n < 200; n++) {
      const dp = { noiseMultiplier: 0.01, clipNorm: 0.1 };
      expect(secureQuantization(10, dp, n, 2).scale).toBeGreaterThanOrEqual(
        secureQuantization(10, dp, n + 1, 2).scale,
      );
    }
  });
});

describe('nextRelease', () => {
  it('is the distributed discrete Gaussian for site-level DP under secure aggregation', () => {
    const fed = federation();
    const m = nextRelease(fed, [], undefined, 2, { scale: 2 ** 20, dimension: 31 });
    expect(m).toEqual({
      level: 'site',
      samplingRate: 1,
      noiseMultiplier: 1.1,
      steps: 1,
      clipNorm: 0.5,
      survivorsAssumed: 2,
      accountant: 'rdp',
      noise: 'distributed-discrete-gaussian',
      quantizationScale: 2 ** 20,
      dimension: 31,
    });
  });

  it('forecasts with the last such release’s scale, else the scale for minSites sites', () => {
    const fed = federation();
    const fresh = nextRelease(fed, []);
    expect(fresh).toMatchObject({
      survivorsAssumed: 3,
      quantizationScale: secureQuantization(10, DP, 3, 3).scale,
      dimension: 31,
    });
    expect(integerNoiseFor(fed, 3, 3)).toEqual({
      scale: secureQuantization(10, DP, 3, 3).scale,
      dimension: 31,
    });
    const last = {
      mechanism: { ...fresh!, survivorsAssumed: 2, quantizationScale: 2 ** 9 },
    } as LedgerEntry;
    expect(nextRelease(fed, [last])).toMatchObject({
      survivorsAssumed: 2,
      quantizationScale: 2 ** 9,
    });
    // A release of another model (another dimension) says nothing about this one's scale.
    const other = { mechanism: { ...last.mechanism, dimension: 99 } } as LedgerEntry;
    expect(nextRelease(fed, [other])).toMatchObject({
      quantizationScale: secureQuantization(10, DP, 3, 2).scale,
      dimension: 31,
    });
  });

  it('stays the continuous Gaussian without secure aggregation, and at record level', () => {
    const plain = nextRelease(federation({ secureAggregation: { ...SECAGG, enabled: false } }), []);
    expect(plain).not.toHaveProperty('noise');
    expect(plain).toMatchObject({ level: 'site', survivorsAssumed: 3 });
    expect(
      integerNoiseFor(federation({ secureAggregation: { ...SECAGG, enabled: false } }), 3, 2),
    ).toBeNull();
    const record = nextRelease(federation({ dp: { ...DP, level: 'record' } }), [], 320);
    expect(record).toEqual({
      level: 'record',
      samplingRate: 0.1,
      noiseMultiplier: 1.1,
      steps: 10,
      clipNorm: 0.5,
      survivorsAssumed: null,
      accountant: 'rdp',
    });
  });
});
