import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The ledger records the distributed discrete Gaussian (site-level DP under secure aggregation) with
 * what its bound needs: the noise kind, the round's quantisation scale and the number of noised
 * coordinates. All three are NULL on every earlier row, which stay continuous-Gaussian entries with
 * the same hash. Adding nullable columns rewrites no row, so the append-only triggers do not fire.
 */
export class LedgerIntegerNoise1763900000400 implements MigrationInterface {
  name = 'LedgerIntegerNoise1763900000400';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      ALTER TABLE ledger_entry
        ADD COLUMN noise text CHECK (noise IS NULL OR noise = 'distributed-discrete-gaussian'),
        ADD COLUMN quantization_scale double precision,
        ADD COLUMN dimension integer`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(
      `ALTER TABLE ledger_entry DROP COLUMN dimension, DROP COLUMN quantization_scale, DROP COLUMN noise`,
    );
  }
}
