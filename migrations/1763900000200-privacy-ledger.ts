import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Privacy budgets per (federation, site), their logged changes, and the append-only epsilon ledger.
 * UPDATE, DELETE and TRUNCATE on the ledger (and on the budget log) are refused by the database itself.
 */
export class PrivacyLedger1763900000200 implements MigrationInterface {
  name = 'PrivacyLedger1763900000200';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE privacy_budget (
        federation_id uuid NOT NULL REFERENCES federation(id),
        site_id uuid NOT NULL REFERENCES site(id),
        epsilon_limit double precision NOT NULL CHECK (epsilon_limit > 0),
        delta double precision NOT NULL CHECK (delta > 0 AND delta < 1),
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (federation_id, site_id)
      )`);
    await q.query(`
      CREATE TABLE privacy_budget_change (
        id bigserial PRIMARY KEY,
        federation_id uuid NOT NULL,
        site_id uuid NOT NULL,
        old_limit double precision,
        new_limit double precision NOT NULL,
        actor text NOT NULL,
        reason text NOT NULL,
        at timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query(`
      CREATE TABLE ledger_entry (
        federation_id uuid NOT NULL REFERENCES federation(id),
        seq integer NOT NULL CHECK (seq > 0),
        site_id uuid NOT NULL REFERENCES site(id),
        site_name text NOT NULL,
        round integer NOT NULL,
        level text NOT NULL,
        sampling_rate double precision NOT NULL,
        noise_multiplier double precision NOT NULL,
        steps integer NOT NULL,
        clip_norm double precision NOT NULL,
        survivors_assumed integer,
        accountant text NOT NULL,
        rdp double precision[] NOT NULL,
        orders_hash text NOT NULL,
        delta double precision NOT NULL,
        cumulative_epsilon double precision NOT NULL,
        epsilon_limit double precision NOT NULL,
        created_at text NOT NULL,
        site_public_key text NOT NULL,
        prev_hash text NOT NULL,
        hash text NOT NULL UNIQUE,
        signature text NOT NULL,
        PRIMARY KEY (federation_id, seq)
      )`);
    await q.query(`CREATE INDEX ledger_entry_site ON ledger_entry (federation_id, site_id, seq)`);
    await q.query(`
      CREATE FUNCTION confide_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
          USING ERRCODE = 'insufficient_privilege';
      END $$`);
    for (const table of ['ledger_entry', 'privacy_budget_change']) {
      await q.query(
        `CREATE TRIGGER ${table}_no_update_delete BEFORE UPDATE OR DELETE ON ${table} FOR EACH ROW EXECUTE FUNCTION confide_append_only()`,
      );
      await q.query(
        `CREATE TRIGGER ${table}_no_truncate BEFORE TRUNCATE ON ${table} FOR EACH STATEMENT EXECUTE FUNCTION confide_append_only()`,
      );
    }
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE ledger_entry`);
    await q.query(`DROP TABLE privacy_budget_change`);
    await q.query(`DROP TABLE privacy_budget`);
    await q.query(`DROP FUNCTION confide_append_only()`);
  }
}
