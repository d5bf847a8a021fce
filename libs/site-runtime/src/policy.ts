import type { ThreatModel } from '@confide/secure-aggregation';

/**
 * What a site's privacy policy says, as the runtime enforces it. The document (JSON, its schema,
 * its defaults and its errors) is read by the host: apps/client-node's policy.ts.
 */

/** The model kinds a policy may accept. */
export const MODEL_KINDS = ['logistic', 'mlp', 'cnn', 'layers'] as const;
/** A model kind a policy may accept. */
export type ModelKind = (typeof MODEL_KINDS)[number];

/** A site privacy policy with every default filled in. */
export interface SitePolicy {
  readonly secureAggregation: {
    /** Refuse rounds that would reveal this site's contribution outside a secure sum. */
    readonly required: boolean;
    /** The weakest threat model accepted ('semi-malicious' is the stronger). */
    readonly minThreatModel: ThreatModel;
    /** Fraction of sites assumed to collude with the aggregator, for Harary-graph thresholds. */
    readonly adversarialRate: number;
  };
  /** Fewest sites a secure sum may hold when it includes this site's data. */
  readonly minSitesPerSum: number;
  /** Differential privacy the site requires, or null when it requires none. */
  readonly dp: null | {
    readonly level: 'record' | 'site';
    /** Cumulative epsilon the node's accountant refuses to exceed. */
    readonly epsilonLimit: number;
    /** The delta at which epsilon is accounted; a round may not ask for a larger one. */
    readonly delta: number;
    readonly minNoiseMultiplier?: number;
    readonly maxClipNorm?: number;
    /** The most of its budget (in zCDP) it lets statistics and evaluation releases spend. */
    readonly statisticsShare: number;
  };
  readonly models: {
    readonly kinds: readonly ModelKind[];
    readonly maxParameters: number;
  };
  /** May the site's own evaluation metrics reach the aggregator outside a secure sum. */
  readonly revealOwnMetrics: boolean;
  /** How the site reports its number of rows: exactly, or as a lower bound. */
  readonly rowCount: 'exact' | 'lowerBound';
  /** Refuse to talk to an aggregator over plain ws://. */
  readonly requireTls: boolean;
}

/** Semi-malicious rounds add the signed consistency round, so they protect at least as much. */
export const THREAT_RANK: Readonly<Record<ThreatModel, number>> = {
  'semi-honest': 0,
  'semi-malicious': 1,
};
/** The delta a site accounts at when its policy names none: a round may not ask for a larger one. */
export const DEFAULT_SITE_DELTA = 1e-5;
/** The most of its budget a site lets statistics and evaluation spend when its policy names none. */
export const DEFAULT_SITE_STATISTICS_SHARE = 0.1;
