import type { MigrationInterface, QueryRunner } from 'typeorm';

/** The first schema: tokens, federations, sites, runs, rounds (with their transitions), model versions. */
export class InitialSchema1763900000000 implements MigrationInterface {
  name = 'InitialSchema1763900000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE server_setting (
        key text PRIMARY KEY,
        value text NOT NULL
      )`);
    await q.query(`
      CREATE TABLE api_token (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        role text NOT NULL CHECK (role IN ('admin', 'auditor')),
        label text NOT NULL,
        token_hash text NOT NULL UNIQUE,
        created_at timestamptz NOT NULL DEFAULT now(),
        revoked_at timestamptz
      )`);
    await q.query(`
      CREATE TABLE federation (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        name text NOT NULL UNIQUE,
        model_spec jsonb NOT NULL,
        strategy text NOT NULL,
        config jsonb NOT NULL,
        feature_stats jsonb,
        current_model_version_id uuid,
        created_at timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query(`
      CREATE TABLE model_version (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        federation_id uuid NOT NULL REFERENCES federation(id) ON DELETE RESTRICT,
        round_number integer,
        parent_id uuid REFERENCES model_version(id),
        hash text NOT NULL,
        num_params integer NOT NULL CHECK (num_params > 0),
        weights bytea NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query(
      `CREATE INDEX model_version_federation ON model_version (federation_id, created_at)`,
    );
    await q.query(`
      ALTER TABLE federation ADD CONSTRAINT federation_current_model
        FOREIGN KEY (current_model_version_id) REFERENCES model_version(id) DEFERRABLE INITIALLY DEFERRED`);
    await q.query(`
      CREATE TABLE site (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        federation_id uuid NOT NULL REFERENCES federation(id) ON DELETE RESTRICT,
        name text NOT NULL,
        public_key text NOT NULL,
        status text NOT NULL CHECK (status IN ('pending', 'approved', 'revoked')),
        created_at timestamptz NOT NULL DEFAULT now(),
        approved_at timestamptz,
        revoked_at timestamptz,
        UNIQUE (federation_id, name),
        UNIQUE (federation_id, public_key)
      )`);
    await q.query(`
      CREATE TABLE training_run (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        federation_id uuid NOT NULL REFERENCES federation(id) ON DELETE RESTRICT,
        rounds_requested integer NOT NULL CHECK (rounds_requested > 0),
        rounds_done integer NOT NULL DEFAULT 0,
        status text NOT NULL CHECK (status IN ('running', 'completed', 'stopped')),
        reason text,
        created_at timestamptz NOT NULL DEFAULT now(),
        ended_at timestamptz
      )`);
    await q.query(
      `CREATE UNIQUE INDEX training_run_one_running ON training_run (federation_id) WHERE status = 'running'`,
    );
    await q.query(`
      CREATE TABLE round (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        federation_id uuid NOT NULL REFERENCES federation(id) ON DELETE RESTRICT,
        run_id uuid NOT NULL REFERENCES training_run(id),
        number integer NOT NULL CHECK (number > 0),
        state text NOT NULL CHECK (state IN ('scheduled', 'advertising', 'sharing', 'collecting',
          'unmasking', 'aggregated', 'evaluated', 'committed', 'aborted')),
        reason text,
        base_model_version_id uuid NOT NULL REFERENCES model_version(id),
        model_version_id uuid REFERENCES model_version(id),
        participants jsonb NOT NULL DEFAULT '[]',
        metrics jsonb,
        deadline timestamptz,
        started_at timestamptz NOT NULL DEFAULT now(),
        ended_at timestamptz,
        duration_ms integer,
        UNIQUE (federation_id, number)
      )`);
    await q.query(`
      CREATE TABLE round_event (
        id bigserial PRIMARY KEY,
        round_id uuid NOT NULL REFERENCES round(id),
        state text NOT NULL,
        detail jsonb,
        at timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query(`
      CREATE TABLE admin_event (
        id bigserial PRIMARY KEY,
        actor text NOT NULL,
        action text NOT NULL,
        subject text,
        details jsonb,
        at timestamptz NOT NULL DEFAULT now()
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    for (const t of ['admin_event', 'round_event', 'round', 'training_run', 'site']) {
      await q.query(`DROP TABLE ${t}`);
    }
    await q.query(`ALTER TABLE federation DROP CONSTRAINT federation_current_model`);
    await q.query(`DROP TABLE model_version`);
    await q.query(`DROP TABLE federation`);
    await q.query(`DROP TABLE api_token`);
    await q.query(`DROP TABLE server_setting`);
  }
}
