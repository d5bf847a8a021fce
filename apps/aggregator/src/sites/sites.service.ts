import { Inject, Injectable } from '@nestjs/common';
import { z } from 'zod';
import { ErrorCode, isPublicKey, keyFingerprint } from '@confide/protocol';
import { SiteRepository } from './site.repository';
import { FederationsService } from '../federations/federations.service';
import { AdminEventRepository } from '../common/admin-event.repository';
import { ApiError } from '../common/errors';
import { parseInput } from '../common/validation';
import { DATABASE } from '../common/tokens';
import type { Database } from '../database/database';
import type { SiteRow, SiteStatus } from '../database/rows';
import { SessionRegistry } from '../fl/session-registry';
import { LedgerRepository } from '../privacy/ledger.repository';

export const enrolSiteSchema = z
  .object({
    name: z
      .string()
      .min(1)
      .max(100)
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'use letters, digits, ".", "_" or "-" (no spaces)'),
    publicKey: z
      .string()
      .refine(
        isPublicKey,
        'must be a base64 Ed25519 public key (32 bytes), as printed by `confide node keys`',
      ),
    /** This site's privacy budget; the federation's dp.epsilonLimit when absent. */
    epsilonLimit: z.number().gt(0).max(1e6).optional(),
    /** The most records this site's update may weigh (plain federations); the federation's cap when absent. */
    maxWeight: z
      .number()
      .int()
      .min(1)
      .max(2 ** 31 - 1)
      .optional(),
  })
  .strict();

export const budgetChangeSchema = z
  .object({
    epsilonLimit: z.number().gt(0).max(1e6),
    reason: z.string().min(3, 'say why the budget changes (at least 3 characters)').max(2000),
  })
  .strict();

/** A site as the API shows it. */
export interface SiteView extends SiteRow {
  fingerprint: string;
  connected: boolean;
}

/** Enrolling, approving and revoking sites. */
@Injectable()
export class SitesService {
  constructor(
    @Inject(DATABASE) private readonly db: Database,
    @Inject(SiteRepository) private readonly sites: SiteRepository,
    @Inject(FederationsService) private readonly federations: FederationsService,
    @Inject(AdminEventRepository) private readonly events: AdminEventRepository,
    @Inject(SessionRegistry) private readonly sessions: SessionRegistry,
    @Inject(LedgerRepository) private readonly ledger: LedgerRepository,
  ) {}

  view(site: SiteRow): SiteView {
    return {
      ...site,
      fingerprint: keyFingerprint(site.publicKey),
      connected: this.sessions.isConnected(site.id),
    };
  }

  async enrol(federationId: string, body: unknown, actor: string): Promise<SiteView> {
    const fed = await this.federations.get(federationId);
    const input = parseInput(enrolSiteSchema, body);
    const dp = fed.config.dp ?? { level: 'none' as const };
    if (input.epsilonLimit !== undefined && dp.level === 'none') {
      throw new ApiError(
        'VALIDATION_FAILED',
        'epsilonLimit is only meaningful in a federation with differential privacy',
      );
    }
    if (await this.sites.findByName(federationId, input.name)) {
      throw new ApiError(
        'CONFLICT',
        `a site named "${input.name}" is already enrolled in this federation`,
      );
    }
    if (await this.sites.findByKey(federationId, input.publicKey)) {
      throw new ApiError('CONFLICT', 'this public key is already enrolled in this federation');
    }
    const site = await this.db.transaction(async (em) => {
      const s = await this.sites.insert(
        em,
        federationId,
        input.name,
        input.publicKey,
        input.maxWeight ?? null,
      );
      await this.events.record(
        actor,
        'site.enrol',
        s.id,
        { name: s.name, federationId, maxWeight: s.maxWeight },
        em,
      );
      if (dp.level !== 'none') {
        await this.ledger.setBudget(
          em,
          {
            federationId,
            siteId: s.id,
            epsilonLimit: input.epsilonLimit ?? dp.epsilonLimit,
            delta: dp.delta,
          },
          { actor, reason: 'enrolment', oldLimit: null },
        );
      }
      return s;
    });
    return this.view(site);
  }

  async list(federationId: string): Promise<SiteView[]> {
    await this.federations.get(federationId);
    return (await this.sites.list(federationId)).map((s) => this.view(s));
  }

  async get(federationId: string, siteId: string): Promise<SiteRow> {
    const site = await this.sites.findById(federationId, siteId);
    if (!site) throw new ApiError('NOT_FOUND', `no site ${siteId} in federation ${federationId}`);
    return site;
  }

  /** Changes a site's epsilon limit: an explicit admin action, logged with its reason. */
  async changeBudget(federationId: string, siteId: string, body: unknown, actor: string) {
    const site = await this.get(federationId, siteId);
    const input = parseInput(budgetChangeSchema, body);
    const current = await this.ledger.budget(federationId, site.id);
    if (!current)
      throw new ApiError(
        'INVALID_STATE',
        'this federation has no differential privacy, so no budgets',
      );
    await this.db.transaction(async (em) => {
      await this.ledger.setBudget(
        em,
        { federationId, siteId: site.id, epsilonLimit: input.epsilonLimit, delta: current.delta },
        { actor, reason: input.reason, oldLimit: current.epsilonLimit },
      );
      await this.events.record(
        actor,
        'budget.change',
        site.id,
        { from: current.epsilonLimit, to: input.epsilonLimit, reason: input.reason },
        em,
      );
    });
    return this.ledger.budget(federationId, site.id);
  }

  /** pending -> approved. Approving an approved site is a no-op; a revoked site stays revoked. */
  approve(federationId: string, siteId: string, actor: string): Promise<SiteView> {
    return this.move(federationId, siteId, 'approved', actor);
  }

  /** pending|approved -> revoked, closing the site's live connection with SITE_REVOKED. */
  async revoke(federationId: string, siteId: string, actor: string): Promise<SiteView> {
    const view = await this.move(federationId, siteId, 'revoked', actor);
    this.sessions.disconnect(
      siteId,
      ErrorCode.SITE_REVOKED,
      'this site was revoked by an administrator',
    );
    return view;
  }

  private async move(
    federationId: string,
    siteId: string,
    to: SiteStatus,
    actor: string,
  ): Promise<SiteView> {
    const site = await this.get(federationId, siteId);
    if (site.status === to) return this.view(site);
    if (site.status === 'revoked') {
      throw new ApiError(
        'INVALID_STATE',
        `site "${site.name}" is revoked; enrol a new key to bring it back`,
      );
    }
    const updated = await this.db.transaction(async (em) => {
      const s = await this.sites.setStatus(em, site.id, to);
      await this.events.record(
        actor,
        to === 'approved' ? 'site.approve' : 'site.revoke',
        s.id,
        { name: s.name },
        em,
      );
      return s;
    });
    return this.view(updated);
  }
}
