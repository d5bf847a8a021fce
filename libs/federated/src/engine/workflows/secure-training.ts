import {
  chooseScale,
  dequantize,
  isSecAggError,
  SecAggServer,
  sumGraph,
  type SecAggParams,
  type SumGraphSettings,
} from '@confide/secure-aggregation';
import type { AggregateSum } from '../../aggregation';
import type { Grid, Inbound, Verdict } from '../../grid/grid';
import type { TrainInstructions } from '../../strategies/types';
import type {
  EngineReply,
  SecureReply,
  SecureRoundInfo,
  SecureStepName,
  SecureStepRequest,
} from '../messages';
import { ask } from './ask';
import { boundedText } from './plain-training';

/** How a federation's secure rounds are set up. */
export interface SecureSettings extends SumGraphSettings {
  /** Quantisation clip of each weighted coordinate. */
  readonly clip: number;
  /** The public divisor of the sites' example counts (their weights are min(1, n / it)). */
  readonly weightNormalizer: number;
  /** Each site's Ed25519 identity public key (enrolment). */
  readonly publicKey: (siteId: string) => Uint8Array;
  readonly runId: string;
}

export interface SecureTrainingInput {
  readonly round: number;
  readonly sites: readonly string[];
  readonly global: Float32Array;
  readonly instructions: TrainInstructions;
  readonly modelHash: string;
  readonly deadline: number;
  readonly secure: SecureSettings;
  readonly reconnectGraceMs?: number;
  readonly signal?: AbortSignal;
}

/** Which stage a site left the sum at (it counts in the sum only if it sent its masked input). */
export type SecureStage = 'advertise' | 'shares' | 'masked' | 'signature' | 'unmasked';

export interface SecureTrainingResult {
  /** The unmasked weighted sum of the survivors' updates; null when the sum could not be had. */
  readonly aggregate: AggregateSum | null;
  /** Why there is no sum. */
  readonly abort: string | null;
  /** Sites whose masked input is in the sum. */
  readonly contributors: readonly string[];
  /** Sites that did not answer a stage, and which. */
  readonly dropped: ReadonlyMap<string, SecureStage>;
  /** Sites whose step the state machine refused (or that declined), with why. */
  readonly rejected: ReadonlyMap<string, string>;
  /** The parameters the round used. */
  readonly params: SecAggParams | null;
}

/**
 * SecAgg+ training on the Grid (Bonawitz et al. 2017; SecAgg+ graphs of Bell et al. 2020 above 64
 * sites): the server's state machine from libs/secure-aggregation driven stage by stage, each
 * stage one `ask` of the sites still in the sum: advertise (with the model), share keys, masked
 * input, (consistency,) unmask. The aggregator learns the survivors' weighted sum only; a site
 * that drops at any stage is left out, and the sum is unmasked from its neighbours' shares when
 * it dropped after its masked input counted.
 */
export class SecureTrainingWorkflow {
  constructor(private readonly grid: Grid<EngineReply>) {}

  async run(input: SecureTrainingInput): Promise<SecureTrainingResult> {
    const length = input.global.length;
    const dropped = new Map<string, SecureStage>();
    const rejected = new Map<string, string>();
    const n = input.sites.length;
    let params: SecAggParams;
    let server: SecAggServer;
    try {
      const graph = sumGraph(n, input.secure);
      params = {
        ...graph,
        threatModel: input.secure.threatModel,
        clip: input.secure.clip,
        scale: chooseScale(input.secure.clip, n),
        maxSites: n,
      };
      server = new SecAggServer({
        params,
        roster: new Map(input.sites.map((id) => [id, input.secure.publicKey(id)])),
        runId: input.secure.runId,
        round: input.round,
        modelHash: input.modelHash,
        vectorLength: length + 1,
      });
    } catch (e) {
      return this.failed(`secure aggregation cannot start: ${text(e)}`, dropped, rejected, null);
    }
    const info: SecureRoundInfo = {
      runId: input.secure.runId,
      modelHash: input.modelHash,
      params,
      roster: input.sites.map((siteId) => ({ siteId, publicKey: input.secure.publicKey(siteId) })),
      vectorLength: length + 1,
      weightNormalizer: input.secure.weightNormalizer,
    };
    /** One stage: `take` hands each expected reply to the state machine (throws: refused). */
    const stage = async (
      sites: readonly string[],
      request: SecureStepRequest['step'] | 'train',
      expected: SecureStage,
      take: (siteId: string, reply: SecureReply, vector: Inbound<EngineReply>['vector']) => void,
    ): Promise<void> => {
      const accept = (reply: Inbound<EngineReply>): Verdict => {
        const m = reply.message;
        if (m.round !== input.round) return false;
        if (m.type === 'decline') {
          rejected.set(reply.siteId, `declined: ${boundedText(m.reason)}`);
          return 'reject';
        }
        if (m.type !== 'secure.reply' || m.step !== expected) return false;
        try {
          take(reply.siteId, m, reply.vector);
          return true;
        } catch (e) {
          rejected.set(reply.siteId, `${expected}: ${text(e)}`);
          return 'reject';
        }
      };
      const got = await ask(this.grid, {
        sites,
        request:
          request === 'train'
            ? {
                type: 'secure.train',
                round: input.round,
                weights: input.global,
                instructions: input.instructions,
                secure: info,
                deadline: input.deadline,
              }
            : (siteId) => this.step(input, request, siteId, server),
        accept,
        deadline: input.deadline,
        ...(input.reconnectGraceMs !== undefined
          ? { reconnectGraceMs: input.reconnectGraceMs }
          : {}),
        ...(input.signal ? { signal: input.signal } : {}),
      });
      for (const id of got.missing) dropped.set(id, expected);
    };
    try {
      await stage(input.sites, 'train', 'advertise', (_id, m) =>
        server.addAdvertisement(m.payload),
      );
      server.closeAdvertising();
      await stage(server.advertisers(), 'advertisements', 'shares', (id, m) => {
        if (!Array.isArray(m.payload)) throw new TypeError('shares must be an array');
        server.addShares(id, m.payload);
      });
      server.closeSharing();
      await stage(server.sharers(), 'deliver', 'masked', (id, _m, vector) => {
        if (!(vector instanceof Uint32Array)) {
          throw new TypeError('a masked input must carry a uint32 vector');
        }
        server.addMaskedInput(id, vector);
      });
      if (server.closeCollection()) {
        await stage(server.survivors(), 'consistency', 'signature', (_id, m) =>
          server.addSurvivorSignature(m.payload),
        );
        server.closeConsistency();
      }
      await stage(server.survivors(), 'unmask', 'unmasked', (_id, m) =>
        server.addUnmaskResponse(m.payload),
      );
      const values = dequantize(server.finish(), params);
      const contributors = server.survivors();
      return {
        aggregate: {
          sum: Float64Array.from(values.subarray(0, length)),
          totalWeight: values[length]!,
          contributors,
        },
        abort: null,
        contributors,
        dropped,
        rejected,
        params,
      };
    } catch (e) {
      if (!isSecAggError(e)) throw e;
      return this.failed(`secure aggregation: ${e.message}`, dropped, rejected, params);
    } finally {
      server.destroy();
    }
  }

  /** The request of `step` for `siteId`, from the server's state. */
  private step(
    input: SecureTrainingInput,
    step: SecureStepName,
    siteId: string,
    server: SecAggServer,
  ): SecureStepRequest {
    const payload =
      step === 'advertisements'
        ? server.advertisementsFor(siteId)
        : step === 'deliver'
          ? server.sharesFor(siteId)
          : step === 'consistency'
            ? server.consistencyRequest()
            : server.unmaskRequest(siteId);
    return { type: 'secure.step', round: input.round, step, payload, deadline: input.deadline };
  }

  private failed(
    abort: string,
    dropped: Map<string, SecureStage>,
    rejected: Map<string, string>,
    params: SecAggParams | null,
  ): SecureTrainingResult {
    return { aggregate: null, abort, contributors: [], dropped, rejected, params };
  }
}

function text(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
