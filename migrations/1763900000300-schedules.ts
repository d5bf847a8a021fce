import type { MigrationInterface, QueryRunner } from 'typeorm';

/** Recurring round schedules: a cron expression in a time zone, until an optional end date. */
export class Schedules1763900000300 implements MigrationInterface {
  name = 'Schedules1763900000300';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE round_schedule (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        federation_id uuid NOT NULL REFERENCES federation(id) ON DELETE RESTRICT,
        cron text NOT NULL,
        time_zone text NOT NULL,
        rounds_per_trigger integer NOT NULL CHECK (rounds_per_trigger > 0),
        ends_at timestamptz,
        paused boolean NOT NULL DEFAULT false,
        next_run_at timestamptz,
        last_run_at timestamptz,
        last_outcome text,
        created_at timestamptz NOT NULL DEFAULT now(),
        created_by text NOT NULL
      )`);
    await q.query(`CREATE INDEX round_schedule_federation ON round_schedule (federation_id)`);
    await q.query(
      `CREATE INDEX round_schedule_due ON round_schedule (next_run_at) WHERE NOT paused AND next_run_at IS NOT NULL`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE round_schedule`);
  }
}
