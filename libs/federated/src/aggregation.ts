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

/**
 * For strategies that need each site's update (median, Krum): keeps a copy of every update and its
 * weight beside the running sum, so the round can hand the strategy either. Plain rounds only; the
 * aggregator then sees each update, as the federation's threat model says.
 */
export class IndividualUpdatesCollector implements UpdateCollector {
  readonly kind = 'individual';
  private readonly sum: PlainSumCollector;
  private readonly kept: SiteUpdate[] = [];

  constructor(readonly length: number) {
    this.sum = new PlainSumCollector(length);
  }

  add(update: SiteUpdate): void {
    this.sum.add(update);
    // A copy: the caller's vector may be a view on a frame buffer that is reused or released.
    this.kept.push({ siteId: update.siteId, delta: update.delta.slice(), weight: update.weight });
  }

  has(siteId: string): boolean {
    return this.sum.has(siteId);
  }

  get count(): number {
    return this.sum.count;
  }

  result(): AggregateSum {
    return this.sum.result();
  }

  /** Each site's update and weight, in arrival order. */
  updates(): SiteUpdate[] {
    return [...this.kept];
  }
}

/** sum / totalWeight as float32: the weighted mean update. */
export function meanUpdate(agg: AggregateSum): Float32Array {
  if (!(agg.totalWeight > 0)) throw new Error('cannot average: total weight is zero');
  const out = new Float32Array(agg.sum.length);
  for (let i = 0; i < out.length; i++) out[i] = agg.sum[i]! / agg.totalWeight;
  return out;
}
