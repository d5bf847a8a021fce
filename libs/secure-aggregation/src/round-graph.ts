import { SecAggError } from './errors';
import { chooseGraphParameters, majorityThreshold, type ThreatModel } from './graph';

/** How a federation asks for its sums' neighbour graph and Shamir threshold. */
export interface SumGraphSettings {
  readonly threatModel: ThreatModel;
  /** 'auto' (the default): the complete graph up to 64 sites, SecAgg+'s Harary graph above. */
  readonly graph?: 'auto' | 'complete' | 'harary';
  /** An explicit threshold (the sites' policies may refuse it). */
  readonly threshold?: number;
  /** An explicit Harary degree. */
  readonly k?: number;
  /** The share of sites expected to drop out, which SecAgg+'s parameters are sized for. */
  readonly dropoutRate: number;
}

/** The neighbour graph and Shamir threshold of one sum. */
export interface SumGraph {
  threshold: number;
  graph: 'complete' | 'harary';
  k?: number;
}

/**
 * The default threshold on the complete graph of `n` sites: a majority of the sites (more than
 * half of each one's n - 1 neighbours), more than two thirds of the neighbours under the
 * semi-malicious threat model: what the sites' default policies require before they share a
 * secret.
 * @example completeThreshold(10, 'semi-malicious') // 7
 */
export function completeThreshold(n: number, threatModel: ThreatModel): number {
  return threatModel === 'semi-malicious'
    ? majorityThreshold(n - 1, threatModel)
    : Math.max(2, Math.floor(n / 2) + 1);
}

/**
 * The graph and threshold of a secure sum over `n` sites: completeThreshold on the complete graph
 * (up to 64 sites under 'auto'), the SecAgg+ parameters above; an explicit threshold or degree
 * wins. Throws BAD_PARAMS when the threshold cannot be met.
 * @example sumGraph(3, { threatModel: 'semi-honest', dropoutRate: 0.1 }) // { threshold: 2, graph: 'complete' }
 */
export function sumGraph(n: number, s: SumGraphSettings): SumGraph {
  if (!Number.isSafeInteger(n) || n < 2) {
    throw new SecAggError('BAD_PARAMS', `it needs at least 2 sites; ${n} selected`);
  }
  const kind = s.graph ?? 'auto';
  let graph: 'complete' | 'harary' = 'complete';
  let k: number | undefined;
  let t = s.threshold ?? completeThreshold(n, s.threatModel);
  if (kind === 'harary' || (kind === 'auto' && n > 64)) {
    const g = chooseGraphParameters(n, { dropoutRate: s.dropoutRate, threatModel: s.threatModel });
    graph = g.graph;
    k = g.graph === 'harary' ? (s.k ?? g.k) : undefined;
    // On a Harary graph too, more than half (two thirds) of each site's k neighbours, which the
    // sites' default policies require on any graph; SecAgg+'s own bound is often below that.
    t =
      s.threshold ??
      (g.graph === 'harary' && k !== undefined
        ? Math.max(g.t, majorityThreshold(k, s.threatModel))
        : completeThreshold(n, s.threatModel));
  }
  if (t > n) {
    throw new SecAggError('BAD_PARAMS', `threshold ${t} is larger than the ${n} selected sites`);
  }
  return { threshold: t, graph, ...(k !== undefined ? { k } : {}) };
}
