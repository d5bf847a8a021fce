import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * A strategy's memory between rounds (server momentum, Adam moments), stored with the model version
 * it produced, so the next round, on this aggregator or a restarted one, continues from it exactly.
 * Null: the initial version, or one made before strategies kept state (the strategy starts afresh).
 */
export class StrategyState1763900000800 implements MigrationInterface {
  name = 'StrategyState1763900000800';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE model_version ADD COLUMN strategy_state jsonb`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE model_version DROP COLUMN strategy_state`);
  }
}
