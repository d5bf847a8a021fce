import type { SiteSession } from '../fl/session-registry';
import type { SiteRepository } from '../sites/site.repository';
import type { AggregatorConfig } from '../common/tokens';
import type { LedgerService } from './ledger.service';

/** What settling a held ledger position needs. */
export interface HeldReceiptDeps {
  readonly siteRepo: SiteRepository;
  readonly ledger: LedgerService;
  readonly config: AggregatorConfig;
}

/**
 * A receipt for the ledger position the site holds (appended, and the position passes on), or its
 * word that it signed none there. A receipt refused on its merits also frees the position.
 */
export async function settleHeldReceipt(
  d: HeldReceiptDeps,
  session: SiteSession,
  msg: { type: 'ledger.receipt'; receipt: unknown } | { type: 'ledger.none'; seq: number },
): Promise<void> {
  const fedId = session.federationId;
  if (msg.type === 'ledger.none') {
    if (await d.ledger.siteSignedNone(fedId, session.siteId, msg.seq)) {
      d.config.log(
        `site ${session.siteName} signed no receipt at ledger position ${msg.seq}; it passes on`,
      );
    }
    return;
  }
  const site = await d.siteRepo.findById(fedId, session.siteId);
  if (site && (await d.ledger.acceptHeldReceipt(fedId, site, msg.receipt))) {
    d.config.log(
      `site ${session.siteName}'s receipt for ledger position ${String((msg.receipt as { seq?: unknown }).seq)} appended`,
    );
  }
}
