import { randomUUID } from 'node:crypto';
import {
  Inject,
  Injectable,
  type OnApplicationBootstrap,
  type OnModuleDestroy,
} from '@nestjs/common';
import { combineFeatureStats, evaluationLayoutFor, parameterCount } from '@confide/ml/spec';
import {
  assertFinite,
  PROTOCOL_VERSION,
  type SiteMessage,
  type SiteMetrics,
} from '@confide/protocol';
import {
  dequantize,
  fromBase64,
  isSecAggError,
  MaskWorkerPool,
  SecAggServer,
  type SecAggParams,
} from '@confide/secure-aggregation';
import { combineEvaluations, type AggregateSum } from '@confide/federated';
import type { RoundSecAgg } from '@confide/protocol';
import { ActiveRound } from './active-round';
import { aggregateRound, plainCollector, roundStrategy, trainInstructions } from './round-strategy';
import { secureQuantization } from './secure-quantization';
import { roundGraph, roundThreshold } from './secagg-params';
import { DEFAULT_STATISTICS_SHARE, RoundSumsService } from './round-sums.service';
import type { SumPort } from './secure-sum';
import { RoundMessages } from './round-messages';
import { weightingOf } from './contribution-checks';
import { updateSumProblem } from './sum-checks';

import { LedgerRepository } from '../privacy/ledger.repository';
import { LedgerService } from '../privacy/ledger.service';
import { integerNoiseFor, nextRelease } from '../privacy/next-release';
import { SiteRepository } from '../sites/site.repository';
import { RoundEvents } from './round-events';
import { RoundRepository } from './round.repository';
import { waitFor } from '../common/signal';
import { CLOCK, CONFIG, type AggregatorConfig, type Clock } from '../common/tokens';
import type {
  FederationRow,
  FeatureStatsRow,
  Participant,
  RoundMetrics,
  RunRow,
} from '../database/rows';
import { FederationRepository } from '../federations/federation.repository';
import { ModelVersionRepository } from '../models/model-version.repository';
import { SessionRegistry, type SiteSession } from '../fl/session-registry';
import { MetricsService } from '../observability/metrics.service';
import { sampleSites } from './site-sampling';

/** A round's secure-aggregation state machine and what the sites are told about it. */
interface SecureSetup {
  server: SecAggServer;
  params: SecAggParams;
  info: RoundSecAgg;
}

/** Thrown inside a run loop when the aggregator is shutting down: leave the round for the next start. */
class Stopped extends Error {}

interface RunLoop {
  runId: string;
  federationId: string;
  stopped: boolean;
  active: ActiveRound | null;
  done: Promise<void>;
}

/**
 * Mask elements to expand (streams x vector length) from which unmasking uses worker threads: from
 * about 8 MB of keystream the worker round trip costs little, the event loop stays free, and the
 * keystream buffers (one allocation per 32 KiB chunk) stay off the main heap, whose garbage collector
 * would otherwise run a full mark of the aggregator's heap for every ~64 MB of them.
 */
const PARALLEL_UNMASK_ELEMENTS = 2_000_000;

/**
 * Drives training runs: one loop per federation, one round at a time, each transition persisted in one
 * transaction. Site messages are routed here by the gateway.
 */
@Injectable()
export class RoundOrchestrator implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly loops = new Map<string, RunLoop>();
  /** The latest model of each federation, kept so a round does not re-read what the last one wrote. */
  private readonly latestWeights = new Map<string, { versionId: string; weights: Float32Array }>();
  /** Each federation's total record count from its last secure sum, the next weight normaliser. */
  private readonly totalRecords = new Map<string, number>();
  private shuttingDown = false;
  /** Worker threads for large unmasking jobs, started on first use (config.maskWorkers). */
  private maskPool: MaskWorkerPool | null = null;
  private readonly messages: RoundMessages;

  constructor(
    @Inject(CONFIG) private readonly config: AggregatorConfig,
    @Inject(CLOCK) private readonly clock: Clock,
    @Inject(RoundRepository) private readonly rounds: RoundRepository,
    @Inject(FederationRepository) private readonly federations: FederationRepository,
    @Inject(ModelVersionRepository) private readonly models: ModelVersionRepository,
    @Inject(SessionRegistry) private readonly sessions: SessionRegistry,
    @Inject(MetricsService) private readonly metrics: MetricsService,
    @Inject(RoundEvents) private readonly live: RoundEvents,
    @Inject(LedgerService) private readonly ledger: LedgerService,
    @Inject(LedgerRepository) private readonly ledgerRepo: LedgerRepository,
    @Inject(SiteRepository) private readonly siteRepo: SiteRepository,
    @Inject(RoundSumsService) private readonly sums: RoundSumsService,
  ) {
    this.messages = new RoundMessages({
      activeRound: (federationId) => this.loops.get(federationId)?.active ?? null,
      sums,
      live,
      siteRepo,
      ledger,
      sessions,
      clock,
      config,
    });
    sessions.onConnect((s) => this.messages.connected(s));
    sessions.onDisconnect((s) => this.messages.disconnected(s));
  }

  /** Handles one validated message from a logged-in site; throws ProtocolError on a bad one. */
  handleSiteMessage(
    session: SiteSession,
    msg: SiteMessage,
    vector: Float32Array | Uint32Array | null,
    bytes: number,
  ): Promise<void> {
    return this.messages.handle(session, msg, vector, bytes);
  }

  /** Resumes what a previous process left: finishes rounds whose model was stored, aborts the rest. */
  async onApplicationBootstrap(): Promise<void> {
    for (const round of await this.rounds.unfinishedRounds()) {
      if ((round.state === 'aggregated' || round.state === 'evaluated') && round.modelVersionId) {
        const modelVersionId = round.modelVersionId;
        await this.rounds.transaction(async (em) => {
          await this.rounds.transition(em, round.id, 'committed', {
            ended: true,
            reason: 'committed after an aggregator restart (model version was already stored)',
          });
          await this.federations.setCurrentModel(em, round.federationId, modelVersionId);
          await this.rounds.incrementRunRounds(em, round.runId);
        });
        this.metrics.rounds.inc({ outcome: 'committed' });
        this.config.log(
          `round ${round.number} of federation ${round.federationId} committed on restart`,
        );
      } else {
        await this.rounds.transaction((em) =>
          this.rounds.transition(em, round.id, 'aborted', {
            ended: true,
            reason: `the aggregator restarted while the round was ${round.state}; updates held in memory were lost`,
          }),
        );
        this.metrics.rounds.inc({ outcome: 'aborted' });
        this.config.log(
          `round ${round.number} of federation ${round.federationId} aborted on restart`,
        );
      }
    }
    for (const run of await this.rounds.runningRuns()) this.startLoop(run);
  }

  async onModuleDestroy(): Promise<void> {
    this.shuttingDown = true;
    for (const loop of this.loops.values()) {
      loop.stopped = true;
      loop.active?.signal.notify();
    }
    this.sessions.changed.notify();
    await Promise.all([...this.loops.values()].map((l) => l.done));
    await this.maskPool?.close();
    this.maskPool = null;
  }

  /** Starts a run of `rounds` rounds; refused while the federation has a run in progress. */
  async startRun(federationId: string, rounds: number): Promise<RunRow> {
    if (this.shuttingDown) throw new Error('the aggregator is shutting down');
    const run = await this.rounds.transaction((em) =>
      this.rounds.insertRun(em, federationId, rounds),
    );
    this.startLoop(run);
    this.live.run(federationId);
    return run;
  }

  /** Stops a federation's run after the current round ends. */
  async stopRun(federationId: string): Promise<RunRow | null> {
    const run = await this.rounds.runningRun(federationId);
    if (!run) return null;
    await this.rounds.endRun(run.id, 'stopped', 'stopped by an administrator');
    const loop = this.loops.get(federationId);
    if (loop) loop.stopped = true;
    return this.rounds.findRun(run.id);
  }

  /** The phase and per-site state of a federation's running round, for status displays. */
  liveRound(
    federationId: string,
  ): { number: number; phase: string; participants: Participant[] } | null {
    const a = this.loops.get(federationId)?.active;
    return a ? { number: a.number, phase: a.phase, participants: a.participantList() } : null;
  }

  private startLoop(run: RunRow): void {
    const previous = this.loops.get(run.federationId);
    if (previous?.runId === run.id) return;
    const loop: RunLoop = {
      runId: run.id,
      federationId: run.federationId,
      stopped: false,
      active: null,
      done: Promise.resolve(),
    };
    this.loops.set(run.federationId, loop);
    // A run that has just ended may still be closing its loop: this one starts after it.
    loop.done = (previous?.done ?? Promise.resolve())
      .then(() => this.runLoop(loop))
      .catch(async (e: unknown) => {
        if (e instanceof Stopped) return;
        // Whatever failed, the run ends with the reason: it never stays 'running' with no loop.
        this.config.log(`run ${run.id} failed: ${(e as Error).stack ?? String(e)}`);
        await this.rounds
          .endRun(run.id, 'stopped', `the run failed: ${errorText(e)}`)
          .catch((e2: unknown) =>
            this.config.log(`run ${run.id} could not be marked stopped: ${errorText(e2)}`),
          );
      })
      .finally(() => {
        if (this.loops.get(run.federationId) === loop) this.loops.delete(run.federationId);
        this.live.run(run.federationId);
      });
  }

  private async runLoop(loop: RunLoop): Promise<void> {
    for (;;) {
      if (loop.stopped) return;
      const run = await this.rounds.findRun(loop.runId);
      if (!run || run.status !== 'running') return;
      if (run.roundsDone >= run.roundsRequested) {
        await this.rounds.endRun(run.id, 'completed', null);
        return;
      }
      const outcome = await this.runRound(loop);
      if (outcome.aborted) {
        await this.rounds.endRun(
          run.id,
          'stopped',
          `round ${outcome.number} aborted: ${outcome.reason}`,
        );
        return;
      }
    }
  }

  // ------------------------------------------------------------------------------------------------
  // One round

  private async runRound(
    loop: RunLoop,
  ): Promise<{ number: number; aborted: boolean; reason?: string }> {
    const fed = await this.federations.findById(loop.federationId);
    if (!fed || !fed.currentModelVersionId)
      throw new Error(`federation ${loop.federationId} has no model`);
    const baseVersionId = fed.currentModelVersionId;
    const cfg = fed.config;
    const startedAt = this.clock.now().getTime();
    const deadline = startedAt + cfg.roundTimeoutMs;
    const row = await this.rounds.transaction(async (em) =>
      this.rounds.insertRound(em, {
        federationId: fed.id,
        runId: loop.runId,
        number: await this.rounds.nextRoundNumber(em, fed.id),
        baseModelVersionId: baseVersionId,
        deadline: new Date(deadline),
      }),
    );
    const active = new ActiveRound(fed, loop.runId, row);
    loop.active = active;
    const abort = async (
      reason: string,
    ): Promise<{ number: number; aborted: boolean; reason: string }> => {
      await this.abortRound(active, reason);
      return { number: row.number, aborted: true, reason };
    };
    try {
      // 1. Selection: approved sites that are connected (only approved sites can log in).
      const enough = await this.until(
        loop,
        this.sessions.changed,
        () => this.sessions.connected(fed.id).length >= cfg.minSites,
        deadline,
      );
      const selected = this.sessions.connected(fed.id);
      if (!enough) {
        return await abort(
          `only ${selected.length} approved site(s) connected before the deadline; the federation needs minSites=${cfg.minSites}`,
        );
      }
      for (const s of selected)
        active.participants.set(s.siteId, {
          siteId: s.siteId,
          name: s.siteName,
          status: 'selected',
        });
      for (const site of await this.siteRepo.list(fed.id)) {
        if (active.participants.has(site.id)) active.sites.set(site.id, site);
      }

      // 1b. Privacy budgets: a site whose projected epsilon would pass its limit is skipped.
      const dp = fed.config.dp ?? { level: 'none' as const };
      if (dp.level !== 'none') {
        // Under secure aggregation the sum can only be unmasked with t survivors, so site-level noise
        // shares are sized for t (the round's threshold); without it each site adds all of the noise.
        active.survivorsAssumed =
          dp.level === 'site' && cfg.secureAggregation?.enabled
            ? roundThreshold(fed, selected.length)
            : null;
        // Site level: only each site's own coin earns amplification (Poisson self-sampling).
        active.siteSamplingRate = dp.level === 'site' ? (cfg.samplingFraction ?? 1) : 1;
        // Under secure aggregation, site-level noise is the distributed discrete Gaussian, whose bound
        // depends on the round's quantisation scale: projected with the scale for all the selected
        // sites, which is at most the one the round will use with the sites that pass (see
        // secureQuantization), so the projection never under-states the spend.
        const integerNoise =
          dp.level === 'site' && cfg.secureAggregation?.enabled
            ? integerNoiseFor(fed, selected.length, active.survivorsAssumed ?? 1)
            : null;
        for (const s of selected) {
          const history = await this.ledgerRepo.siteEntries(fed.id, s.siteId);
          const mechanism = nextRelease(
            fed,
            history,
            undefined,
            active.survivorsAssumed,
            integerNoise ?? undefined,
          );
          if (!mechanism) continue; // size unknown: the receipt is checked against the budget at release
          const p = await this.ledger.project(fed.id, s.siteId, mechanism);
          if (!p.allowed) {
            const part = active.participants.get(s.siteId)!;
            part.status = 'skipped';
            part.detail =
              p.limit === null
                ? 'no privacy budget in this federation'
                : `projected epsilon ${p.projected.toFixed(4)} would exceed its limit ${p.limit}`;
          }
        }
        const eligible = active.participantList().filter((x) => x.status === 'selected');
        if (eligible.length < cfg.minSites) {
          const skipped = active
            .participantList()
            .filter((x) => x.status === 'skipped')
            .map((x) => `${x.name}: ${x.detail ?? ''}`);
          return await abort(
            `only ${eligible.length} site(s) have privacy budget left for another round; the federation needs minSites=${cfg.minSites}` +
              (skipped.length ? ` (skipped ${skipped.join('; ')})` : ''),
          );
        }
      }

      // 1c. Client sampling: outside site-level DP the aggregator draws the round's sites itself,
      // among those with budget left; the others get nothing this round. Site-level DP samples on
      // the sites' own coins instead, so that nobody, the aggregator included, learns who took part.
      const fraction = cfg.samplingFraction ?? 1;
      if (fraction < 1 && dp.level !== 'site') this.drawSites(active, fraction, cfg.minSites);

      // 2. Federated standardisation statistics, once per federation: a secure sum under secure
      // aggregation (the aggregator learns only the sites' total), in the clear otherwise.
      let stats = fed.featureStats;
      if (!stats && (cfg.standardization ?? 'federated') === 'federated') {
        const got = cfg.secureAggregation?.enabled
          ? await this.sums.statistics(active, this.sumPort(loop, active), deadline)
          : await this.collectFeatureStats(loop, fed, active, deadline);
        if (typeof got === 'string') return await abort(got);
        stats = got;
      }

      // 3. Training: send the global model, collect updates.
      const cached = this.latestWeights.get(fed.id);
      const global =
        cached?.versionId === baseVersionId
          ? cached.weights
          : await this.models.weights(baseVersionId);
      const baseVersion = await this.models.find(fed.id, baseVersionId);
      active.expectedLength = parameterCount(fed.modelSpec);
      // The strategy continues from the state stored with the base version, so a restarted
      // aggregator takes the same step as one that kept running.
      const strategy = roundStrategy(
        fed,
        await this.models.strategyState(baseVersionId),
        active.expectedLength,
      );
      if (typeof strategy === 'string') return await abort(strategy);
      const sa = fed.config.secureAggregation;
      let secagg: SecureSetup | null = null;
      if (sa?.enabled) {
        try {
          secagg = await this.secureSetup(
            fed,
            active,
            baseVersion?.hash ?? '',
            dp.level === 'site' ? dp : null,
            stats?.count ?? null,
          );
        } catch (e) {
          return await abort(`secure aggregation cannot start: ${(e as Error).message}`);
        }
        active.secagg = secagg.server;
        if (dp.level === 'site') {
          active.integerNoise = { scale: secagg.params.scale, dimension: active.expectedLength };
        }
      } else {
        active.collector = plainCollector(strategy, active.expectedLength);
      }
      active.row = await this.rounds.transaction((em) =>
        this.rounds.transition(em, row.id, secagg ? 'advertising' : 'collecting', {
          participants: active.participantList(),
        }),
      );
      active.trainFrame = this.config.signer.frame(
        {
          v: PROTOCOL_VERSION,
          type: 'round.train',
          id: randomUUID(),
          runId: loop.runId,
          round: row.number,
          federationId: fed.id,
          modelVersionId: baseVersionId,
          modelHash: baseVersion?.hash ?? '',
          modelSpec: fed.modelSpec,
          train: trainInstructions(strategy, row.number, cfg.train),
          // null: each site standardises with its own statistics (standardization 'local').
          standardization: stats ? { mean: stats.mean, std: stats.std } : null,
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
          secureAggregation: secagg?.info ?? null,
          weighting: weightingOf(fed),
          deadline: new Date(deadline).toISOString(),
        },
        global,
      );
      let aggregate: AggregateSum;
      if (secagg) {
        active.phase = 'advertising';
        for (const p of active.participantList()) {
          if (p.status === 'selected') this.sessions.get(p.siteId)?.sendBinary(active.trainFrame);
        }
        const result = await this.secureCollect(loop, active, secagg, deadline);
        if ('abort' in result) return await abort(result.abort);
        aggregate = result.aggregate;
        if (aggregate.contributors.length < cfg.minSites) {
          return await abort(this.shortfall(active, aggregate.contributors.length, cfg.minSites));
        }
      } else {
        active.phase = 'collecting';
        for (const p of active.participantList()) {
          if (p.status === 'selected') this.sessions.get(p.siteId)?.sendBinary(active.trainFrame);
        }
        await this.until(loop, active.signal, () => this.nonePending(active, 'selected'), deadline);
        this.markUnanswered(
          active,
          'selected',
          'dropped',
          'no update before the deadline or disconnected',
        );
        const collector = active.collector!;
        if (collector.count < cfg.minSites) {
          return await abort(this.shortfall(active, collector.count, cfg.minSites));
        }
        aggregate = collector.result();
      }

      // 4. Aggregation: the strategy's step on the sum (or on each site's update where it needs
      // them), stored with the strategy's new state as a new model version.
      active.phase = 'aggregating';
      this.live.round(active);
      // Poisson self-sampling: every site sends (a zero update when its coin said no, so nobody learns
      // who took part); DP-FedAvg's estimator divides by the expected number of sampled sites.
      if (active.siteSamplingRate < 1) {
        aggregate = { ...aggregate, totalWeight: aggregate.totalWeight * active.siteSamplingRate };
      }
      const stepped = aggregateRound(strategy, global, aggregate, active.collector);
      if (typeof stepped === 'string') return await abort(stepped);
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
      let newVersion: { id: string; hash: string } | null = null;
      // The weights are written chunk by chunk before the transaction: a large model does not hold
      // the (embedded database's only) connection while they are.
      const stored = await this.models.store(next);
      try {
        active.row = await this.rounds.transaction(async (em) => {
          const version = await this.models.insert(em, {
            federationId: fed.id,
            roundNumber: row.number,
            parentId: baseVersionId,
            weights: stored,
            strategyState: strategy.strategy.serializeState(stepped.state),
          });
          active.newModelVersionId = version.id;
          newVersion = version;
          return this.rounds.transition(em, row.id, 'aggregated', {
            modelVersionId: version.id,
            participants: active.participantList(),
            metrics: partialMetrics,
          });
        });
      } catch (e) {
        await this.models.discard(stored).catch(() => undefined);
        throw e;
      }
      this.latestWeights.set(fed.id, { versionId: active.newModelVersionId!, weights: next });

      // 5. Evaluation on the sites' held-out data: a secure sum of their counts under secure
      // aggregation, else the metrics sites that reveal their own send in the clear.
      active.phase = 'evaluating';
      const evalDeadline = this.clock.now().getTime() + cfg.evaluationTimeoutMs;
      let evaluation: RoundMetrics['evaluation'] = null;
      if (cfg.evaluation === false) {
        // The federation does not evaluate (under DP an evaluation would be a charged release).
      } else if (cfg.secureAggregation?.enabled) {
        const open = active.evaluation;
        const got = open
          ? await this.sums.evaluation(active, open, next, newVersion!, evalDeadline)
          : 'fewer than two sites can take part';
        if (typeof got === 'string') this.config.log(`round ${row.number}: no evaluation: ${got}`);
        else if (got && 'abort' in got) return await abort(got.abort);
        else evaluation = got;
      } else {
        active.evaluateFrame = this.config.signer.frame(
          {
            v: PROTOCOL_VERSION,
            type: 'round.evaluate',
            id: randomUUID(),
            runId: loop.runId,
            round: row.number,
            federationId: fed.id,
            modelVersionId: newVersion!.id,
            modelHash: newVersion!.hash,
            secureAggregation: null,
            privacy: null,
            evaluation: evaluationLayoutFor(fed.modelSpec),
            deadline: new Date(evalDeadline).toISOString(),
          },
          next,
        );
        for (const p of active.participants.values()) {
          if (p.status === 'submitted')
            this.sessions.get(p.siteId)?.sendBinary(active.evaluateFrame);
        }
        await this.until(
          loop,
          active.signal,
          () => this.nonePending(active, 'submitted'),
          evalDeadline,
        );
        evaluation = weightedMetrics([...active.evaluations.values()]);
      }
      active.phase = 'closing';
      const metrics: RoundMetrics = {
        ...partialMetrics,
        evaluation,
        bytesReceived: active.bytesReceived,
      };
      await this.rounds.transaction((em) =>
        this.rounds.transition(em, row.id, 'evaluated', {
          metrics,
          participants: active.participantList(),
        }),
      );

      // 6. Commit: the new version becomes the federation's model.
      active.row = await this.rounds.transaction(async (em) => {
        const r = await this.rounds.transition(em, row.id, 'committed', { ended: true });
        await this.federations.setCurrentModel(em, fed.id, active.newModelVersionId!);
        await this.rounds.incrementRunRounds(em, loop.runId);
        return r;
      });
      this.metrics.rounds.inc({ outcome: 'committed' });
      this.metrics.roundDuration.observe((active.row.durationMs ?? 0) / 1000);
      this.broadcastEnd(active, 'committed', null);
      this.config.log(
        `round ${row.number} committed: ${aggregate.contributors.length} site(s)` +
          (evaluation ? `, accuracy ${evaluation.accuracy.toFixed(4)}` : ''),
      );
      return { number: row.number, aborted: false };
    } catch (e) {
      if (e instanceof Stopped) throw e;
      // Any failure inside a round aborts that round, with its reason, and every site hears so.
      this.config.log(`round ${row.number} failed: ${(e as Error).stack ?? String(e)}`);
      return await abort(`the round failed while ${active.phase}: ${errorText(e)}`);
    } finally {
      // An evaluation sum opened for a round that ended another way waits for nothing more.
      active.evaluation?.sum.cancel('the round ended before its evaluation');
      // Positions still held when the round ends stay held until their sites' receipts or "none".
      active.slots.clear();
      loop.active = null;
    }
  }

  /** Feature statistics in the clear, in a federation without secure aggregation (and without DP). */
  private async collectFeatureStats(
    loop: RunLoop,
    fed: FederationRow,
    active: ActiveRound,
    deadline: number,
  ): Promise<FeatureStatsRow | string> {
    const inputDim = fed.modelSpec.inputDim;
    active.phase = 'stats';
    const msg = {
      v: PROTOCOL_VERSION,
      type: 'stats.request',
      id: randomUUID(),
      runId: loop.runId,
      round: active.number,
      federationId: fed.id,
      features: inputDim,
      secureAggregation: null,
      privacy: null,
      featureBounds: fed.config.featureBounds ?? null,
      deadline: new Date(deadline).toISOString(),
    };
    active.statsRequest = msg;
    for (const siteId of active.participants.keys()) this.sessions.get(siteId)?.sendJson(msg);
    await this.until(
      loop,
      active.signal,
      () =>
        [...active.participants.keys()].every(
          (id) => active.stats.has(id) || !this.pendingForStats(active, id),
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

  /** What a statistics or evaluation sum needs of the round it runs in. */
  private sumPort(loop: RunLoop, active: ActiveRound): SumPort {
    return {
      send: (siteId, message) => this.sessions.get(siteId)?.sendJson(message),
      sendEach: (entries) => this.sessions.sendEach(entries, (m) => this.config.signer.signEach(m)),
      until: (ready, deadline) => this.until(loop, active.signal, ready, deadline),
      reachable: (siteId) =>
        active.reachable(
          siteId,
          this.clock.now().getTime(),
          this.config.reconnectGraceMs,
          this.sessions.isConnected(siteId),
        ),
      unmask: (server, vectorLength) => this.unmaskSum(server, vectorLength),
      changed: () => {
        this.live.round(active);
        active.signal.notify();
      },
    };
  }

  private pendingForStats(active: ActiveRound, siteId: string): boolean {
    return active.isPending(
      siteId,
      this.clock.now().getTime(),
      this.config.reconnectGraceMs,
      this.sessions.isConnected(siteId),
      'selected',
    );
  }

  private nonePending(active: ActiveRound, waitingFor: Participant['status']): boolean {
    // Waiting for evaluations, a site that reported its metrics or declined to is done.
    const done =
      waitingFor === 'submitted'
        ? (id: string) => active.evaluations.has(id) || active.evaluationDeclined.has(id)
        : () => false;
    return this.nonePendingIn(active, waitingFor, done);
  }

  private markUnanswered(
    active: ActiveRound,
    from: Participant['status'],
    to: Participant['status'],
    detail: string,
  ): void {
    for (const p of active.participants.values()) {
      if (p.status === from) {
        p.status = to;
        p.detail = detail;
      }
    }
  }

  /**
   * Keeps a CSPRNG draw of the round's eligible ('selected') sites and forgets the rest, recording
   * the draw; sites skipped for their budget stay on the roster as skipped.
   */
  private drawSites(active: ActiveRound, fraction: number, minSites: number): void {
    const eligible = active.participantList().filter((p) => p.status === 'selected');
    const drawn = new Set(sampleSites(eligible, fraction, minSites).map((p) => p.siteId));
    for (const p of eligible) {
      if (drawn.has(p.siteId)) continue;
      active.participants.delete(p.siteId);
      active.sites.delete(p.siteId);
    }
    active.sampling = { fraction, connected: eligible.length, sampled: drawn.size };
  }

  private shortfall(active: ActiveRound, got: number, minSites: number): string {
    const lost = active
      .participantList()
      .filter((p) => p.status !== 'submitted')
      .map((p) => `${p.name} ${p.status}${p.detail ? ` (${p.detail})` : ''}`);
    return (
      `only ${got} of ${active.participants.size} selected site(s) sent an update; the federation needs minSites=${minSites}` +
      (lost.length ? `; ${lost.join('; ')}` : '')
    );
  }

  private async abortRound(active: ActiveRound, reason: string): Promise<void> {
    active.phase = 'closing';
    try {
      await this.rounds.transaction((em) =>
        this.rounds.transition(em, active.row.id, 'aborted', {
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
      this.metrics.rounds.inc({ outcome: 'aborted' });
      this.broadcastEnd(active, 'aborted', reason);
      this.config.log(`round ${active.number} aborted: ${reason}`);
    }
  }

  private broadcastEnd(
    active: ActiveRound,
    outcome: 'committed' | 'aborted',
    reason: string | null,
  ): void {
    this.live.round(active, outcome);
    const msg = {
      v: PROTOCOL_VERSION,
      type: 'round.end',
      id: randomUUID(),
      runId: active.runId,
      round: active.number,
      outcome,
      reason,
    };
    for (const siteId of active.participants.keys()) this.sessions.get(siteId)?.sendJson(msg);
  }

  private async until(
    loop: RunLoop,
    signal: { wait(ms: number): Promise<void> },
    ready: () => boolean,
    deadline: number | (() => number),
  ): Promise<boolean> {
    if (loop.active) this.live.round(loop.active);
    const ok = await waitFor(
      signal as never,
      ready,
      deadline,
      () => this.clock.now().getTime(),
      () => loop.stopped,
    );
    if (loop.stopped && this.shuttingDown) throw new Stopped();
    return ok;
  }

  // ------------------------------------------------------------------------------------------------
  // Secure aggregation (Bonawitz et al. 2017; SecAgg+ graphs above 64 sites)

  /** Chooses the round's secure-aggregation parameters and builds the server state machine. */
  private async secureSetup(
    fed: FederationRow,
    active: ActiveRound,
    modelHash: string,
    siteDp: { noiseMultiplier: number; clipNorm: number } | null,
    totalRecords: number | null,
  ): Promise<SecureSetup> {
    const sa = fed.config.secureAggregation!;
    const chosen = active.participantList().filter((p) => p.status === 'selected');
    const n = chosen.length;
    const { threshold: t, graph, k } = roundGraph(fed, n);
    // Site-level noise shares are sized for the t survivors a sum needs (what each site assumes too).
    if (fed.config.dp?.level === 'site') active.survivorsAssumed = t;
    // Site-level DP noise is added after quantization, inside the clip's headroom.
    const { clip, scale } = secureQuantization(sa.clip, siteDp, n, active.survivorsAssumed ?? t);
    const params: SecAggParams = {
      threshold: t,
      graph,
      ...(k !== undefined ? { k } : {}),
      threatModel: sa.threatModel,
      clip,
      scale,
      maxSites: n,
    };
    const roster = chosen.map((p) => ({
      siteId: p.siteId,
      publicKey: active.sites.get(p.siteId)!.publicKey,
    }));
    // A public divisor, never a site's own count (which would leave the site in the clear): the
    // sites' total from the statistics sum or the last round's sum, else a fixed power of two
    // (coarser: the weights are then small against the quantisation step). Sites weigh themselves
    // by their record count over it, capped at 1; site-level DP weighs every site 1.
    // Sites' claims enter it (the last sum's total): it is bounded by what n sites may claim.
    const weighting = weightingOf(fed);
    const weightNormalizer =
      weighting.mode === 'equal'
        ? 1
        : Math.min(
            n * weighting.cap,
            Math.max(1, totalRecords ?? this.totalRecords.get(fed.id) ?? 2 ** 20),
          );
    const vectorLength = active.expectedLength + 1;
    const server = new SecAggServer({
      params,
      roster: new Map(roster.map((r) => [r.siteId, fromBase64(r.publicKey, 32)])),
      runId: active.runId,
      round: active.number,
      modelHash,
      vectorLength,
    });
    active.secaggSummary = { threshold: t, graph, ...(k !== undefined ? { k } : {}), sites: n };
    return {
      server,
      params,
      info: { params: { ...params }, roster, weightNormalizer, vectorLength },
    };
  }

  /** Runs advertise, share, collect, (consistency,) unmask; returns the unmasked weighted sum. */
  private async secureCollect(
    loop: RunLoop,
    active: ActiveRound,
    setup: SecureSetup,
    deadline: number,
  ): Promise<{ aggregate: AggregateSum } | { abort: string }> {
    const server = setup.server;
    const persist = async (state: 'sharing' | 'collecting' | 'unmasking'): Promise<void> => {
      active.row = await this.rounds.transaction((em) =>
        this.rounds.transition(em, active.row.id, state, {
          participants: active.participantList(),
        }),
      );
      this.live.round(active);
    };
    // Each site its own message, all signed with one signature.
    const send = (status: Participant['status'], message: (siteId: string) => object): void => {
      this.sessions.sendEach(
        active
          .participantList()
          .filter((p) => p.status === status)
          .map((p) => [p.siteId, message(p.siteId)] as const),
        (m) => this.config.signer.signEach(m),
      );
    };
    const envelope = (type: string, body: object): object => ({
      v: PROTOCOL_VERSION,
      type,
      id: randomUUID(),
      runId: active.runId,
      round: active.number,
      sum: 'update',
      ...body,
    });
    try {
      // Round 0: signed key advertisements.
      await this.until(loop, active.signal, () => this.nonePending(active, 'selected'), deadline);
      this.markUnanswered(
        active,
        'selected',
        'dropped',
        'no key advertisement (dropped before sharing keys)',
      );
      // Each site gets its neighbourhood's advertisements (SecAgg+: O(k log n), not every site's),
      // each proven a member of the set the session id holds.
      server.closeAdvertising();
      send('advertised', (siteId) =>
        envelope('secagg.advertisements', { advertisements: server.advertisementsFor(siteId) }),
      );
      // Round 1: encrypted Shamir shares, routed to their recipients.
      active.phase = 'sharing';
      await persist('sharing');
      await this.until(loop, active.signal, () => this.nonePending(active, 'advertised'), deadline);
      this.markUnanswered(
        active,
        'advertised',
        'dropped',
        'no key shares (dropped after advertising)',
      );
      server.closeSharing();
      send('shared', (siteId) => envelope('secagg.deliver', { shares: server.sharesFor(siteId) }));
      // Round 2: masked inputs, folded into the running sum as they arrive.
      active.phase = 'collecting';
      await persist('collecting');
      await this.until(loop, active.signal, () => this.nonePending(active, 'shared'), deadline);
      this.markUnanswered(
        active,
        'shared',
        'dropped',
        'no masked input (dropped after sharing keys)',
      );
      const consistency = server.closeCollection();
      // The evaluation sum's keys are agreed while this sum is unmasked and the model stored.
      if (active.fed.config.evaluation !== false) {
        const evalDeadline =
          Math.max(deadline, this.clock.now().getTime()) + active.fed.config.evaluationTimeoutMs;
        active.evaluation = await this.sums.openEvaluation(
          active,
          this.sumPort(loop, active),
          server.survivors(),
          evalDeadline,
        );
      }
      if (consistency) {
        // Round 3 (semi-malicious): every survivor signs the survivor list.
        active.phase = 'consistency';
        // One message for every survivor: signed once, as the same object.
        const request = envelope('secagg.consistency', { request: consistency });
        for (const p of active.participantList())
          if (p.status === 'submitted') this.sessions.get(p.siteId)?.sendJson(request);
        await this.until(
          loop,
          active.signal,
          () =>
            this.nonePendingIn(
              active,
              'submitted',
              (id) => active.confirmed.has(id) || active.refused.has(id),
            ),
          deadline,
        );
        server.closeConsistency();
      }
      // Round 4: unmasking; each survivor reveals one kind of share per neighbour. As in the rounds
      // above, the requests go out before the transition is stored, which overlaps the two.
      active.phase = 'unmasking';
      send('submitted', (siteId) =>
        envelope('secagg.unmask', { request: server.unmaskRequest(siteId) }),
      );
      await persist('unmasking');
      await this.until(
        loop,
        active.signal,
        () =>
          this.nonePendingIn(
            active,
            'submitted',
            (id) => active.unmasked.has(id) || active.refused.has(id),
          ),
        deadline,
      );
      const sum = await this.unmaskSum(server, setup.info.vectorLength);
      for (const c of server.corruptShares()) {
        // Reconstructed from the sound shares; the senders of the others are named in the round.
        const owner = active.participants.get(c.owner)?.name ?? c.owner;
        for (const sender of c.senders) {
          const p = active.participants.get(sender);
          if (!p) continue;
          const note = `revealed a corrupt ${c.kind} share of ${owner} (left out; the round used the others)`;
          p.detail = p.detail ? `${p.detail}; ${note}` : note;
        }
      }
      const values = dequantize(sum, setup.params);
      const L = active.expectedLength;
      const contributors = server.survivors();
      const weighting = weightingOf(active.fed);
      const problem = updateSumProblem(
        values.subarray(0, L),
        values[L]!,
        contributors.length,
        weighting.mode === 'equal' ? 1 : Math.min(1, weighting.cap / setup.info.weightNormalizer),
        setup.params.clip,
      );
      if (problem) return { abort: `the unmasked update sum is implausible: ${problem}` };
      for (const id of contributors) {
        const p = active.participants.get(id);
        if (!p) continue;
        p.status = 'submitted';
        if (!active.unmasked.has(id)) {
          p.detail =
            "vanished before unmasking; its input was unmasked from its neighbours' shares";
          active.lateDrops++;
        }
      }
      if (active.fed.config.dp?.level !== 'site') {
        // The sites' total record count, a sum the round reveals anyway: the next round's normaliser.
        const records = Math.round(values[L]! * setup.info.weightNormalizer);
        if (records >= 1) this.totalRecords.set(active.federationId, records);
      }
      return {
        aggregate: { sum: values.subarray(0, L), totalWeight: values[L]!, contributors },
      };
    } catch (e) {
      if (e instanceof Stopped) throw e;
      const reason = isSecAggError(e)
        ? `secure aggregation: ${e.message}`
        : `secure aggregation failed: ${(e as Error).message}`;
      return { abort: reason };
    } finally {
      server.destroy();
      active.secagg = null;
    }
  }

  /**
   * The unmasked sum. Small jobs run here; large ones (many dropped sites' pairwise masks, long
   * vectors) expand on worker threads split by vector range, so the event loop keeps serving
   * sites, the API and health checks meanwhile (and spare cores share the work).
   */
  private async unmaskSum(server: SecAggServer, vectorLength: number): Promise<Uint32Array> {
    const workers = this.config.maskWorkers;
    if (workers < 1 || server.maskStreamCount() * vectorLength < PARALLEL_UNMASK_ELEMENTS) {
      return server.finish();
    }
    this.maskPool ??= new MaskWorkerPool(workers);
    return server.finishParallel(this.maskPool);
  }

  /** True when no participant in `status` that has not answered (`done`) can still answer. */
  private nonePendingIn(
    active: ActiveRound,
    status: Participant['status'],
    done: (siteId: string) => boolean,
  ): boolean {
    const now = this.clock.now().getTime();
    for (const p of active.participants.values()) {
      if (done(p.siteId)) continue;
      if (
        active.isPending(
          p.siteId,
          now,
          this.config.reconnectGraceMs,
          this.sessions.isConnected(p.siteId),
          status,
        )
      )
        return false;
    }
    return true;
  }
}

/** Sample-weighted mean of the sites' held-out metrics; null when no site reported. */
export function weightedMetrics(all: SiteMetrics[]): RoundMetrics['evaluation'] {
  return combineEvaluations({ kind: 'by-site', metrics: all });
}

/** An error's message for a round or run record (a stack trace goes to the log only). */
function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
