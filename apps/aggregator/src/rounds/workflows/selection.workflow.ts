import type { LedgerRepository } from '../../privacy/ledger.repository';
import type { LedgerService } from '../../privacy/ledger.service';
import { integerNoiseFor, nextRelease } from '../../privacy/next-release';
import type { SiteRepository } from '../../sites/site.repository';
import type { RoundContext } from '../round-context';
import { roundThreshold } from '../secagg-params';
import { sampleSites } from '../site-sampling';

/** What selection reads: the sites' enrolments and their ledgers. */
export interface SelectionDeps {
  readonly siteRepo: SiteRepository;
  readonly ledger: LedgerService;
  readonly ledgerRepo: LedgerRepository;
}

/**
 * Selection: the approved sites connected by the deadline (only approved sites can log in), less
 * those whose privacy budget a round would overspend, then the aggregator's draw when it samples.
 * Returns null when the round may go on, else why it cannot.
 */
export class SelectionWorkflow {
  constructor(
    private readonly ctx: RoundContext,
    private readonly deps: SelectionDeps,
  ) {}

  async run(deadline: number): Promise<string | null> {
    const ctx = this.ctx;
    const { active } = ctx;
    const { fed } = active;
    const cfg = fed.config;
    const sessions = ctx.deps.sessions;
    const enough = await ctx.untilOn(
      sessions.changed,
      () => sessions.connected(fed.id).length >= cfg.minSites,
      deadline,
    );
    const selected = sessions.connected(fed.id);
    if (!enough) {
      return `only ${selected.length} approved site(s) connected before the deadline; the federation needs minSites=${cfg.minSites}`;
    }
    for (const s of selected) {
      active.participants.set(s.siteId, { siteId: s.siteId, name: s.siteName, status: 'selected' });
    }
    for (const site of await this.deps.siteRepo.list(fed.id)) {
      if (active.participants.has(site.id)) active.sites.set(site.id, site);
    }
    const dp = cfg.dp ?? { level: 'none' as const };
    if (dp.level !== 'none') {
      const refused = await this.screenBudgets(selected.map((s) => s.siteId));
      if (refused) return refused;
    }
    // Client sampling: outside site-level DP the aggregator draws the round's sites itself, among
    // those with budget left; the others get nothing this round. Site-level DP samples on the
    // sites' own coins instead, so that nobody, the aggregator included, learns who took part.
    const fraction = cfg.samplingFraction ?? 1;
    if (fraction < 1 && dp.level !== 'site') this.draw(fraction, cfg.minSites);
    return null;
  }

  /** A site whose projected epsilon would pass its limit is skipped; too few left end the round. */
  private async screenBudgets(selected: string[]): Promise<string | null> {
    const { active } = this.ctx;
    const { fed } = active;
    const cfg = fed.config;
    const dp = cfg.dp!;
    // Under secure aggregation the sum can only be unmasked with t survivors, so site-level noise
    // shares are sized for t (the round's threshold); without it each site adds all of the noise.
    active.survivorsAssumed =
      dp.level === 'site' && cfg.secureAggregation?.enabled
        ? roundThreshold(fed, selected.length)
        : null;
    // Site level: only each site's own coin earns amplification (Poisson self-sampling).
    active.siteSamplingRate = dp.level === 'site' ? (cfg.samplingFraction ?? 1) : 1;
    // Under secure aggregation, site-level noise is the distributed discrete Gaussian, whose bound
    // depends on the round's quantisation scale: projected with the scale for all the selected
    // sites, which is at most the one the round will use with the sites that pass (see
    // secureQuantization), so the projection never under-states the spend.
    const integerNoise =
      dp.level === 'site' && cfg.secureAggregation?.enabled
        ? integerNoiseFor(fed, selected.length, active.survivorsAssumed ?? 1)
        : null;
    for (const siteId of selected) {
      const history = await this.deps.ledgerRepo.siteEntries(fed.id, siteId);
      const mechanism = nextRelease(
        fed,
        history,
        undefined,
        active.survivorsAssumed,
        integerNoise ?? undefined,
      );
      if (!mechanism) continue; // size unknown: the receipt is checked against the budget at release
      const p = await this.deps.ledger.project(fed.id, siteId, mechanism);
      if (!p.allowed) {
        const part = active.participants.get(siteId)!;
        part.status = 'skipped';
        part.detail =
          p.limit === null
            ? 'no privacy budget in this federation'
            : `projected epsilon ${p.projected.toFixed(4)} would exceed its limit ${p.limit}`;
      }
    }
    const eligible = active.participantList().filter((x) => x.status === 'selected');
    if (eligible.length >= cfg.minSites) return null;
    const skipped = active
      .participantList()
      .filter((x) => x.status === 'skipped')
      .map((x) => `${x.name}: ${x.detail ?? ''}`);
    return (
      `only ${eligible.length} site(s) have privacy budget left for another round; the federation needs minSites=${cfg.minSites}` +
      (skipped.length ? ` (skipped ${skipped.join('; ')})` : '')
    );
  }

  /**
   * Keeps a CSPRNG draw of the round's eligible ('selected') sites and forgets the rest, recording
   * the draw; sites skipped for their budget stay on the roster as skipped.
   */
  private draw(fraction: number, minSites: number): void {
    const { active } = this.ctx;
    const eligible = active.participantList().filter((p) => p.status === 'selected');
    const drawn = new Set(sampleSites(eligible, fraction, minSites).map((p) => p.siteId));
    for (const p of eligible) {
      if (drawn.has(p.siteId)) continue;
      active.participants.delete(p.siteId);
      active.sites.delete(p.siteId);
    }
    active.sampling = { fraction, connected: eligible.length, sampled: drawn.size };
  }
}
