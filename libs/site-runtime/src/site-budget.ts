import {
  confideAccountant,
  createReceipt,
  projectNextRound,
  signReceipt,
  type LedgerEntry,
  type MechanismParams,
} from '@confide/privacy-ledger';
import { ErrorCode, ProtocolError, type IdentityKeyPair, type SumKind } from '@confide/protocol';
import { DEFAULT_SITE_DELTA, DEFAULT_SITE_STATISTICS_SHARE, type SitePolicy } from './policy';
import { withinStatisticsShare } from './site-accounting';
import type { ContributionStore, LocalLedgerStore } from './stores';
import { Refused } from './refusal';

/** The key of one release of a round: `<runId>/<round>/<kind>`. */
export function sumKey(runId: string, round: number, kind: string): string {
  return `${roundPrefix(runId, round)}${kind}`;
}

/** What the keys of every release of a round start with. */
export function roundPrefix(runId: string, round: number): string {
  return `${runId}/${round}/`;
}

/** The ledger position the aggregator granted for one release (its ledger.slot message). */
export interface GrantedSlot {
  seq: number;
  prevHash: string;
  createdAt: string;
  epsilonLimit: number;
  delta: number;
}

/**
 * What a site has spent and may still spend, by its own accounting: its local ledger, the releases
 * it admitted but has not signed yet, and what it put into sums without DP. Every check here uses
 * the site's own limit and delta, whatever a round announces.
 */
export class SiteBudget {
  private readonly ledger: LedgerEntry[] = [];
  /** Releases admitted but not yet signed, by runId/round/kind: every projection counts them. */
  private readonly pending = new Map<string, MechanismParams>();

  constructor(
    private readonly o: {
      federationId: string;
      /** The site's id once logged in (null before): its ledger is filtered by it. */
      siteId: () => string | null;
      policy: SitePolicy;
      /** The site's limit from its command line, if any (the policy's applies too). */
      epsilonLimit?: number;
      ledgerStore?: LocalLedgerStore;
      contributions: ContributionStore;
    },
  ) {}

  /** Reads the local ledger and contribution record (once, before the first round). */
  async load(): Promise<void> {
    if (this.o.ledgerStore) this.ledger.push(...(await this.o.ledgerStore.load()));
    await this.o.contributions.load();
  }

  /** The site's own ledger entries (copies). */
  entries(): LedgerEntry[] {
    return [...this.ledger];
  }

  /** The epsilon limit this site enforces: the smaller of its own (option, policy), else the federation's. */
  ownLimit(announced: number): number {
    const own = [this.o.epsilonLimit, this.o.policy.dp?.epsilonLimit].filter(
      (x): x is number => x !== undefined,
    );
    return own.length ? Math.min(...own) : announced;
  }

  /** The delta this site accounts at: its policy's, else 1e-5. */
  delta(): number {
    return this.o.policy.dp?.delta ?? DEFAULT_SITE_DELTA;
  }

  /**
   * Refuses a second secure sum of the same values without DP (differencing two sums, one that the
   * aggregator says this site dropped out of, would give this site's values). Returns the key to
   * record once the values leave, or null when DP makes a repeat an accounted release.
   */
  contributionKey(key: string, privacy: unknown): string | null {
    if (privacy) return null;
    if (this.o.contributions.has(key)) {
      throw new Refused(
        ErrorCode.POLICY_REPEATED_RELEASE,
        `this site already put these values into a secure sum (${key}); without DP a second sum of them could be subtracted from the first`,
      );
    }
    return key;
  }

  /** Records durably that a contribution is about to leave (see contributionKey). */
  recordContribution(key: string): Promise<void> {
    return this.o.contributions.add(key);
  }

  /** Counts `mechanism` as spent from now on, under `key`, until it is signed or dropped. */
  hold(key: string, mechanism: MechanismParams): void {
    this.pending.set(key, mechanism);
  }

  /** Stops counting what was held under `key`. */
  drop(key: string): void {
    this.pending.delete(key);
  }

  /** Stops counting everything held for one round. */
  dropRound(runId: string, round: number): void {
    const prefix = roundPrefix(runId, round);
    for (const key of [...this.pending.keys()])
      if (key.startsWith(prefix)) this.pending.delete(key);
  }

  /**
   * Refuses a statistics or evaluation release past the share of the budget this site sets aside
   * for them (the smaller of its own and the federation's) and its whole limit, counting what it has
   * admitted but not yet signed.
   */
  checkSumBudget(
    mechanism: MechanismParams,
    privacy: { epsilonLimit: number; statisticsShare: number },
  ): void {
    const limit = this.ownLimit(privacy.epsilonLimit);
    const ownShare = this.o.policy.dp?.statisticsShare ?? DEFAULT_SITE_STATISTICS_SHARE;
    const share = withinStatisticsShare(
      this.projectionHistory(),
      mechanism,
      Math.min(ownShare, privacy.statisticsShare),
      limit,
      this.delta(),
    );
    if (!share.allowed) {
      throw new Refused(
        ErrorCode.BUDGET_EXCEEDED,
        `this ${mechanism.release ?? 'update'} release would pass the share of the site's budget set aside for statistics and evaluation (zCDP ${share.spent.toPrecision(3)} spent of ${share.allowance.toPrecision(3)})`,
      );
    }
    this.check(mechanism, privacy.epsilonLimit);
  }

  /**
   * Refuses a release past the site's own limit (see ownLimit; `announced` is the federation's),
   * counted at its own delta.
   */
  check(mechanism: MechanismParams, announced: number, what = 'this release'): void {
    const limit = this.ownLimit(announced);
    const projection = projectNextRound(
      this.projectionHistory(),
      mechanism,
      this.delta(),
      limit,
      confideAccountant,
    );
    if (!projection.allowed) {
      throw new Refused(
        ErrorCode.BUDGET_EXCEEDED,
        `${what} would bring the site's epsilon to ${projection.projectedEpsilon.toFixed(4)}, past its own limit ${limit}`,
      );
    }
  }

  /**
   * Builds, signs and durably records this site's receipt for a release at the position the
   * aggregator granted, after checking the slot against the site's own delta and limit.
   */
  async sign(
    slot: GrantedSlot,
    ref: { round: number; sum: SumKind },
    mechanism: MechanismParams,
    site: { siteId: string; siteName: string; identity: IdentityKeyPair },
  ): Promise<LedgerEntry> {
    if (!(slot.delta <= this.delta())) {
      throw new ProtocolError(
        ErrorCode.POLICY_DELTA,
        `the ledger slot accounts at delta ${slot.delta}, larger than this site's ${this.delta()}`,
      );
    }
    const ownLimit = this.ownLimit(slot.epsilonLimit);
    const body = createReceipt(
      {
        seq: slot.seq,
        federationId: this.o.federationId,
        siteId: site.siteId,
        siteName: site.siteName,
        round: ref.round,
        mechanism,
        delta: slot.delta,
        epsilonLimit: slot.epsilonLimit,
        createdAt: slot.createdAt,
        sitePublicKey: site.identity.publicKey,
        siteHistory: this.history(),
      },
      confideAccountant,
    );
    // Its own limit, whatever the slot says; counted at the slot's delta, which is at most its own,
    // so never below its epsilon at its own delta.
    if (body.cumulativeEpsilon > ownLimit) {
      throw new ProtocolError(
        ErrorCode.BUDGET_EXCEEDED,
        `this release would bring the site's epsilon to ${body.cumulativeEpsilon.toFixed(4)}, past its own limit ${ownLimit}`,
      );
    }
    const entry = signReceipt(body, slot.prevHash, site.identity.secretKey);
    await this.o.ledgerStore?.append(entry);
    this.ledger.push(entry);
    return entry;
  }

  /** This site's earlier releases in this federation, from its own ledger. */
  private history(): LedgerEntry[] {
    const siteId = this.o.siteId();
    return this.ledger.filter(
      (e) => e.federationId === this.o.federationId && (siteId === null || e.siteId === siteId),
    );
  }

  /**
   * This site's releases so far, and those admitted but not yet signed (a projection must count
   * what is about to be spent, not only what was).
   */
  private projectionHistory(): Array<{ mechanism: MechanismParams; rdp: readonly number[] }> {
    const pending = [...this.pending.values()].map((mechanism) => ({
      mechanism,
      rdp: confideAccountant.releaseRdp(mechanism),
    }));
    return [...this.history(), ...pending];
  }
}
