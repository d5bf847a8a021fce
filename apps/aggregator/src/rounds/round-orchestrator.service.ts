import {
  Inject,
  Injectable,
  type OnApplicationBootstrap,
  type OnModuleDestroy,
} from '@nestjs/common';
import type { SiteMessage } from '@confide/protocol';
import { MaskWorkerPool, SecAggServer } from '@confide/secure-aggregation';
import { RoundSumsService } from './round-sums.service';
import { RoundMessages } from './round-messages';
import { errorText, Stopped, type RunLoop } from './round-context';
import { AggregatorRoundRunner } from './round-runner';
import { LedgerRepository } from '../privacy/ledger.repository';
import { LedgerService } from '../privacy/ledger.service';
import { SiteRepository } from '../sites/site.repository';
import { RoundEvents } from './round-events';
import { RoundRepository } from './round.repository';
import { CLOCK, CONFIG, type AggregatorConfig, type Clock } from '../common/tokens';
import type { Participant, RunRow } from '../database/rows';
import { FederationRepository } from '../federations/federation.repository';
import { ModelVersionRepository } from '../models/model-version.repository';
import { SessionRegistry, type SiteSession } from '../fl/session-registry';
import { MetricsService } from '../observability/metrics.service';

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
  private readonly runner: AggregatorRoundRunner;

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
    this.runner = new AggregatorRoundRunner({
      config,
      clock,
      sessions,
      live,
      rounds,
      federations,
      models,
      metrics,
      sums,
      siteRepo,
      ledger,
      ledgerRepo,
      latestWeights: this.latestWeights,
      totalRecords: this.totalRecords,
      unmask: (server, vectorLength) => this.unmaskSum(server, vectorLength),
      shuttingDown: () => this.shuttingDown,
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
      const outcome = await this.runner.run(loop);
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
}
