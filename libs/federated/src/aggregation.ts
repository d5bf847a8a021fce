import { addScaledInto } from './vector';

/** What the server learns from one round: the weighted sum of updates and the total weight. */
export interface AggregateSum {
  /** sum over contributors of weight x update. */
  sum: Float64Array;
  totalWeight: number;
  contributors: string[];
}

/** One site's plain (unmasked) update. */
export interface SiteUpdate {
  siteId: string;
  delta: Float32Array;
  /** The site's weight in the average, its number of training examples. */
  weight: number;
}

/**
 * Turns the updates of a round into an AggregateSum. The plain collector sees each update; a
 * secure-aggregation collector implements the same interface and sees only masked vectors.
 */
export interface UpdateCollector {
  readonly kind: string;
  add(update: SiteUpdate): void;
  has(siteId: string): boolean;
  readonly count: number;
  result(): AggregateSum;
}

/** Sums weight x update in float64 as updates arrive; keeps nothing per site but its id. */
export class PlainSumCollector implements UpdateCollector {
  readonly kind = 'plain';
  private readonly sum: Float64Array;
  private readonly ids: string[] = [];
  private totalWeight = 0;

  constructor(readonly length: number) {
    this.sum = new Float64Array(length);
  }

  add(update: SiteUpdate): void {
    if (this.has(update.siteId)) throw new Error(`site ${update.siteId} already contributed`);
    if (!(update.weight > 0) || !Number.isFinite(update.weight)) {
      throw new Error('an update weight must be a positive finite number');
    }
    addScaledInto(this.sum, update.delta, update.weight);
    this.totalWeight += update.weight;
    this.ids.push(update.siteId);
  }

  has(siteId: string): boolean {
    return this.ids.includes(siteId);
  }

  get count(): number {
    return this.ids.length;
  }

  result(): AggregateSum {
    return { sum: this.sum, totalWeight: this.totalWeight, contributors: [...this.ids] };
  }
}

/** sum / totalWeight as float32: the weighted mean update. */
export function meanUpdate(agg: AggregateSum): Float32Array {
  if (!(agg.totalWeight > 0)) throw new Error('cannot average: total weight is zero');
  const out = new Float32Array(agg.sum.length);
  for (let i = 0; i < out.length; i++) out[i] = agg.sum[i]! / agg.totalWeight;
  return out;
}
