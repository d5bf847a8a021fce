import { randomUUID } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import {
  evaluationLayoutFor,
  evaluationSensitivity,
  evaluationVectorLength,
  metricsFromEvaluationSum,
  statisticsFromSum,
  statisticsSensitivity,
} from '@confide/ml/spec';
import {
  ErrorCode,
  PROTOCOL_VERSION,
  ProtocolError,
  type RoundSecAgg,
  type SiteMessage,
  type SumPrivacy,
} from '@confide/protocol';
import { canonicalJson, sumRelease } from '@confide/privacy-ledger';
import { decodeWideFixedPointSum } from '@confide/secure-aggregation';
import { CONFIG, type AggregatorConfig } from '../common/tokens';
import type { FederationRow, FeatureStatsRow, RoundMetrics } from '../database/rows';
import { LedgerService, ledgerSlotMessage, type ActiveDp } from '../privacy/ledger.service';
import { SiteRepository } from '../sites/site.repository';
import { SessionRegistry, type SiteSession } from '../fl/session-registry';
import { FederationRepository } from '../federations/federation.repository';
import type { ActiveRound } from './active-round';
import { checkMetrics, weightingOf } from './contribution-checks';
import { statisticsSumProblem } from './sum-checks';
import { sumParams } from './secagg-params';
import { SecureSum, type SumKind, type SumPort } from './secure-sum';

/** The default share of each site's budget for statistics and evaluation releases. */
export const DEFAULT_STATISTICS_SHARE = 0.1;

/**
 * The statistics and evaluation of a round as secure sums: what each site sends is masked, so the
 * aggregator learns only totals over the sites that took part (DESIGN section 4). Under DP each
 * site's vector is a release of its own, clipped to the federation's feature bounds, noised by the
 * site and charged to the ledger with the site's signed receipt.
 */
@Injectable()
export class RoundSumsService {
  constructor(
    @Inject(CONFIG) private readonly config: AggregatorConfig,
    @Inject(SessionRegistry) private readonly sessions: SessionRegistry,
    @Inject(SiteRepository) private readonly sites: SiteRepository,
    @Inject(LedgerService) private readonly ledger: LedgerService,
    @Inject(FederationRepository) private readonly federations: FederationRepository,
  ) {}

  /**
   * The federation's feature statistics from a secure sum over the round's selected sites; stored
   * with the federation. A string says why there are none (the round aborts with it).
   */
  async statistics(
    active: ActiveRound,
    port: SumPort,
    deadline: number,
  ): Promise<FeatureStatsRow | string> {
    const fed = active.fed;
    const d = fed.modelSpec.inputDim;
    const bounds = fed.config.featureBounds ?? null;
    const dp = activeDp(fed);
    const perSite = dp?.level === 'site';
    const roster = active.participantList().filter((p) => p.status === 'selected');
    let sum: SecureSum;
    try {
      // Wide fixed point (two numbers a value): raw sums of squares have no bound.
      sum = await this.open(
        active,
        'statistics',
        roster,
        (1 + 2 * d) * 2,
        statisticsContext(fed.id),
        dp && bounds ? statisticsSensitivity(d, { perSite, bounds }) : null,
      );
    } catch (e) {
      return `the statistics sum cannot start: ${(e as Error).message}`;
    }
    const request = {
      v: PROTOCOL_VERSION,
      type: 'stats.request',
      id: randomUUID(),
      runId: active.runId,
      round: active.number,
      federationId: fed.id,
      features: d,
      secureAggregation: sum.info,
      privacy: dp ? sumPrivacy(dp) : null,
      featureBounds: bounds,
      deadline: new Date(deadline).toISOString(),
    };
    active.phase = 'stats';
    active.statsRequest = request;
    for (const p of roster) this.sessions.get(p.siteId)?.sendJson(request);
    const result = await this.runSum(active, sum, port, deadline, (s) =>
      decodeWideFixedPointSum(s),
    );
    if ('abort' in result) return result.abort;
    if (result.contributors.length < fed.config.minSites) {
      return `only ${result.contributors.length} site(s) took part in the statistics sum; the federation needs minSites=${fed.config.minSites}`;
    }
    const st = statisticsFromSum(result.values, { bounds, perSite, features: d });
    // Noised counts (DP) may stray past exact bounds; bounded statistics are clamped to the bounds.
    const problem = dp
      ? null
      : statisticsSumProblem(st, result.contributors.length, weightingOf(fed).cap, bounds !== null);
    if (problem) return `the unmasked statistics sum is implausible: ${problem}`;
    const stats: FeatureStatsRow = {
      mean: st.mean,
      std: st.std,
      sites: result.contributors.length,
      count: st.count,
    };
    await this.federations.setFeatureStats(fed.id, stats);
    return stats;
  }

  /**
   * Opens a round's evaluation sum over the sites whose updates made it into the round, before the
   * new model exists: they agree its keys while the aggregator unmasks the update and stores the
   * model (the keys do not depend on it), so evaluating costs two round trips once the model is
   * there. Null when fewer than two sites can take part. `deadline` bounds the wait for the model.
   */
  async openEvaluation(
    active: ActiveRound,
    port: SumPort,
    siteIds: readonly string[],
    deadline: number,
  ): Promise<OpenEvaluation | null> {
    const fed = active.fed;
    const layout = evaluationLayoutFor(fed.modelSpec);
    const dp = activeDp(fed);
    const perSite = dp?.level === 'site';
    const roster = siteIds
      .filter((id) => this.sessions.isConnected(id))
      .map((siteId) => ({ siteId }));
    if (roster.length < 2) return null;
    let sum: SecureSum;
    try {
      sum = await this.open(
        active,
        'evaluation',
        roster,
        evaluationVectorLength(layout),
        evaluationContext(active.runId, active.number),
        dp ? evaluationSensitivity(layout, { perSite }) : null,
      );
    } catch (e) {
      this.config.log(`round ${active.number}: no evaluation sum: ${(e as Error).message}`);
      return null;
    }
    const settings = {
      runId: active.runId,
      round: active.number,
      federationId: fed.id,
      secureAggregation: sum.info,
      privacy: dp ? sumPrivacy(dp) : null,
      evaluation: layout,
    };
    const open = {
      v: PROTOCOL_VERSION,
      type: 'sum.open',
      id: randomUUID(),
      sum: 'evaluation',
      ...settings,
      deadline: new Date(deadline).toISOString(),
    };
    for (const r of roster) this.sessions.get(r.siteId)?.sendJson(open);
    return { sum, settings, result: this.runSum(active, sum, port, deadline) };
  }

  /**
   * The held-out metrics of a round's new model from its evaluation sum (opened with
   * openEvaluation): the model goes to the sum's sites, their counts come back summed. The round's
   * participants that counted are marked evaluated.
   */
  async evaluation(
    active: ActiveRound,
    open: OpenEvaluation,
    weights: Float32Array,
    version: { id: string; hash: string },
    deadline: number,
  ): Promise<RoundMetrics['evaluation'] | string | { abort: string }> {
    const fed = active.fed;
    const { sum, settings } = open;
    const frame = this.config.signer.frame(
      {
        v: PROTOCOL_VERSION,
        type: 'round.evaluate',
        id: randomUUID(),
        ...settings,
        modelVersionId: version.id,
        modelHash: version.hash,
        deadline: new Date(deadline).toISOString(),
      },
      weights,
    );
    active.evaluateFrame = frame;
    sum.deadline = deadline;
    for (const r of sum.info.roster) this.sessions.get(r.siteId)?.sendBinary(frame);
    const result = await open.result;
    if ('abort' in result) return result.abort;
    for (const id of result.contributors) {
      const p = active.participants.get(id);
      if (p?.status === 'submitted') p.status = 'evaluated';
    }
    const m = metricsFromEvaluationSum(
      result.values,
      settings.evaluation,
      settings.privacy?.level === 'site' ? { sites: result.contributors.length } : {},
    );
    if (!settings.privacy) {
      // Exact counts (no noise): metrics outside their ranges mean a site broke its own.
      try {
        checkMetrics(m, result.contributors.length * weightingOf(fed).cap);
      } catch (e) {
        return { abort: `the unmasked evaluation sum is implausible: ${(e as Error).message}` };
      }
    }
    return { ...m, sites: result.contributors.length };
  }

  /**
   * Builds a sum over `roster`, with the ledger check of each receipt under DP (`sensitivity`: the
   * L2 sensitivity of one site's vector, null without DP).
   */
  private async open(
    active: ActiveRound,
    kind: SumKind,
    roster: ReadonlyArray<{ siteId: string }>,
    values: number,
    modelHash: string,
    sensitivity: number | null,
  ): Promise<SecureSum> {
    const fed = active.fed;
    const { params, vectorLength } = sumParams(fed, roster.length, values);
    const info: RoundSecAgg = {
      params: { ...params },
      roster: roster.map((p) => ({
        siteId: p.siteId,
        publicKey: active.sites.get(p.siteId)!.publicKey,
      })),
      weightNormalizer: 1,
      vectorLength,
    };
    const dp = activeDp(fed);
    let accept: ConstructorParameters<typeof SecureSum>[5] = null;
    if (dp && sensitivity !== null) {
      // Every receipt of this sum must name exactly this release.
      const want = canonicalJson(
        sumRelease({
          release: kind,
          level: dp.level,
          noiseMultiplier: statisticsNoise(dp),
          sensitivity,
        }),
      );
      accept = async (siteId, slot, receipt) => {
        const site = await this.sites.findById(fed.id, siteId);
        await this.ledger.acceptReceipt(slot, site!, receipt, (m) =>
          canonicalJson(m) === want
            ? null
            : `the receipt's mechanism ${canonicalJson(m)} is not this ${kind} release's ${want}`,
        );
      };
    }
    return new SecureSum(kind, active.runId, active.number, info, modelHash, accept);
  }

  private async runSum(
    active: ActiveRound,
    sum: SecureSum,
    port: SumPort,
    deadline: number,
    decode?: (s: Uint32Array) => Float64Array,
  ): ReturnType<SecureSum['run']> {
    active.sum = sum;
    try {
      return await sum.run(port, deadline, decode);
    } finally {
      if (active.sum === sum) active.sum = null;
      for (const s of sum.states()) {
        const p = active.participants.get(s.siteId);
        if (p && s.state !== 'submitted' && s.detail) {
          const note = `${sum.kind}: ${s.detail}`;
          p.detail = p.detail ? `${p.detail}; ${note}` : note;
        }
      }
    }
  }

  /**
   * Routes a site message of a statistics or evaluation sum: its secure-aggregation steps, the
   * ledger position for its receipt, and declines. Throws ProtocolError on a bad one.
   */
  async handle(
    active: ActiveRound,
    session: SiteSession,
    msg: SiteMessage,
    vector: Float32Array | Uint32Array | null,
  ): Promise<void> {
    const sum = active.sum;
    const kind = 'sum' in msg ? msg.sum : msg.type === 'round.decline' ? msg.stage : null;
    if (!sum || sum.kind !== kind) {
      throw new ProtocolError(
        ErrorCode.UNEXPECTED_MESSAGE,
        `no ${String(kind)} sum is running; ${msg.type} was not expected`,
      );
    }
    switch (msg.type) {
      case 'round.decline':
        sum.decline(session.siteId, `${msg.code}: ${msg.reason}`);
        return;
      case 'ledger.reserve': {
        if (!activeDp(active.fed) || !sum.canReserve(session.siteId)) {
          throw new ProtocolError(
            ErrorCode.UNEXPECTED_MESSAGE,
            `no privacy receipt is expected from this site in the ${sum.kind} sum now`,
          );
        }
        const site = await this.sites.findById(active.federationId, session.siteId);
        const slot = await this.ledger.reserve(
          active.fed,
          site!,
          active.number,
          sum.kind,
          () =>
            active.sum === sum &&
            sum.canReserve(session.siteId) &&
            this.sessions.isCurrent(session),
        );
        if (!slot) {
          throw new ProtocolError(
            ErrorCode.UNEXPECTED_MESSAGE,
            `the ${sum.kind} sum moved on while this site waited for the ledger's next position`,
          );
        }
        sum.slots.set(session.siteId, slot);
        session.sendJson(ledgerSlotMessage(slot, msg.id, { runId: active.runId, sum: sum.kind }));
        return;
      }
      case 'secagg.advertise':
      case 'secagg.shares':
      case 'secagg.masked':
      case 'secagg.signature':
      case 'secagg.unmasked':
        await sum.handle(session.siteId, msg, vector);
        return;
      case 'login':
      case 'round.metrics':
      case 'round.update':
      case 'stats.report':
      case 'ledger.receipt':
      case 'ledger.none':
        throw new ProtocolError(
          ErrorCode.UNEXPECTED_MESSAGE,
          `${msg.type} is not part of the ${sum.kind} sum`,
        );
    }
  }
}

/**
 * What a statistics sum binds its session to where an update binds the model's hash: the federation
 * (with the run, the round and the tensor id 'statistics', no two sums share keys).
 */
function statisticsContext(federationId: string): string {
  return `statistics/${federationId}`;
}

/** What an evaluation sum binds its session to: its round (the model is bound by its signed hash). */
function evaluationContext(runId: string, round: number): string {
  return `evaluation/${runId}/${round}`;
}

/** An evaluation sum opened before its model: what round.evaluate repeats, and the sum's outcome. */
export interface OpenEvaluation {
  sum: SecureSum;
  settings: {
    runId: string;
    round: number;
    federationId: string;
    secureAggregation: RoundSecAgg;
    privacy: SumPrivacy | null;
    evaluation: ReturnType<typeof evaluationLayoutFor>;
  };
  result: ReturnType<SecureSum['run']>;
}

/** A federation's DP settings when DP is on, else null. */
function activeDp(fed: FederationRow): ActiveDp | null {
  const dp = fed.config.dp;
  return dp && dp.level !== 'none' ? dp : null;
}

/** The noise multiplier of a federation's statistics and evaluation releases. */
function statisticsNoise(dp: ActiveDp): number {
  if (dp.statisticsNoiseMultiplier === undefined) {
    // Federations created before statistics became releases: their sums are noised like an update.
    return dp.noiseMultiplier;
  }
  return dp.statisticsNoiseMultiplier;
}

/** What a site needs to noise, account and sign a statistics or evaluation release. */
function sumPrivacy(dp: ActiveDp): SumPrivacy {
  return {
    level: dp.level,
    noiseMultiplier: statisticsNoise(dp),
    delta: dp.delta,
    epsilonLimit: dp.epsilonLimit,
    statisticsShare: dp.statisticsShare ?? DEFAULT_STATISTICS_SHARE,
  };
}
