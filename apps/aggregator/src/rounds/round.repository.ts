import { Inject, Injectable } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import { DATABASE } from '../common/tokens';
import type { Database } from '../database/database';
import type {
  Participant,
  RoundMetrics,
  RoundRow,
  RoundState,
  RunRow,
  RunStatus,
} from '../database/rows';
import { camelRow, camelRows, returned } from '../database/sql';
import { isUuid } from '../federations/federation.repository';

const ROUND_COLUMNS =
  'id, federation_id, run_id, number, state, reason, base_model_version_id, model_version_id, participants, metrics, deadline, started_at, ended_at, duration_ms';
const RUN_COLUMNS =
  'id, federation_id, rounds_requested, rounds_done, status, reason, created_at, ended_at';

/** Training runs, rounds, and every round transition. */
@Injectable()
export class RoundRepository {
  constructor(@Inject(DATABASE) private readonly db: Database) {}

  transaction<T>(work: (em: EntityManager) => Promise<T>): Promise<T> {
    return this.db.transaction(work);
  }

  // ---- runs ----
  async insertRun(em: EntityManager, federationId: string, rounds: number): Promise<RunRow> {
    const rows = await em.query(
      `INSERT INTO training_run (federation_id, rounds_requested, status) VALUES ($1, $2, 'running') RETURNING ${RUN_COLUMNS}`,
      [federationId, rounds],
    );
    return camelRow<RunRow>(rows[0]);
  }

  async findRun(id: string): Promise<RunRow | null> {
    if (!isUuid(id)) return null;
    const rows = await this.db.manager.query(
      `SELECT ${RUN_COLUMNS} FROM training_run WHERE id = $1`,
      [id],
    );
    return rows.length ? camelRow<RunRow>(rows[0]) : null;
  }

  async runningRuns(): Promise<RunRow[]> {
    return camelRows(
      await this.db.manager.query(
        `SELECT ${RUN_COLUMNS} FROM training_run WHERE status = 'running' ORDER BY created_at`,
      ),
    );
  }

  async runningRun(federationId: string): Promise<RunRow | null> {
    const rows = await this.db.manager.query(
      `SELECT ${RUN_COLUMNS} FROM training_run WHERE federation_id = $1 AND status = 'running'`,
      [federationId],
    );
    return rows.length ? camelRow<RunRow>(rows[0]) : null;
  }

  async listRuns(federationId: string): Promise<RunRow[]> {
    return camelRows(
      await this.db.manager.query(
        `SELECT ${RUN_COLUMNS} FROM training_run WHERE federation_id = $1 ORDER BY created_at`,
        [federationId],
      ),
    );
  }

  async incrementRunRounds(em: EntityManager, runId: string): Promise<void> {
    await em.query(`UPDATE training_run SET rounds_done = rounds_done + 1 WHERE id = $1`, [runId]);
  }

  async endRun(
    runId: string,
    status: Exclude<RunStatus, 'running'>,
    reason: string | null,
  ): Promise<void> {
    await this.db.manager.query(
      `UPDATE training_run SET status = $2, reason = $3, ended_at = now() WHERE id = $1 AND status = 'running'`,
      [runId, status, reason],
    );
  }

  // ---- rounds ----
  async nextRoundNumber(em: EntityManager, federationId: string): Promise<number> {
    const rows = await em.query(
      `SELECT coalesce(max(number), 0)::int + 1 AS n FROM round WHERE federation_id = $1`,
      [federationId],
    );
    return rows[0].n as number;
  }

  async insertRound(
    em: EntityManager,
    r: {
      federationId: string;
      runId: string;
      number: number;
      baseModelVersionId: string;
      deadline: Date;
    },
  ): Promise<RoundRow> {
    const rows = await em.query(
      `INSERT INTO round (federation_id, run_id, number, state, base_model_version_id, deadline)
       VALUES ($1, $2, $3, 'scheduled', $4, $5) RETURNING ${ROUND_COLUMNS}`,
      [r.federationId, r.runId, r.number, r.baseModelVersionId, r.deadline],
    );
    const round = camelRow<RoundRow>(rows[0]);
    await this.event(em, round.id, 'scheduled', { deadline: r.deadline });
    return round;
  }

  /**
   * Moves a round to `state` and records the transition, in the caller's transaction. Refuses to move a
   * round that already ended (committed or aborted), so a late event cannot resurrect it.
   */
  async transition(
    em: EntityManager,
    roundId: string,
    state: RoundState,
    patch: {
      participants?: Participant[];
      metrics?: RoundMetrics;
      modelVersionId?: string;
      reason?: string;
      ended?: boolean;
    } = {},
  ): Promise<RoundRow> {
    const sets = ['state = $2'];
    const params: unknown[] = [roundId, state];
    const add = (col: string, value: unknown): void => {
      params.push(value);
      sets.push(`${col} = $${params.length}`);
    };
    if (patch.participants) add('participants', JSON.stringify(patch.participants));
    if (patch.metrics) add('metrics', JSON.stringify(patch.metrics));
    if (patch.modelVersionId) add('model_version_id', patch.modelVersionId);
    if (patch.reason !== undefined) add('reason', patch.reason);
    if (patch.ended) {
      sets.push('ended_at = now()');
      sets.push('duration_ms = (extract(epoch from (now() - started_at)) * 1000)::int');
    }
    const rows = returned(
      await em.query(
        `UPDATE round SET ${sets.join(', ')} WHERE id = $1 AND state NOT IN ('committed', 'aborted') RETURNING ${ROUND_COLUMNS}`,
        params,
      ),
    );
    if (!rows.length)
      throw new Error(`round ${roundId} has already ended; cannot move it to ${state}`);
    await this.event(em, roundId, state, patch.reason ? { reason: patch.reason } : null);
    return camelRow<RoundRow>(rows[0]!);
  }

  async updateParticipants(roundId: string, participants: Participant[]): Promise<void> {
    await this.db.manager.query(`UPDATE round SET participants = $2 WHERE id = $1`, [
      roundId,
      JSON.stringify(participants),
    ]);
  }

  private async event(
    em: EntityManager,
    roundId: string,
    state: string,
    detail: unknown,
  ): Promise<void> {
    await em.query(`INSERT INTO round_event (round_id, state, detail) VALUES ($1, $2, $3)`, [
      roundId,
      state,
      detail === null ? null : JSON.stringify(detail),
    ]);
  }

  async findRound(federationId: string, number: number): Promise<RoundRow | null> {
    const rows = await this.db.manager.query(
      `SELECT ${ROUND_COLUMNS} FROM round WHERE federation_id = $1 AND number = $2`,
      [federationId, number],
    );
    return rows.length ? camelRow<RoundRow>(rows[0]) : null;
  }

  async listRounds(federationId: string): Promise<RoundRow[]> {
    return camelRows(
      await this.db.manager.query(
        `SELECT ${ROUND_COLUMNS} FROM round WHERE federation_id = $1 ORDER BY number`,
        [federationId],
      ),
    );
  }

  async unfinishedRounds(): Promise<RoundRow[]> {
    return camelRows(
      await this.db.manager.query(
        `SELECT ${ROUND_COLUMNS} FROM round WHERE state NOT IN ('committed', 'aborted') ORDER BY started_at`,
      ),
    );
  }

  async roundEvents(roundId: string): Promise<Array<{ state: string; detail: unknown; at: Date }>> {
    return camelRows(
      await this.db.manager.query(
        `SELECT state, detail, at FROM round_event WHERE round_id = $1 ORDER BY id`,
        [roundId],
      ),
    );
  }
}
