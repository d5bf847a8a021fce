import { randomUUID } from 'node:crypto';
import WebSocket from 'ws';
import {
  ErrorCode,
  PROTOCOL_VERSION,
  ProtocolError,
  type IdentityKeyPair,
  type MessageOf,
  type ServerMessage,
  type SumKind,
} from '@confide/protocol';
import type { LedgerEntry, MechanismParams } from '@confide/privacy-ledger';
import type { SiteBudget } from '@confide/site-runtime';

/** What LedgerSlots needs from the node around it. */
export interface LedgerSlotsHost {
  readonly federationId: string;
  readonly identity: IdentityKeyPair;
  readonly budget: SiteBudget;
  readonly log: (line: string) => void;
  siteId(): string | null;
  siteName(): string | null;
  /** The node's current connection: what concerns an older one is dropped. */
  current(): WebSocket | null;
  send(ws: WebSocket, msg: Record<string, unknown>): void;
}

/**
 * The site's side of the aggregator's ledger positions: it asks for a position for each release it
 * charges, signs its receipt there (recorded in its own ledger first), and answers for positions it
 * holds after a cut or a restart of either side.
 */
export class LedgerSlots {
  private waiter: {
    requestId: string;
    ws: WebSocket;
    ref: { runId: string; round: number };
    settle: (m: ServerMessage) => void;
    /** Stops waiting: the connection or the round ended. */
    lost: (why: string) => void;
  } | null = null;
  /**
   * The receipt being signed for a granted position, if any: a ledger.held question waits for it, so
   * the answer ("here is my receipt" or "none") is never given while the receipt is half made.
   */
  private signing: Promise<unknown> = Promise.resolve();

  constructor(private readonly h: LedgerSlotsHost) {}

  /** Resolves once a receipt being signed, if any, is recorded (or failed). */
  settled(): Promise<void> {
    return this.signing.then(
      () => undefined,
      () => undefined,
    );
  }

  /**
   * Handles the ledger messages that arrive outside the node's queue (a slot or error answering a
   * request made from inside a queued handler, a held position); true when `msg` was one of them.
   * A round that ends while its release waits for a position ends that wait.
   */
  route(ws: WebSocket, msg: ServerMessage): boolean {
    if (msg.type === 'ledger.slot' || msg.type === 'error') {
      if (msg.refId !== undefined && this.waiter?.requestId === msg.refId) {
        this.waiter.settle(msg);
        return true;
      }
      if (msg.type === 'ledger.slot') {
        // A position granted after this site stopped waiting: it signs nothing there, and says so.
        this.h.send(ws, { type: 'ledger.none', seq: msg.seq });
        return true;
      }
    }
    if (msg.type === 'ledger.held') {
      void this.answerHeld(ws, msg);
      return true;
    }
    // The round's end is queued behind the wait; a position granted later is answered with "none".
    const w = this.waiter;
    if (msg.type === 'round.end' && w?.ref.runId === msg.runId && w.ref.round === msg.round) {
      w.lost(`round ${msg.round} ended while this site waited for a ledger slot`);
    }
    return false;
  }

  /** The connection `ws` closed: a wait for a position on it ends. */
  closed(ws: WebSocket): void {
    if (this.waiter?.ws === ws)
      this.waiter.lost('the connection ended while waiting for a ledger slot');
  }

  /**
   * Asks for the ledger's next position, builds and signs the receipt, records it locally (fsync).
   * A position it does not sign at is given back at once (ledger.none); one it signed stays held by
   * the aggregator until the receipt reaches it, with the update or, after a cut, on reconnect.
   */
  async signRelease(
    ws: WebSocket,
    ref: { runId: string; round: number; sum: SumKind },
    mechanism: MechanismParams,
  ): Promise<LedgerEntry> {
    const requestId = randomUUID();
    const slot = await new Promise<MessageOf<ServerMessage, 'ledger.slot'>>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        reject(
          new ProtocolError(
            ErrorCode.TIMEOUT,
            'the aggregator did not grant a ledger slot in time',
          ),
        );
      }, 60_000);
      this.waiter = {
        requestId,
        ws,
        ref,
        settle: (m) => {
          clearTimeout(timer);
          this.waiter = null;
          if (m.type === 'ledger.slot') resolve(m);
          else if (m.type === 'error') reject(new ProtocolError(m.code as ErrorCode, m.message));
        },
        lost: (why) => {
          clearTimeout(timer);
          this.waiter = null;
          reject(new ProtocolError(ErrorCode.TIMEOUT, why));
        },
      };
      if (ws.readyState === WebSocket.OPEN) {
        ws.send(
          JSON.stringify({ v: PROTOCOL_VERSION, id: requestId, type: 'ledger.reserve', ...ref }),
        );
      }
    });
    const signed = (async () => {
      if (slot.runId !== ref.runId || slot.round !== ref.round || slot.sum !== ref.sum) {
        throw new ProtocolError(
          ErrorCode.UNEXPECTED_MESSAGE,
          `the ledger slot is for ${slot.sum} of round ${slot.round}, not ${ref.sum} of round ${ref.round}`,
        );
      }
      return this.h.budget.sign(slot, ref, mechanism, {
        siteId: this.h.siteId()!,
        siteName: this.h.siteName()!,
        identity: this.h.identity,
      });
    })();
    this.signing = signed;
    try {
      return await signed;
    } catch (e) {
      // Nothing was recorded at this position (a failed write leaves no entry in memory either).
      if (
        !this.h.budget.entries().some((x) => x.seq === slot.seq && x.siteId === this.h.siteId())
      ) {
        this.h.send(ws, { type: 'ledger.none', seq: slot.seq });
      }
      throw e;
    }
  }

  /**
   * The aggregator says this site holds ledger position `seq` (after a cut or a restart of either
   * side): once any receipt being signed is recorded, the site re-sends its receipt for it, or says
   * it signed none. A dishonest aggregator learns nothing from this: a receipt is made for it.
   */
  private async answerHeld(
    ws: WebSocket,
    msg: MessageOf<ServerMessage, 'ledger.held'>,
  ): Promise<void> {
    await this.signing.catch(() => undefined);
    if (ws !== this.h.current()) return;
    const mine = this.h.budget
      .entries()
      .find(
        (e) =>
          e.federationId === this.h.federationId &&
          e.siteId === this.h.siteId() &&
          e.seq === msg.seq,
      );
    if (mine) {
      this.h.send(ws, { type: 'ledger.receipt', receipt: mine });
      this.h.log(
        `re-sent the receipt for ledger position ${msg.seq} (round ${msg.round}, ${msg.sum})`,
      );
    } else {
      this.h.send(ws, { type: 'ledger.none', seq: msg.seq });
      this.h.log(
        `signed nothing at ledger position ${msg.seq} (round ${msg.round}); told the aggregator`,
      );
    }
  }

  /** Sends a receipt that the message meant to carry it will not (the round moved on, a step failed). */
  sendReceipt(ws: WebSocket, receipt: LedgerEntry | undefined): void {
    if (receipt && ws === this.h.current()) this.h.send(ws, { type: 'ledger.receipt', receipt });
  }
}
