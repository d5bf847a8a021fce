import {
  Inject,
  Injectable,
  type OnApplicationBootstrap,
  type OnModuleDestroy,
} from '@nestjs/common';
import { nextTriggerBefore } from './cron';
import { ScheduleRepository, type ScheduleRow } from './schedule.repository';
import { AdminEventRepository } from '../common/admin-event.repository';
import { CLOCK, CONFIG, type AggregatorConfig, type Clock } from '../common/tokens';
import { RoundOrchestrator } from '../rounds/round-orchestrator.service';
import { RoundRepository } from '../rounds/round.repository';

/** The longest the scheduler sleeps before looking again (robust to clock jumps and suspends). */
export const MAX_SLEEP_MS = 60_000;

/** What the scheduler needs from the schedule table (a fake in unit tests). */
export type ScheduleStore = Pick<ScheduleRepository, 'active' | 'claim' | 'setNext' | 'setOutcome'>;
/** What it needs to start runs and to see a running one. */
export interface RunControl {
  startRun(federationId: string, rounds: number): Promise<{ id: string }>;
}
export interface RunLookup {
  runningRun(
    federationId: string,
  ): Promise<{ id: string; roundsDone: number; roundsRequested: number } | null>;
}

/**
 * Fires recurring schedules: on start it loads them (a trigger missed while the aggregator was down
 * fires once, if it was before the schedule's end), then sleeps until the earliest next trigger. Each
 * trigger starts a run of `roundsPerTrigger` rounds, or is skipped, with an admin event saying why,
 * when the federation still has a run going.
 */
@Injectable()
export class Scheduler implements OnApplicationBootstrap, OnModuleDestroy {
  private timer: NodeJS.Timeout | null = null;
  private tick: Promise<void> = Promise.resolve();
  private stopped = false;

  constructor(
    @Inject(CLOCK) private readonly clock: Clock,
    @Inject(CONFIG) private readonly config: Pick<AggregatorConfig, 'log'>,
    @Inject(ScheduleRepository) private readonly store: ScheduleStore,
    @Inject(RoundOrchestrator) private readonly runs: RunControl,
    @Inject(RoundRepository) private readonly rounds: RunLookup,
    @Inject(AdminEventRepository) private readonly events: Pick<AdminEventRepository, 'record'>,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    await this.runDue();
  }

  async onModuleDestroy(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.tick;
  }

  /** Fires every due schedule once, then sleeps until the next trigger. Calls never overlap. */
  runDue(): Promise<void> {
    const next = this.tick
      .then(() => this.fireDue())
      .catch((e: unknown) => {
        // A database hiccup must not stop the scheduler: look again after the longest sleep.
        this.config.log(`scheduler: ${(e as Error).stack ?? String(e)}`);
        this.sleep(MAX_SLEEP_MS);
      });
    this.tick = next;
    return next;
  }

  private async fireDue(): Promise<void> {
    if (this.stopped) return;
    const now = this.clock.now();
    for (const s of await this.store.active()) {
      if (this.stopped) return;
      if (s.nextRunAt && s.nextRunAt.getTime() <= now.getTime()) await this.fire(s, now);
    }
    this.arm(await this.store.active());
  }

  private async fire(s: ScheduleRow, now: Date): Promise<void> {
    const due = s.nextRunAt!;
    let next: Date | null;
    try {
      next = nextTriggerBefore(s.cron, s.timeZone, now, s.endsAt);
    } catch (e) {
      // Validated on create; only a time zone dropped from the runtime's database can land here.
      this.config.log(`schedule ${s.id}: cannot compute the next trigger: ${(e as Error).message}`);
      next = null;
    }
    if (s.endsAt && due.getTime() >= s.endsAt.getTime()) {
      await this.store.setNext(s.id, due, null);
      return;
    }
    // Claim the trigger first: several missed triggers collapse into this one, and a second
    // aggregator on the same database cannot start the same trigger twice.
    if (!(await this.store.claim(s.id, due, next, now))) return;
    const late = now.getTime() - due.getTime() > MAX_SLEEP_MS + 5_000;
    const when = late
      ? `trigger of ${due.toISOString()} (missed while the aggregator was down)`
      : `trigger of ${due.toISOString()}`;
    const details = { federationId: s.federationId, due: due.toISOString(), late };
    const running = await this.rounds.runningRun(s.federationId);
    if (running) {
      const outcome = `skipped: run ${running.id} was still running (${running.roundsDone}/${running.roundsRequested} rounds)`;
      await this.events.record('scheduler', 'schedule.skip', s.id, {
        ...details,
        runId: running.id,
      });
      await this.store.setOutcome(s.id, outcome);
      this.config.log(`schedule ${s.id}: ${when} ${outcome}`);
      return;
    }
    let outcome: string;
    try {
      const run = await this.runs.startRun(s.federationId, s.roundsPerTrigger);
      outcome = `started run ${run.id} (${s.roundsPerTrigger} round${s.roundsPerTrigger === 1 ? '' : 's'})`;
      await this.events.record('scheduler', 'schedule.trigger', s.id, {
        ...details,
        runId: run.id,
        rounds: s.roundsPerTrigger,
      });
    } catch (e) {
      const message = (e as Error).message;
      outcome = /training_run_one_running/.test(message)
        ? 'skipped: another run was started at the same time'
        : `failed: ${message}`;
      await this.events.record(
        'scheduler',
        outcome.startsWith('skipped') ? 'schedule.skip' : 'schedule.fail',
        s.id,
        { ...details, reason: outcome },
      );
    }
    await this.store.setOutcome(s.id, outcome);
    this.config.log(`schedule ${s.id}: ${when} ${outcome}`);
  }

  private arm(active: ScheduleRow[]): void {
    if (!active.length) {
      this.sleep(null);
      return;
    }
    const earliest = Math.min(...active.map((s) => s.nextRunAt!.getTime()));
    this.sleep(Math.min(Math.max(0, earliest - this.clock.now().getTime()), MAX_SLEEP_MS));
  }

  /** Sets the one timer (null: none until the next change of a schedule). */
  private sleep(ms: number | null): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.stopped || ms === null) return;
    this.timer = setTimeout(() => void this.runDue(), ms);
    this.timer.unref();
  }
}
