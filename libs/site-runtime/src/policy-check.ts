import { hararyRequirements } from '@confide/secure-aggregation';
import { THREAT_RANK, type SitePolicy } from './policy';

/**
 * The pure check of a round against a site's policy (policy.ts): what the aggregator proposes, the
 * site disposes. Everything the node does with its data waits for this to return null.
 */

/** The rules of a site policy a round can break. */
export type PolicyRule =
  | 'SECURE_AGGREGATION'
  | 'THRESHOLD'
  | 'THREAT_MODEL'
  | 'GRAPH'
  | 'MIN_SITES_PER_SUM'
  | 'DP_REQUIRED'
  | 'DP_LEVEL'
  | 'NOISE'
  | 'CLIP'
  | 'DELTA'
  | 'MODEL_KIND'
  | 'MODEL_SIZE'
  | 'REVEAL_OWN_METRICS'
  | 'TLS';

/** Why a round is refused: the rule, its stable code and what the round offered against what the policy allows. */
export interface PolicyViolation {
  rule: PolicyRule;
  code: `POLICY_${PolicyRule}`;
  message: string;
}

/** What the aggregator proposes for a round, as far as the site's policy is concerned. */
export interface RoundOffer {
  stage: 'statistics' | 'training' | 'evaluation';
  /** Whether the connection to the aggregator is TLS (wss://). */
  tls: boolean;
  secureAggregation: null | {
    sites: number;
    graph: 'complete' | 'harary';
    k?: number;
    threshold: number;
    threatModel: 'semi-honest' | 'semi-malicious';
  };
  privacy: null | {
    level: 'record' | 'site';
    noiseMultiplier: number;
    /** The update's clip norm; null for statistics and evaluation sums, whose layout fixes it. */
    clipNorm: number | null;
    delta: number;
  };
  /** The model to train (training only). */
  model?: { kind: string; parameters: number };
}

function violation(rule: PolicyRule, message: string): PolicyViolation {
  return { rule, code: `POLICY_${rule}`, message };
}

// Comparisons below are written as "refuse unless the safe condition holds", so that a NaN or a
// missing number in an offer is refused rather than slipping through.
function checkSecureAggregation(
  policy: SitePolicy,
  sa: NonNullable<RoundOffer['secureAggregation']>,
): PolicyViolation | null {
  const { sites, threshold, threatModel } = sa;
  const offered = THREAT_RANK[threatModel] as number | undefined;
  if (!(offered !== undefined && offered >= THREAT_RANK[policy.secureAggregation.minThreatModel])) {
    return violation(
      'THREAT_MODEL',
      `the round runs secure aggregation under the ${String(threatModel)} threat model; this site's policy requires ${policy.secureAggregation.minThreatModel} or stronger`,
    );
  }
  if (
    !(Number.isSafeInteger(sites) && sites >= 2) ||
    !(Number.isSafeInteger(threshold) && threshold >= 1)
  ) {
    return violation(
      'GRAPH',
      `the round announces secure aggregation over ${sites} sites with threshold ${threshold}; this site can only check whole numbers of at least 2 sites and a threshold of at least 1`,
    );
  }
  const malicious = threatModel === 'semi-malicious';
  const complete =
    sa.graph === 'complete' || (sa.graph === 'harary' && sa.k !== undefined && sa.k >= sites - 1);
  // Bonawitz et al. 2017: a threshold above half of a site's neighbours (semi-honest) or two thirds
  // of them (active server) means no two disjoint sets of answers, one per kind of share, can be
  // collected for one site: its update cannot be unmasked alone. It holds on any graph.
  const majority = (neighbours: number): PolicyViolation | null =>
    (malicious ? 3 * threshold > 2 * neighbours : 2 * threshold > neighbours)
      ? null
      : violation(
          'THRESHOLD',
          `the round's Shamir threshold ${threshold} is not more than ${malicious ? 'two thirds' : 'half'} of this site's ${neighbours} neighbours (${threatModel} secure aggregation on ${complete ? `the complete graph of ${sites} sites` : `a Harary graph of degree ${String(sa.k)}`})`,
        );
  if (complete) {
    const v = majority(sites - 1);
    if (v) return v;
  } else if (sa.graph === 'harary') {
    const k = sa.k;
    if (
      !(sites >= 4 && sites <= 1_000_000) ||
      k === undefined ||
      !(Number.isSafeInteger(k) && k >= 2 && k % 2 === 0)
    ) {
      return violation(
        'GRAPH',
        `the round announces a Harary graph of ${sites} sites with degree ${String(k)}; this site can only check an even degree of at least 2 on 4 to 1000000 sites`,
      );
    }
    const req = hararyRequirements(sites, k, {
      threatModel,
      adversarialRate: policy.secureAggregation.adversarialRate,
    });
    if (!req.connected) {
      return violation(
        'GRAPH',
        `the round's Harary graph of degree ${k} on ${sites} sites is too sparse: with ${policy.secureAggregation.adversarialRate} of the sites colluding, the honest sites could be cut apart (SecAgg+, Bell et al. 2020)`,
      );
    }
    if (!(threshold >= req.minThreshold)) {
      return violation(
        'THRESHOLD',
        `the round's Shamir threshold ${threshold} is below ${req.minThreshold}, the fewest shares that keep this site's secrets from its colluding neighbours in a Harary graph of degree ${k} on ${sites} sites (${threatModel}, ${policy.secureAggregation.adversarialRate} of the sites colluding)`,
      );
    }
    const v = majority(k);
    if (v) return v;
  } else {
    return violation('GRAPH', `the round announces an unknown graph ${JSON.stringify(sa.graph)}`);
  }
  const min = policy.minSitesPerSum;
  if (!(sites >= min)) {
    return violation(
      'MIN_SITES_PER_SUM',
      `the round has ${sites} sites; this site's policy releases its data only in sums over at least ${min} sites`,
    );
  }
  // The sum left after dropouts is checked when it is unmasked: the node refuses to reveal its shares
  // for a sum over fewer than minSitesPerSum survivors (SecAggClient's minSurvivors).
  return null;
}

function checkPrivacy(
  dp: NonNullable<SitePolicy['dp']>,
  privacy: RoundOffer['privacy'],
): PolicyViolation | null {
  if (privacy === null) {
    return violation(
      'DP_REQUIRED',
      `the round has no differential privacy; this site's policy requires ${dp.level}-level DP`,
    );
  }
  // Record-level and site-level DP protect different units (a patient, an institution): neither
  // implies the other, so the level must match exactly.
  if (privacy.level !== dp.level) {
    return violation(
      'DP_LEVEL',
      `the round offers ${String(privacy.level)}-level DP; this site's policy requires ${dp.level}-level DP, which protects a different unit`,
    );
  }
  if (dp.minNoiseMultiplier !== undefined && !(privacy.noiseMultiplier >= dp.minNoiseMultiplier)) {
    return violation(
      'NOISE',
      `the round's noise multiplier ${privacy.noiseMultiplier} is below this site's minimum ${dp.minNoiseMultiplier}`,
    );
  }
  if (
    dp.maxClipNorm !== undefined &&
    privacy.clipNorm !== null &&
    !(privacy.clipNorm <= dp.maxClipNorm)
  ) {
    return violation(
      'CLIP',
      `the round's clipping norm ${privacy.clipNorm} is above this site's maximum ${dp.maxClipNorm} (a larger norm lets one contribution weigh more against the same noise)`,
    );
  }
  if (!(privacy.delta <= dp.delta)) {
    return violation(
      'DELTA',
      `the round's delta ${privacy.delta} is larger than this site's delta ${dp.delta} (a larger delta is a weaker guarantee)`,
    );
  }
  return null;
}

function checkModel(policy: SitePolicy, model: RoundOffer['model']): PolicyViolation | null {
  const kinds = policy.models.kinds as readonly string[];
  if (model === undefined || !kinds.includes(model.kind)) {
    return violation(
      'MODEL_KIND',
      `${model === undefined ? 'the training round names no model kind' : `the round trains a ${JSON.stringify(model.kind)} model`}; this site's policy accepts ${kinds.join(', ')}`,
    );
  }
  if (!(model.parameters <= policy.models.maxParameters)) {
    return violation(
      'MODEL_SIZE',
      `the round's model has ${model.parameters} parameters; this site's policy accepts at most ${policy.models.maxParameters}`,
    );
  }
  return null;
}

/**
 * The first rule of the site's policy that a round breaks, or null when the site may take part.
 * Checked in order: TLS, secure aggregation (required, threat model, graph, threshold, sites per sum),
 * differential privacy (required, level, noise, clip, delta), model (training only). The epsilon limit
 * is not checked here: the node's accountant checks it against its ledger.
 *
 * @example
 * checkRound(DEFAULT_POLICY, { stage: 'statistics', tls: true, secureAggregation: null, privacy: null });
 * // { rule: 'SECURE_AGGREGATION', code: 'POLICY_SECURE_AGGREGATION', message: '...' }
 */
export function checkRound(policy: SitePolicy, offer: RoundOffer): PolicyViolation | null {
  if (policy.requireTls && offer.tls !== true) {
    return violation(
      'TLS',
      "the connection to the aggregator is not TLS (ws://); this site's policy requires wss://",
    );
  }
  if (offer.secureAggregation === null) {
    // An evaluation round in the clear reveals this site's own metrics: only revealOwnMetrics allows
    // that, whatever else the policy says. Without secure aggregation nothing is a sum, so
    // minSitesPerSum does not apply: a policy that does not require secure aggregation allows
    // revealing the site's own contribution.
    if (offer.stage === 'evaluation' && !policy.revealOwnMetrics) {
      return violation(
        'REVEAL_OWN_METRICS',
        "the evaluation runs without secure aggregation, so the aggregator would see this site's own metrics; this site's policy keeps them inside secure sums (revealOwnMetrics is false)",
      );
    }
    const exempt = offer.stage === 'evaluation';
    if (policy.secureAggregation.required && !exempt) {
      return violation(
        'SECURE_AGGREGATION',
        `the ${offer.stage} round runs without secure aggregation, so the aggregator would see this site's own ${offer.stage === 'training' ? 'update' : offer.stage === 'statistics' ? 'statistics' : 'metrics'}; this site's policy requires secure aggregation`,
      );
    }
  } else {
    const v = checkSecureAggregation(policy, offer.secureAggregation);
    if (v) return v;
  }
  if (policy.dp !== null) {
    const v = checkPrivacy(policy.dp, offer.privacy);
    if (v) return v;
  }
  if (offer.stage === 'training') return checkModel(policy, offer.model);
  return null;
}
