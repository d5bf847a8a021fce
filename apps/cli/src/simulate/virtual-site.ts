import {
  engineRequestOf,
  type EngineReply,
  type InMemorySite,
  type TrainRequest,
} from '@confide/federated';
import type { RoundOffer, SitePolicy } from '@confide/client-node';
import { attackUpdate } from './attacks';
import type { AttackKind } from './settings';
import type { TrainOutcome, TrainTask } from './pool-messages';

/** What a virtual site needs besides its Grid endpoint. */
export interface VirtualSiteOptions {
  /** Its partition in the run's data. */
  readonly index: number;
  readonly policy: SitePolicy;
  /** The round's terms as the site's policy sees them (plain training, the model to train). */
  readonly offer: RoundOffer;
  /** Checks a round against the policy (the client node's check). */
  readonly check: (policy: SitePolicy, offer: RoundOffer) => { message: string } | null;
  readonly train: (task: TrainTask) => Promise<TrainOutcome>;
  readonly settings: { epochs: number; batchSize: number; learningRate: number; seed: number };
  /** The attack this site runs instead of sending its honest update; null for an honest site. */
  readonly attack: AttackKind | null;
  /** Where this site's replies join the round's order (see `ReplyOrder`). */
  readonly order: ReplyOrder;
  /** A task that failed: the simulation cannot go on. */
  readonly onFailure: (error: unknown) => void;
  /** The site sent its answer for a round. */
  readonly onReply?: (round: number) => void;
}

/**
 * Delivers the sites' replies of a round in the order the sites received the request (sorted site
 * ids), each as soon as it and those before it are ready. Training still runs in parallel; only the
 * arrival order is fixed, so the aggregate's float sums, and a run, are the same for a seed whatever
 * the pool's scheduling.
 */
export class ReplyOrder {
  private readonly tails = new Map<number, Promise<void>>();

  /** Runs `send` once `ready` has settled and every earlier reply of `round` was sent. */
  enqueue<T>(round: number, ready: Promise<T>, send: (value: T) => void): void {
    const previous = this.tails.get(round) ?? Promise.resolve();
    const next = Promise.all([previous, ready]).then(([, value]) => send(value));
    this.tails.set(
      round,
      next.catch(() => undefined),
    );
    for (const r of this.tails.keys()) if (r < round) this.tails.delete(r);
  }
}

/**
 * A virtual site on the in-memory Grid: on a `train` request it checks the round against its
 * policy (declining with the policy's reason), trains its partition in the pool and replies with its
 * update, or, if it is Byzantine, with its attack on that update.
 */
export function attachVirtualSite(
  site: InMemorySite<EngineReply>,
  o: VirtualSiteOptions,
): () => void {
  const reply = (message: EngineReply, vector: Float32Array | null = null): void => {
    if (!site.isConnected) return;
    site.reply(message, vector, vector ? vector.byteLength : 0);
    o.onReply?.(message.round);
  };
  return site.onMessage((m) => {
    if (m.kind !== 'json') return;
    const req = engineRequestOf(m.body);
    if (req?.type !== 'train') return;
    const violation = o.check(o.policy, o.offer);
    if (violation) {
      o.order.enqueue(req.round, Promise.resolve(), () =>
        reply({ type: 'decline', round: req.round, reason: violation.message }),
      );
      return;
    }
    const trained = trainFor(req, o);
    trained.catch(o.onFailure);
    o.order.enqueue(req.round, trained, (u) => {
      const delta = o.attack ? attackUpdate(o.attack, u.delta, noiseSeed(o, req.round)) : u.delta;
      reply(
        { type: 'update', round: req.round, numExamples: u.numExamples, trainLoss: u.loss },
        delta,
      );
    });
  });
}

function trainFor(req: TrainRequest, o: VirtualSiteOptions): Promise<TrainOutcome> {
  const { epochs, batchSize, learningRate, seed } = o.settings;
  return o.train({
    site: o.index,
    weights: req.weights,
    epochs,
    batchSize,
    learningRate,
    // Each site, round and seed shuffles its rows its own way, the same way again on a rerun.
    shuffleSeed: mix(seed, req.round, o.index),
    ...(req.instructions.proximalMu !== undefined
      ? { proximalMu: req.instructions.proximalMu }
      : {}),
  });
}

function noiseSeed(o: VirtualSiteOptions, round: number): number {
  return mix(o.settings.seed, round, o.index + 1_000_003);
}

/** A 32-bit seed from a few integers (for per-round, per-site streams). */
export function mix(...parts: number[]): number {
  let h = 0x811c9dc5;
  for (const p of parts) {
    h = Math.imul(h ^ (p >>> 0), 0x01000193) >>> 0;
    h = Math.imul(h ^ Math.floor(p / 2 ** 32), 0x01000193) >>> 0;
  }
  return h;
}
