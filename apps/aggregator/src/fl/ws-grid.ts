import {
  runCollect,
  systemClock,
  type Clock,
  type CollectOptions,
  type CollectResult,
  type CollectSink,
  type ConnectionChange,
  type Grid,
  type Outbound,
} from '@confide/federated';
import type { SiteMessage } from '@confide/protocol';
import type { SessionRegistry, SiteSession } from './session-registry';

/**
 * The Grid of one federation over the WebSocket sessions the gateway keeps: it sends through each
 * site's current session and sees the messages the gateway validated (SessionRegistry.onMessage),
 * without changing where the gateway routes them. Call `close()` to stop listening.
 */
export class WsGrid implements Grid<SiteMessage> {
  private readonly sinks = new Set<CollectSink<SiteMessage>>();
  private readonly listeners = new Set<(change: ConnectionChange) => void>();
  private readonly unsubscribe: Array<() => void>;

  constructor(
    private readonly sessions: SessionRegistry,
    readonly federationId: string,
    readonly clock: Clock = systemClock,
    private readonly log: (line: string) => void = (line) => console.error(line),
  ) {
    this.unsubscribe = [
      sessions.onConnect((s) => this.changed(s, true)),
      sessions.onDisconnect((s) => this.changed(s, false)),
      sessions.onMessage((s, message, vector, bytes) => {
        if (s.federationId !== this.federationId || !sessions.isCurrent(s)) return;
        const reply = { siteId: s.siteId, message, vector, bytes, receivedAt: clock.now() };
        for (const sink of [...this.sinks]) this.guard(() => sink.message(reply));
      }),
    ];
  }

  connected(): ReadonlySet<string> {
    return new Set(this.sessions.connected(this.federationId).map((s) => s.siteId));
  }

  isConnected(siteId: string): boolean {
    return this.session(siteId) !== undefined;
  }

  onChange(listener: (change: ConnectionChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  send(siteId: string, message: Outbound): boolean {
    const session = this.session(siteId);
    if (!session) return false;
    if (message.kind === 'json') {
      session.sendJson(message.body);
    } else {
      const f = message.frame;
      session.sendBinary(
        Buffer.isBuffer(f) ? f : Buffer.from(f.buffer, f.byteOffset, f.byteLength),
      );
    }
    return true;
  }

  broadcast(siteIds: Iterable<string>, message: Outbound): string[] {
    return [...new Set(siteIds)].filter((id) => this.send(id, message));
  }

  collect(options: CollectOptions<SiteMessage>): Promise<CollectResult<SiteMessage>> {
    return runCollect(
      this.clock,
      (id) => this.isConnected(id),
      (sink) => {
        this.sinks.add(sink);
        return () => this.sinks.delete(sink);
      },
      options,
    );
  }

  /** Stops listening to the registry; collects in progress run to their deadline. */
  close(): void {
    for (const stop of this.unsubscribe.splice(0)) stop();
  }

  private session(siteId: string): SiteSession | undefined {
    const s = this.sessions.get(siteId);
    return s && s.federationId === this.federationId ? s : undefined;
  }

  private changed(session: SiteSession, connected: boolean): void {
    if (session.federationId !== this.federationId) return;
    if (!connected) {
      for (const sink of [...this.sinks]) this.guard(() => sink.disconnected(session.siteId));
    }
    for (const l of [...this.listeners]) {
      this.guard(() => l({ siteId: session.siteId, connected }));
    }
  }

  /**
   * Runs a workflow's callback inside the gateway's routing: a failure of the round engine is
   * logged, never turned into an error for the site or a lost message for the orchestrator.
   */
  private guard(f: () => void): void {
    try {
      f();
    } catch (e) {
      this.log(`grid listener failed: ${(e as Error)?.stack ?? String(e)}`);
    }
  }
}
