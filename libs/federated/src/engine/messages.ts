// The engine's own messages between the round runner's workflows and the sites. They travel as
// objects on the in-memory Grid (`confide simulate`, unit tests); a transport that crosses a wire
// maps them to its protocol's frames.
import type { EvaluationMetrics, TrainInstructions } from '../strategies/types';

/** Train on `weights` and answer with an `update` (the delta) by `deadline`. */
export interface TrainRequest {
  readonly type: 'train';
  readonly round: number;
  readonly weights: Float32Array;
  readonly instructions: TrainInstructions;
  /** On the Grid's clock. */
  readonly deadline: number;
}

/** Evaluate `weights` on the held-out data and answer with `metrics` by `deadline`. */
export interface EvaluateRequest {
  readonly type: 'evaluate';
  readonly round: number;
  readonly weights: Float32Array;
  readonly deadline: number;
}

/** The round ended; nothing more is awaited from the site for it. */
export interface RoundEnd {
  readonly type: 'round.end';
  readonly round: number;
  readonly outcome: 'committed' | 'aborted';
  readonly reason: string | null;
}

export type EngineRequest = TrainRequest | EvaluateRequest | RoundEnd;

/** A site's update: the delta travels as the reply's vector. */
export interface UpdateReply {
  readonly type: 'update';
  readonly round: number;
  /** The site's weight in the average, its training examples. */
  readonly numExamples: number;
  readonly trainLoss: number;
}

export interface MetricsReply {
  readonly type: 'metrics';
  readonly round: number;
  readonly metrics: EvaluationMetrics;
}

/** The site will not take part in this step (its policy, its budget); the reason is recorded. */
export interface DeclineReply {
  readonly type: 'decline';
  readonly round: number;
  readonly reason: string;
}

export type EngineReply = UpdateReply | MetricsReply | DeclineReply;

/** Reads a request delivered to a site on the in-memory Grid (JSON bodies travel as objects). */
export function engineRequestOf(body: object): EngineRequest | null {
  const type = (body as { type?: unknown }).type;
  return type === 'train' || type === 'evaluate' || type === 'round.end'
    ? (body as EngineRequest)
    : null;
}
