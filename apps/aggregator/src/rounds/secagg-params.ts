import {
  FIXED_POINT_CLIP,
  FIXED_POINT_LIMBS,
  FIXED_POINT_SCALE,
  sumGraph,
  type SecAggParams,
  type SumGraph,
} from '@confide/secure-aggregation';
import type { FederationRow } from '../database/rows';

/**
 * The graph and threshold a federation's secure sums use with `n` sites (sumGraph with the
 * federation's settings); throws when the threshold cannot be met.
 * @example roundGraph(fed, 3) // { threshold: 2, graph: 'complete' }
 */
export function roundGraph(fed: FederationRow, n: number): SumGraph {
  const sa = fed.config.secureAggregation!;
  return sumGraph(n, {
    threatModel: sa.threatModel,
    graph: sa.graph,
    dropoutRate: sa.dropoutRate,
    ...(sa.threshold !== undefined ? { threshold: sa.threshold } : {}),
    ...(sa.k !== undefined ? { k: sa.k } : {}),
  });
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
