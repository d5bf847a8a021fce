// The engine's own messages between the round runner's workflows and the sites. They travel as
// objects on the in-memory Grid (`confide simulate`, unit tests); a transport that crosses a wire
// maps them to its protocol's frames.
import type { SecAggParams } from '@confide/secure-aggregation';
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

/** What a secure round tells every site about its sum: parameters, roster, normaliser. */
export interface SecureRoundInfo {
  readonly runId: string;
  readonly modelHash: string;
  readonly params: SecAggParams;
  /** Each selected site's Ed25519 identity public key. */
  readonly roster: ReadonlyArray<{ readonly siteId: string; readonly publicKey: Uint8Array }>;
  /** The update's length + 1 (the weight rides in the last element). */
  readonly vectorLength: number;
  /** A site weighs itself min(1, examples / weightNormalizer): a public divisor, never its own count. */
  readonly weightNormalizer: number;
}

/** Train on `weights` and join the round's secure sum: answer with a `secure` advertise step. */
export interface SecureTrainRequest {
  readonly type: 'secure.train';
  readonly round: number;
  readonly weights: Float32Array;
  readonly instructions: TrainInstructions;
  readonly secure: SecureRoundInfo;
  readonly deadline: number;
}

/** The SecAgg+ steps after the advertisements (Bonawitz et al. 2017, rounds 1-4). */
export type SecureStepName = 'advertisements' | 'deliver' | 'consistency' | 'unmask';

/** One SecAgg+ step's input for one site, from the server's state machine. */
export interface SecureStepRequest {
  readonly type: 'secure.step';
  readonly round: number;
  readonly step: SecureStepName;
  readonly payload: unknown;
  readonly deadline: number;
}

export type EngineRequest =
  TrainRequest | EvaluateRequest | RoundEnd | SecureTrainRequest | SecureStepRequest;

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

/** A site's answer to a SecAgg+ step (the masked input travels as the reply's vector). */
export interface SecureReply {
  readonly type: 'secure.reply';
  readonly round: number;
  readonly step: 'advertise' | 'shares' | 'masked' | 'signature' | 'unmasked';
  readonly payload: unknown;
}

export type EngineReply = UpdateReply | MetricsReply | DeclineReply | SecureReply;

/** Reads a request delivered to a site on the in-memory Grid (JSON bodies travel as objects). */
export function engineRequestOf(body: object): EngineRequest | null {
  const type = (body as { type?: unknown }).type;
  return type === 'train' ||
    type === 'evaluate' ||
    type === 'round.end' ||
    type === 'secure.train' ||
    type === 'secure.step'
    ? (body as EngineRequest)
    : null;
}
