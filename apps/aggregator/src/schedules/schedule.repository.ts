import { Inject, Injectable } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import { DATABASE } from '../common/tokens';
import type { Database } from '../database/database';
import { camelRow, camelRows, returned } from '../database/sql';
import { isUuid } from '../federations/federation.repository';

/** A stored recurring schedule of rounds. */
export interface ScheduleRow {
  id: string;
  federationId: string;
  cron: string;
  timeZone: string;
  roundsPerTrigger: number;
  endsAt: Date | null;
  paused: boolean;
  /** The next trigger; null once the schedule has passed its end date. */
  nextRunAt: Date | null;
  lastRunAt: Date | null;
  /** What the last trigger did: "started run <id>", "skipped: ...", "failed: ...". */
  lastOutcome: string | null;
  createdAt: Date;
  createdBy: string;
}

const COLUMNS =
  'id, federation_id, cron, time_zone, rounds_per_trigger, ends_at, paused, next_run_at, last_run_at, last_outcome, created_at, created_by';

/** Round schedules (table round_schedule). */
@Injectable()
export class ScheduleRepository {
  constructor(@Inject(DATABASE) private readonly db: Database) {}

  async insert(
    s: Pick<
      ScheduleRow,
      | 'federationId'
      | 'cron'
      | 'timeZone'
      | 'roundsPerTrigger'
      | 'endsAt'
      | 'nextRunAt'
      | 'createdBy'
    >,
    em: EntityManager = this.db.manager,
  ): Promise<ScheduleRow> {
    const rows = await em.query(
      `INSERT INTO round_schedule (federation_id, cron, time_zone, rounds_per_trigger, ends_at, next_run_at, created_by)
       VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ${COLUMNS}`,
      [s.federationId, s.cron, s.timeZone, s.roundsPerTrigger, s.endsAt, s.nextRunAt, s.createdBy],
    );
    return camelRow<ScheduleRow>(rows[0]);
  }

  async find(federationId: string, id: string): Promise<ScheduleRow | null> {
    if (!isUuid(id)) return null;
    const rows = await this.db.manager.query(
      `SELECT ${COLUMNS} FROM round_schedule WHERE federation_id = $1 AND id = $2`,
      [federationId, id],
    );
    return rows.length ? camelRow<ScheduleRow>(rows[0]) : null;
  }

  async list(federationId: string): Promise<ScheduleRow[]> {
    return camelRows(
      await this.db.manager.query(
        `SELECT ${COLUMNS} FROM round_schedule WHERE federation_id = $1 ORDER BY created_at`,
        [federationId],
      ),
    );
  }

  /** Schedules that will fire: not paused and not past their end. */
  async active(): Promise<ScheduleRow[]> {
    return camelRows(
      await this.db.manager.query(
        `SELECT ${COLUMNS} FROM round_schedule WHERE NOT paused AND next_run_at IS NOT NULL ORDER BY next_run_at`,
      ),
    );
  }

  async setPaused(
    id: string,
    paused: boolean,
    nextRunAt: Date | null,
    em: EntityManager = this.db.manager,
  ): Promise<ScheduleRow> {
    const rows = returned(
      await em.query(
        `UPDATE round_schedule SET paused = $2, next_run_at = $3 WHERE id = $1 RETURNING ${COLUMNS}`,
        [id, paused, nextRunAt],
      ),
    );
    return camelRow<ScheduleRow>(rows[0]!);
  }

  /**
   * Moves a due schedule on to its next trigger, only if nobody else did (its `next_run_at` is still
   * `due`); true when this caller won the trigger and should start the run.
   */
  async claim(id: string, due: Date, next: Date | null, now: Date): Promise<boolean> {
    const rows = returned(
      await this.db.manager.query(
        `UPDATE round_schedule SET next_run_at = $3, last_run_at = $4
         WHERE id = $1 AND next_run_at = $2 AND NOT paused RETURNING id`,
        [id, due, next, now],
      ),
    );
    return rows.length === 1;
  }

  /** Moves a schedule's next trigger without firing (e.g. it ended while the aggregator was down). */
  async setNext(id: string, due: Date, next: Date | null): Promise<void> {
    await this.db.manager.query(
      `UPDATE round_schedule SET next_run_at = $3 WHERE id = $1 AND next_run_at = $2`,
      [id, due, next],
    );
  }

  async setOutcome(id: string, outcome: string): Promise<void> {
    await this.db.manager.query(`UPDATE round_schedule SET last_outcome = $2 WHERE id = $1`, [
      id,
      outcome,
    ]);
  }

  async delete(id: string, em: EntityManager = this.db.manager): Promise<void> {
    await em.query(`DELETE FROM round_schedule WHERE id = $1`, [id]);
  }
}
