import { randomUUID } from 'node:crypto';
import { PROTOCOL_VERSION } from '@confide/protocol';
import type { ActiveRound } from './active-round';
import type { RoundEvents } from './round-events';
import type { RoundRepository } from './round.repository';
import type { SumPort } from './secure-sum';
import { waitFor } from '../common/signal';
import type { AggregatorConfig, Clock } from '../common/tokens';
import type { Participant } from '../database/rows';
import type { SessionRegistry } from '../fl/session-registry';

/** Thrown inside a run loop when the aggregator is shutting down: leave the round for the next start. */
export class Stopped extends Error {}

/** One federation's run, as its loop drives it. */
export interface RunLoop {
  runId: string;
  federationId: string;
  stopped: boolean;
  active: ActiveRound | null;
  done: Promise<void>;
}

/** What every workflow of a round reaches through its context. */
export interface RoundDeps {
  readonly config: AggregatorConfig;
  readonly clock: Clock;
  readonly sessions: SessionRegistry;
  readonly live: RoundEvents;
  readonly rounds: RoundRepository;
  /** True once the aggregator is shutting down (a stopped loop then throws Stopped). */
  shuttingDown(): boolean;
}

/**
 * One running round as its workflows see it: its in-memory state, the way to reach its sites and
 * to wait on them, and the bookkeeping every stage shares (who is still pending, who dropped).
 */
export class RoundContext {
  constructor(
    readonly deps: RoundDeps,
    readonly loop: RunLoop,
    readonly active: ActiveRound,
  ) {}

  now(): number {
    return this.deps.clock.now().getTime();
  }

  /**
   * Waits until `ready()` or the deadline, re-checking at every notify of the round's signal;
   * throws Stopped when the aggregator shuts down meanwhile.
   */
  async until(ready: () => boolean, deadline: number | (() => number)): Promise<boolean> {
    return this.untilOn(this.active.signal, ready, deadline);
  }

  async untilOn(
    signal: { wait(ms: number): Promise<void> },
    ready: () => boolean,
    deadline: number | (() => number),
  ): Promise<boolean> {
    const loop = this.loop;
    if (loop.active) this.deps.live.round(loop.active);
    const ok = await waitFor(
      signal as never,
      ready,
      deadline,
      () => this.now(),
      () => loop.stopped,
    );
    if (loop.stopped && this.deps.shuttingDown()) throw new Stopped();
    return ok;
  }

  /** Sends `message(siteId)` to each participant in `status`, all signed with one signature. */
  sendTo(status: Participant['status'], message: (siteId: string) => object): void {
    this.deps.sessions.sendEach(
      this.active
        .participantList()
        .filter((p) => p.status === status)
        .map((p) => [p.siteId, message(p.siteId)] as const),
      (m) => this.deps.config.signer.signEach(m),
    );
  }

  /** Sends one message (signed once, as the same object) to each participant in `status`. */
  sendSameTo(status: Participant['status'], message: object): void {
    for (const p of this.active.participantList()) {
      if (p.status === status) this.deps.sessions.get(p.siteId)?.sendJson(message);
    }
  }

  /** Sends an encoded frame to each participant in `status`. */
  sendFrameTo(status: Participant['status'], frame: Buffer): void {
    for (const p of this.active.participantList()) {
      if (p.status === status) this.deps.sessions.get(p.siteId)?.sendBinary(frame);
    }
  }

  /** Stores the round's move to `state` with its participants. */
  async persist(state: 'sharing' | 'collecting' | 'unmasking'): Promise<void> {
    const active = this.active;
    active.row = await this.deps.rounds.transaction((em) =>
      this.deps.rounds.transition(em, active.row.id, state, {
        participants: active.participantList(),
      }),
    );
    this.deps.live.round(active);
  }

  /** A participant in `waitingFor` that may still answer (connected or within its grace). */
  isPending(siteId: string, waitingFor: Participant['status']): boolean {
    return this.active.isPending(
      siteId,
      this.now(),
      this.deps.config.reconnectGraceMs,
      this.deps.sessions.isConnected(siteId),
      waitingFor,
    );
  }

  /** True when no participant in `waitingFor` can still answer. */
  nonePending(waitingFor: Participant['status']): boolean {
    const active = this.active;
    // Waiting for evaluations, a site that reported its metrics or declined to is done.
    const done =
      waitingFor === 'submitted'
        ? (id: string) => active.evaluations.has(id) || active.evaluationDeclined.has(id)
        : () => false;
    return this.nonePendingIn(waitingFor, done);
  }

  /** True when no participant in `status` that has not answered (`done`) can still answer. */
  nonePendingIn(status: Participant['status'], done: (siteId: string) => boolean): boolean {
    for (const p of this.active.participants.values()) {
      if (done(p.siteId)) continue;
      if (this.isPending(p.siteId, status)) return false;
    }
    return true;
  }

  /** Moves every participant still in `from` to `to`, with why. */
  markUnanswered(from: Participant['status'], to: Participant['status'], detail: string): void {
    for (const p of this.active.participants.values()) {
      if (p.status === from) {
        p.status = to;
        p.detail = detail;
      }
    }
  }

  /** Why a round with `got` updates cannot go on, naming what became of the others. */
  shortfall(got: number, minSites: number): string {
    const active = this.active;
    const lost = active
      .participantList()
      .filter((p) => p.status !== 'submitted')
      .map((p) => `${p.name} ${p.status}${p.detail ? ` (${p.detail})` : ''}`);
    return (
      `only ${got} of ${active.participants.size} selected site(s) sent an update; the federation needs minSites=${minSites}` +
      (lost.length ? `; ${lost.join('; ')}` : '')
    );
  }

  /** A protocol envelope of this round. */
  envelope(type: string, body: object): object {
    return {
      v: PROTOCOL_VERSION,
      type,
      id: randomUUID(),
      runId: this.active.runId,
      round: this.active.number,
      ...body,
    };
  }

  /** What a statistics or evaluation sum needs of the round it runs in. */
  sumPort(unmask: SumPort['unmask']): SumPort {
    const active = this.active;
    return {
      send: (siteId, message) => this.deps.sessions.get(siteId)?.sendJson(message),
      sendEach: (entries) =>
        this.deps.sessions.sendEach(entries, (m) => this.deps.config.signer.signEach(m)),
      until: (ready, deadline) => this.until(ready, deadline),
      reachable: (siteId) =>
        active.reachable(
          siteId,
          this.now(),
          this.deps.config.reconnectGraceMs,
          this.deps.sessions.isConnected(siteId),
        ),
      unmask,
      changed: () => {
        this.deps.live.round(active);
        active.signal.notify();
      },
    };
  }
}

/** An error's message for a round or run record (a stack trace goes to the log only). */
export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
