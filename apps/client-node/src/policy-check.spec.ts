import { describe, expect, it } from 'vitest';
import { chooseGraphParameters, majorityThreshold } from '@confide/secure-aggregation';
import { DEFAULT_POLICY, parsePolicy, type SitePolicy } from './policy';
import { checkRound, type RoundOffer } from '@confide/site-runtime';

type SecAgg = NonNullable<RoundOffer['secureAggregation']>;

function complete(sites: number, threshold: number, more: Partial<SecAgg> = {}): SecAgg {
  return { sites, graph: 'complete', threshold, threatModel: 'semi-honest', ...more };
}

function offer(over: Partial<RoundOffer> = {}): RoundOffer {
  return {
    stage: 'training',
    tls: true,
    secureAggregation: complete(10, 6),
    privacy: null,
    model: { kind: 'mlp', parameters: 10_000 },
    ...over,
  };
}

const dpPolicy = (dp: Record<string, unknown>, more: Record<string, unknown> = {}): SitePolicy =>
  parsePolicy({ dp: { level: 'site', epsilonLimit: 5, ...dp }, ...more });
const privacy = (
  over: Partial<NonNullable<RoundOffer['privacy']>> = {},
): NonNullable<RoundOffer['privacy']> => ({
  level: 'site',
  noiseMultiplier: 1,
  clipNorm: 1,
  delta: 1e-5,
  ...over,
});

/** The aggregator's default secure aggregation for n sites (round-orchestrator.service.ts). */
function aggregatorDefault(n: number, threatModel: SecAgg['threatModel']): SecAgg {
  if (n <= 64) {
    return complete(n, Math.max(2, Math.floor(n / 2) + 1), { threatModel });
  }
  // As the aggregator chooses (apps/aggregator secagg-params): SecAgg+'s parameters, the threshold
  // raised to a majority of each site's k neighbours.
  const g = chooseGraphParameters(n, { dropoutRate: 0.1, threatModel });
  const threshold = Math.max(g.t, majorityThreshold(g.k, threatModel));
  return { sites: n, graph: g.graph, k: g.k, threshold, threatModel };
}

describe('checkRound', () => {
  const rule = (policy: SitePolicy, o: RoundOffer): string | undefined =>
    checkRound(policy, o)?.rule;

  it("accepts the aggregator's default semi-honest rounds of 4, 10 and 64 sites under the default policy", () => {
    for (const n of [4, 10, 64]) {
      const sa = aggregatorDefault(n, 'semi-honest');
      expect(sa.threshold).toBe(Math.floor(n / 2) + 1);
      expect(chooseGraphParameters(n, { dropoutRate: 0.1, threatModel: 'semi-honest' })).toEqual({
        graph: 'complete',
        k: n - 1,
        t: sa.threshold,
      });
      expect(checkRound(DEFAULT_POLICY, offer({ secureAggregation: sa })), `${n}`).toBeNull();
    }
  });

  it("accepts the aggregator's Harary rounds of 100 and 1000 sites under both threat models", () => {
    const semiMalicious = parsePolicy({ secureAggregation: { minThreatModel: 'semi-malicious' } });
    for (const n of [100, 1000]) {
      for (const threatModel of ['semi-honest', 'semi-malicious'] as const) {
        const sa = aggregatorDefault(n, threatModel);
        expect(sa.graph).toBe('harary');
        expect(checkRound(DEFAULT_POLICY, offer({ secureAggregation: sa }))).toBeNull();
        if (threatModel === 'semi-malicious') {
          expect(checkRound(semiMalicious, offer({ secureAggregation: sa }))).toBeNull();
        }
      }
    }
  });

  it('accepts 3 sites with threshold 2 under the default policy (the sum after dropouts is checked at unmasking)', () => {
    expect(checkRound(DEFAULT_POLICY, offer({ secureAggregation: complete(3, 2) }))).toBeNull();
    expect(checkRound(DEFAULT_POLICY, offer({ secureAggregation: complete(3, 3) }))).toBeNull();
  });

  it('refuses a round without TLS when the policy requires TLS', () => {
    const policy = parsePolicy({ requireTls: true });
    expect(checkRound(policy, offer({ tls: false }))).toEqual({
      rule: 'TLS',
      code: 'POLICY_TLS',
      message: expect.stringContaining('requires wss://') as string,
    });
    expect(checkRound(policy, offer({ tls: true }))).toBeNull();
    expect(checkRound(DEFAULT_POLICY, offer({ tls: false }))).toBeNull();
  });

  it('refuses a round without secure aggregation when the policy requires it', () => {
    for (const stage of ['statistics', 'training'] as const) {
      const v = checkRound(DEFAULT_POLICY, offer({ stage, secureAggregation: null }));
      expect(v?.code).toBe('POLICY_SECURE_AGGREGATION');
      expect(v?.message).toContain(`the ${stage} round runs without secure aggregation`);
    }
  });

  it('allows a round without secure aggregation, of any size, when the policy does not require it', () => {
    const open = parsePolicy({ secureAggregation: { required: false }, minSitesPerSum: 50 });
    expect(checkRound(open, offer({ secureAggregation: null }))).toBeNull();
  });

  it('lets an evaluation round reveal the site’s own metrics only when revealOwnMetrics is set', () => {
    const reveal = parsePolicy({ revealOwnMetrics: true });
    const clear = { secureAggregation: null };
    expect(checkRound(reveal, offer({ ...clear, stage: 'evaluation' }))).toBeNull();
    expect(rule(reveal, offer({ ...clear, stage: 'training' }))).toBe('SECURE_AGGREGATION');
    expect(rule(reveal, offer({ ...clear, stage: 'statistics' }))).toBe('SECURE_AGGREGATION');
    // Without revealOwnMetrics an evaluation in the clear is refused, whether or not the policy
    // requires secure aggregation for its updates.
    expect(rule(DEFAULT_POLICY, offer({ ...clear, stage: 'evaluation' }))).toBe(
      'REVEAL_OWN_METRICS',
    );
    const open = parsePolicy({ secureAggregation: { required: false } });
    expect(rule(open, offer({ ...clear, stage: 'evaluation' }))).toBe('REVEAL_OWN_METRICS');
    expect(checkRound(open, offer({ ...clear, stage: 'training' }))).toBeNull();
  });

  it('refuses a semi-honest round when the policy requires semi-malicious secure aggregation', () => {
    const policy = parsePolicy({ secureAggregation: { minThreatModel: 'semi-malicious' } });
    expect(checkRound(policy, offer())).toEqual({
      rule: 'THREAT_MODEL',
      code: 'POLICY_THREAT_MODEL',
      message: expect.stringContaining('requires semi-malicious or stronger') as string,
    });
    const stronger = offer({
      secureAggregation: complete(10, 7, { threatModel: 'semi-malicious' }),
    });
    expect(checkRound(policy, stronger)).toBeNull();
    expect(checkRound(DEFAULT_POLICY, stronger)).toBeNull();
  });

  it('refuses a complete-graph threshold of half the neighbours or less, and accepts one more', () => {
    // 7 sites: 6 neighbours each.
    expect(checkRound(DEFAULT_POLICY, offer({ secureAggregation: complete(7, 3) }))).toEqual({
      rule: 'THRESHOLD',
      code: 'POLICY_THRESHOLD',
      message: expect.stringContaining(
        "the round's Shamir threshold 3 is not more than half of this site's 6 neighbours",
      ) as string,
    });
    expect(checkRound(DEFAULT_POLICY, offer({ secureAggregation: complete(7, 4) }))).toBeNull();
    // 5 sites: 4 neighbours; 2 is exactly half.
    expect(rule(DEFAULT_POLICY, offer({ secureAggregation: complete(5, 2) }))).toBe('THRESHOLD');
    expect(checkRound(DEFAULT_POLICY, offer({ secureAggregation: complete(5, 3) }))).toBeNull();
  });

  it('refuses a semi-malicious complete-graph threshold of two thirds of the neighbours or less', () => {
    const semi = (sites: number, t: number): RoundOffer =>
      offer({ secureAggregation: complete(sites, t, { threatModel: 'semi-malicious' }) });
    // 10 sites: 9 neighbours, two thirds is 6.
    expect(checkRound(DEFAULT_POLICY, semi(10, 6))?.message).toContain(
      "is not more than two thirds of this site's 9 neighbours",
    );
    expect(checkRound(DEFAULT_POLICY, semi(10, 7))).toBeNull();
    // chooseGraphParameters' semi-malicious complete graph, t > (n + gamma n) / 2, is below that.
    const t = chooseGraphParameters(10, { dropoutRate: 0.1, threatModel: 'semi-malicious' }).t;
    expect(t).toBe(6);
    expect(rule(DEFAULT_POLICY, semi(10, t))).toBe('THRESHOLD');
  });

  it('treats a Harary graph whose degree reaches every other site as the complete graph', () => {
    const sa = (threshold: number): RoundOffer =>
      offer({
        secureAggregation: {
          sites: 9,
          graph: 'harary',
          k: 8,
          threshold,
          threatModel: 'semi-honest',
        },
      });
    expect(rule(DEFAULT_POLICY, sa(4))).toBe('THRESHOLD');
    expect(checkRound(DEFAULT_POLICY, sa(5))).toBeNull();
  });

  it('refuses a Harary threshold below what chooseGraphParameters requires for the announced degree', () => {
    const harary = (threshold: number, threatModel: SecAgg['threatModel']): RoundOffer =>
      offer({ secureAggregation: { sites: 1000, graph: 'harary', k: 36, threshold, threatModel } });
    expect(checkRound(DEFAULT_POLICY, harary(19, 'semi-honest'))).toBeNull();
    expect(checkRound(DEFAULT_POLICY, harary(18, 'semi-honest'))).toEqual({
      rule: 'THRESHOLD',
      code: 'POLICY_THRESHOLD',
      message: expect.stringContaining(
        "the round's Shamir threshold 18 is below 19, the fewest shares",
      ) as string,
    });
    // The same degree needs a larger threshold against a semi-malicious server.
    expect(rule(DEFAULT_POLICY, harary(19, 'semi-malicious'))).toBe('THRESHOLD');
    // A site that assumes more colluders asks for more.
    const wary = parsePolicy({ secureAggregation: { adversarialRate: 0.2 } });
    expect(rule(wary, harary(19, 'semi-honest'))).toBe('THRESHOLD');
  });

  it('refuses a Harary threshold of half its neighbours or less, even where SecAgg+’s bound allows it', () => {
    // 100 sites at 10% dropout: SecAgg+ picks k = 16, t = 6; six of sixteen neighbours is not a
    // majority, so half of them could reveal self-mask shares and the other half mask-key shares.
    const g = chooseGraphParameters(100, { dropoutRate: 0.1, threatModel: 'semi-honest' });
    expect([g.k, g.t]).toEqual([16, 6]);
    const harary = (t: number): RoundOffer =>
      offer({
        secureAggregation: {
          sites: 100,
          graph: 'harary',
          k: g.k,
          threshold: t,
          threatModel: 'semi-honest',
        },
      });
    expect(checkRound(DEFAULT_POLICY, harary(g.t))?.message).toContain(
      "is not more than half of this site's 16 neighbours",
    );
    expect(rule(DEFAULT_POLICY, harary(8))).toBe('THRESHOLD');
    expect(checkRound(DEFAULT_POLICY, harary(9))).toBeNull();
  });

  it('refuses a Harary graph too sparse to keep the honest sites connected, or without a degree', () => {
    const sparse = offer({
      secureAggregation: {
        sites: 1000,
        graph: 'harary',
        k: 2,
        threshold: 3,
        threatModel: 'semi-honest',
      },
    });
    expect(checkRound(DEFAULT_POLICY, sparse)).toEqual({
      rule: 'GRAPH',
      code: 'POLICY_GRAPH',
      message: expect.stringContaining('degree 2 on 1000 sites is too sparse') as string,
    });
    for (const k of [undefined, 3, 0]) {
      const o = offer({
        secureAggregation: {
          sites: 1000,
          graph: 'harary',
          k,
          threshold: 19,
          threatModel: 'semi-honest',
        },
      });
      expect(rule(DEFAULT_POLICY, o), String(k)).toBe('GRAPH');
    }
  });

  it('refuses a round whose numbers it cannot check instead of letting them through', () => {
    for (const sa of [complete(10, Number.NaN), complete(Number.NaN, 6), complete(10.5, 6)]) {
      expect(rule(DEFAULT_POLICY, offer({ secureAggregation: sa }))).toBe('GRAPH');
    }
    const unknownModel = { ...complete(10, 6), threatModel: 'honest' } as unknown as SecAgg;
    expect(rule(DEFAULT_POLICY, offer({ secureAggregation: unknownModel }))).toBe('THREAT_MODEL');
  });

  it('refuses a secure sum over fewer sites than the policy minimum', () => {
    const policy = parsePolicy({ minSitesPerSum: 5 });
    expect(checkRound(policy, offer({ secureAggregation: complete(4, 3) }))).toEqual({
      rule: 'MIN_SITES_PER_SUM',
      code: 'POLICY_MIN_SITES_PER_SUM',
      message:
        "the round has 4 sites; this site's policy releases its data only in sums over at least 5 sites",
    });
    // 6 sites with threshold 4: the round may go ahead; at unmasking the node counts the survivors.
    expect(checkRound(policy, offer({ secureAggregation: complete(6, 4) }))).toBeNull();
    // It applies whenever the round is a secure sum, required or not.
    const optional = parsePolicy({ minSitesPerSum: 5, secureAggregation: { required: false } });
    expect(rule(optional, offer({ secureAggregation: complete(4, 3) }))).toBe('MIN_SITES_PER_SUM');
  });

  it('refuses a round without differential privacy when the policy requires it, at every stage', () => {
    const policy = dpPolicy({});
    for (const stage of ['statistics', 'training', 'evaluation'] as const) {
      expect(checkRound(policy, offer({ stage, privacy: null }))).toEqual({
        rule: 'DP_REQUIRED',
        code: 'POLICY_DP_REQUIRED',
        message: "the round has no differential privacy; this site's policy requires site-level DP",
      });
    }
    expect(checkRound(policy, offer({ privacy: privacy() }))).toBeNull();
    expect(checkRound(DEFAULT_POLICY, offer({ privacy: null }))).toBeNull();
  });

  it('refuses record-level DP when the policy requires site-level DP, and the reverse', () => {
    expect(rule(dpPolicy({}), offer({ privacy: privacy({ level: 'record' }) }))).toBe('DP_LEVEL');
    expect(
      checkRound(dpPolicy({ level: 'record' }), offer({ privacy: privacy({ level: 'site' }) })),
    ).toMatchObject({
      code: 'POLICY_DP_LEVEL',
      message: expect.stringContaining('different unit') as string,
    });
  });

  it('refuses a noise multiplier below the policy minimum', () => {
    const policy = dpPolicy({ minNoiseMultiplier: 1.1 });
    expect(checkRound(policy, offer({ privacy: privacy({ noiseMultiplier: 1.09 }) }))).toEqual({
      rule: 'NOISE',
      code: 'POLICY_NOISE',
      message: "the round's noise multiplier 1.09 is below this site's minimum 1.1",
    });
    expect(checkRound(policy, offer({ privacy: privacy({ noiseMultiplier: 1.1 }) }))).toBeNull();
    expect(
      checkRound(dpPolicy({}), offer({ privacy: privacy({ noiseMultiplier: 0.1 }) })),
    ).toBeNull();
  });

  it('refuses a clipping norm above the policy maximum', () => {
    const policy = dpPolicy({ maxClipNorm: 1 });
    expect(rule(policy, offer({ privacy: privacy({ clipNorm: 1.5 }) }))).toBe('CLIP');
    expect(checkRound(policy, offer({ privacy: privacy({ clipNorm: 1 }) }))).toBeNull();
    expect(checkRound(dpPolicy({}), offer({ privacy: privacy({ clipNorm: 100 }) }))).toBeNull();
  });

  it('refuses a delta larger than the policy delta', () => {
    const policy = dpPolicy({ delta: 1e-6 });
    expect(checkRound(policy, offer({ privacy: privacy({ delta: 1e-5 }) }))).toMatchObject({
      rule: 'DELTA',
      message: expect.stringContaining('a larger delta is a weaker guarantee') as string,
    });
    expect(checkRound(policy, offer({ privacy: privacy({ delta: 1e-6 }) }))).toBeNull();
    expect(checkRound(policy, offer({ privacy: privacy({ delta: 1e-7 }) }))).toBeNull();
  });

  it('leaves the epsilon limit to the accountant', () => {
    const tiny = dpPolicy({ epsilonLimit: 1e-9 });
    expect(checkRound(tiny, offer({ privacy: privacy({ noiseMultiplier: 0.01 }) }))).toBeNull();
  });

  it('refuses to train a model kind the policy does not list', () => {
    const policy = parsePolicy({ models: { kinds: ['logistic'] } });
    expect(checkRound(policy, offer({ model: { kind: 'mlp', parameters: 10 } }))).toEqual({
      rule: 'MODEL_KIND',
      code: 'POLICY_MODEL_KIND',
      message: 'the round trains a "mlp" model; this site\'s policy accepts logistic',
    });
    expect(checkRound(policy, offer({ model: { kind: 'logistic', parameters: 10 } }))).toBeNull();
    const { model: _, ...noModel } = offer();
    expect(rule(policy, noModel)).toBe('MODEL_KIND');
    // Evaluation and statistics train nothing.
    expect(checkRound(policy, offer({ stage: 'evaluation' }))).toBeNull();
  });

  it('refuses to train a model larger than the policy allows', () => {
    const policy = parsePolicy({ models: { maxParameters: 1000 } });
    expect(rule(policy, offer({ model: { kind: 'mlp', parameters: 1001 } }))).toBe('MODEL_SIZE');
    expect(checkRound(policy, offer({ model: { kind: 'mlp', parameters: 1000 } }))).toBeNull();
    expect(checkRound(policy, offer({ stage: 'statistics' }))).toBeNull();
  });

  it('reports the first broken rule, in the order TLS, secure aggregation, DP, model', () => {
    const policy = parsePolicy({
      requireTls: true,
      secureAggregation: { minThreatModel: 'semi-malicious' },
      minSitesPerSum: 5,
      dp: { level: 'record', epsilonLimit: 1 },
      models: { kinds: ['logistic'] },
    });
    const sm = 'semi-malicious' as const;
    // Each step mends the rule the previous one reported; the next rule in order shows up.
    const steps: [Partial<RoundOffer>, string][] = [
      [{}, 'TLS'],
      [{ tls: true }, 'SECURE_AGGREGATION'],
      [
        {
          secureAggregation: {
            sites: 1000,
            graph: 'harary',
            k: 2,
            threshold: 3,
            threatModel: 'semi-honest',
          },
        },
        'THREAT_MODEL',
      ],
      [
        {
          secureAggregation: { sites: 1000, graph: 'harary', k: 2, threshold: 3, threatModel: sm },
        },
        'GRAPH',
      ],
      [{ secureAggregation: complete(4, 2, { threatModel: sm }) }, 'THRESHOLD'],
      [{ secureAggregation: complete(4, 3, { threatModel: sm }) }, 'MIN_SITES_PER_SUM'],
      [{ secureAggregation: complete(6, 5, { threatModel: sm }) }, 'DP_LEVEL'],
      [{ privacy: privacy({ level: 'record' }) }, 'MODEL_KIND'],
      [{ model: { kind: 'logistic', parameters: 10 } }, 'none'],
    ];
    let o = offer({ tls: false, secureAggregation: null, privacy: privacy({ level: 'site' }) });
    const seen: string[] = [];
    for (const [mend] of steps) {
      o = { ...o, ...mend };
      seen.push(rule(policy, o) ?? 'none');
    }
    expect(seen).toEqual(steps.map(([, expected]) => expected));
  });
});
