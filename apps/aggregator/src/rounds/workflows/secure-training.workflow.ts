import {
  dequantize,
  fromBase64,
  isSecAggError,
  SecAggServer,
  type SecAggParams,
} from '@confide/secure-aggregation';
import type { AggregateSum } from '@confide/federated';
import { weightingOf } from '../contribution-checks';
import { Stopped, type RoundContext } from '../round-context';
import type { RoundSumsService } from '../round-sums.service';
import { roundGraph } from '../secagg-params';
import { secureQuantization } from '../secure-quantization';
import type { SumPort } from '../secure-sum';
import { updateSumProblem } from '../sum-checks';
import { ErrorCode, ProtocolError, type RoundSecAgg, type SiteMessage } from '@confide/protocol';
import type { ActiveRound } from '../active-round';

/** A round's secure-aggregation state machine and what the sites are told about it. */
export interface SecureSetup {
  server: SecAggServer;
  params: SecAggParams;
  info: RoundSecAgg;
}

/** What secure training needs beyond its round. */
export interface SecureTrainingDeps {
  readonly sums: RoundSumsService;
  /** Each federation's total record count from its last secure sum, the next weight normaliser. */
  readonly totalRecords: Map<string, number>;
  /** Unmasks a sum (worker threads for large jobs). */
  readonly unmask: SumPort['unmask'];
}

/**
 * SecAgg+ training (Bonawitz et al. 2017; SecAgg+ graphs of Bell et al. 2020 above 64 sites): the
 * round's parameters and server state machine, then advertise, share keys, collect masked inputs,
 * (consistency,) unmask, and the plausibility check of the unmasked sum. The messages of each stage
 * reach the state machine through RoundMessages; this workflow waits on them stage by stage.
 */
export class SecureTrainingWorkflow {
  constructor(
    private readonly ctx: RoundContext,
    private readonly deps: SecureTrainingDeps,
  ) {}

  /** Chooses the round's secure-aggregation parameters and builds the server state machine. */
  setup(
    modelHash: string,
    siteDp: { noiseMultiplier: number; clipNorm: number } | null,
    totalRecords: number | null,
  ): SecureSetup {
    const active = this.ctx.active;
    const fed = active.fed;
    const sa = fed.config.secureAggregation!;
    const chosen = active.participantList().filter((p) => p.status === 'selected');
    const n = chosen.length;
    const { threshold: t, graph, k } = roundGraph(fed, n);
    // Site-level noise shares are sized for the t survivors a sum needs (what each site assumes too).
    if (fed.config.dp?.level === 'site') active.survivorsAssumed = t;
    // Site-level DP noise is added after quantization, inside the clip's headroom.
    const { clip, scale } = secureQuantization(sa.clip, siteDp, n, active.survivorsAssumed ?? t);
    const params: SecAggParams = {
      threshold: t,
      graph,
      ...(k !== undefined ? { k } : {}),
      threatModel: sa.threatModel,
      clip,
      scale,
      maxSites: n,
    };
    const roster = chosen.map((p) => ({
      siteId: p.siteId,
      publicKey: active.sites.get(p.siteId)!.publicKey,
    }));
    // A public divisor, never a site's own count (which would leave the site in the clear): the
    // sites' total from the statistics sum or the last round's sum, else a fixed power of two
    // (coarser: the weights are then small against the quantisation step). Sites weigh themselves
    // by their record count over it, capped at 1; site-level DP weighs every site 1.
    // Sites' claims enter it (the last sum's total): it is bounded by what n sites may claim.
    const weighting = weightingOf(fed);
    const weightNormalizer =
      weighting.mode === 'equal'
        ? 1
        : Math.min(
            n * weighting.cap,
            Math.max(1, totalRecords ?? this.deps.totalRecords.get(fed.id) ?? 2 ** 20),
          );
    const vectorLength = active.expectedLength + 1;
    const server = new SecAggServer({
      params,
      roster: new Map(roster.map((r) => [r.siteId, fromBase64(r.publicKey, 32)])),
      runId: active.runId,
      round: active.number,
      modelHash,
      vectorLength,
    });
    active.secaggSummary = { threshold: t, graph, ...(k !== undefined ? { k } : {}), sites: n };
    return {
      server,
      params,
      info: { params: { ...params }, roster, weightNormalizer, vectorLength },
    };
  }

  /** Runs advertise, share, collect, (consistency,) unmask; returns the unmasked weighted sum. */
  async collect(
    setup: SecureSetup,
    deadline: number,
  ): Promise<{ aggregate: AggregateSum } | { abort: string }> {
    const ctx = this.ctx;
    const active = ctx.active;
    const server = setup.server;
    const envelope = (type: string, body: object): object =>
      ctx.envelope(type, { sum: 'update', ...body });
    try {
      // Round 0: signed key advertisements.
      await ctx.until(() => ctx.nonePending('selected'), deadline);
      ctx.markUnanswered(
        'selected',
        'dropped',
        'no key advertisement (dropped before sharing keys)',
      );
      // Each site gets its neighbourhood's advertisements (SecAgg+: O(k log n), not every site's),
      // each proven a member of the set the session id holds.
      server.closeAdvertising();
      ctx.sendTo('advertised', (siteId) =>
        envelope('secagg.advertisements', { advertisements: server.advertisementsFor(siteId) }),
      );
      // Round 1: encrypted Shamir shares, routed to their recipients.
      active.phase = 'sharing';
      await ctx.persist('sharing');
      await ctx.until(() => ctx.nonePending('advertised'), deadline);
      ctx.markUnanswered('advertised', 'dropped', 'no key shares (dropped after advertising)');
      server.closeSharing();
      ctx.sendTo('shared', (siteId) =>
        envelope('secagg.deliver', { shares: server.sharesFor(siteId) }),
      );
      // Round 2: masked inputs, folded into the running sum as they arrive.
      active.phase = 'collecting';
      await ctx.persist('collecting');
      await ctx.until(() => ctx.nonePending('shared'), deadline);
      ctx.markUnanswered('shared', 'dropped', 'no masked input (dropped after sharing keys)');
      const consistency = server.closeCollection();
      // The evaluation sum's keys are agreed while this sum is unmasked and the model stored.
      if (active.fed.config.evaluation !== false) {
        const evalDeadline = Math.max(deadline, ctx.now()) + active.fed.config.evaluationTimeoutMs;
        active.evaluation = await this.deps.sums.openEvaluation(
          active,
          ctx.sumPort(this.deps.unmask),
          server.survivors(),
          evalDeadline,
        );
      }
      if (consistency) {
        // Round 3 (semi-malicious): every survivor signs the survivor list.
        active.phase = 'consistency';
        // One message for every survivor: signed once, as the same object.
        const request = envelope('secagg.consistency', { request: consistency });
        ctx.sendSameTo('submitted', request);
        await ctx.until(
          () =>
            ctx.nonePendingIn(
              'submitted',
              (id) => active.confirmed.has(id) || active.refused.has(id),
            ),
          deadline,
        );
        server.closeConsistency();
      }
      // Round 4: unmasking; each survivor reveals one kind of share per neighbour. As in the rounds
      // above, the requests go out before the transition is stored, which overlaps the two.
      active.phase = 'unmasking';
      ctx.sendTo('submitted', (siteId) =>
        envelope('secagg.unmask', { request: server.unmaskRequest(siteId) }),
      );
      await ctx.persist('unmasking');
      await ctx.until(
        () =>
          ctx.nonePendingIn('submitted', (id) => active.unmasked.has(id) || active.refused.has(id)),
        deadline,
      );
      const sum = await this.deps.unmask(server, setup.info.vectorLength);
      this.nameCorruptShares(server);
      return this.checkedSum(setup, dequantize(sum, setup.params), server.survivors());
    } catch (e) {
      if (e instanceof Stopped) throw e;
      const reason = isSecAggError(e)
        ? `secure aggregation: ${e.message}`
        : `secure aggregation failed: ${(e as Error).message}`;
      return { abort: reason };
    } finally {
      server.destroy();
      active.secagg = null;
    }
  }

  /** Reconstructed from the sound shares; the senders of the others are named in the round. */
  private nameCorruptShares(server: SecAggServer): void {
    const active = this.ctx.active;
    for (const c of server.corruptShares()) {
      const owner = active.participants.get(c.owner)?.name ?? c.owner;
      for (const sender of c.senders) {
        const p = active.participants.get(sender);
        if (!p) continue;
        const note = `revealed a corrupt ${c.kind} share of ${owner} (left out; the round used the others)`;
        p.detail = p.detail ? `${p.detail}; ${note}` : note;
      }
    }
  }

  /** The unmasked sum, refused when implausible, with each contributor's part recorded. */
  private checkedSum(
    setup: SecureSetup,
    values: Float64Array,
    contributors: string[],
  ): { aggregate: AggregateSum } | { abort: string } {
    const active = this.ctx.active;
    const L = active.expectedLength;
    const weighting = weightingOf(active.fed);
    const problem = updateSumProblem(
      values.subarray(0, L),
      values[L]!,
      contributors.length,
      weighting.mode === 'equal' ? 1 : Math.min(1, weighting.cap / setup.info.weightNormalizer),
      setup.params.clip,
    );
    if (problem) return { abort: `the unmasked update sum is implausible: ${problem}` };
    for (const id of contributors) {
      const p = active.participants.get(id);
      if (!p) continue;
      p.status = 'submitted';
      if (!active.unmasked.has(id)) {
        p.detail = "vanished before unmasking; its input was unmasked from its neighbours' shares";
        active.lateDrops++;
      }
    }
    if (active.fed.config.dp?.level !== 'site') {
      // The sites' total record count, a sum the round reveals anyway: the next round's normaliser.
      const records = Math.round(values[L]! * setup.info.weightNormalizer);
      if (records >= 1) this.deps.totalRecords.set(active.federationId, records);
    }
    return { aggregate: { sum: values.subarray(0, L), totalWeight: values[L]!, contributors } };
  }
}

/**
 * A step of the secure update sum (advertisement, shares, survivor signature, unmask response),
 * taken by the round's SecAgg+ state machine when it comes from the right site at the right stage.
 */
export function acceptSecAggStep(
  active: ActiveRound,
  siteId: string,
  msg: Extract<
    SiteMessage,
    { type: 'secagg.advertise' | 'secagg.shares' | 'secagg.signature' | 'secagg.unmasked' }
  >,
): void {
  const p = active.participants.get(siteId)!;
  const server = active.secagg;
  const expected = {
    'secagg.advertise': ['advertising', 'selected'],
    'secagg.shares': ['sharing', 'advertised'],
    'secagg.signature': ['consistency', 'submitted'],
    'secagg.unmasked': ['unmasking', 'submitted'],
  }[msg.type];
  if (!server || active.phase !== expected[0] || p.status !== expected[1]) {
    throw new ProtocolError(
      ErrorCode.UNEXPECTED_MESSAGE,
      `${msg.type} is not expected from this site now (${active.phase}, ${p.status})`,
    );
  }
  try {
    switch (msg.type) {
      case 'secagg.advertise':
        if ((msg.advertisement as { siteId?: unknown } | null)?.siteId !== siteId) {
          throw new Error('the advertisement names another site');
        }
        server.addAdvertisement(msg.advertisement);
        p.status = 'advertised';
        break;
      case 'secagg.shares':
        server.addShares(siteId, msg.shares);
        p.status = 'shared';
        break;
      case 'secagg.signature':
        if (
          (msg.signature as { siteId?: unknown } | null)?.siteId !== siteId ||
          active.confirmed.has(siteId)
        ) {
          throw new Error('the signature is not this site’s, or came twice');
        }
        server.addSurvivorSignature(msg.signature);
        active.confirmed.add(siteId);
        break;
      case 'secagg.unmasked':
        if (
          (msg.response as { siteId?: unknown } | null)?.siteId !== siteId ||
          active.unmasked.has(siteId)
        ) {
          throw new Error('the unmask response is not this site’s, or came twice');
        }
        server.addUnmaskResponse(msg.response);
        active.unmasked.add(siteId);
        break;
    }
  } catch (e) {
    throw new ProtocolError(ErrorCode.SECAGG_REFUSED, (e as Error).message);
  }
}
