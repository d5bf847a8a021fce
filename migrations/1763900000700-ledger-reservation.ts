import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The chain position a site was granted for a signed release, kept until its receipt arrives or the
 * site says it signed none (at most one per federation: the chain is linear). Persisted so that an
 * aggregator restarted between the grant and the receipt does not hand the same position to another
 * site, which would leave the first site's signed, locally recorded receipt without its place.
 */
export class LedgerReservation1763900000700 implements MigrationInterface {
  name = 'LedgerReservation1763900000700';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE ledger_reservation (
        federation_id uuid PRIMARY KEY REFERENCES federation(id) ON DELETE RESTRICT,
        seq integer NOT NULL CHECK (seq >= 1),
        prev_hash text NOT NULL,
        site_id uuid NOT NULL REFERENCES site(id),
        round integer NOT NULL,
        sum text NOT NULL CHECK (sum IN ('update', 'statistics', 'evaluation')),
        created_at text NOT NULL,
        epsilon_limit double precision NOT NULL,
        delta double precision NOT NULL,
        reserved_at timestamptz NOT NULL DEFAULT now()
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE ledger_reservation`);
  }
}
