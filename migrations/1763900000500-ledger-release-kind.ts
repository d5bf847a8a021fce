import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The ledger records what a release made public: NULL for a model update (every earlier row, whose
 * hash is unchanged), 'statistics' or 'evaluation' for the summed statistics and evaluation counts a
 * site releases under differential privacy. Adding a nullable column rewrites no row, so the
 * append-only triggers do not fire.
 */
export class LedgerReleaseKind1763900000500 implements MigrationInterface {
  name = 'LedgerReleaseKind1763900000500';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      ALTER TABLE ledger_entry
        ADD COLUMN release text CHECK (release IS NULL OR release IN ('statistics', 'evaluation'))`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE ledger_entry DROP COLUMN release`);
  }
}
