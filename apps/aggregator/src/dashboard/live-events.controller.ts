import { Controller, Get, Inject, Param, Query, Req, Res } from '@nestjs/common';
import { ApiOperation, ApiProduces, ApiQuery, ApiTags } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { LiveEventsService } from './live-events.service';
import { AuthService } from '../auth/auth.service';
import { ApiError } from '../common/errors';
import { FederationsService } from '../federations/federations.service';

@ApiTags('federations')
@Controller('api/v1/federations/:federationId/events')
export class LiveEventsController {
  constructor(
    @Inject(AuthService) private readonly auth: AuthService,
    @Inject(FederationsService) private readonly federations: FederationsService,
    @Inject(LiveEventsService) private readonly live: LiveEventsService,
  ) {}

  /**
   * EventSource cannot send headers, so the token may come as `?token=`; it is checked exactly like
   * the bearer token of every other endpoint (admin or auditor).
   */
  @Get()
  @ApiProduces('text/event-stream')
  @ApiQuery({ name: 'token', required: false, description: 'API token (admin or auditor)' })
  @ApiOperation({
    summary:
      "Live events (server-sent events): 'round' on every phase or participant change, 'sites' on connect/disconnect, 'run' when a run starts or ends",
  })
  async events(
    @Param('federationId') federationId: string,
    @Query('token') queryToken: string | undefined,
    @Req() req: Request,
    @Res() res: Response,
  ): Promise<void> {
    const header = req.headers['authorization'];
    const bearer = header ? /^Bearer\s+(\S+)$/i.exec(header)?.[1] : undefined;
    const token = bearer ?? (typeof queryToken === 'string' ? queryToken : undefined);
    if (!token) {
      throw new ApiError(
        'UNAUTHENTICATED',
        'send an API token as "Authorization: Bearer <token>" or as ?token=',
      );
    }
    const row = await this.auth.authenticate(token);
    if (row.role !== 'admin' && row.role !== 'auditor') {
      throw new ApiError('FORBIDDEN', `this action needs the admin or auditor role`);
    }
    await this.federations.get(federationId);
    this.live.open(federationId, res, row);
  }
}
