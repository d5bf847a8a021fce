import { SecAggClient } from '@confide/secure-aggregation';
import type { EvaluationMetrics, TrainInstructions } from '../strategies/types';
import type {
  EngineReply,
  EngineRequest,
  SecureReply,
  SecureStepRequest,
  SecureTrainRequest,
} from './messages';

/** A site's local training: the delta from the global weights, its examples and loss. */
export type LocalTrainer = (request: {
  round: number;
  weights: Float32Array;
  instructions: TrainInstructions;
}) => Promise<{ delta: Float32Array; numExamples: number; trainLoss: number }>;

export interface EngineSiteOptions {
  readonly siteId: string;
  /** Its Ed25519 identity secret key (tweetnacl sign, 64 bytes), for secure rounds. */
  readonly identitySecretKey?: Uint8Array;
  readonly train: LocalTrainer;
  /** Held-out metrics of a model; without it the site declines to evaluate. */
  readonly evaluate?: (weights: Float32Array) => Promise<EvaluationMetrics>;
}

/** A reply and the vector it carries. */
export interface SiteAnswer {
  readonly reply: EngineReply;
  readonly vector?: Float32Array | Uint32Array;
}

/** One secure round's state at a site: its round keys live here, in memory only. */
interface SecureRound {
  readonly round: number;
  readonly info: SecureTrainRequest['secure'];
  readonly client: SecAggClient;
  readonly trained: Promise<{ delta: Float32Array; numExamples: number; trainLoss: number }>;
  /** Each step's answer, given again when the request comes again (a reconnect). */
  readonly answers: Map<string, SiteAnswer>;
}

/**
 * A site's side of the engine's messages for tests and `confide simulate`: trains, evaluates and
 * takes part in secure sums. A secure round's keys stay in memory for the round, so a site that
 * reconnects and is asked a step again gives the same answer and continues the round. (The
 * client node is the production site: it checks every round against its own policy first.)
 *
 * @example
 * const steps = new EngineSite({ siteId: 'a', identitySecretKey, train });
 * site.onMessage(async (m) => { const a = await steps.answer(m.body); if (a) site.reply(a.reply, a.vector ?? null); });
 */
export class EngineSite {
  private secure: SecureRound | null = null;
  private plain: { round: number; answer: Promise<SiteAnswer> } | null = null;

  constructor(private readonly options: EngineSiteOptions) {}

  /** The answer to a request, or null when it needs none. */
  async answer(request: EngineRequest): Promise<SiteAnswer | null> {
    switch (request.type) {
      case 'train':
        if (this.plain?.round !== request.round) {
          this.plain = {
            round: request.round,
            answer: this.options.train(request).then((t) => ({
              reply: {
                type: 'update',
                round: request.round,
                numExamples: t.numExamples,
                trainLoss: t.trainLoss,
              },
              vector: t.delta,
            })),
          };
        }
        return this.plain.answer;
      case 'evaluate':
        if (!this.options.evaluate) {
          return {
            reply: { type: 'decline', round: request.round, reason: 'this site does not evaluate' },
          };
        }
        return {
          reply: {
            type: 'metrics',
            round: request.round,
            metrics: await this.options.evaluate(request.weights),
          },
        };
      case 'secure.train':
        return this.joinSecure(request);
      case 'secure.step':
        return this.secureStep(request);
      case 'round.end':
        this.forget(request.round);
        return null;
    }
  }

  private joinSecure(request: SecureTrainRequest): SiteAnswer {
    if (this.secure?.round === request.round) return this.secure.answers.get('advertise')!;
    this.forget(this.secure?.round ?? -1);
    if (!this.options.identitySecretKey) {
      return {
        reply: { type: 'decline', round: request.round, reason: 'this site has no identity key' },
      };
    }
    const client = new SecAggClient({
      siteId: this.options.siteId,
      identitySecretKey: this.options.identitySecretKey,
      roster: new Map(request.secure.roster.map((r) => [r.siteId, r.publicKey])),
      runId: request.secure.runId,
      round: request.round,
      modelHash: request.secure.modelHash,
      params: request.secure.params,
      vectorLength: request.secure.vectorLength,
    });
    // Training runs while the keys are shared.
    const trained = this.options.train(request);
    trained.catch(() => undefined);
    const answer = reply(request.round, 'advertise', client.advertise());
    this.secure = {
      round: request.round,
      info: request.secure,
      client,
      trained,
      answers: new Map([['advertise', answer]]),
    };
    return answer;
  }

  private async secureStep(request: SecureStepRequest): Promise<SiteAnswer | null> {
    const s = this.secure;
    if (!s || s.round !== request.round) return null; // keys gone: it cannot continue this sum
    const known = s.answers.get(request.step);
    if (known) return known;
    let answer: SiteAnswer;
    switch (request.step) {
      case 'advertisements':
        answer = reply(s.round, 'shares', s.client.shareKeys(request.payload));
        break;
      case 'deliver': {
        s.client.receiveShares(request.payload as unknown[]);
        const t = await s.trained;
        const weight = Math.min(1, t.numExamples / s.info.weightNormalizer);
        answer = {
          ...reply(s.round, 'masked', null),
          vector: s.client.maskWeightedUpdate(t.delta, weight),
        };
        break;
      }
      case 'consistency':
        answer = reply(s.round, 'signature', s.client.confirmSurvivors(request.payload));
        break;
      case 'unmask':
        answer = reply(s.round, 'unmasked', s.client.unmask(request.payload));
        break;
    }
    s.answers.set(request.step, answer);
    return answer;
  }

  private forget(round: number): void {
    if (this.secure && this.secure.round <= round) {
      this.secure.client.destroy();
      this.secure = null;
    }
    if (this.plain && this.plain.round <= round) this.plain = null;
  }
}

function reply(round: number, step: SecureReply['step'], payload: unknown): SiteAnswer {
  return { reply: { type: 'secure.reply', round, step, payload } };
}
