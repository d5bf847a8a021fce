// The Grid (Flower's word): the round engine's only port to the sites. It says who is connected,
// sends to sites and collects their replies by a deadline. The engine never sees a socket, so the
// same workflows run over the in-memory Grid in tests and `confide simulate`, and over WebSockets
// in the aggregator.

/** Time as the engine sees it: injected so that a fake clock can drive deadlines in tests. */
export interface Clock {
  /** Milliseconds since the epoch (or since any fixed origin, for a fake clock). */
  now(): number;
  /** Resolves after `ms` (at once if `ms <= 0`), or as soon as `signal` aborts. Never rejects. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** The wall clock and real timers. */
export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise<void>((resolve) => {
      if (signal?.aborted || ms <= 0) {
        resolve();
        return;
      }
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener('abort', done, { once: true });
    }),
};

/**
 * A message to a site, as the aggregator sends today: a JSON control message (an object carrying
 * its own protocol version; one object may go to many sites and is encoded once), or an already
 * encoded binary frame (header + vector).
 */
export type Outbound =
  | { readonly kind: 'json'; readonly body: object }
  | { readonly kind: 'binary'; readonly frame: Uint8Array };

/** A JSON control message to send. */
export function jsonMessage(body: object): Outbound {
  return { kind: 'json', body };
}

/** An encoded binary frame to send. */
export function binaryMessage(frame: Uint8Array): Outbound {
  return { kind: 'binary', frame };
}

/** A message from a site, already decoded and validated by the transport. */
export interface Inbound<M> {
  readonly siteId: string;
  readonly message: M;
  /** The vector of a binary frame; null for a JSON message. */
  readonly vector: Float32Array | Uint32Array | null;
  /** Its size on the wire. */
  readonly bytes: number;
  /** When it arrived, on the Grid's clock. */
  readonly receivedAt: number;
}

/**
 * What `accept` says of a message from a site the collect waits for: `true` takes it as that
 * site's answer; `'reject'` records it as that site's answer, refused (a wrong round, a bad
 * vector); `false` ignores it (it belongs to someone else), and the site is still awaited.
 */
export type Verdict = boolean | 'reject';

export interface CollectOptions<M> {
  /** The sites whose answers are awaited; messages from others are never shown to `accept`. */
  readonly from: ReadonlySet<string>;
  /** Decides what each message from an awaited site is; at most one answer counts per site. */
  readonly accept: (reply: Inbound<M>) => Verdict;
  /** Deadline on the Grid's clock (milliseconds, same origin as `clock.now()`). */
  readonly until: number;
  /**
   * What a site's disconnect means: `'drop'` (default) counts it as no answer at once (a site
   * not connected when the collect starts too); `'wait'` keeps awaiting it until the deadline,
   * so a site that reconnects may still answer.
   */
  readonly onDisconnect?: 'drop' | 'wait';
  /**
   * With `onDisconnect: 'wait'`: how long a site may stay away (from its disconnect, or from the
   * collect's start if it was not connected then) before it counts as no answer; without it, it
   * is awaited until the deadline.
   */
  readonly reconnectGraceMs?: number;
  /** Ends the collect early (an aborted round); what arrived so far is returned. */
  readonly signal?: AbortSignal;
}

export interface CollectResult<M> {
  /** The accepted answer of each site that gave one, in order of arrival. */
  readonly replies: ReadonlyMap<string, Inbound<M>>;
  /** Sites whose answer `accept` refused, with that answer. */
  readonly rejected: ReadonlyMap<string, Inbound<M>>;
  /** Awaited sites with no answer: the deadline passed, they disconnected, or the collect ended. */
  readonly missing: ReadonlySet<string>;
  /** Of `missing`, those that were not connected when the collect ended (or were dropped). */
  readonly disconnected: ReadonlySet<string>;
  /** How the collect ended. */
  readonly ended: 'complete' | 'deadline' | 'aborted';
}

/** A site joined or left. */
export interface ConnectionChange {
  readonly siteId: string;
  readonly connected: boolean;
}

/**
 * The round engine's port to the sites of one federation.
 *
 * @example
 * const answers = grid.collect({ from: new Set(ids), accept: isUpdateFor(round), until: grid.clock.now() + 30_000 });
 * grid.broadcast(ids, jsonMessage(trainMessage));
 * const { replies, missing } = await answers;
 */
export interface Grid<M> {
  /** The clock deadlines are measured on. */
  readonly clock: Clock;
  /** The ids of the sites connected now. */
  connected(): ReadonlySet<string>;
  isConnected(siteId: string): boolean;
  /** Calls `listener` on every connect and disconnect; returns the way to stop listening. */
  onChange(listener: (change: ConnectionChange) => void): () => void;
  /** Sends to one site; false (and nothing sent) when it is not connected. */
  send(siteId: string, message: Outbound): boolean;
  /** Sends the same message to each named site that is connected; returns those it reached. */
  broadcast(siteIds: Iterable<string>, message: Outbound): string[];
  /**
   * Awaits one answer from each site of `from` until the deadline. It listens from the moment it
   * is called, so call it before sending what the sites answer. Messages no collect is waiting
   * for are dropped: the Grid buffers nothing.
   */
  collect(options: CollectOptions<M>): Promise<CollectResult<M>>;
}

/** Where a Grid implementation reports messages and disconnects to the collects in progress. */
export interface CollectSink<M> {
  message(reply: Inbound<M>): void;
  disconnected(siteId: string): void;
}

/**
 * The collect logic every Grid shares: the implementation feeds arriving messages and
 * disconnects into the sink it registers (and removes when the promise settles).
 */
export function runCollect<M>(
  clock: Clock,
  isConnected: (siteId: string) => boolean,
  register: (sink: CollectSink<M>) => () => void,
  options: CollectOptions<M>,
): Promise<CollectResult<M>> {
  if (!Number.isFinite(options.until)) {
    return Promise.reject(
      new RangeError(`a collect needs a finite deadline, not ${options.until}`),
    );
  }
  const dropOnDisconnect = (options.onDisconnect ?? 'drop') === 'drop';
  const replies = new Map<string, Inbound<M>>();
  const rejected = new Map<string, Inbound<M>>();
  const dropped = new Set<string>();
  const waiting = new Set(options.from);
  if (dropOnDisconnect) {
    for (const id of waiting) {
      if (!isConnected(id)) {
        waiting.delete(id);
        dropped.add(id);
      }
    }
  }
  const stop = new AbortController();
  const finish = (): void => stop.abort();
  let closed = false;
  const grace = dropOnDisconnect ? undefined : options.reconnectGraceMs;
  if (grace !== undefined && !(grace >= 0)) {
    return Promise.reject(new RangeError(`a reconnect grace must be >= 0 ms, not ${grace}`));
  }
  /** Drops `siteId` when it is still away and unanswered once its grace has passed. */
  const graceFor = (siteId: string): void => {
    if (grace === undefined) return;
    void clock.sleep(grace, stop.signal).then(() => {
      if (closed || stop.signal.aborted || !waiting.has(siteId) || isConnected(siteId)) return;
      waiting.delete(siteId);
      dropped.add(siteId);
      if (waiting.size === 0) finish();
    });
  };
  const sink: CollectSink<M> = {
    message(reply) {
      // The deadline is exclusive, and holds even before the timer that ends the collect has run.
      if (closed || clock.now() >= options.until || !waiting.has(reply.siteId)) return;
      const verdict = options.accept(reply);
      if (verdict === false) return;
      waiting.delete(reply.siteId);
      (verdict === 'reject' ? rejected : replies).set(reply.siteId, reply);
      if (waiting.size === 0) finish();
    },
    disconnected(siteId) {
      if (closed || !waiting.has(siteId)) return;
      if (!dropOnDisconnect) {
        graceFor(siteId);
        return;
      }
      waiting.delete(siteId);
      dropped.add(siteId);
      if (waiting.size === 0) finish();
    },
  };
  const unregister = register(sink);
  for (const id of waiting) if (!isConnected(id)) graceFor(id);
  const onAbort = (): void => finish();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  if (waiting.size === 0 || options.signal?.aborted) finish();
  return clock.sleep(options.until - clock.now(), stop.signal).then(() => {
    closed = true;
    unregister();
    options.signal?.removeEventListener('abort', onAbort);
    const ended =
      waiting.size === 0 ? 'complete' : options.signal?.aborted ? 'aborted' : 'deadline';
    const missing = new Set([...waiting, ...dropped]);
    const disconnected = new Set([...dropped, ...[...waiting].filter((id) => !isConnected(id))]);
    return { replies, rejected, missing, disconnected, ended };
  });
}
