import { randomUUID } from 'node:crypto';
import {
  ErrorCode,
  PROTOCOL_VERSION,
  ProtocolError,
  type RoundSecAgg,
  type SiteMessage,
} from '@confide/protocol';
import {
  decodeFixedPointSum,
  fromBase64,
  isSecAggError,
  SecAggServer,
  type SecAggParams,
} from '@confide/secure-aggregation';
import type { LedgerSlot } from '../privacy/ledger.service';

/** The secure sums a round runs besides the update: feature statistics and evaluation counts. */
export type SumKind = 'statistics' | 'evaluation';

/** Where a site stands in one secure sum. */
export type SumSiteState =
  'offered' | 'advertised' | 'shared' | 'submitted' | 'dropped' | 'declined' | 'rejected';

/** What a secure sum needs from the round around it. */
export interface SumPort {
  /** Sends a JSON message to a site (the gateway signs it); one object may go to many sites. */
  send(siteId: string, message: object): void;
  /** Sends each site its own message, signed together (one signature for all). */
  sendEach(entries: Array<readonly [string, object]>): void;
  /**
   * Waits until `ready()` holds, the deadline passes or the round stops; false unless ready. The
   * deadline may be a function: it is read again while waiting.
   */
  until(ready: () => boolean, deadline: number | (() => number)): Promise<boolean>;
  /** Whether a site can still answer: connected, or within its reconnect grace. */
  reachable(siteId: string): boolean;
  /** The unmasked sum of `vectorLength` elements (worker threads for large jobs). */
  unmask(server: SecAggServer, vectorLength: number): Promise<Uint32Array>;
  /** Called after every change, so waiters re-check and live views refresh. */
  changed(): void;
}

/** A finished secure sum: the element-wise sum of the inputs, and whose inputs it holds. */
interface SumResult {
  values: Float64Array;
  contributors: string[];
}

/** Site messages that belong to a statistics or evaluation sum. */
type SumMessage = Extract<
  SiteMessage,
  {
    type:
      | 'secagg.advertise'
      | 'secagg.shares'
      | 'secagg.masked'
      | 'secagg.signature'
      | 'secagg.unmasked';
  }
>;

/**
 * One secure sum of small real-valued vectors (a round's feature statistics, or its evaluation
 * counts): the SecAgg+ stages over the offered sites, inputs in fixed point (encodeFixedPoint), so
 * the aggregator learns the sum over the surviving sites and nothing else. With DP each input
 * carries its site's signed receipt, checked by `acceptRelease` before the input is added.
 */
export class SecureSum {
  phase: 'advertising' | 'sharing' | 'collecting' | 'consistency' | 'unmasking' | 'done' =
    'advertising';
  readonly sites = new Map<string, { state: SumSiteState; detail?: string }>();
  /** Ledger positions held for this sum's receipts (DP federations). */
  readonly slots = new Map<string, LedgerSlot>();
  private readonly confirmed = new Set<string>();
  private readonly unmasked = new Set<string>();
  /** Sites whose input is in the sum that refused to confirm or unmask it. */
  private readonly refused = new Set<string>();
  private readonly server: SecAggServer;
  /**
   * When the sum gives up on sites that have not answered. It may move while the sum runs: an
   * evaluation sum opened before its model exists gets its real deadline once the model is sent.
   */
  deadline = Infinity;
  /** Why the sum was called off (the round it belongs to ended), or null. */
  private cancelled: string | null = null;
  private port: SumPort | null = null;

  constructor(
    readonly kind: SumKind,
    readonly runId: string,
    readonly round: number,
    readonly info: RoundSecAgg,
    modelHash: string,
    private readonly acceptRelease:
      ((siteId: string, slot: LedgerSlot, receipt: unknown) => Promise<void>) | null = null,
  ) {
    this.server = new SecAggServer({
      params: info.params as unknown as SecAggParams,
      roster: new Map(info.roster.map((r) => [r.siteId, fromBase64(r.publicKey, 32)])),
      runId,
      round,
      modelHash,
      vectorLength: info.vectorLength,
      tensorId: kind,
    });
    for (const r of info.roster) this.sites.set(r.siteId, { state: 'offered' });
  }

  /** The sites whose input made it into the sum, and what happened to the others. */
  states(): Array<{ siteId: string; state: SumSiteState; detail?: string }> {
    return [...this.sites].map(([siteId, s]) => ({ siteId, ...s }));
  }

  /** Calls the sum off: its waits end and run() returns `reason`. */
  cancel(reason: string): void {
    this.cancelled ??= reason;
    this.port?.changed();
  }

  /**
   * Runs the stages after the sites were offered the sum (they answer with their advertisements);
   * returns the sum, or why there is none.
   */
  async run(
    port: SumPort,
    deadline: number,
    decode: (sum: Uint32Array) => Float64Array = decodeFixedPointSum,
  ): Promise<SumResult | { abort: string }> {
    this.port = port;
    this.deadline = deadline;
    const envelope = (type: string, body: object): object => ({
      v: PROTOCOL_VERSION,
      type,
      id: randomUUID(),
      runId: this.runId,
      round: this.round,
      sum: this.kind,
      ...body,
    });
    const ready = (state: SumSiteState, done: (siteId: string) => boolean): boolean => {
      if (this.cancelled !== null) return true;
      for (const [id, s] of this.sites) {
        if (s.state === state && !done(id) && port.reachable(id)) return false;
      }
      return true;
    };
    // The deadline is read again while waiting: an evaluation sum gets its real one later.
    const waitFor = async (
      state: SumSiteState,
      done: (siteId: string) => boolean = () => false,
    ): Promise<void> => {
      await port.until(
        () => ready(state, done),
        () => this.deadline,
      );
      if (this.cancelled !== null) throw new Error(this.cancelled);
    };
    // A site that refused a step after its input went in is not waited for (its shares are not
    // needed: the others' rebuild what the sum needs, or the sum falls short and says so).
    const answeredOrRefused = (answered: ReadonlySet<string>) => (id: string) =>
      answered.has(id) || this.refused.has(id);
    const dropUnanswered = (state: SumSiteState, detail: string): void => {
      for (const s of this.sites.values()) {
        if (s.state === state) {
          s.state = 'dropped';
          s.detail = detail;
        }
      }
    };
    const sendTo = (state: SumSiteState, message: (siteId: string) => object): void => {
      const entries: Array<readonly [string, object]> = [];
      for (const [id, s] of this.sites) if (s.state === state) entries.push([id, message(id)]);
      port.sendEach(entries);
    };
    try {
      await waitFor('offered');
      dropUnanswered('offered', `no key advertisement for the ${this.kind} sum`);
      this.server.closeAdvertising();
      // Each site gets its neighbourhood's advertisements, proven members of the round's set.
      sendTo('advertised', (id) =>
        envelope('secagg.advertisements', { advertisements: this.server.advertisementsFor(id) }),
      );
      this.phase = 'sharing';
      port.changed();
      await waitFor('advertised');
      dropUnanswered('advertised', `no key shares for the ${this.kind} sum`);
      this.server.closeSharing();
      sendTo('shared', (id) => envelope('secagg.deliver', { shares: this.server.sharesFor(id) }));
      this.phase = 'collecting';
      port.changed();
      await waitFor('shared');
      dropUnanswered('shared', `no masked input for the ${this.kind} sum`);
      const consistency = this.server.closeCollection();
      if (consistency) {
        this.phase = 'consistency';
        // One message for every survivor: signed once, as the same object.
        const msg = envelope('secagg.consistency', { request: consistency });
        for (const [id, s] of this.sites) if (s.state === 'submitted') port.send(id, msg);
        await waitFor('submitted', answeredOrRefused(this.confirmed));
        this.server.closeConsistency();
      }
      this.phase = 'unmasking';
      sendTo('submitted', (id) =>
        envelope('secagg.unmask', { request: this.server.unmaskRequest(id) }),
      );
      port.changed();
      await waitFor('submitted', answeredOrRefused(this.unmasked));
      const sum = await port.unmask(this.server, this.info.vectorLength);
      return { values: decode(sum), contributors: this.server.survivors() };
    } catch (e) {
      return {
        abort: isSecAggError(e)
          ? `the ${this.kind} sum: ${e.message}`
          : `the ${this.kind} sum failed: ${(e as Error).message}`,
      };
    } finally {
      this.phase = 'done';
      // Positions still held stay held (by the ledger) until their sites' receipts or "none".
      this.slots.clear();
      this.server.destroy();
      port.changed();
    }
  }

  /** Whether `siteId` may reserve a ledger position for its receipt now. */
  canReserve(siteId: string): boolean {
    return (
      this.phase === 'collecting' &&
      this.sites.get(siteId)?.state === 'shared' &&
      !this.slots.has(siteId)
    );
  }

  /**
   * A site declines the sum (its policy or budget refused it). After its input went in it can only
   * refuse to confirm or unmask: the sum stops waiting for it.
   */
  decline(siteId: string, reason: string): void {
    const s = this.sites.get(siteId);
    if (s?.state === 'submitted' && (this.phase === 'consistency' || this.phase === 'unmasking')) {
      this.refused.add(siteId);
      s.detail = reason;
      return;
    }
    if (!s || s.state === 'submitted') {
      throw new ProtocolError(
        ErrorCode.UNEXPECTED_MESSAGE,
        `nothing to decline in the ${this.kind} sum now`,
      );
    }
    s.state = 'declined';
    s.detail = reason;
    this.slots.delete(siteId);
  }

  /** Handles one site message of this sum; throws ProtocolError on a bad one. */
  async handle(
    siteId: string,
    msg: SumMessage,
    vector: Uint32Array | Float32Array | null,
  ): Promise<void> {
    const s = this.sites.get(siteId);
    const expected = {
      'secagg.advertise': ['advertising', 'offered'],
      'secagg.shares': ['sharing', 'advertised'],
      'secagg.masked': ['collecting', 'shared'],
      'secagg.signature': ['consistency', 'submitted'],
      'secagg.unmasked': ['unmasking', 'submitted'],
    }[msg.type];
    if (!s || this.phase !== expected[0] || s.state !== expected[1]) {
      throw new ProtocolError(
        ErrorCode.UNEXPECTED_MESSAGE,
        `${msg.type} is not expected from this site in the ${this.kind} sum now (${this.phase}, ${s?.state ?? 'not offered'})`,
      );
    }
    try {
      switch (msg.type) {
        case 'secagg.advertise':
          if ((msg.advertisement as { siteId?: unknown } | null)?.siteId !== siteId) {
            throw new Error('the advertisement names another site');
          }
          this.server.addAdvertisement(msg.advertisement);
          s.state = 'advertised';
          break;
        case 'secagg.shares':
          this.server.addShares(siteId, msg.shares);
          s.state = 'shared';
          break;
        case 'secagg.masked': {
          if (!(vector instanceof Uint32Array)) {
            throw new ProtocolError(
              ErrorCode.MALFORMED_MESSAGE,
              'secagg.masked must carry the masked uint32 vector',
            );
          }
          if (this.acceptRelease) {
            // The release is charged to the ledger (signed by the site) before its input is used.
            const slot = this.slots.get(siteId);
            if (!slot) {
              throw new ProtocolError(
                ErrorCode.RECEIPT_INVALID,
                'a differentially private sum needs a signed receipt: send ledger.reserve first',
              );
            }
            this.slots.delete(siteId);
            await this.acceptRelease(siteId, slot, msg.receipt);
            if (this.phase !== 'collecting' || s.state !== 'shared') return; // moved on meanwhile
          }
          this.server.addMaskedInput(siteId, vector);
          s.state = 'submitted';
          break;
        }
        case 'secagg.signature':
          if (
            (msg.signature as { siteId?: unknown } | null)?.siteId !== siteId ||
            this.confirmed.has(siteId)
          ) {
            throw new Error('the signature is not this site’s, or came twice');
          }
          this.server.addSurvivorSignature(msg.signature);
          this.confirmed.add(siteId);
          break;
        case 'secagg.unmasked':
          if (
            (msg.response as { siteId?: unknown } | null)?.siteId !== siteId ||
            this.unmasked.has(siteId)
          ) {
            throw new Error('the unmask response is not this site’s, or came twice');
          }
          this.server.addUnmaskResponse(msg.response);
          this.unmasked.add(siteId);
          break;
      }
    } catch (e) {
      if (msg.type === 'secagg.masked') {
        // A bad input (or receipt) costs its sender its place in the sum, never the sum itself.
        s.state = 'rejected';
        s.detail = (e as Error).message;
        this.slots.delete(siteId);
      }
      if (e instanceof ProtocolError) throw e;
      throw new ProtocolError(ErrorCode.SECAGG_REFUSED, (e as Error).message);
    }
  }
}
