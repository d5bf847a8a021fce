import { describe, expect, it } from 'vitest';
import { ErrorCode } from '@confide/protocol';
import { Admission } from './admission';
import type { RoundOffer } from './policy-check';
import type { SitePolicy } from './policy';

/** A policy as a site without a policy file runs with (apps/client-node's DEFAULT_POLICY). */
const policy: SitePolicy = {
  secureAggregation: { required: true, minThreatModel: 'semi-honest', adversarialRate: 0.05 },
  minSitesPerSum: 3,
  dp: null,
  models: { kinds: ['logistic', 'mlp', 'cnn', 'layers'], maxParameters: 100_000_000 },
  revealOwnMetrics: false,
  rowCount: 'exact',
  requireTls: false,
};

const offer = (over: Partial<Omit<RoundOffer, 'tls'>> = {}): Omit<RoundOffer, 'tls'> => ({
  stage: 'training',
  secureAggregation: { sites: 3, graph: 'complete', threshold: 2, threatModel: 'semi-honest' },
  privacy: { level: 'site', noiseMultiplier: 1, clipNorm: 1, delta: 1e-5 },
  model: { kind: 'mlp', parameters: 100 },
  ...over,
});

const msg = (round: number, over: { deadline?: string; federationId?: string } = {}) => ({
  runId: 'run-1',
  round,
  deadline: over.deadline ?? new Date(Date.now() + 60_000).toISOString(),
  federationId: over.federationId ?? 'fed-1',
});

const gate = (epsilonLimit?: number): Admission =>
  new Admission({ federationId: 'fed-1', policy, tls: true, delta: () => 1e-5, epsilonLimit });

const codeOf = (f: () => void): string | null => {
  try {
    f();
    return null;
  } catch (e) {
    return (e as { code: string }).code;
  }
};

describe('Admission', () => {
  it('admits a fresh round that its policy allows', () => {
    expect(codeOf(() => gate().admit(msg(1), offer()))).toBeNull();
  });

  it('refuses a configuration past its deadline (a replayed or delayed message)', () => {
    const late = msg(1, { deadline: new Date(Date.now() - 1).toISOString() });
    expect(codeOf(() => gate().admit(late, offer()))).toBe(ErrorCode.STALE_CONFIGURATION);
  });

  it('refuses an earlier round of a run it has trained in', () => {
    const g = gate();
    g.trained('run-1', 5);
    expect(g.trainedIn('run-1', 5)).toBe(true);
    expect(codeOf(() => g.admit(msg(4), offer()))).toBe(ErrorCode.STALE_CONFIGURATION);
    expect(codeOf(() => g.admit(msg(5), offer()))).toBeNull();
  });

  it('refuses another federation, a larger delta, a policy breach and rounds without DP under a limit', () => {
    expect(codeOf(() => gate().admit(msg(1, { federationId: 'fed-2' }), offer()))).toBe(
      ErrorCode.UNEXPECTED_MESSAGE,
    );
    const loose = offer({
      privacy: { level: 'site', noiseMultiplier: 1, clipNorm: 1, delta: 1e-3 },
    });
    expect(codeOf(() => gate().admit(msg(1), loose))).toBe(ErrorCode.POLICY_DELTA);
    expect(codeOf(() => gate().admit(msg(1), offer({ secureAggregation: null })))).toBe(
      'POLICY_SECURE_AGGREGATION',
    );
    expect(codeOf(() => gate(3).admit(msg(1), offer({ privacy: null })))).toBe(
      ErrorCode.POLICY_DP_REQUIRED,
    );
    expect(codeOf(() => gate().admit(msg(1), offer({ privacy: null })))).toBeNull();
  });
});
