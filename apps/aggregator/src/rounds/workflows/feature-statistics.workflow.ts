import { combineFeatureStats } from '@confide/ml/spec';
import { ErrorCode, PROTOCOL_VERSION, ProtocolError, type SiteMessage } from '@confide/protocol';
import { randomUUID } from 'node:crypto';
import type { FeatureStatsRow } from '../../database/rows';
import type { FederationRepository } from '../../federations/federation.repository';
import type { RoundContext } from '../round-context';
import type { RoundSumsService } from '../round-sums.service';
import type { SumPort } from '../secure-sum';
import type { ActiveRound } from '../active-round';
import { checkPlainStats, weightingOf } from '../contribution-checks';

/**
 * Federated standardisation statistics, once per federation: a secure sum under secure
 * aggregation (the aggregator learns only the sites' total), in the clear otherwise. The
 * `stats.partial` answers reach the round through RoundMessages.
 */
export class FeatureStatisticsWorkflow {
  constructor(
    private readonly ctx: RoundContext,
    private readonly federations: FederationRepository,
    private readonly sums: RoundSumsService,
    private readonly unmask: SumPort['unmask'],
  ) {}

  /** The statistics, stored with the federation; a string says why the round cannot go on. */
  run(deadline: number): Promise<FeatureStatsRow | string> {
    const ctx = this.ctx;
    return ctx.active.fed.config.secureAggregation?.enabled
      ? this.sums.statistics(ctx.active, ctx.sumPort(this.unmask), deadline)
      : this.inTheClear(deadline);
  }

  /** Feature statistics in the clear, in a federation without secure aggregation (and without DP). */
  private async inTheClear(deadline: number): Promise<FeatureStatsRow | string> {
    const ctx = this.ctx;
    const active = ctx.active;
    const fed = active.fed;
    active.phase = 'stats';
    const msg = {
      v: PROTOCOL_VERSION,
      type: 'stats.request',
      id: randomUUID(),
      runId: active.runId,
      round: active.number,
      federationId: fed.id,
      features: fed.modelSpec.inputDim,
      secureAggregation: null,
      privacy: null,
      featureBounds: fed.config.featureBounds ?? null,
      deadline: new Date(deadline).toISOString(),
    };
    active.statsRequest = msg;
    for (const siteId of active.participants.keys()) ctx.deps.sessions.get(siteId)?.sendJson(msg);
    await ctx.until(
      () =>
        [...active.participants.keys()].every(
          (id) => active.stats.has(id) || !ctx.isPending(id, 'selected'),
        ),
      deadline,
    );
    if (active.stats.size < fed.config.minSites) {
      return `only ${active.stats.size} site(s) reported feature statistics; the federation needs minSites=${fed.config.minSites}`;
    }
    const combined = combineFeatureStats([...active.stats.values()]);
    const stats = {
      mean: combined.mean,
      std: combined.std,
      sites: active.stats.size,
      count: [...active.stats.values()].reduce((a, s) => a + s.count, 0),
    };
    await this.federations.setFeatureStats(fed.id, stats);
    return stats;
  }
}

/** A site's feature statistics in the clear, checked against the federation's bounds. */
export function acceptStatsReport(
  active: ActiveRound,
  siteId: string,
  msg: Extract<SiteMessage, { type: 'stats.report' }>,
): void {
  if (active.phase !== 'stats' || active.stats.has(siteId)) {
    throw new ProtocolError(
      ErrorCode.UNEXPECTED_MESSAGE,
      'feature statistics were not requested now',
    );
  }
  if (msg.sum.length !== msg.sumSq.length) {
    throw new ProtocolError(ErrorCode.MALFORMED_MESSAGE, 'sum and sumSq must have the same length');
  }
  const features = active.fed.modelSpec.inputDim;
  if (msg.sum.length !== features) {
    throw new ProtocolError(
      ErrorCode.SCHEMA_MISMATCH,
      `expected ${features} features, got ${msg.sum.length}`,
    );
  }
  try {
    checkPlainStats(msg, weightingOf(active.fed).cap, active.fed.config.featureBounds ?? null);
  } catch (e) {
    active.exclude(siteId, e as ProtocolError);
    throw e;
  }
  active.stats.set(siteId, { count: msg.count, sum: msg.sum, sumSq: msg.sumSq });
}
