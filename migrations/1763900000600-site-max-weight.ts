import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * A site's weight in a plain federation's average is capped at what an admin set when enrolling it
 * (NULL: only the federation's cap applies), so one site's claimed record count cannot take over
 * the model.
 */
export class SiteMaxWeight1763900000600 implements MigrationInterface {
  name = 'SiteMaxWeight1763900000600';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      ALTER TABLE site
        ADD COLUMN max_weight integer CHECK (max_weight IS NULL OR max_weight >= 1)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE site DROP COLUMN max_weight`);
  }
}
