import {
  Body,
  Controller,
  Get,
  Header,
  HttpCode,
  Inject,
  Param,
  Post,
  Query,
  Req,
  Res,
} from '@nestjs/common';
import { ApiBody, ApiOperation, ApiProduces, ApiQuery, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { z } from 'zod';
import { ledgerToCsv } from '@confide/privacy-ledger';
import { LedgerRepository } from './ledger.repository';
import { LedgerService } from './ledger.service';
import { nextRelease } from './next-release';
import { FederationsService } from '../federations/federations.service';
import { parseInput } from '../common/validation';
import { actorOf, Roles, type AuthedRequest } from '../auth/roles.guard';
import { AdminEventRepository } from '../common/admin-event.repository';
import { ApiError } from '../common/errors';
import { SessionRegistry } from '../fl/session-registry';
import { SiteRepository } from '../sites/site.repository';
import type { LedgerHold } from './ledger-holds';

const releaseSchema = z.object({ reason: z.string().trim().min(1).max(1000) }).strict();

const pageSchema = z
  .object({
    page: z.coerce.number().int().min(1).default(1),
    pageSize: z.coerce.number().int().min(1).max(1000).default(50),
    site: z.string().uuid().optional(),
    round: z.coerce.number().int().min(1).optional(),
  })
  .strict();

@ApiTags('privacy')
@Controller('api/v1/federations/:federationId')
export class PrivacyController {
  constructor(
    @Inject(LedgerService) private readonly ledger: LedgerService,
    @Inject(LedgerRepository) private readonly entries: LedgerRepository,
    @Inject(FederationsService) private readonly federations: FederationsService,
    @Inject(SiteRepository) private readonly sites: SiteRepository,
    @Inject(SessionRegistry) private readonly sessions: SessionRegistry,
    @Inject(AdminEventRepository) private readonly events: AdminEventRepository,
  ) {}

  @Get('ledger')
  @Roles('auditor', 'admin')
  @ApiOperation({ summary: 'The epsilon ledger, paged; CSV with "Accept: text/csv"' })
  @ApiProduces('application/json', 'text/csv')
  @ApiQuery({ name: 'page', required: false })
  @ApiQuery({ name: 'pageSize', required: false })
  @ApiQuery({ name: 'site', required: false })
  @ApiQuery({ name: 'round', required: false })
  async list(
    @Param('federationId') federationId: string,
    @Query() query: unknown,
    @Req() req: AuthedRequest,
    @Res() res: Response,
  ): Promise<void> {
    await this.federations.get(federationId);
    const q = parseInput(pageSchema, query, 'query');
    const accept = String(req.headers['accept'] ?? '');
    if (accept.includes('text/csv')) {
      const all = await this.entries.all(federationId);
      const rows = all.filter(
        (e) => (!q.site || e.siteId === q.site) && (q.round === undefined || e.round === q.round),
      );
      res.setHeader('Content-Type', 'text/csv; charset=utf-8');
      res.setHeader('Content-Disposition', `attachment; filename="ledger-${federationId}.csv"`);
      res.send(ledgerToCsv(rows));
      return;
    }
    const page = await this.entries.page(federationId, {
      page: q.page,
      pageSize: q.pageSize,
      ...(q.site ? { siteId: q.site } : {}),
      ...(q.round !== undefined ? { round: q.round } : {}),
    });
    res.json({ ...page, page: q.page, pageSize: q.pageSize });
  }

  @Get('ledger/export')
  @Roles('auditor', 'admin')
  @Header('Content-Type', 'application/json')
  @ApiOperation({
    summary: 'The whole ledger with site keys and the order grid, for offline verification',
  })
  async export(@Param('federationId') federationId: string) {
    return this.ledger.exportLedger(await this.federations.get(federationId));
  }

  @Post('ledger/verify')
  @HttpCode(200)
  @Roles('auditor', 'admin')
  @ApiOperation({
    summary: 'Run the same verification as `confide audit verify` and return every check',
  })
  async verify(@Param('federationId') federationId: string) {
    return this.ledger.verify(await this.federations.get(federationId));
  }

  @Get('privacy')
  @Roles('auditor', 'admin')
  @ApiOperation({
    summary:
      'Epsilon spent per site, its limit, its history by round, and the rounds its budget still allows',
  })
  async privacy(@Param('federationId') federationId: string) {
    const fed = await this.federations.get(federationId);
    return this.ledger.summary(fed, (_site, history) => nextRelease(fed, history));
  }

  @Get('ledger/hold')
  @Roles('auditor', 'admin')
  @ApiOperation({
    summary:
      "The chain position held for a site's receipt, if any: who holds it, since when, whether it is connected",
  })
  async hold(@Param('federationId') federationId: string) {
    await this.federations.get(federationId);
    return { hold: await this.describe(await this.ledger.hold(federationId)) };
  }

  @Post('ledger/hold/release')
  @HttpCode(200)
  @Roles('admin')
  @ApiBody({
    schema: { type: 'object', required: ['reason'], properties: { reason: { type: 'string' } } },
  })
  @ApiOperation({
    summary:
      'Free the held chain position of a site that will not come back (recorded; a receipt it signed there can then never be appended)',
  })
  async releaseHold(
    @Param('federationId') federationId: string,
    @Body() body: unknown,
    @Req() req: AuthedRequest,
  ) {
    await this.federations.get(federationId);
    const { reason } = parseInput(releaseSchema, body);
    const held = await this.ledger.hold(federationId);
    if (!held) throw new ApiError('INVALID_STATE', 'no ledger position is held in this federation');
    if (this.sessions.isConnected(held.siteId)) {
      throw new ApiError(
        'INVALID_STATE',
        'the site holding the position is connected and answers for it itself; release only the position of a site that is gone',
      );
    }
    const released = await this.ledger.releaseHold(federationId);
    const view = await this.describe(released);
    await this.events.record(actorOf(req), 'ledger.hold.release', federationId, {
      ...view,
      reason,
    });
    return { released: view };
  }

  private async describe(h: LedgerHold | null) {
    if (!h) return null;
    const site = await this.sites.findById(h.federationId, h.siteId);
    return {
      seq: h.seq,
      siteId: h.siteId,
      siteName: site?.name ?? null,
      round: h.round,
      sum: h.sum,
      reservedAt: h.reservedAt.toISOString(),
      connected: this.sessions.isConnected(h.siteId),
    };
  }
}
