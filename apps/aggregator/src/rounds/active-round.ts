import type { FeatureStatsPartial } from '@confide/ml/spec';
import type { SiteMetrics } from '@confide/protocol';
import type { UpdateCollector } from '@confide/federated';
import { Signal } from '../common/signal';
import type {
  FederationRow,
  Participant,
  RoundRow,
  RoundSampling,
  SiteRow,
} from '../database/rows';
import type { LedgerSlot } from '../privacy/ledger.service';
import type { SecAggServer } from '@confide/secure-aggregation';
import type { SecureSum } from './secure-sum';
import type { OpenEvaluation } from './round-sums.service';

/** Phases in which a round accepts site messages. */
export type RoundPhase =
  | 'selecting'
  | 'stats'
  | 'advertising'
  | 'sharing'
  | 'collecting'
  | 'consistency'
  | 'unmasking'
  | 'aggregating'
  | 'evaluating'
  | 'closing';

/**
 * The in-memory side of one running round: who takes part, what they sent. Only aggregates are kept;
 * the plain collector folds each update into the running sum as it arrives.
 */
export class ActiveRound {
  phase: RoundPhase = 'selecting';
  readonly signal = new Signal();
  readonly participants = new Map<string, Participant>();
  readonly disconnectedAt = new Map<string, number>();
  /**
   * Participants that reconnected after joining a secure sum of this round: their round keys went
   * with the old connection, so the round no longer waits for them (secure rounds do not resume).
   */
  readonly stateLost = new Set<string>();
  readonly stats = new Map<string, FeatureStatsPartial>();
  readonly evaluations = new Map<string, SiteMetrics>();
  collector: UpdateCollector | null = null;
  /** The stats.request sent in the stats phase, sent again to a participant that reconnects. */
  statsRequest: object | null = null;
  /** The encoded round.train frame, sent again to a participant that reconnects. */
  trainFrame: Buffer | null = null;
  evaluateFrame: Buffer | null = null;
  expectedLength = 0;
  trainLossSum = 0;
  trainWeightSum = 0;
  bytesReceived = 0;
  newModelVersionId: string | null = null;

  /** The statistics or evaluation sum running now, if any. */
  sum: SecureSum | null = null;
  /** The round's evaluation sum, opened while its update is unmasked; cancelled if the round ends. */
  evaluation: OpenEvaluation | null = null;
  /** Sites that declined to evaluate in the clear (their policy keeps their metrics to themselves). */
  readonly evaluationDeclined = new Set<string>();
  /** The secure-aggregation server of this round, while it runs. */
  secagg: SecAggServer | null = null;
  secaggSummary: { threshold: number; graph: string; k?: number; sites: number } | null = null;
  /** Semi-malicious consistency signatures and unmask responses received. */
  readonly confirmed = new Set<string>();
  readonly unmasked = new Set<string>();
  /** Sites whose input counted but that declined to help unmask the sum (their policy refused). */
  readonly refused = new Set<string>();
  /** Sites whose masked input counted but that vanished before unmasking. */
  lateDrops = 0;
  /**
   * Ledger chain positions granted to participants for this round's update (DP federations). The
   * round forgets a position when it is done with its site; the position itself stays held (by the
   * ledger) until the site's receipt or its "none".
   */
  readonly slots = new Map<string, LedgerSlot>();
  /** The aggregator's draw of this round's sites (sampling.fraction below 1 outside site-level DP). */
  sampling: RoundSampling | null = null;
  /** Site-level DP: sampled sites / approved sites, and the honest survivors the noise assumes. */
  siteSamplingRate = 1;
  survivorsAssumed: number | null = null;
  /**
   * Site-level DP under secure aggregation: the round's quantisation scale and the noised coordinates
   * (the model's parameters), recorded with the distributed discrete Gaussian in every receipt.
   */
  integerNoise: { scale: number; dimension: number } | null = null;
  /** Each participant's enrolment (its key, its admin's maxWeight), read once when it is selected. */
  readonly sites = new Map<string, SiteRow>();

  constructor(
    readonly fed: FederationRow,
    readonly runId: string,
    public row: RoundRow,
  ) {}

  get federationId(): string {
    return this.fed.id;
  }

  get number(): number {
    return this.row.number;
  }

  /**
   * Leaves a site out of the round for a contribution out of its range: `error` names why, in the
   * round record; what it sent is not used and it is no longer waited for.
   */
  exclude(siteId: string, error: { code: string; message: string }, note = ''): void {
    const p = this.participants.get(siteId);
    if (!p) return;
    p.status = 'rejected';
    p.detail = `${error.code}: ${error.message}${note}`;
    this.forgetSlot(siteId);
    this.signal.notify();
  }

  /** Stops expecting `siteId`'s receipt in this round's update (a later one is settled by the ledger). */
  forgetSlot(siteId: string): void {
    this.slots.delete(siteId);
  }

  participantList(): Participant[] {
    return [...this.participants.values()];
  }

  /** Whether a site can still answer: connected, or disconnected for less than the grace. */
  reachable(siteId: string, now: number, graceMs: number, connected: boolean): boolean {
    if (this.stateLost.has(siteId)) return false;
    if (connected) return true;
    const since = this.disconnectedAt.get(siteId);
    return since !== undefined && now - since < graceMs;
  }

  /** A participant that may still answer: selected, and connected or within its reconnect grace. */
  isPending(
    siteId: string,
    now: number,
    graceMs: number,
    connected: boolean,
    waitingFor: Participant['status'],
  ): boolean {
    const p = this.participants.get(siteId);
    if (!p || p.status !== waitingFor) return false;
    return this.reachable(siteId, now, graceMs, connected);
  }
}
