import WebSocket from 'ws';
import type * as tf from '@tensorflow/tfjs';
import {
  evaluateForSum,
  evaluateModel,
  evaluationSensitivity,
  featureStatsPartial,
  setModelWeights,
  statisticsSensitivity,
  statisticsVector,
  type Dataset,
  type ModelSpec,
} from '@confide/ml';
import {
  ErrorCode,
  type IdentityKeyPair,
  type MessageOf,
  type RoundSecAgg,
  type ServerMessage,
  type SumKind,
} from '@confide/protocol';
import { addGaussianNoise } from '@confide/differential-privacy';
import type { SecAggParams } from '@confide/secure-aggregation';
import type { LedgerEntry, MechanismParams } from '@confide/privacy-ledger';
import type { SitePolicy } from './policy';
import {
  roundPrefix,
  SiteSum,
  sumKey,
  sumMechanism,
  type RoundOffer,
  type SiteBudget,
} from '@confide/site-runtime';
import { assertModelHash, codeOf, describe, Refused, type Stage } from './refusal';

type EvaluateMsg = MessageOf<ServerMessage, 'round.evaluate'>;
type StatsMsg = MessageOf<ServerMessage, 'stats.request'>;
type SumOpenMsg = MessageOf<ServerMessage, 'sum.open'>;
type SumStepMsg = MessageOf<
  ServerMessage,
  'secagg.advertisements' | 'secagg.deliver' | 'secagg.consistency' | 'secagg.unmask'
>;
type RoundRef = { runId: string; round: number };

/** What DataReleases needs from the node around it. */
export interface ReleaseHost {
  readonly budget: SiteBudget;
  readonly policy: SitePolicy;
  readonly identity: IdentityKeyPair;
  readonly log: (line: string) => void;
  siteId(): string;
  /** The rows this site trains on (its statistics describe them). */
  trainRows(): Dataset;
  /** The model and held-out rows of a round this site trained in; throws Refused otherwise. */
  evaluationTarget(msg: RoundRef): { model: tf.LayersModel; spec: ModelSpec; rows: Dataset };
  /** The site's checks of a configuration (freshness, policy, DP); throws Refused. */
  admit(
    msg: RoundRef & { deadline: string; federationId: string },
    offer: Omit<RoundOffer, 'tls'>,
  ): void;
  refuse(ws: WebSocket, msg: RoundRef, stage: Stage, code: string, reason: string): void;
  send(ws: WebSocket, msg: Record<string, unknown>): void;
  /** Asks the aggregator for a ledger slot and signs this release's receipt in it. */
  signRelease(
    ws: WebSocket,
    ref: RoundRef & { sum: SumKind },
    mechanism: MechanismParams,
  ): Promise<LedgerEntry>;
}

/**
 * What a site releases about its data besides its update: its feature statistics and the metrics of
 * a round's model on its held-out rows. Under secure aggregation both leave only as this site's
 * input to a secure sum (noised and charged to its ledger under DP); in a plain federation only as
 * far as its policy allows.
 */
export class DataReleases {
  /** This site's statistics and evaluation sums in progress, by runId/round/kind. */
  private readonly sums = new Map<string, SiteSum>();

  constructor(private readonly host: ReleaseHost) {}

  /** Answers a stats.request: the site's feature statistics, in a secure sum or in the clear. */
  async statistics(ws: WebSocket, msg: StatsMsg): Promise<void> {
    const host = this.host;
    const privacy = msg.privacy;
    this.admit(msg, 'statistics');
    const train = host.trainRows();
    if (msg.features !== train.numFeatures) {
      throw new Refused(
        ErrorCode.SCHEMA_MISMATCH,
        `the federation's data has ${msg.features} features, this site's has ${train.numFeatures}`,
      );
    }
    if (!msg.secureAggregation) {
      // In the clear (a plain federation, which the site's policy allows): exact sums, never noised
      // or charged, and the exact record count; so never under DP, nor when the site reveals only a
      // lower bound on its records.
      if (privacy) {
        throw new Refused(
          ErrorCode.POLICY_SECURE_AGGREGATION,
          'under differential privacy this site releases its statistics only inside a secure sum, noised and charged',
        );
      }
      if (host.policy.rowCount === 'lowerBound') {
        throw new Refused(
          ErrorCode.POLICY_SECURE_AGGREGATION,
          "statistics in the clear would reveal this site's exact record count; its policy reveals only a lower bound",
        );
      }
      const part = featureStatsPartial(train);
      host.send(ws, {
        type: 'stats.report',
        runId: msg.runId,
        round: msg.round,
        count: part.count,
        sum: part.sum,
        sumSq: part.sumSq,
      });
      return;
    }
    const perSite = privacy?.level === 'site';
    const bounds = msg.featureBounds;
    if (privacy && !bounds) {
      throw new Refused(
        ErrorCode.SCHEMA_MISMATCH,
        'differentially private statistics need the federation to declare feature bounds',
      );
    }
    const once = host.budget.contributionKey(`statistics/${msg.federationId}`, privacy);
    let values = statisticsVector(train, { bounds, perSite });
    let mechanism: MechanismParams | null = null;
    if (privacy) {
      const sensitivity = statisticsSensitivity(train.numFeatures, { perSite, bounds });
      mechanism = sumMechanism('statistics', privacy, sensitivity);
      host.budget.checkSumBudget(mechanism, privacy);
      values = addGaussianNoise(values, privacy.noiseMultiplier * sensitivity);
    }
    // Bound to the federation as the aggregator binds it (an update binds the model's hash).
    const context = `statistics/${msg.federationId}`;
    const ref = { runId: msg.runId, round: msg.round, sum: 'statistics' } as const;
    this.openSum(ws, msg, 'statistics', msg.secureAggregation, context, {
      values,
      release: this.releaseFor(ws, ref, mechanism, once),
    });
  }

  /**
   * Opens this site's part in a round's evaluation sum before the model exists (its keys do not
   * depend on it), after the same checks as the evaluation itself: policy, and a round it trained in
   * with rows held out to evaluate on.
   */
  openEvaluation(ws: WebSocket, msg: SumOpenMsg): void {
    this.admit(msg, 'evaluation');
    this.host.evaluationTarget(msg);
    this.openEvaluationSum(ws, msg);
  }

  /**
   * Evaluates the round's new model on this site's held-out rows: its counts join the round's secure
   * sum (noised and charged under DP), or, in a plain federation, its own metrics leave only if its
   * policy says so.
   */
  async evaluate(ws: WebSocket, msg: EvaluateMsg, weights: Float32Array): Promise<void> {
    // Checked again even when its sum was opened already: this message's own settings count.
    this.admit(msg, 'evaluation');
    assertModelHash(weights, msg.modelHash);
    const target = this.host.evaluationTarget(msg);
    const key = sumKey(msg.runId, msg.round, 'evaluation');
    let sum = msg.secureAggregation ? this.sums.get(key) : undefined;
    // Opened now when no sum.open came first (or this site reconnected since).
    if (msg.secureAggregation && !sum) sum = this.openEvaluationSum(ws, msg);
    try {
      await this.evaluateInto(ws, msg, weights, target, sum);
    } catch (e) {
      // Its part in the sum ends with the refusal: secrets wiped, nothing more sent for it.
      sum?.destroy();
      this.sums.delete(key);
      this.host.budget.drop(key);
      throw e;
    }
  }

  /** Hands a secure-aggregation step of a statistics or evaluation sum to that sum. */
  async step(msg: SumStepMsg & { sum: 'statistics' | 'evaluation' }): Promise<void> {
    await this.sums.get(sumKey(msg.runId, msg.round, msg.sum))?.step(msg);
  }

  /** Ends every sum in progress (the node stops): their secrets are wiped. */
  endAll(): void {
    for (const sum of this.sums.values()) sum.destroy();
    this.sums.clear();
  }

  /** Ends the sums of a round that ended: their secrets are wiped. */
  endRound(runId: string, round: number): void {
    const prefix = roundPrefix(runId, round);
    for (const [key, sum] of this.sums) {
      if (key.startsWith(prefix)) {
        sum.destroy();
        this.sums.delete(key);
      }
    }
  }

  private async evaluateInto(
    ws: WebSocket,
    msg: EvaluateMsg,
    weights: Float32Array,
    { model, spec, rows }: ReturnType<ReleaseHost['evaluationTarget']>,
    sum: SiteSum | undefined,
  ): Promise<void> {
    const host = this.host;
    const privacy = msg.privacy;
    setModelWeights(model, weights);
    if (!sum) {
      const m = await evaluateModel(model, spec, rows);
      host.send(ws, {
        type: 'round.metrics',
        runId: msg.runId,
        round: msg.round,
        modelVersionId: msg.modelVersionId,
        metrics: {
          loss: m.loss,
          accuracy: m.accuracy,
          auc: m.auc,
          f1: m.f1,
          numExamples: m.numExamples,
        },
      });
      return;
    }
    const once = host.budget.contributionKey(`evaluation/${msg.modelHash}`, privacy);
    const perSite = privacy?.level === 'site';
    let values = await evaluateForSum(model, spec, rows, msg.evaluation, { perSite });
    let mechanism: MechanismParams | null = null;
    if (privacy) {
      const sensitivity = evaluationSensitivity(msg.evaluation, { perSite });
      mechanism = sumMechanism('evaluation', privacy, sensitivity);
      host.budget.checkSumBudget(mechanism, privacy);
      values = addGaussianNoise(values, privacy.noiseMultiplier * sensitivity);
    }
    const ref = { runId: msg.runId, round: msg.round, sum: 'evaluation' } as const;
    await sum.setInput(values, this.releaseFor(ws, ref, mechanism, once));
  }

  /** The site's checks of a statistics or evaluation configuration (see ReleaseHost.admit). */
  private admit(
    msg: StatsMsg | SumOpenMsg | EvaluateMsg,
    stage: 'statistics' | 'evaluation',
  ): void {
    this.host.admit(msg, {
      stage,
      secureAggregation: secAggOffer(msg.secureAggregation),
      privacy: sumOffer(msg.privacy),
    });
  }

  /** Opens this site's part in a round's evaluation sum, its vector to come with the model. */
  private openEvaluationSum(ws: WebSocket, msg: SumOpenMsg | EvaluateMsg): SiteSum {
    // Bound to the round (the model is bound by the signed hash round.evaluate carries).
    const context = `evaluation/${msg.runId}/${msg.round}`;
    return this.openSum(ws, msg, 'evaluation', msg.secureAggregation!, context, null);
  }

  /** How a sum's release is recorded before its masked vector leaves: contribution, then receipt. */
  private releaseFor(
    ws: WebSocket,
    ref: RoundRef & { sum: 'statistics' | 'evaluation' },
    mechanism: MechanismParams | null,
    contribution: string | null,
  ): () => Promise<LedgerEntry | undefined> {
    const budget = this.host.budget;
    const key = sumKey(ref.runId, ref.round, ref.sum);
    if (mechanism) budget.hold(key, mechanism);
    return async () => {
      // Recorded before the values leave: a crash after this never lets them into a second sum.
      if (contribution) await budget.recordContribution(contribution);
      if (!mechanism) return undefined;
      try {
        return await this.host.signRelease(ws, ref, mechanism);
      } finally {
        budget.drop(key);
      }
    };
  }

  /**
   * Starts this site's part in a statistics or evaluation sum: its keys at once, its vector now or
   * (an evaluation opened before the model is there) once `setInput` brings it.
   */
  private openSum(
    ws: WebSocket,
    msg: RoundRef,
    kind: 'statistics' | 'evaluation',
    info: RoundSecAgg,
    context: string,
    input: { values: Float64Array; release: () => Promise<LedgerEntry | undefined> } | null,
  ): SiteSum {
    const host = this.host;
    const key = sumKey(msg.runId, msg.round, kind);
    this.sums.get(key)?.destroy();
    const sum = new SiteSum(
      {
        kind,
        siteId: host.siteId(),
        identitySecretKey: host.identity.secretKey,
        info,
        runId: msg.runId,
        round: msg.round,
        modelHash: context,
        minSurvivors: host.policy.minSitesPerSum,
        sendJson: (m) => host.send(ws, m),
        sendBinary: (frame) => {
          if (ws.readyState === WebSocket.OPEN) ws.send(frame, { binary: true });
        },
        release: input?.release ?? (() => Promise.resolve(undefined)),
        refuse: (step, e) => {
          host.budget.drop(key);
          host.refuse(ws, msg, kind, codeOf(e), `${kind} sum step ${step} refused: ${describe(e)}`);
        },
        log: host.log,
      },
      input?.values,
    );
    this.sums.set(key, sum);
    sum.start();
    host.log(`round ${msg.round}: ${kind} sum joined`);
    return sum;
  }
}

/** What the site's policy needs to know of a statistics or evaluation release's DP. */
function sumOffer(privacy: StatsMsg['privacy']): RoundOffer['privacy'] {
  return privacy
    ? {
        level: privacy.level,
        noiseMultiplier: privacy.noiseMultiplier,
        clipNorm: null,
        delta: privacy.delta,
      }
    : null;
}

/** What the site's policy needs to know of a round's secure aggregation. */
export function secAggOffer(info: RoundSecAgg | null): RoundOffer['secureAggregation'] {
  if (!info) return null;
  const p = info.params as Partial<SecAggParams>;
  return {
    sites: info.roster.length,
    // Passed on as announced: the policy check refuses a graph it does not know.
    graph: p.graph as 'complete' | 'harary',
    ...(p.k !== undefined ? { k: p.k } : {}),
    threshold: Number(p.threshold),
    threatModel: p.threatModel as 'semi-honest' | 'semi-malicious',
  };
}
