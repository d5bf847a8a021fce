import { Injectable } from '@nestjs/common';
import type { ActiveRound } from './active-round';
import type { Participant, RoundState } from '../database/rows';

/** A live round as the dashboard shows it: its stage and every selected site's state. */
export interface LiveRoundEvent {
  number: number;
  phase: string;
  state: RoundState;
  participants: Array<Pick<Participant, 'siteId' | 'name' | 'status'> & { detail?: string }>;
}

/** Which sites of a federation are connected, sent on every connect and disconnect. */
export interface LiveSitesEvent {
  siteId: string;
  name: string;
  connected: boolean;
  connectedSiteIds: string[];
}

/** One event on a federation's live stream (`GET /api/v1/federations/:id/events`). */
export type LiveEvent =
  | { type: 'round'; data: LiveRoundEvent | null }
  | { type: 'sites'; data: LiveSitesEvent }
  | { type: 'run'; data: { federationId: string } };

type Listener = (event: LiveEvent) => void;

/**
 * Fan-out of live round events to the dashboard's server-sent event streams. The orchestrator calls
 * `round(active)` at phase and participant changes; identical consecutive snapshots are dropped, and
 * nothing is built while nobody listens.
 */
@Injectable()
export class RoundEvents {
  private readonly listeners = new Map<string, Set<Listener>>();
  private readonly lastRound = new Map<string, string>();
  /** The last reported state of each federation's round (only small values: no frames are kept). */
  private readonly latest = new Map<string, { number: number; state: RoundState }>();

  /** Subscribes to one federation's events; returns the unsubscribe function. */
  subscribe(federationId: string, listener: Listener): () => void {
    let set = this.listeners.get(federationId);
    if (!set) this.listeners.set(federationId, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
      if (!set.size) {
        this.listeners.delete(federationId);
        this.lastRound.delete(federationId);
      }
    };
  }

  emit(federationId: string, event: LiveEvent): void {
    for (const l of this.listeners.get(federationId) ?? []) {
      try {
        l(event);
      } catch {
        // A broken stream must never disturb the round that emitted.
      }
    }
  }

  /** The orchestrator's hook: the round's current phase and participants (`state` overrides the row). */
  round(active: ActiveRound, state?: RoundState): void {
    this.latest.set(active.federationId, {
      number: active.number,
      state: state ?? active.row.state,
    });
    if (!this.listeners.has(active.federationId)) return;
    const data = snapshot(active, state);
    const json = JSON.stringify(data);
    if (this.lastRound.get(active.federationId) === json) return;
    this.lastRound.set(active.federationId, json);
    this.emit(active.federationId, { type: 'round', data });
  }

  /** A run of the federation started or ended. */
  run(federationId: string): void {
    this.emit(federationId, { type: 'run', data: { federationId } });
  }

  /** The last reported state of round `number` of a federation, if it was reported. */
  stateOf(federationId: string, number: number): RoundState | null {
    const l = this.latest.get(federationId);
    return l && l.number === number ? l.state : null;
  }
}

function snapshot(active: ActiveRound, state?: RoundState): LiveRoundEvent {
  return {
    number: active.number,
    phase: active.phase,
    state: state ?? active.row.state,
    participants: active.participantList().map((p) => ({
      siteId: p.siteId,
      name: p.name,
      status: p.status,
      ...(p.detail ? { detail: p.detail } : {}),
    })),
  };
}
