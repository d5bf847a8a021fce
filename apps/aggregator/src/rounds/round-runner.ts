import { randomUUID } from 'node:crypto';
import { parameterCount } from '@confide/ml/spec';
import { assertFinite, PROTOCOL_VERSION } from '@confide/protocol';
import type { AggregateSum } from '@confide/federated';
import { ActiveRound } from './active-round';
import { errorText, RoundContext, Stopped, type RoundDeps, type RunLoop } from './round-context';
import {
  aggregateRound,
  roundStrategy,
  trainInstructions,
  type RoundStrategy,
} from './round-strategy';
import { DEFAULT_STATISTICS_SHARE, type RoundSumsService } from './round-sums.service';
import type { SumPort } from './secure-sum';
import { weightingOf } from './contribution-checks';
import { EvaluationWorkflow } from './workflows/evaluation.workflow';
import { FeatureStatisticsWorkflow } from './workflows/feature-statistics.workflow';
import { PlainTrainingWorkflow } from './workflows/plain-training.workflow';
import { SecureTrainingWorkflow, type SecureSetup } from './workflows/secure-training.workflow';
import { SelectionWorkflow, type SelectionDeps } from './workflows/selection.workflow';
import type { FederationRow, FeatureStatsRow, RoundMetrics } from '../database/rows';
import type { FederationRepository } from '../federations/federation.repository';
import type { ModelVersionRepository } from '../models/model-version.repository';
import type { MetricsService } from '../observability/metrics.service';

/** What the round runner needs beyond what every workflow reaches through its context. */
export interface RoundRunnerDeps extends RoundDeps, SelectionDeps {
  readonly federations: FederationRepository;
  readonly models: ModelVersionRepository;
  readonly metrics: MetricsService;
  readonly sums: RoundSumsService;
  /** The latest model of each federation, kept so a round does not re-read what the last one wrote. */
  readonly latestWeights: Map<string, { versionId: string; weights: Float32Array }>;
  /** Each federation's total record count from its last secure sum, the next weight normaliser. */
  readonly totalRecords: Map<string, number>;
  readonly unmask: SumPort['unmask'];
}

export interface RoundOutcome {
  number: number;
  aborted: boolean;
  reason?: string;
}

/**
 * One round of a federation's run, composed of its workflows: selection (with budget screening
 * and the aggregator's draw), feature statistics, plain or SecAgg+ training, the strategy's step,
 * the new model version, evaluation and commit. Each transition is persisted in one transaction;
 * any failure aborts the round with its reason, and every site hears so.
 */
export class AggregatorRoundRunner {
  constructor(private readonly deps: RoundRunnerDeps) {}

  async run(loop: RunLoop): Promise<RoundOutcome> {
    const { deps } = this;
    const fed = await deps.federations.findById(loop.federationId);
    if (!fed || !fed.currentModelVersionId) {
      throw new Error(`federation ${loop.federationId} has no model`);
    }
    const cfg = fed.config;
    const deadline = deps.clock.now().getTime() + cfg.roundTimeoutMs;
    const row = await deps.rounds.transaction(async (em) =>
      deps.rounds.insertRound(em, {
        federationId: fed.id,
        runId: loop.runId,
        number: await deps.rounds.nextRoundNumber(em, fed.id),
        baseModelVersionId: fed.currentModelVersionId!,
        deadline: new Date(deadline),
      }),
    );
    const active = new ActiveRound(fed, loop.runId, row);
    loop.active = active;
    const ctx = new RoundContext(deps, loop, active);
    const abort = async (reason: string): Promise<RoundOutcome> => {
      await this.abort(ctx, reason);
      return { number: row.number, aborted: true, reason };
    };
    try {
      const reason = await this.steps(ctx, fed, deadline);
      return reason === null ? { number: row.number, aborted: false } : await abort(reason);
    } catch (e) {
      if (e instanceof Stopped) throw e;
      // Any failure inside a round aborts that round, with its reason, and every site hears so.
      deps.config.log(`round ${row.number} failed: ${(e as Error).stack ?? String(e)}`);
      return await abort(`the round failed while ${active.phase}: ${errorText(e)}`);
    } finally {
      // An evaluation sum opened for a round that ended another way waits for nothing more.
      active.evaluation?.sum.cancel('the round ended before its evaluation');
      // Positions still held when the round ends stay held until their sites' receipts or "none".
      active.slots.clear();
      loop.active = null;
    }
  }

  /** The round's steps in order; null when it committed, else why it must abort. */
  private async steps(
    ctx: RoundContext,
    fed: FederationRow,
    deadline: number,
  ): Promise<string | null> {
    const { deps } = this;
    const { active } = ctx;
    const cfg = fed.config;
    const baseVersionId = fed.currentModelVersionId!;

    const refused = await new SelectionWorkflow(ctx, deps).run(deadline);
    if (refused) return refused;

    let stats: FeatureStatsRow | null = fed.featureStats;
    if (!stats && (cfg.standardization ?? 'federated') === 'federated') {
      const got = await new FeatureStatisticsWorkflow(
        ctx,
        deps.federations,
        deps.sums,
        deps.unmask,
      ).run(deadline);
      if (typeof got === 'string') return got;
      stats = got;
    }

    // Training: send the global model, collect updates.
    const cached = deps.latestWeights.get(fed.id);
    const global =
      cached?.versionId === baseVersionId
        ? cached.weights
        : await deps.models.weights(baseVersionId);
    const baseVersion = await deps.models.find(fed.id, baseVersionId);
    active.expectedLength = parameterCount(fed.modelSpec);
    // The strategy continues from the state stored with the base version, so a restarted
    // aggregator takes the same step as one that kept running.
    const strategy = roundStrategy(
      fed,
      await deps.models.strategyState(baseVersionId),
      active.expectedLength,
    );
    if (typeof strategy === 'string') return strategy;
    const dp = cfg.dp ?? { level: 'none' as const };
    const secure = new SecureTrainingWorkflow(ctx, deps);
    const plain = new PlainTrainingWorkflow(ctx);
    let secagg: SecureSetup | null = null;
    if (cfg.secureAggregation?.enabled) {
      try {
        secagg = secure.setup(
          baseVersion?.hash ?? '',
          dp.level === 'site' ? dp : null,
          stats?.count ?? null,
        );
      } catch (e) {
        return `secure aggregation cannot start: ${(e as Error).message}`;
      }
      active.secagg = secagg.server;
      if (dp.level === 'site') {
        active.integerNoise = { scale: secagg.params.scale, dimension: active.expectedLength };
      }
    } else {
      plain.prepare(strategy);
    }
    active.row = await deps.rounds.transaction((em) =>
      deps.rounds.transition(em, active.row.id, secagg ? 'advertising' : 'collecting', {
        participants: active.participantList(),
      }),
    );
    active.trainFrame = this.trainFrame(ctx, strategy, {
      global,
      modelHash: baseVersion?.hash ?? '',
      stats,
      secagg,
      deadline,
    });
    let trained: { aggregate: AggregateSum } | { abort: string };
    if (secagg) {
      active.phase = 'advertising';
      ctx.sendFrameTo('selected', active.trainFrame);
      trained = await secure.collect(secagg, deadline);
      if ('aggregate' in trained && trained.aggregate.contributors.length < cfg.minSites) {
        trained = { abort: ctx.shortfall(trained.aggregate.contributors.length, cfg.minSites) };
      }
    } else {
      trained = await plain.run(deadline);
    }
    if ('abort' in trained) return trained.abort;
    return this.aggregateAndCommit(ctx, strategy, global, trained.aggregate);
  }

  /** The signed round.train frame with the global model, sent again to a site that reconnects. */
  private trainFrame(
    ctx: RoundContext,
    strategy: RoundStrategy,
    round: {
      global: Float32Array;
      modelHash: string;
      stats: FeatureStatsRow | null;
      secagg: SecureSetup | null;
      deadline: number;
    },
  ): Buffer {
    const { active } = ctx;
    const { fed } = active;
    const cfg = fed.config;
    const dp = cfg.dp ?? { level: 'none' as const };
    return this.deps.config.signer.frame(
      {
        v: PROTOCOL_VERSION,
        type: 'round.train',
        id: randomUUID(),
        runId: active.runId,
        round: active.number,
        federationId: fed.id,
        modelVersionId: fed.currentModelVersionId!,
        modelHash: round.modelHash,
        modelSpec: fed.modelSpec,
        train: trainInstructions(strategy, active.number, cfg.train),
        // null: each site standardises with its own statistics (standardization 'local').
        standardization: round.stats ? { mean: round.stats.mean, std: round.stats.std } : null,
        privacy:
          dp.level === 'none'
            ? null
            : {
                level: dp.level,
                noiseMultiplier: dp.noiseMultiplier,
                clipNorm: dp.clipNorm,
                delta: dp.delta,
                epsilonLimit: dp.epsilonLimit,
                siteSamplingRate: dp.level === 'site' ? active.siteSamplingRate : null,
                survivorsAssumed: dp.level === 'site' ? active.survivorsAssumed : null,
                statisticsShare: dp.statisticsShare ?? DEFAULT_STATISTICS_SHARE,
              },
        secureAggregation: round.secagg?.info ?? null,
        weighting: weightingOf(fed),
        deadline: new Date(round.deadline).toISOString(),
      },
      round.global,
    );
  }

  /**
   * The strategy's step on the sum (or on each site's update where it needs them), stored with
   * the strategy's new state as a new model version, then evaluation and commit.
   */
  private async aggregateAndCommit(
    ctx: RoundContext,
    strategy: RoundStrategy,
    global: Float32Array,
    summed: AggregateSum,
  ): Promise<string | null> {
    const { deps } = this;
    const { active, loop } = ctx;
    const { fed, row } = active;
    active.phase = 'aggregating';
    deps.live.round(active);
    // Poisson self-sampling: every site sends (a zero update when its coin said no, so nobody learns
    // who took part); DP-FedAvg's estimator divides by the expected number of sampled sites.
    const aggregate =
      active.siteSamplingRate < 1
        ? { ...summed, totalWeight: summed.totalWeight * active.siteSamplingRate }
        : summed;
    const stepped = aggregateRound(strategy, global, aggregate, active.collector);
    if (typeof stepped === 'string') return stepped;
    const next = stepped.weights;
    assertFinite(next, 'aggregated model');
    const trainLoss =
      active.trainWeightSum > 0 ? active.trainLossSum / active.trainWeightSum : null;
    const partialMetrics: RoundMetrics = {
      trainLoss,
      evaluation: null,
      bytesReceived: active.bytesReceived,
      ...(active.sampling ? { sampling: active.sampling } : {}),
      secureAggregation: active.secaggSummary
        ? {
            ...active.secaggSummary,
            dropped:
              active.participantList().filter((x) => x.status === 'dropped').length +
              active.lateDrops,
          }
        : null,
    };
    // The weights are written chunk by chunk before the transaction: a large model does not hold
    // the (embedded database's only) connection while they are.
    const stored = await deps.models.store(next);
    let version: { id: string; hash: string };
    try {
      version = await deps.rounds.transaction(async (em) => {
        const v = await deps.models.insert(em, {
          federationId: fed.id,
          roundNumber: row.number,
          parentId: fed.currentModelVersionId!,
          weights: stored,
          strategyState: strategy.strategy.serializeState(stepped.state),
        });
        active.newModelVersionId = v.id;
        active.row = await deps.rounds.transition(em, row.id, 'aggregated', {
          modelVersionId: v.id,
          participants: active.participantList(),
          metrics: partialMetrics,
        });
        return v;
      });
    } catch (e) {
      await deps.models.discard(stored).catch(() => undefined);
      throw e;
    }
    deps.latestWeights.set(fed.id, { versionId: version.id, weights: next });

    const evaluation = await new EvaluationWorkflow(ctx, deps.sums).run(next, version);
    if (evaluation && 'abort' in evaluation) return evaluation.abort;
    active.phase = 'closing';
    const metrics: RoundMetrics = {
      ...partialMetrics,
      evaluation,
      bytesReceived: active.bytesReceived,
    };
    await deps.rounds.transaction((em) =>
      deps.rounds.transition(em, row.id, 'evaluated', {
        metrics,
        participants: active.participantList(),
      }),
    );

    // Commit: the new version becomes the federation's model.
    active.row = await deps.rounds.transaction(async (em) => {
      const r = await deps.rounds.transition(em, row.id, 'committed', { ended: true });
      await deps.federations.setCurrentModel(em, fed.id, version.id);
      await deps.rounds.incrementRunRounds(em, loop.runId);
      return r;
    });
    deps.metrics.rounds.inc({ outcome: 'committed' });
    deps.metrics.roundDuration.observe((active.row.durationMs ?? 0) / 1000);
    this.broadcastEnd(ctx, 'committed', null);
    deps.config.log(
      `round ${row.number} committed: ${summed.contributors.length} site(s)` +
        (evaluation ? `, accuracy ${evaluation.accuracy.toFixed(4)}` : ''),
    );
    return null;
  }

  private async abort(ctx: RoundContext, reason: string): Promise<void> {
    const { deps } = this;
    const { active } = ctx;
    active.phase = 'closing';
    try {
      await deps.rounds.transaction((em) =>
        deps.rounds.transition(em, active.row.id, 'aborted', {
          ended: true,
          reason,
          participants: active.participantList(),
          // The draw is part of the round's record even when the round did not finish.
          ...(active.sampling
            ? {
                metrics: {
                  trainLoss: null,
                  evaluation: null,
                  bytesReceived: active.bytesReceived,
                  sampling: active.sampling,
                },
              }
            : {}),
        }),
      );
    } finally {
      // Sites hear the round is over even when storing that failed (a restart aborts it again).
      deps.metrics.rounds.inc({ outcome: 'aborted' });
      this.broadcastEnd(ctx, 'aborted', reason);
      deps.config.log(`round ${active.number} aborted: ${reason}`);
    }
  }

  private broadcastEnd(
    ctx: RoundContext,
    outcome: 'committed' | 'aborted',
    reason: string | null,
  ): void {
    const { active } = ctx;
    this.deps.live.round(active, outcome);
    const msg = ctx.envelope('round.end', { outcome, reason });
    for (const siteId of active.participants.keys()) {
      this.deps.sessions.get(siteId)?.sendJson(msg);
    }
  }
}
