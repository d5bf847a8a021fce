import { combineEvaluations } from '@confide/federated';
import type { SiteMetrics } from '@confide/protocol';
import type { RoundMetrics } from '../database/rows';

/** Sample-weighted mean of the sites' held-out metrics; null when no site reported. */
export function weightedMetrics(all: SiteMetrics[]): RoundMetrics['evaluation'] {
  return combineEvaluations({ kind: 'by-site', metrics: all });
}
