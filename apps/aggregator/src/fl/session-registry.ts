import { Injectable } from '@nestjs/common';
import { ErrorCode, type SiteMessage } from '@confide/protocol';
import { Signal } from '../common/signal';

/** A logged-in site connection as the rest of the aggregator sees it. */
export interface SiteSession {
  readonly connectionId: string;
  readonly siteId: string;
  readonly siteName: string;
  readonly federationId: string;
  /** Sends a JSON message (with its `v`), signed by the aggregator; one object may go to many sites. */
  sendJson(message: object): void;
  /** Sends an already-encoded binary frame (encoded once, sent to many). */
  sendBinary(frame: Buffer): void;
  /** Sends a JSON message already signed and encoded (one of ServerSigner.signEach's). */
  sendSigned(text: Buffer): void;
  close(code: ErrorCode, message: string): void;
}

type Listener = (session: SiteSession) => void;
/** Sees a logged-in site's validated message; must not throw (it runs inside the gateway's routing). */
export type MessageListener = (
  session: SiteSession,
  message: SiteMessage,
  vector: Float32Array | Uint32Array | null,
  bytes: number,
) => void;

/** The live, authenticated site connections: at most one per site. */
@Injectable()
export class SessionRegistry {
  private readonly bySite = new Map<string, SiteSession>();
  /** Notified on every connect and disconnect. */
  readonly changed = new Signal();
  private readonly connectListeners: Listener[] = [];
  private readonly disconnectListeners: Listener[] = [];
  private readonly messageListeners: MessageListener[] = [];

  /** Calls `l` on every connect; returns the way to stop. */
  onConnect(l: Listener): () => void {
    return subscribe(this.connectListeners, l);
  }

  /** Calls `l` on every disconnect of a site's current connection; returns the way to stop. */
  onDisconnect(l: Listener): () => void {
    return subscribe(this.disconnectListeners, l);
  }

  /**
   * Calls `l` on every message a logged-in site sends, before the gateway routes it on (the Grid
   * observes the sites this way); returns the way to stop.
   */
  onMessage(l: MessageListener): () => void {
    return subscribe(this.messageListeners, l);
  }

  /** The gateway reports a validated message of a logged-in site. */
  messageReceived(
    session: SiteSession,
    message: SiteMessage,
    vector: Float32Array | Uint32Array | null,
    bytes: number,
  ): void {
    for (const l of [...this.messageListeners]) l(session, message, vector, bytes);
  }

  /** Registers a session; an older connection of the same site is closed. */
  add(session: SiteSession): void {
    const old = this.bySite.get(session.siteId);
    this.bySite.set(session.siteId, session);
    if (old && old.connectionId !== session.connectionId) {
      old.close(
        ErrorCode.DUPLICATE_CONNECTION,
        'a newer connection of this site replaced this one',
      );
    }
    for (const l of this.connectListeners) l(session);
    this.changed.notify();
  }

  /** Removes a session if it is still the current one for its site. */
  remove(session: SiteSession): void {
    if (this.bySite.get(session.siteId)?.connectionId !== session.connectionId) return;
    this.bySite.delete(session.siteId);
    for (const l of this.disconnectListeners) l(session);
    this.changed.notify();
  }

  get(siteId: string): SiteSession | undefined {
    return this.bySite.get(siteId);
  }

  /**
   * Sends each connected site its own message, all signed with one signature (`signEach`, the
   * aggregator's ServerSigner.signEach); sites not connected are skipped.
   */
  sendEach(
    entries: Iterable<readonly [string, object]>,
    signEach: (messages: readonly object[]) => Buffer[],
  ): void {
    const live: SiteSession[] = [];
    const messages: object[] = [];
    for (const [siteId, message] of entries) {
      const session = this.bySite.get(siteId);
      if (session === undefined) continue;
      live.push(session);
      messages.push(message);
    }
    if (live.length === 0) return;
    const texts = signEach(messages);
    live.forEach((session, i) => session.sendSigned(texts[i] as Buffer));
  }

  /** Whether `session` is still its site's live connection (not closed, not replaced). */
  isCurrent(session: SiteSession): boolean {
    return this.bySite.get(session.siteId)?.connectionId === session.connectionId;
  }

  isConnected(siteId: string): boolean {
    return this.bySite.has(siteId);
  }

  /** Sessions of one federation, ordered by site name for stable selection. */
  connected(federationId: string): SiteSession[] {
    return [...this.bySite.values()]
      .filter((s) => s.federationId === federationId)
      .sort((a, b) => a.siteName.localeCompare(b.siteName));
  }

  get size(): number {
    return this.bySite.size;
  }

  /** Closes a site's live connection, if any (used on revocation). */
  disconnect(siteId: string, code: ErrorCode, message: string): void {
    this.bySite.get(siteId)?.close(code, message);
  }

  closeAll(): void {
    for (const s of [...this.bySite.values()])
      s.close(ErrorCode.INTERNAL, 'the aggregator is shutting down');
  }
}

function subscribe<T>(list: T[], item: T): () => void {
  list.push(item);
  return () => {
    const i = list.indexOf(item);
    if (i >= 0) list.splice(i, 1);
  };
}
