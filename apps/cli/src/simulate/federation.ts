import {
  InMemoryGrid,
  RoundRunner,
  systemClock,
  type EngineReply,
  type RoundStore,
  type Strategy,
  type UniformRandom,
} from '@confide/federated';
import { parameterCount } from '@confide/ml/spec';
import { checkRound, type SitePolicy } from '@confide/client-node';
import type { SimulationOptions } from './simulator';
import type { TrainingPool, PoolRun } from './training-pool';
import { ReplyOrder, attachVirtualSite } from './virtual-site';

/** A round slower than this is given up (a worker that never answers is reported long before). */
const ROUND_TIMEOUT_MS = 60 * 60_000;

/** A simulated federation, ready to run rounds. */
export interface Federation {
  readonly runner: RoundRunner;
  /** Aborts the round in progress when a site's training fails. */
  readonly signal: AbortSignal;
  /** The first training failure, if any. */
  failure(): unknown;
}

/**
 * The round runner over an in-memory Grid (real clock) with one virtual site per partition: the
 * first `byzantine` sites attack, every site checks rounds against `policy` and trains in `pool`.
 * Plain training only, evaluation left to the caller (on the global test set).
 *
 * @example
 * const { runner, signal } = startFederation({ o, pool, run, store, strategy, random, policy });
 */
export function startFederation(a: {
  o: SimulationOptions;
  pool: TrainingPool;
  run: PoolRun;
  store: RoundStore;
  strategy: Strategy;
  random: UniformRandom;
  policy: SitePolicy;
}): Federation {
  const { o, pool, run } = a;
  const grid = new InMemoryGrid<EngineReply>(systemClock);
  const stop = new AbortController();
  let failure: unknown = null;
  const order = new ReplyOrder();
  const replied = new Map<number, number>();
  let drawn = 0;
  for (let i = 0; i < o.sites; i++) {
    attachVirtualSite(grid.addSite(`site-${String(i + 1).padStart(3, '0')}`), {
      index: i,
      policy: a.policy,
      offer: {
        stage: 'training',
        // No network between the engine and its virtual sites: nothing for TLS to protect.
        tls: true,
        secureAggregation: null,
        privacy: null,
        model: { kind: o.model.kind, parameters: parameterCount(o.model) },
      },
      check: checkRound,
      train: (task) => pool.train(run, task),
      settings: {
        epochs: o.epochs,
        batchSize: o.batchSize,
        learningRate: o.learningRate,
        seed: o.seed,
      },
      attack: i < o.byzantine ? o.attack : null,
      order,
      onFailure: (e) => {
        failure ??= e;
        stop.abort();
      },
      onReply: (round) => {
        const n = (replied.get(round) ?? 0) + 1;
        replied.set(round, n);
        o.onProgress?.({ kind: 'site-replied', round, replied: n, sites: drawn });
      },
    });
  }
  const runner = new RoundRunner({
    grid,
    store: a.store,
    strategy: a.strategy,
    minSites: 1,
    fraction: o.fraction,
    roundTimeoutMs: ROUND_TIMEOUT_MS,
    evaluate: false,
    random: a.random,
    onEvent: (e) => {
      if (e.kind !== 'started') return;
      drawn = e.sites;
      o.onProgress?.({ kind: 'round-started', round: e.round, rounds: o.rounds, sites: e.sites });
    },
  });
  return { runner, signal: stop.signal, failure: () => failure };
}
