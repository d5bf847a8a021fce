import { ErrorCode } from '@confide/protocol';
import type { SitePolicy } from './policy';
import { checkRound, type RoundOffer } from './policy-check';
import { Refused } from './refusal';

/**
 * The site's gate in front of its data: every round configuration (training, statistics,
 * evaluation) passes these checks before anything touches a record, whatever the aggregator says.
 */
export class Admission {
  /** The rounds this node took part in, by run: a configuration for an earlier one is a replay. */
  private readonly latestRound = new Map<string, number>();

  constructor(
    private readonly o: {
      federationId: string;
      policy: SitePolicy;
      /** Whether the connection to the aggregator is TLS. */
      tls: boolean;
      /** The delta this site accounts at (its budget's). */
      delta: () => number;
      /** The site's own epsilon limit from its command line, if any. */
      epsilonLimit?: number;
    },
  ) {}

  /**
   * The site's own checks of a round configuration, before anything touches its data: fresh (not past
   * its deadline, not an earlier round of the run), its policy, and DP whenever the site keeps a limit.
   */
  admit(
    msg: { runId: string; round: number; deadline: string; federationId: string },
    announced: Omit<RoundOffer, 'tls'>,
  ): void {
    const offer: RoundOffer = { ...announced, tls: this.o.tls };
    if (msg.federationId !== this.o.federationId) {
      throw new Refused(
        ErrorCode.UNEXPECTED_MESSAGE,
        `the configuration is for federation ${msg.federationId}, this node joined ${this.o.federationId}`,
      );
    }
    const deadline = Date.parse(msg.deadline);
    if (!(deadline > Date.now())) {
      throw new Refused(
        ErrorCode.STALE_CONFIGURATION,
        `the configuration's deadline ${msg.deadline} has passed (a replayed or delayed message)`,
      );
    }
    const latest = this.latestRound.get(msg.runId);
    if (latest !== undefined && msg.round < latest) {
      throw new Refused(
        ErrorCode.STALE_CONFIGURATION,
        `round ${msg.round} of run ${msg.runId} comes after round ${latest} (a replayed configuration)`,
      );
    }
    const v = checkRound(this.o.policy, offer);
    if (v) throw new Refused(v.code, v.message);
    // The delta the site's epsilon is measured at is the site's, never a larger one the aggregator
    // picks (the same mechanism has a far smaller epsilon at a larger delta).
    const delta = this.o.delta();
    if (offer.privacy && !(offer.privacy.delta <= delta)) {
      throw new Refused(
        ErrorCode.POLICY_DELTA,
        `the round's delta ${offer.privacy.delta} is larger than this site's delta ${delta} (a larger delta is a weaker guarantee)`,
      );
    }
    if (this.o.epsilonLimit !== undefined && offer.privacy === null) {
      throw new Refused(
        ErrorCode.POLICY_DP_REQUIRED,
        `this site keeps its own epsilon limit (${this.o.epsilonLimit}); the ${offer.stage} round carries no differential privacy, so what it releases could not be charged`,
      );
    }
  }

  /** Records that this site trains in `round` of `runId`: earlier rounds of the run are replays now. */
  trained(runId: string, round: number): void {
    this.latestRound.set(runId, round);
  }

  /** Whether the round this site last trained in, in `runId`, is `round`. */
  trainedIn(runId: string, round: number): boolean {
    return this.latestRound.get(runId) === round;
  }
}
