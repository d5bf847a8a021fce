import {
  encodeFrame,
  fromBase64,
  PROTOCOL_VERSION,
  type MessageOf,
  type RoundSecAgg,
  type ServerMessage,
} from '@confide/protocol';
import {
  encodeFixedPoint,
  encodeWideFixedPoint,
  SecAggClient,
  type SecAggParams,
} from '@confide/secure-aggregation';
import type { LedgerEntry } from '@confide/privacy-ledger';
import type { SiteTransport } from './transport';

type SumStep = MessageOf<
  ServerMessage,
  'secagg.advertisements' | 'secagg.deliver' | 'secagg.consistency' | 'secagg.unmask'
>;

/** What a site's part in a statistics or evaluation sum needs from the node. */
export interface SiteSumOptions extends SiteTransport {
  kind: 'statistics' | 'evaluation';
  siteId: string;
  identitySecretKey: string;
  info: RoundSecAgg;
  runId: string;
  round: number;
  modelHash: string;
  /** The fewest sites this site lets a sum it contributes to hold (its policy's minSitesPerSum). */
  minSurvivors: number;
  /** Records the contribution and, under DP, signs its receipt before the masked input leaves. */
  release(): Promise<LedgerEntry | undefined>;
  /** Tells the round this site is out of the sum: the step it refused and why. */
  refuse(step: string, error: unknown): void;
  log(line: string): void;
}

/**
 * A site's side of one statistics or evaluation sum: its vector in fixed point (wide for
 * statistics, whose sums of squares have no bound), masked with SecAgg+ so the aggregator only ever
 * sees it inside the sum of at least `minSurvivors` sites. The keys can be agreed before the vector
 * exists (an evaluation sum is opened while the round's model is still being stored): the masked
 * input leaves once both the neighbours' shares and the vector are there. The vector is held in
 * memory until masked, then wiped.
 */
export class SiteSum {
  private readonly client: SecAggClient;
  private input: Uint32Array | null = null;
  private release: () => Promise<LedgerEntry | undefined>;
  /** The neighbours' key shares arrived before this site's vector: mask once it is set. */
  private sharesIn = false;

  constructor(
    private readonly o: SiteSumOptions,
    values?: Float64Array,
  ) {
    this.release = () => o.release();
    this.client = new SecAggClient({
      siteId: o.siteId,
      identitySecretKey: fromBase64(o.identitySecretKey, 64),
      roster: new Map(o.info.roster.map((r) => [r.siteId, fromBase64(r.publicKey, 32)])),
      runId: o.runId,
      round: o.round,
      modelHash: o.modelHash,
      params: o.info.params as unknown as SecAggParams,
      vectorLength: o.info.vectorLength,
      tensorId: o.kind,
      minSurvivors: o.minSurvivors,
    });
    if (values) this.input = this.encode(values);
  }

  private encode(values: Float64Array): Uint32Array {
    const input =
      this.o.kind === 'statistics' ? encodeWideFixedPoint(values) : encodeFixedPoint(values);
    values.fill(0);
    if (input.length !== this.o.info.vectorLength) {
      input.fill(0);
      throw new Error(
        `the ${this.o.kind} sum expects ${this.o.info.vectorLength} coordinates, this site's vector has ${input.length}`,
      );
    }
    return input;
  }

  private ref(): Record<string, unknown> {
    return { runId: this.o.runId, round: this.o.round, sum: this.o.kind };
  }

  /** Advertises this site's round keys. */
  start(): void {
    this.o.sendJson({
      type: 'secagg.advertise',
      ...this.ref(),
      advertisement: this.client.advertise(),
    });
  }

  /**
   * Sets this site's vector (and how its release is recorded) in a sum opened without one; masks and
   * sends it at once if the neighbours' shares are already here.
   */
  async setInput(
    values: Float64Array,
    release: () => Promise<LedgerEntry | undefined>,
  ): Promise<void> {
    try {
      if (this.input) throw new Error(`this site's ${this.o.kind} vector was set already`);
      this.input = this.encode(values);
      this.release = release;
      if (this.sharesIn) await this.sendMasked();
    } catch (e) {
      this.fail('input', e);
    }
  }

  private async sendMasked(): Promise<void> {
    this.sharesIn = false;
    const input = this.input!;
    const receipt = await this.release();
    let masked: Uint32Array;
    try {
      masked = this.client.maskInput(input);
    } catch (e) {
      // Signed and recorded, never sent: the aggregator must still get it (its position is held).
      if (receipt) this.o.sendJson({ type: 'ledger.receipt', receipt });
      throw e;
    } finally {
      input.fill(0);
    }
    this.o.sendBinary(
      encodeFrame(
        {
          v: PROTOCOL_VERSION,
          type: 'secagg.masked',
          id: globalThis.crypto.randomUUID(),
          ...this.ref(),
          ...(receipt ? { receipt } : {}),
        },
        masked,
      ),
    );
    this.o.log(`round ${this.o.round}: masked ${this.o.kind} sent`);
  }

  /** One step of the sum; a step the protocol refuses aborts this site's part (secrets wiped). */
  async step(msg: SumStep): Promise<void> {
    try {
      switch (msg.type) {
        case 'secagg.advertisements':
          this.o.sendJson({
            type: 'secagg.shares',
            ...this.ref(),
            shares: this.client.shareKeys(msg.advertisements),
          });
          return;
        case 'secagg.deliver':
          this.client.receiveShares(msg.shares);
          this.sharesIn = true;
          if (this.input) await this.sendMasked();
          return;
        case 'secagg.consistency':
          this.o.sendJson({
            type: 'secagg.signature',
            ...this.ref(),
            signature: this.client.confirmSurvivors(msg.request),
          });
          return;
        case 'secagg.unmask':
          this.o.sendJson({
            type: 'secagg.unmasked',
            ...this.ref(),
            response: this.client.unmask(msg.request),
          });
          this.destroy();
          return;
      }
    } catch (e) {
      this.fail(msg.type, e);
    }
  }

  private fail(step: string, e: unknown): void {
    this.client.abort();
    this.input?.fill(0);
    this.o.refuse(step, e);
  }

  /** Wipes the round's secrets and this site's input. */
  destroy(): void {
    this.client.destroy();
    this.input?.fill(0);
  }
}
