import { randomUUID } from 'node:crypto';
import { evaluationLayoutFor } from '@confide/ml/spec';
import { ErrorCode, PROTOCOL_VERSION, ProtocolError, type SiteMessage } from '@confide/protocol';
import type { RoundMetrics } from '../../database/rows';
import { combineEvaluations } from '@confide/federated';
import type { RoundContext } from '../round-context';
import type { RoundSumsService } from '../round-sums.service';
import type { ActiveRound } from '../active-round';
import { checkMetrics, weightingOf } from '../contribution-checks';

/**
 * Evaluation of a round's new model on the sites' held-out data: a secure sum of their counts
 * under secure aggregation (opened while the update sum was unmasked), else the metrics sites
 * that reveal their own send in the clear (RoundMessages records them).
 */
export class EvaluationWorkflow {
  constructor(
    private readonly ctx: RoundContext,
    private readonly sums: RoundSumsService,
  ) {}

  /** The federation's metrics (null: none); `abort` when the round cannot go on. */
  async run(
    weights: Float32Array,
    version: { id: string; hash: string },
  ): Promise<RoundMetrics['evaluation'] | { abort: string }> {
    const ctx = this.ctx;
    const active = ctx.active;
    const cfg = active.fed.config;
    active.phase = 'evaluating';
    const deadline = ctx.now() + cfg.evaluationTimeoutMs;
    // The federation does not evaluate (under DP an evaluation would be a charged release).
    if (cfg.evaluation === false) return null;
    if (cfg.secureAggregation?.enabled) {
      const open = active.evaluation;
      const got = open
        ? await this.sums.evaluation(active, open, weights, version, deadline)
        : 'fewer than two sites can take part';
      if (typeof got === 'string') {
        ctx.deps.config.log(`round ${active.number}: no evaluation: ${got}`);
        return null;
      }
      return got;
    }
    active.evaluateFrame = ctx.deps.config.signer.frame(
      {
        v: PROTOCOL_VERSION,
        type: 'round.evaluate',
        id: randomUUID(),
        runId: active.runId,
        round: active.number,
        federationId: active.fed.id,
        modelVersionId: version.id,
        modelHash: version.hash,
        secureAggregation: null,
        privacy: null,
        evaluation: evaluationLayoutFor(active.fed.modelSpec),
        deadline: new Date(deadline).toISOString(),
      },
      weights,
    );
    ctx.sendFrameTo('submitted', active.evaluateFrame);
    await ctx.until(() => ctx.nonePending('submitted'), deadline);
    // Sample-weighted mean of the sites' held-out metrics; null when no site reported.
    return combineEvaluations({ kind: 'by-site', metrics: [...active.evaluations.values()] });
  }
}

/** A contributor's held-out metrics in the clear, checked against their ranges. */
export function acceptMetrics(
  active: ActiveRound,
  siteId: string,
  msg: Extract<SiteMessage, { type: 'round.metrics' }>,
): void {
  const p = active.participants.get(siteId)!;
  if (
    active.phase !== 'evaluating' ||
    p.status !== 'submitted' ||
    msg.modelVersionId !== active.newModelVersionId
  ) {
    throw new ProtocolError(
      ErrorCode.UNEXPECTED_MESSAGE,
      'metrics are not expected for this model version now',
    );
  }
  try {
    checkMetrics(msg.metrics, weightingOf(active.fed).cap);
  } catch (e) {
    active.exclude(
      siteId,
      e as ProtocolError,
      ' (its update is in the model; its metrics are not)',
    );
    throw e;
  }
  active.evaluations.set(siteId, msg.metrics);
  p.status = 'evaluated';
}
