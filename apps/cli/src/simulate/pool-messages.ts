// The messages between the simulation's training pool and its worker threads.
import type { Dataset, ModelSpec } from '@confide/ml';

/** What every worker holds for one simulation run: the sites' training rows and the test set. */
export interface RunData {
  readonly runId: number;
  readonly spec: ModelSpec;
  readonly sites: readonly Dataset[];
  readonly test: Dataset;
}

/** One site's local training from the global weights. */
export interface TrainTask {
  readonly site: number;
  readonly weights: Float32Array;
  readonly epochs: number;
  readonly batchSize: number;
  readonly learningRate: number;
  readonly shuffleSeed: number;
  /** FedProx's proximal term, as the strategy instructs. */
  readonly proximalMu?: number;
}

/** The site's update: local minus global weights, its last-epoch loss and its row count. */
export interface TrainOutcome {
  readonly delta: Float32Array;
  readonly loss: number;
  readonly numExamples: number;
}

/** Metrics of the model on the run's global test set. */
export interface TestMetrics {
  readonly loss: number;
  readonly accuracy: number;
  readonly auc: number | null;
  readonly f1: number;
}

export type PoolRequest =
  | { readonly type: 'data'; readonly data: RunData }
  | ({ readonly type: 'train'; readonly id: number; readonly runId: number } & TrainTask)
  | {
      readonly type: 'evaluate';
      readonly id: number;
      readonly runId: number;
      readonly weights: Float32Array;
    };

export type PoolReply =
  | { readonly type: 'ready'; readonly backend: string }
  | ({ readonly type: 'trained'; readonly id: number } & TrainOutcome)
  | { readonly type: 'evaluated'; readonly id: number; readonly metrics: TestMetrics }
  /** id -1: the worker itself failed (no backend), not one task. */
  | { readonly type: 'failed'; readonly id: number; readonly error: string };
