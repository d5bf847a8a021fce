import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * API tokens can expire, and record when they were last used (written at most once a minute per
 * token, so an operator can tell a forgotten token from a busy one before revoking it). Existing
 * tokens keep no expiry.
 */
export class ApiTokenExpiry1763900000620 implements MigrationInterface {
  name = 'ApiTokenExpiry1763900000620';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      ALTER TABLE api_token
        ADD COLUMN expires_at timestamptz CHECK (expires_at IS NULL OR expires_at > created_at),
        ADD COLUMN last_used_at timestamptz`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE api_token DROP COLUMN last_used_at, DROP COLUMN expires_at`);
  }
}
