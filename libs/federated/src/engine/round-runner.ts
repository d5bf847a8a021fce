import { jsonMessage, type Grid } from '../grid/grid';
import { StrategyError } from '../strategies/errors';
import { cryptoUniformRandom } from '../strategies/random';
import { sha256 } from '@confide/secure-aggregation';
import type {
  Strategy,
  StrategyState,
  TrainInstructions,
  UniformRandom,
} from '../strategies/types';
import type { EngineReply, RoundEnd } from './messages';
import type { RoundParticipant, RoundRecord, RoundStore } from './round-store';
import { EvaluationWorkflow } from './workflows/evaluation';
import { PlainTrainingWorkflow, type PlainTrainingResult } from './workflows/plain-training';
import { SecureTrainingWorkflow, type SecureSettings } from './workflows/secure-training';
import { awaitSites, drawSites } from './workflows/selection';

/** How the runner runs each round. */
export interface RoundRunnerOptions {
  readonly grid: Grid<EngineReply>;
  readonly store: RoundStore;
  readonly strategy: Strategy;
  /** Fewest sites a round needs, at selection and among the updates. */
  readonly minSites: number;
  /** Client sampling: the fraction of the connected sites drawn for a round (1: all). */
  readonly fraction?: number;
  /** From the round's start to the last update. */
  readonly roundTimeoutMs: number;
  readonly evaluationTimeoutMs?: number;
  /** Whether rounds evaluate the new model on the contributors' held-out data. */
  readonly evaluate?: boolean;
  /** The most examples one site may claim. */
  readonly maxExamples?: number;
  /**
   * How long a site may be away within a stage and still continue it (it is sent the stage's
   * request again when it reconnects); 0, the default, drops it from the round at once.
   */
  readonly reconnectGraceMs?: number;
  /** The draw's randomness: a CSPRNG unless given (the simulator seeds it). */
  readonly random?: UniformRandom;
  /**
   * Secure aggregation (SecAgg+): the aggregator learns only the survivors' weighted sum. A
   * strategy that needs each update cannot run with it.
   */
  readonly secure?: SecureSettings;
  /** Progress: called at each step of a round. */
  readonly onEvent?: (event: RoundEvent) => void;
}

export type RoundEvent =
  | { kind: 'started'; round: number; sites: number }
  | { kind: 'trained'; round: number; contributors: number }
  | { kind: 'ended'; record: RoundRecord };

/** One round's outcome, as the store recorded it. */
export type RoundOutcome = RoundRecord;

const DEFAULT_MAX_EXAMPLES = 1_000_000_000;

/**
 * The round runner: one round at a time over the Grid, composed of workflows (selection, plain
 * training, evaluation) and the strategy's server step, each round's outcome persisted in the
 * store. Clock (the Grid's), randomness and the store are injected, so whole rounds run in a unit
 * test on the in-memory Grid with a fake clock. A runner built over a store a previous runner left
 * continues from its committed head and strategy state; a round that runner left running is
 * recorded as aborted, with why, before anything else.
 *
 * @example
 * const runner = new RoundRunner({ grid, store, strategy, minSites: 3, roundTimeoutMs: 30_000 });
 * for (let i = 0; i < 10; i++) console.log(await runner.runRound());
 */
export class RoundRunner {
  private readonly training: PlainTrainingWorkflow;
  private readonly secureTraining: SecureTrainingWorkflow;
  private readonly evaluation: EvaluationWorkflow;
  private readonly random: UniformRandom;
  private recovered = false;

  constructor(private readonly options: RoundRunnerOptions) {
    if (!Number.isInteger(options.minSites) || options.minSites < 1) {
      throw new RangeError(`minSites must be a positive integer, not ${options.minSites}`);
    }
    if (!(options.roundTimeoutMs > 0)) {
      throw new RangeError(`roundTimeoutMs must be positive, not ${options.roundTimeoutMs}`);
    }
    if (options.secure && options.strategy.needsIndividualUpdates) {
      throw new RangeError(
        `strategy "${options.strategy.name}" needs each site's update, which secure aggregation hides: run it without secure aggregation`,
      );
    }
    this.training = new PlainTrainingWorkflow(options.grid);
    this.secureTraining = new SecureTrainingWorkflow(options.grid);
    this.evaluation = new EvaluationWorkflow(options.grid);
    this.random = options.random ?? cryptoUniformRandom;
  }

  /** Runs `rounds` rounds (aborted ones count), stopping early when `signal` aborts. */
  async run(rounds: number, signal?: AbortSignal): Promise<RoundOutcome[]> {
    const out: RoundOutcome[] = [];
    for (let i = 0; i < rounds && !signal?.aborted; i++) out.push(await this.runRound(signal));
    return out;
  }

  /** Runs the next round to its commit or abort. */
  async runRound(signal?: AbortSignal): Promise<RoundOutcome> {
    await this.recover();
    const { grid, store, strategy } = this.options;
    const head = await store.head();
    const previous = await store.rounds();
    const number = Math.max(head.round, ...previous.map((r) => r.round)) + 1;
    const clock = grid.clock;
    const record: RoundRecord = {
      round: number,
      startedAt: clock.now(),
      endedAt: null,
      status: 'running',
      reason: null,
      participants: [],
      sampling: null,
      trainLoss: null,
      evaluation: null,
    };
    await store.begin(record);
    const deadline = record.startedAt + this.options.roundTimeoutMs;
    const end = async (reason: string | null): Promise<RoundOutcome> => {
      record.endedAt = clock.now();
      record.status = reason === null ? 'committed' : 'aborted';
      record.reason = reason;
      if (reason !== null) await store.abort(record);
      const message: RoundEnd = {
        type: 'round.end',
        round: number,
        outcome: record.status,
        reason,
      };
      grid.broadcast(
        record.participants.map((p) => p.siteId),
        jsonMessage(message),
      );
      this.options.onEvent?.({ kind: 'ended', record });
      return record;
    };

    // Selection, then the aggregator's draw when it samples.
    const minSites = this.options.minSites;
    const connected = await awaitSites(grid, minSites, deadline, signal);
    if (connected.length < minSites) {
      return end(
        `only ${connected.length} site(s) connected before the deadline; the round needs minSites=${minSites}`,
      );
    }
    const draw = drawSites(connected, this.options.fraction ?? 1, minSites, this.random);
    record.sampling = draw.sampling;
    const participants = new Map<string, RoundParticipant>(
      draw.selected.map((siteId) => [siteId, { siteId, status: 'selected' }]),
    );
    record.participants = [...participants.values()];
    this.options.onEvent?.({ kind: 'started', round: number, sites: draw.selected.length });

    let state: StrategyState;
    try {
      state =
        head.strategyState === null
          ? strategy.initialState()
          : strategy.parseState(head.strategyState, head.weights.length);
    } catch (e) {
      return end(`strategy "${strategy.name}": the stored state cannot be read: ${text(e)}`);
    }

    // Training.
    const maxExamples = this.options.maxExamples ?? DEFAULT_MAX_EXAMPLES;
    const instructions = strategy.configureTrain(number, state);
    const trained: Trained = this.options.secure
      ? await this.trainSecurely(
          number,
          draw.selected,
          head.weights,
          instructions,
          deadline,
          signal,
        )
      : plainTrained(
          await this.training.run({
            round: number,
            sites: draw.selected,
            global: head.weights,
            instructions,
            strategy,
            deadline,
            maxExamples,
            ...this.grace(),
            ...(signal ? { signal } : {}),
          }),
        );
    for (const id of trained.contributors) participants.get(id)!.status = 'submitted';
    for (const [id, why] of trained.rejected) mark(participants, id, 'rejected', why);
    for (const [id, why] of trained.declined) mark(participants, id, 'declined', why);
    for (const [id, why] of trained.missing) mark(participants, id, 'dropped', why);
    record.participants = [...participants.values()];
    record.trainLoss = trained.trainLoss;
    this.options.onEvent?.({
      kind: 'trained',
      round: number,
      contributors: trained.contributors.length,
    });
    if (signal?.aborted) return end('the run was stopped');
    if (trained.abort) return end(trained.abort);
    if (trained.contributors.length < minSites) {
      return end(
        `only ${trained.contributors.length} update(s) arrived; the round needs minSites=${minSites}`,
      );
    }

    // The strategy's server step.
    let next: { weights: Float32Array; state: StrategyState };
    try {
      next = strategy.aggregateTrain(head.weights, trained.aggregate!, state);
    } catch (e) {
      if (e instanceof StrategyError) {
        return end(`strategy "${strategy.name}" cannot aggregate: ${e.message}`);
      }
      throw e;
    }
    for (let i = 0; i < next.weights.length; i++) {
      if (!Number.isFinite(next.weights[i]!)) {
        return end(`strategy "${strategy.name}" produced a non-finite weight at ${i}`);
      }
    }

    // Evaluation of the new model on the contributors' held-out data.
    if (this.options.evaluate ?? true) {
      const evaluated = await this.evaluation.run({
        round: number,
        sites: trained.contributors,
        weights: next.weights,
        strategy,
        deadline: clock.now() + (this.options.evaluationTimeoutMs ?? this.options.roundTimeoutMs),
        maxExamples,
        ...this.grace(),
        ...(signal ? { signal } : {}),
      });
      record.evaluation = evaluated.summary;
    }

    // Commit: model, strategy state and record together.
    record.endedAt = clock.now();
    record.status = 'committed';
    await store.commit(record, {
      round: number,
      weights: next.weights,
      strategyState: strategy.serializeState(next.state),
    });
    return end(null);
  }

  /** SecAgg+ training, its outcome in the shape plain training gives. */
  private async trainSecurely(
    round: number,
    sites: readonly string[],
    global: Float32Array,
    instructions: TrainInstructions,
    deadline: number,
    signal: AbortSignal | undefined,
  ): Promise<Trained> {
    const got = await this.secureTraining.run({
      round,
      sites,
      global,
      instructions,
      modelHash: modelHash(global),
      deadline,
      secure: this.options.secure!,
      ...this.grace(),
      ...(signal ? { signal } : {}),
    });
    const declined = new Map<string, string>();
    const rejected = new Map<string, string>();
    for (const [id, why] of got.rejected) {
      (why.startsWith('declined: ') ? declined : rejected).set(id, why.replace(/^declined: /, ''));
    }
    return {
      aggregate: got.aggregate,
      abort: got.abort,
      contributors: got.contributors,
      rejected,
      declined,
      missing: new Map(
        [...got.dropped].map(([id, stage]) => [
          id,
          `no ${stage} step before the deadline or disconnected`,
        ]),
      ),
      // A site's loss stays inside its masked input.
      trainLoss: null,
    };
  }

  private grace(): { reconnectGraceMs?: number } {
    const ms = this.options.reconnectGraceMs;
    return ms === undefined ? {} : { reconnectGraceMs: ms };
  }

  /** Records as aborted a round a previous runner left running (once per runner). */
  private async recover(): Promise<void> {
    if (this.recovered) return;
    this.recovered = true;
    const left = await this.options.store.unfinished();
    if (!left) return;
    await this.options.store.abort({
      ...left,
      status: 'aborted',
      endedAt: this.options.grid.clock.now(),
      reason: 'the round runner stopped mid-round; the round was not committed',
    });
  }
}

/** What training gave the round, plain or secure. */
interface Trained {
  readonly aggregate: PlainTrainingResult['aggregate'] | null;
  readonly abort?: string | null;
  readonly contributors: readonly string[];
  readonly rejected: ReadonlyMap<string, string>;
  readonly declined: ReadonlyMap<string, string>;
  /** Sites with no answer, with what they did not send. */
  readonly missing: ReadonlyMap<string, string>;
  readonly trainLoss: number | null;
}

function plainTrained(r: PlainTrainingResult): Trained {
  return {
    ...r,
    abort: null,
    missing: new Map(
      [...r.missing].map((id) => [id, 'no update before the deadline or disconnected']),
    ),
  };
}

/** The hash a secure round's session binds to: SHA-256 of the global weights' bytes. */
function modelHash(weights: Float32Array): string {
  return Buffer.from(
    sha256(new Uint8Array(weights.buffer, weights.byteOffset, weights.byteLength)),
  ).toString('hex');
}

function mark(
  participants: Map<string, RoundParticipant>,
  siteId: string,
  status: RoundParticipant['status'],
  detail: string,
): void {
  const p = participants.get(siteId);
  if (p && p.status === 'selected') {
    p.status = status;
    p.detail = detail;
  }
}

function text(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
