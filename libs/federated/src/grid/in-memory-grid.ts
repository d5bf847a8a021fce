import {
  runCollect,
  type Clock,
  type CollectOptions,
  type CollectResult,
  type CollectSink,
  type ConnectionChange,
  type Grid,
  type Outbound,
} from './grid';

/**
 * A Grid whose sites live in the same process: for unit tests of whole rounds and for
 * `confide simulate`. Delivery is synchronous in both directions, so with a fake clock a round is
 * deterministic.
 *
 * @example
 * const grid = new InMemoryGrid<Msg>(new FakeClock());
 * const site = grid.addSite('a');
 * site.onMessage((m) => site.reply({ type: 'ack' }));
 */
export class InMemoryGrid<M> implements Grid<M> {
  private readonly sites = new Map<string, InMemorySite<M>>();
  private readonly listeners = new Set<(change: ConnectionChange) => void>();
  private readonly sinks = new Set<CollectSink<M>>();

  constructor(readonly clock: Clock) {}

  /** Creates a site endpoint, connected unless told otherwise. */
  addSite(siteId: string, options: { connected?: boolean } = {}): InMemorySite<M> {
    if (this.sites.has(siteId)) throw new Error(`site ${siteId} already exists on this grid`);
    const site = new InMemorySite<M>(siteId, this);
    this.sites.set(siteId, site);
    if (options.connected ?? true) site.connect();
    return site;
  }

  /** The endpoint of a site added before. */
  site(siteId: string): InMemorySite<M> {
    const site = this.sites.get(siteId);
    if (!site) throw new Error(`no site ${siteId} on this grid`);
    return site;
  }

  connected(): ReadonlySet<string> {
    return new Set([...this.sites.values()].filter((s) => s.isConnected).map((s) => s.id));
  }

  isConnected(siteId: string): boolean {
    return this.sites.get(siteId)?.isConnected ?? false;
  }

  onChange(listener: (change: ConnectionChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  send(siteId: string, message: Outbound): boolean {
    const site = this.sites.get(siteId);
    if (!site?.isConnected) return false;
    site.deliver(message);
    return true;
  }

  broadcast(siteIds: Iterable<string>, message: Outbound): string[] {
    return [...new Set(siteIds)].filter((id) => this.send(id, message));
  }

  collect(options: CollectOptions<M>): Promise<CollectResult<M>> {
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

  /** @internal A site's message reaches the collects in progress. */
  received(
    siteId: string,
    message: M,
    vector: Float32Array | Uint32Array | null,
    bytes: number,
  ): void {
    const reply = { siteId, message, vector, bytes, receivedAt: this.clock.now() };
    for (const sink of [...this.sinks]) sink.message(reply);
  }

  /** @internal A site connected or disconnected. */
  changed(siteId: string, connected: boolean): void {
    if (!connected) for (const sink of [...this.sinks]) sink.disconnected(siteId);
    for (const l of [...this.listeners]) l({ siteId, connected });
  }
}

/** A site's end of an in-memory Grid: it sees what was sent to it and replies. */
export class InMemorySite<M> {
  private connectedNow = false;
  private readonly inbox: Outbound[] = [];
  private readonly handlers = new Set<(message: Outbound) => void>();

  constructor(
    readonly id: string,
    private readonly grid: InMemoryGrid<M>,
  ) {}

  get isConnected(): boolean {
    return this.connectedNow;
  }

  /** Everything delivered to this site, oldest first. */
  get received(): readonly Outbound[] {
    return this.inbox;
  }

  /** Calls `handler` on every message delivered from now on; returns the way to stop. */
  onMessage(handler: (message: Outbound) => void): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  connect(): void {
    if (this.connectedNow) return;
    this.connectedNow = true;
    this.grid.changed(this.id, true);
  }

  disconnect(): void {
    if (!this.connectedNow) return;
    this.connectedNow = false;
    this.grid.changed(this.id, false);
  }

  /** Sends a message to the aggregator; a site that is not connected cannot. */
  reply(message: M, vector: Float32Array | Uint32Array | null = null, bytes = 0): void {
    if (!this.connectedNow) throw new Error(`site ${this.id} is not connected`);
    this.grid.received(this.id, message, vector, bytes);
  }

  /** @internal */
  deliver(message: Outbound): void {
    this.inbox.push(message);
    for (const h of [...this.handlers]) h(message);
  }
}
