import type { AggregateSum } from '@confide/federated';
import type { RoundContext } from '../round-context';
import { plainCollector, type RoundStrategy } from '../round-strategy';

/**
 * Plain training (no secure aggregation): the round.train frame to each selected site, then one
 * update from each by the deadline, folded by the collector the strategy needs (the running sum,
 * or each update for a robust strategy) as RoundMessages receives them.
 */
export class PlainTrainingWorkflow {
  constructor(private readonly ctx: RoundContext) {}

  /** Opens the round's collector before the frame goes out (an early update has somewhere to go). */
  prepare(strategy: RoundStrategy): void {
    this.ctx.active.collector = plainCollector(strategy, this.ctx.active.expectedLength);
  }

  async run(deadline: number): Promise<{ aggregate: AggregateSum } | { abort: string }> {
    const ctx = this.ctx;
    const active = ctx.active;
    active.phase = 'collecting';
    ctx.sendFrameTo('selected', active.trainFrame!);
    await ctx.until(() => ctx.nonePending('selected'), deadline);
    ctx.markUnanswered('selected', 'dropped', 'no update before the deadline or disconnected');
    const collector = active.collector!;
    const minSites = active.fed.config.minSites;
    if (collector.count < minSites) return { abort: ctx.shortfall(collector.count, minSites) };
    return { aggregate: collector.result() };
  }
}
