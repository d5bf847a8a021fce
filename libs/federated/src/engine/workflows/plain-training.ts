import { IndividualUpdatesCollector, PlainSumCollector } from '../../aggregation';
import type { Grid, Inbound, Verdict } from '../../grid/grid';
import { ask } from './ask';
import type { Strategy, TrainAggregate, TrainInstructions } from '../../strategies/types';
import type { EngineReply, TrainRequest, UpdateReply } from '../messages';

/** What plain training hands the round runner. */
export interface PlainTrainingResult {
  /** The sum (or, for a strategy that needs them, each update) of the accepted updates. */
  readonly aggregate: TrainAggregate;
  readonly contributors: readonly string[];
  /** Sites whose update was refused, with why. */
  readonly rejected: ReadonlyMap<string, string>;
  /** Sites that declined, with their reason. */
  readonly declined: ReadonlyMap<string, string>;
  /** Sites with no answer by the deadline (gone, or too slow). */
  readonly missing: ReadonlySet<string>;
  /** The contributors' training loss, weighted by their examples; null with none. */
  readonly trainLoss: number | null;
}

export interface PlainTrainingInput {
  readonly round: number;
  readonly sites: readonly string[];
  readonly global: Float32Array;
  readonly instructions: TrainInstructions;
  readonly strategy: Strategy;
  readonly deadline: number;
  /** The most examples one site may claim (its weight in the average). */
  readonly maxExamples: number;
  /** How long a site may be away and still answer (it is sent the request again). */
  readonly reconnectGraceMs?: number;
  readonly signal?: AbortSignal;
}

/**
 * Plain training (no secure aggregation): sends the global model, takes one update per selected
 * site by the deadline, and keeps only what the strategy needs, the running weighted sum, or each
 * update for a robust strategy. It owns the `update` and `decline` replies of its round: a reply
 * for another round or of another kind is not its business; a malformed update costs its sender
 * the round and nobody else.
 */
export class PlainTrainingWorkflow {
  constructor(private readonly grid: Grid<EngineReply>) {}

  async run(input: PlainTrainingInput): Promise<PlainTrainingResult> {
    const length = input.global.length;
    const collector = input.strategy.needsIndividualUpdates
      ? new IndividualUpdatesCollector(length)
      : new PlainSumCollector(length);
    const reasons = new Map<string, string>();
    let lossSum = 0;
    let lossWeight = 0;
    const accept = (reply: Inbound<EngineReply>): Verdict => {
      const m = reply.message;
      if (m.round !== input.round) return false;
      if (m.type === 'decline') return 'reject';
      if (m.type !== 'update') return false;
      const problem = updateProblem(m, reply.vector, length, input.maxExamples);
      if (problem) {
        reasons.set(reply.siteId, problem);
        return 'reject';
      }
      collector.add({
        siteId: reply.siteId,
        delta: reply.vector as Float32Array,
        weight: m.numExamples,
      });
      if (Number.isFinite(m.trainLoss)) {
        lossSum += m.trainLoss * m.numExamples;
        lossWeight += m.numExamples;
      }
      return true;
    };
    const request: TrainRequest = {
      type: 'train',
      round: input.round,
      weights: input.global,
      instructions: input.instructions,
      deadline: input.deadline,
    };
    const got = await ask(this.grid, {
      sites: input.sites,
      request,
      accept,
      deadline: input.deadline,
      ...(input.reconnectGraceMs !== undefined ? { reconnectGraceMs: input.reconnectGraceMs } : {}),
      ...(input.signal ? { signal: input.signal } : {}),
    });
    const rejected = new Map<string, string>();
    const declined = new Map<string, string>();
    for (const [siteId, reply] of got.rejected) {
      if (reply.message.type === 'decline') declined.set(siteId, boundedText(reply.message.reason));
      else rejected.set(siteId, reasons.get(siteId) ?? 'malformed update');
    }
    const aggregate =
      collector instanceof IndividualUpdatesCollector ? collector.updates() : collector.result();
    return {
      aggregate,
      contributors: [...got.replies.keys()],
      rejected,
      declined,
      missing: got.missing,
      trainLoss: lossWeight > 0 ? lossSum / lossWeight : null,
    };
  }
}

/** Why an update cannot count (null: it can). */
export function updateProblem(
  m: UpdateReply,
  vector: Float32Array | Uint32Array | null,
  length: number,
  maxExamples: number,
): string | null {
  if (!(vector instanceof Float32Array)) return 'an update must carry a float32 vector';
  if (vector.length !== length) {
    return `the update has ${vector.length} values; the model has ${length}`;
  }
  if (!Number.isInteger(m.numExamples) || m.numExamples < 1 || m.numExamples > maxExamples) {
    return `numExamples must be an integer in [1, ${maxExamples}]`;
  }
  for (let i = 0; i < vector.length; i++) {
    if (!Number.isFinite(vector[i]!)) return `the update's value ${i} is not finite`;
  }
  return null;
}

/** A site's free text, cut to a length a round record can hold. */
export function boundedText(text: unknown): string {
  const s = typeof text === 'string' ? text : 'no reason given';
  return s.length > 200 ? `${s.slice(0, 200)}…` : s;
}
