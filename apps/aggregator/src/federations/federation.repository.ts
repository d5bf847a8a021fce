import { Inject, Injectable } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import { DATABASE } from '../common/tokens';
import type { Database } from '../database/database';
import type { FeatureStatsRow, FederationConfig, FederationRow } from '../database/rows';
import { camelRow, camelRows } from '../database/sql';
import type { ModelSpec } from '@confide/ml/spec';

const COLUMNS =
  'id, name, model_spec, strategy, config, feature_stats, current_model_version_id, created_at';

/** Federation rows. */
@Injectable()
export class FederationRepository {
  constructor(@Inject(DATABASE) private readonly db: Database) {}

  async insert(
    em: EntityManager,
    f: { name: string; modelSpec: ModelSpec; strategy: string; config: FederationConfig },
  ): Promise<FederationRow> {
    const rows = await em.query(
      `INSERT INTO federation (name, model_spec, strategy, config) VALUES ($1, $2, $3, $4) RETURNING ${COLUMNS}`,
      [f.name, JSON.stringify(f.modelSpec), f.strategy, JSON.stringify(f.config)],
    );
    return camelRow<FederationRow>(rows[0]);
  }

  async findById(id: string, em: EntityManager = this.db.manager): Promise<FederationRow | null> {
    if (!isUuid(id)) return null;
    const rows = await em.query(`SELECT ${COLUMNS} FROM federation WHERE id = $1`, [id]);
    return rows.length ? camelRow<FederationRow>(rows[0]) : null;
  }

  async findByName(name: string): Promise<FederationRow | null> {
    const rows = await this.db.manager.query(`SELECT ${COLUMNS} FROM federation WHERE name = $1`, [
      name,
    ]);
    return rows.length ? camelRow<FederationRow>(rows[0]) : null;
  }

  async list(): Promise<FederationRow[]> {
    return camelRows(
      await this.db.manager.query(`SELECT ${COLUMNS} FROM federation ORDER BY created_at`),
    );
  }

  async setCurrentModel(em: EntityManager, id: string, modelVersionId: string): Promise<void> {
    await em.query(`UPDATE federation SET current_model_version_id = $2 WHERE id = $1`, [
      id,
      modelVersionId,
    ]);
  }

  /** Forgets the stored statistics: the next round collects them again. */
  async clearFeatureStats(id: string): Promise<void> {
    await this.db.manager.query(`UPDATE federation SET feature_stats = NULL WHERE id = $1`, [id]);
  }

  async setFeatureStats(id: string, stats: FeatureStatsRow): Promise<void> {
    await this.db.manager.query(`UPDATE federation SET feature_stats = $2 WHERE id = $1`, [
      id,
      JSON.stringify(stats),
    ]);
  }
}

/** True for a canonical UUID (so bad ids are a 404, not a database error). */
export function isUuid(x: string): boolean {
  return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(x);
}
