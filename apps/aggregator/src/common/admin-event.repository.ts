import { Inject, Injectable } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import { DATABASE } from './tokens';
import type { Database } from '../database/database';

/** Appends to the admin audit trail: who did what to which subject. */
@Injectable()
export class AdminEventRepository {
  constructor(@Inject(DATABASE) private readonly db: Database) {}

  async record(
    actor: string,
    action: string,
    subject: string | null,
    details: unknown = null,
    em: EntityManager = this.db.manager,
  ): Promise<void> {
    await em.query(
      `INSERT INTO admin_event (actor, action, subject, details) VALUES ($1, $2, $3, $4)`,
      [actor, action, subject, details === null ? null : JSON.stringify(details)],
    );
  }
}
