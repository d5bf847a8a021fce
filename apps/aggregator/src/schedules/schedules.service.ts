import { Inject, Injectable } from '@nestjs/common';
import { z } from 'zod';
import { canonicalTimeZone, cronProblem, nextTrigger, nextTriggerBefore } from './cron';
import { ScheduleRepository, type ScheduleRow } from './schedule.repository';
import { Scheduler } from './scheduler.service';
import { AdminEventRepository } from '../common/admin-event.repository';
import { ApiError } from '../common/errors';
import { CLOCK, DATABASE, type Clock } from '../common/tokens';
import { parseInput } from '../common/validation';
import type { Database } from '../database/database';
import { FederationsService } from '../federations/federations.service';

export const createScheduleSchema = z
  .object({
    cron: z.string().max(200),
    timeZone: z.string().max(100),
    roundsPerTrigger: z.number().int().min(1).max(100_000).default(1),
    endsAt: z.iso.datetime({ offset: true }).nullable().optional(),
  })
  .strict();

/** JSON schema of the body, for the OpenAPI document. */
export const createScheduleOpenApi = {
  type: 'object',
  required: ['cron', 'timeZone'],
  properties: {
    cron: {
      type: 'string',
      example: '0 2 * * *',
      description: '5 fields: minute hour day-of-month month day-of-week (or @daily, @hourly, ...)',
    },
    timeZone: { type: 'string', example: 'Europe/Berlin', description: 'IANA time zone' },
    roundsPerTrigger: { type: 'integer', default: 1 },
    endsAt: {
      type: 'string',
      format: 'date-time',
      nullable: true,
      description: 'no trigger at or after this instant',
    },
  },
} as const;

/** A schedule as the API shows it. */
export interface ScheduleView extends ScheduleRow {
  status: 'active' | 'paused' | 'ended';
}

/** Creating, listing, pausing, resuming and deleting recurring schedules of rounds. */
@Injectable()
export class SchedulesService {
  constructor(
    @Inject(DATABASE) private readonly db: Database,
    @Inject(CLOCK) private readonly clock: Clock,
    @Inject(ScheduleRepository) private readonly schedules: ScheduleRepository,
    @Inject(FederationsService) private readonly federations: FederationsService,
    @Inject(AdminEventRepository) private readonly events: AdminEventRepository,
    @Inject(Scheduler) private readonly scheduler: Scheduler,
  ) {}

  async create(federationId: string, body: unknown, actor: string): Promise<ScheduleView> {
    await this.federations.get(federationId);
    const input = parseInput(createScheduleSchema, body);
    const problem = cronProblem(input.cron);
    if (problem) throw new ApiError('VALIDATION_FAILED', problem);
    const timeZone = canonicalTimeZone(input.timeZone);
    if (!timeZone) {
      throw new ApiError(
        'VALIDATION_FAILED',
        `unknown time zone "${input.timeZone}"; use an IANA name such as Europe/Berlin or UTC`,
      );
    }
    const now = this.clock.now();
    const endsAt = input.endsAt ? new Date(input.endsAt) : null;
    if (endsAt && endsAt.getTime() <= now.getTime()) {
      throw new ApiError(
        'VALIDATION_FAILED',
        `endsAt ${endsAt.toISOString()} is in the past; leave it empty for a schedule without end`,
      );
    }
    const cron = input.cron.trim().replace(/\s+/g, ' ');
    const nextRunAt = nextTriggerBefore(cron, timeZone, now, endsAt);
    if (!nextRunAt) {
      throw new ApiError(
        'VALIDATION_FAILED',
        `the schedule would never fire: its first trigger (${nextTrigger(cron, timeZone, now).toISOString()}) is after endsAt (${endsAt!.toISOString()})`,
      );
    }
    const row = await this.db.transaction(async (em) => {
      const r = await this.schedules.insert(
        {
          federationId,
          cron,
          timeZone,
          roundsPerTrigger: input.roundsPerTrigger,
          endsAt,
          nextRunAt,
          createdBy: actor,
        },
        em,
      );
      await this.events.record(
        actor,
        'schedule.create',
        r.id,
        { federationId, cron, timeZone, roundsPerTrigger: r.roundsPerTrigger, endsAt },
        em,
      );
      return r;
    });
    await this.scheduler.runDue();
    return view(row);
  }

  async list(federationId: string): Promise<ScheduleView[]> {
    await this.federations.get(federationId);
    return (await this.schedules.list(federationId)).map(view);
  }

  /** Paused schedules do not fire; triggers that pass while paused are not made up later. */
  async pause(federationId: string, id: string, actor: string): Promise<ScheduleView> {
    const s = await this.get(federationId, id);
    if (s.paused) return view(s);
    const row = await this.db.transaction(async (em) => {
      const r = await this.schedules.setPaused(s.id, true, s.nextRunAt, em);
      await this.events.record(actor, 'schedule.pause', s.id, { federationId }, em);
      return r;
    });
    await this.scheduler.runDue();
    return view(row);
  }

  /** Resumes from now: the next trigger is recomputed, skipped ones stay skipped. */
  async resume(federationId: string, id: string, actor: string): Promise<ScheduleView> {
    const s = await this.get(federationId, id);
    const next = nextTriggerBefore(s.cron, s.timeZone, this.clock.now(), s.endsAt);
    if (!next) {
      throw new ApiError(
        'INVALID_STATE',
        `this schedule ended on ${s.endsAt?.toISOString()}; create a new one`,
      );
    }
    if (!s.paused) return view(s);
    const row = await this.db.transaction(async (em) => {
      const r = await this.schedules.setPaused(s.id, false, next, em);
      await this.events.record(actor, 'schedule.resume', s.id, { federationId }, em);
      return r;
    });
    await this.scheduler.runDue();
    return view(row);
  }

  async delete(federationId: string, id: string, actor: string): Promise<void> {
    const s = await this.get(federationId, id);
    await this.db.transaction(async (em) => {
      await this.schedules.delete(s.id, em);
      await this.events.record(
        actor,
        'schedule.delete',
        s.id,
        { federationId, cron: s.cron, timeZone: s.timeZone },
        em,
      );
    });
    await this.scheduler.runDue();
  }

  private async get(federationId: string, id: string): Promise<ScheduleRow> {
    await this.federations.get(federationId);
    const s = await this.schedules.find(federationId, id);
    if (!s) throw new ApiError('NOT_FOUND', `no schedule ${id} in federation ${federationId}`);
    return s;
  }
}

function view(s: ScheduleRow): ScheduleView {
  return { ...s, status: s.paused ? 'paused' : s.nextRunAt ? 'active' : 'ended' };
}
