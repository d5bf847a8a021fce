import type { Grid, Inbound, Verdict } from '../../grid/grid';
import { ask } from './ask';
import type { EvaluationMetrics, EvaluationSummary, Strategy } from '../../strategies/types';
import type { EngineReply, EvaluateRequest } from '../messages';
import { boundedText } from './plain-training';

export interface EvaluationInput {
  readonly round: number;
  readonly sites: readonly string[];
  readonly weights: Float32Array;
  readonly strategy: Strategy;
  readonly deadline: number;
  readonly maxExamples: number;
  /** How long a site may be away and still answer (it is sent the request again). */
  readonly reconnectGraceMs?: number;
  readonly signal?: AbortSignal;
}

export interface EvaluationResult {
  /** The federation's metrics (the strategy's combination); null when no site reported. */
  readonly summary: EvaluationSummary | null;
  readonly reported: readonly string[];
  readonly rejected: ReadonlyMap<string, string>;
  readonly missing: ReadonlySet<string>;
}

/**
 * Evaluation in the clear: sends the new model to the round's contributors and combines the
 * metrics they report by the deadline with the strategy's `aggregateEvaluate`. Metrics out of
 * their range are refused (a site cannot skew the federation's figures with a NaN or a 10^9
 * example count).
 */
export class EvaluationWorkflow {
  constructor(private readonly grid: Grid<EngineReply>) {}

  async run(input: EvaluationInput): Promise<EvaluationResult> {
    const reasons = new Map<string, string>();
    const accept = (reply: Inbound<EngineReply>): Verdict => {
      const m = reply.message;
      if (m.round !== input.round) return false;
      if (m.type === 'decline') {
        reasons.set(reply.siteId, `declined: ${boundedText(m.reason)}`);
        return 'reject';
      }
      if (m.type !== 'metrics') return false;
      const problem = metricsProblem(m.metrics, input.maxExamples);
      if (problem) {
        reasons.set(reply.siteId, problem);
        return 'reject';
      }
      return true;
    };
    const request: EvaluateRequest = {
      type: 'evaluate',
      round: input.round,
      weights: input.weights,
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
    const metrics = [...got.replies.values()].map(
      (r) => (r.message as { metrics: EvaluationMetrics }).metrics,
    );
    const rejected = new Map(
      [...got.rejected.keys()].map((id) => [id, reasons.get(id) ?? 'refused']),
    );
    return {
      summary: input.strategy.aggregateEvaluate({ kind: 'by-site', metrics }),
      reported: [...got.replies.keys()],
      rejected,
      missing: got.missing,
    };
  }
}

/** Why reported metrics cannot count (null: they can). */
export function metricsProblem(m: EvaluationMetrics, maxExamples: number): string | null {
  if (typeof m !== 'object' || m === null) return 'metrics must be an object';
  if (!Number.isInteger(m.numExamples) || m.numExamples < 1 || m.numExamples > maxExamples) {
    return `numExamples must be an integer in [1, ${maxExamples}]`;
  }
  for (const key of ['accuracy', 'f1'] as const) {
    const v = m[key];
    if (typeof v !== 'number' || !(v >= 0 && v <= 1)) return `${key} must be in [0, 1]`;
  }
  if (m.auc !== null && (typeof m.auc !== 'number' || !(m.auc >= 0 && m.auc <= 1))) {
    return 'auc must be null or in [0, 1]';
  }
  if (typeof m.loss !== 'number' || !(m.loss >= 0) || !Number.isFinite(m.loss)) {
    return 'loss must be a finite number >= 0';
  }
  return null;
}
