import {
  chooseGraphParameters,
  FIXED_POINT_CLIP,
  FIXED_POINT_LIMBS,
  FIXED_POINT_SCALE,
  majorityThreshold,
  type SecAggParams,
} from '@confide/secure-aggregation';
import type { FederationRow } from '../database/rows';

/** The neighbour graph and Shamir threshold of a secure sum over `n` sites. */
interface RoundGraph {
  threshold: number;
  graph: 'complete' | 'harary';
  k?: number;
}

/**
 * The default threshold on the complete graph of `n` sites: a majority of the sites (more than half of
 * each one's n - 1 neighbours), more than two thirds of the neighbours under the semi-malicious threat
 * model: what the sites' default policies require before they share a secret.
 * @example completeThreshold(10, 'semi-malicious') // 7
 */
function completeThreshold(n: number, threatModel: 'semi-honest' | 'semi-malicious'): number {
  return threatModel === 'semi-malicious'
    ? majorityThreshold(n - 1, threatModel)
    : Math.max(2, Math.floor(n / 2) + 1);
}

/**
 * The graph and threshold a federation's secure sums use with `n` sites: completeThreshold on the
 * complete graph (up to 64 sites under 'auto'), the SecAgg+ parameters above; an admin's explicit
 * threshold or degree wins (the sites' policies may refuse it). Throws when the threshold cannot be met.
 * @example roundGraph(fed, 3) // { threshold: 2, graph: 'complete' }
 */
export function roundGraph(fed: FederationRow, n: number): RoundGraph {
  const sa = fed.config.secureAggregation!;
  if (n < 2) throw new Error(`it needs at least 2 sites; ${n} selected`);
  let graph: 'complete' | 'harary' = 'complete';
  let k: number | undefined;
  let t = sa.threshold ?? completeThreshold(n, sa.threatModel);
  if (sa.graph === 'harary' || (sa.graph === 'auto' && n > 64)) {
    const g = chooseGraphParameters(n, {
      dropoutRate: sa.dropoutRate,
      threatModel: sa.threatModel,
    });
    graph = g.graph;
    k = g.graph === 'harary' ? (sa.k ?? g.k) : undefined;
    // On a Harary graph too, more than half (two thirds) of each site's k neighbours, which the
    // sites' default policies require on any graph; SecAgg+'s own bound is often below that.
    t =
      sa.threshold ??
      (g.graph === 'harary' && k !== undefined
        ? Math.max(g.t, majorityThreshold(k, sa.threatModel))
        : completeThreshold(n, sa.threatModel));
  }
  if (t > n) throw new Error(`threshold ${t} is larger than the ${n} selected sites`);
  return { threshold: t, graph, ...(k !== undefined ? { k } : {}) };
}

/**
 * The Shamir threshold a round with `n` sites would use, or 2 when none can be had: the fewest
 * survivors a sum can be unmasked with, which site-level noise shares are sized for.
 */
export function roundThreshold(fed: FederationRow, n: number): number {
  try {
    return roundGraph(fed, Math.max(2, n)).threshold;
  } catch {
    return 2;
  }
}

/**
 * The parameters of a statistics or evaluation sum: the round's graph and threat model, with inputs
 * in fixed point (encodeFixedPoint: 16-bit limbs, so the quantisation clip and scale describe the
 * limbs' range, not the values'), and the length of `values` values in limbs.
 */
export function sumParams(
  fed: FederationRow,
  n: number,
  values: number,
): { params: SecAggParams; vectorLength: number } {
  const g = roundGraph(fed, n);
  return {
    params: {
      ...g,
      threatModel: fed.config.secureAggregation!.threatModel,
      clip: FIXED_POINT_CLIP,
      scale: FIXED_POINT_SCALE,
      maxSites: n,
    },
    vectorLength: values * FIXED_POINT_LIMBS,
  };
}
