import type { SerializedStrategyState } from '../strategies/types';

/** A site's part in a round, as the round record keeps it. */
export interface RoundParticipant {
  readonly siteId: string;
  status: 'selected' | 'submitted' | 'dropped' | 'rejected' | 'declined';
  detail?: string;
}

/** What the runner records of one round. */
export interface RoundRecord {
  readonly round: number;
  readonly startedAt: number;
  endedAt: number | null;
  status: 'running' | 'committed' | 'aborted';
  reason: string | null;
  participants: RoundParticipant[];
  /** The aggregator's draw, when it sampled (fraction below 1). */
  sampling: { fraction: number; eligible: number; drawn: number } | null;
  trainLoss: number | null;
  evaluation: {
    loss: number;
    accuracy: number;
    f1: number;
    auc: number | null;
    numExamples: number;
    sites: number;
  } | null;
}

/** The committed model: the round that made it (0: the initial model), its weights and strategy state. */
export interface ModelHead {
  readonly round: number;
  readonly weights: Float32Array;
  /** null: the strategy starts afresh (the initial model). */
  readonly strategyState: SerializedStrategyState | null;
}

/**
 * Where the round runner persists rounds and models. `commit` is atomic: the new model, its
 * strategy state and the round's record become visible together, or not at all. A runner started
 * over a store continues from its head, exactly as one that kept running would.
 */
export interface RoundStore {
  head(): Promise<ModelHead>;
  /** The round that was running when a previous runner stopped, if any. */
  unfinished(): Promise<RoundRecord | null>;
  begin(record: RoundRecord): Promise<void>;
  commit(record: RoundRecord, model: ModelHead): Promise<void>;
  abort(record: RoundRecord): Promise<void>;
  rounds(): Promise<readonly RoundRecord[]>;
}

/** A RoundStore in memory: for tests and `confide simulate` without `--data-dir`. */
export class MemoryRoundStore implements RoundStore {
  private model: ModelHead;
  private readonly records: RoundRecord[] = [];

  constructor(initialWeights: Float32Array) {
    this.model = { round: 0, weights: initialWeights.slice(), strategyState: null };
  }

  head(): Promise<ModelHead> {
    return Promise.resolve(this.model);
  }

  unfinished(): Promise<RoundRecord | null> {
    return Promise.resolve(this.records.find((r) => r.status === 'running') ?? null);
  }

  begin(record: RoundRecord): Promise<void> {
    const last = Math.max(this.model.round, ...this.records.map((r) => r.round));
    if (record.round <= last) {
      return Promise.reject(new Error(`round ${record.round} is not after round ${last}`));
    }
    this.records.push(clone(record));
    return Promise.resolve();
  }

  commit(record: RoundRecord, model: ModelHead): Promise<void> {
    this.replace(record);
    this.model = {
      round: model.round,
      weights: model.weights.slice(),
      strategyState: model.strategyState,
    };
    return Promise.resolve();
  }

  abort(record: RoundRecord): Promise<void> {
    this.replace(record);
    return Promise.resolve();
  }

  rounds(): Promise<readonly RoundRecord[]> {
    return Promise.resolve(this.records.map(clone));
  }

  private replace(record: RoundRecord): void {
    const i = this.records.findIndex((r) => r.round === record.round);
    if (i < 0) throw new Error(`round ${record.round} was never begun`);
    this.records[i] = clone(record);
  }
}

function clone(r: RoundRecord): RoundRecord {
  return structuredClone(r);
}
