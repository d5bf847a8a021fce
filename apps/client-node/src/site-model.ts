import type * as tf from '@tensorflow/tfjs';
import { buildModel, type Dataset, type ModelSpec } from '@confide/ml';
import { ErrorCode, type MessageOf, type ServerMessage } from '@confide/protocol';
import { standardizeSite } from './site-data';
import { Refused } from './refusal';

type Standardization = MessageOf<ServerMessage, 'round.train'>['standardization'];

/**
 * The site's model and its rows standardised as the federation agreed, kept between rounds (built
 * again only when the spec or the statistics change); the model it evaluates is the one it trained.
 */
export class SiteModel {
  private model: { spec: ModelSpec; model: tf.LayersModel } | null = null;
  private standardized: { key: string; train: Dataset; eval: Dataset | null } | null = null;

  /** `split`: the rows this site trains on and the rows it evaluates on (never the same). */
  constructor(private readonly split: { train: Dataset; eval: Dataset | null }) {}

  /** The model for `spec`, reused while the spec is the same. */
  modelFor(spec: ModelSpec): tf.LayersModel {
    if (this.model && JSON.stringify(this.model.spec) === JSON.stringify(spec))
      return this.model.model;
    this.model?.model.dispose();
    this.model = { spec, model: buildModel(spec) };
    return this.model.model;
  }

  /** The site's rows standardised with `stats` (the federation's, or its own when absent). */
  datasets(stats: Standardization): { train: Dataset; eval: Dataset | null } {
    const key = JSON.stringify(stats);
    if (this.standardized?.key === key) return this.standardized;
    this.standardized = { key, ...standardizeSite(this.split, stats) };
    return this.standardized;
  }

  /**
   * The model and held-out rows a round's new model is evaluated with; refused for a round this site
   * did not train in (`trainedIn` false), or when it holds no rows out.
   */
  evaluationTarget(
    msg: { round: number },
    trainedIn: boolean,
  ): { model: tf.LayersModel; spec: ModelSpec; rows: Dataset } {
    if (!this.model || !this.standardized || !trainedIn) {
      throw new Refused(
        ErrorCode.UNEXPECTED_MESSAGE,
        `this site did not train in round ${msg.round} of this run; nothing to evaluate`,
      );
    }
    const rows = this.standardized.eval;
    if (!rows || rows.numRows === 0) {
      throw new Refused(
        ErrorCode.SCHEMA_MISMATCH,
        'this site holds no rows out for evaluation (too few rows, and no --eval-data)',
      );
    }
    return { ...this.model, rows };
  }

  /** Frees the model (the node stops). */
  dispose(): void {
    this.model?.model.dispose();
    this.model = null;
  }
}
