import { Inject, Injectable, type OnModuleDestroy } from '@nestjs/common';
import type { Response } from 'express';
import { AuthService } from '../auth/auth.service';
import { CLOCK, type Clock } from '../common/tokens';
import type { ApiTokenRow } from '../database/rows';
import { SessionRegistry, type SiteSession } from '../fl/session-registry';
import { RoundEvents, type LiveEvent, type LiveRoundEvent } from '../rounds/round-events';
import { RoundOrchestrator } from '../rounds/round-orchestrator.service';

/** Comment lines keep proxies and browsers from timing an idle stream out. */
const KEEPALIVE_MS = 15_000;

/**
 * The dashboard's server-sent event streams: one per open federation page. Round events come from the
 * orchestrator through {@link RoundEvents}; site connects and disconnects from the session registry.
 */
@Injectable()
export class LiveEventsService implements OnModuleDestroy {
  /** Each open stream with the id of the token that opened it. */
  private readonly streams = new Map<Response, string>();

  constructor(
    @Inject(RoundEvents) private readonly events: RoundEvents,
    @Inject(SessionRegistry) private readonly sessions: SessionRegistry,
    @Inject(RoundOrchestrator) private readonly orchestrator: RoundOrchestrator,
    @Inject(AuthService) auth: AuthService,
    @Inject(CLOCK) private readonly clock: Clock,
  ) {
    sessions.onConnect((s) => this.siteChanged(s, true));
    sessions.onDisconnect((s) => this.siteChanged(s, false));
    // A stream outlives the request that checked its token: revoking the token ends it.
    auth.onRevoke((tokenId) => {
      for (const [res, id] of this.streams) if (id === tokenId) res.end();
    });
  }

  /**
   * Turns `res` into an event stream of `federationId`, starting with the current round and sites;
   * it ends when `token` is revoked, or at the first keepalive after it expires.
   */
  open(federationId: string, res: Response, token: ApiTokenRow): void {
    res.status(200);
    res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
    res.setHeader('Cache-Control', 'no-cache, no-transform');
    res.setHeader('Connection', 'keep-alive');
    res.setHeader('X-Accel-Buffering', 'no');
    res.flushHeaders();
    res.write('retry: 2000\n\n');
    const write = (chunk: string): void => {
      if (!res.writableEnded && !res.destroyed) res.write(chunk);
    };
    const send = (e: LiveEvent): void =>
      write(`event: ${e.type}\ndata: ${JSON.stringify(e.data)}\n\n`);
    // A client that went away mid-write must not become an unhandled error.
    res.on('error', () => undefined);
    send({ type: 'round', data: this.currentRound(federationId) });
    const connected = this.sessions.connected(federationId);
    send({
      type: 'sites',
      data: {
        siteId: '',
        name: '',
        connected: false,
        connectedSiteIds: connected.map((s) => s.siteId),
      },
    });
    const unsubscribe = this.events.subscribe(federationId, send);
    const keepalive = setInterval(() => {
      if (token.expiresAt && token.expiresAt <= this.clock.now()) res.end();
      else write(': keepalive\n\n');
    }, KEEPALIVE_MS);
    keepalive.unref();
    this.streams.set(res, token.id);
    const stop = (): void => {
      clearInterval(keepalive);
      unsubscribe();
      this.streams.delete(res);
    };
    res.on('close', stop);
    res.on('finish', stop);
  }

  /** Open streams would hold the HTTP server's close forever: end them first. */
  onModuleDestroy(): void {
    for (const res of [...this.streams.keys()]) res.end();
    this.streams.clear();
  }

  private currentRound(federationId: string): LiveRoundEvent | null {
    const live = this.orchestrator.liveRound(federationId);
    if (!live) return null;
    return {
      number: live.number,
      phase: live.phase,
      state: this.events.stateOf(federationId, live.number) ?? 'scheduled',
      participants: live.participants.map((p) => ({
        siteId: p.siteId,
        name: p.name,
        status: p.status,
        ...(p.detail ? { detail: p.detail } : {}),
      })),
    };
  }

  private siteChanged(s: SiteSession, connected: boolean): void {
    this.events.emit(s.federationId, {
      type: 'sites',
      data: {
        siteId: s.siteId,
        name: s.siteName,
        connected,
        connectedSiteIds: this.sessions.connected(s.federationId).map((x) => x.siteId),
      },
    });
  }
}
