import { Body, Controller, Get, HttpCode, Inject, Param, Post, Req } from '@nestjs/common';
import { ApiBody, ApiOperation, ApiTags } from '@nestjs/swagger';
import { SitesService } from './sites.service';
import { actorOf, Roles, type AuthedRequest } from '../auth/roles.guard';

@ApiTags('sites')
@Controller('api/v1/federations/:federationId/sites')
export class SitesController {
  constructor(@Inject(SitesService) private readonly sites: SitesService) {}

  @Post()
  @HttpCode(201)
  @Roles('admin')
  @ApiOperation({ summary: "Enrol a site by name and Ed25519 public key (status 'pending')" })
  @ApiBody({
    schema: {
      type: 'object',
      required: ['name', 'publicKey'],
      properties: {
        name: { type: 'string', example: 'hospital-1' },
        publicKey: { type: 'string' },
        epsilonLimit: {
          type: 'number',
          description: "this site's privacy budget (DP federations)",
        },
        maxWeight: {
          type: 'integer',
          description: "the most records this site's update may weigh (plain federations)",
        },
      },
    },
  })
  enrol(
    @Param('federationId') federationId: string,
    @Body() body: unknown,
    @Req() req: AuthedRequest,
  ) {
    return this.sites.enrol(federationId, body, actorOf(req));
  }

  @Get()
  @Roles('admin', 'auditor')
  @ApiOperation({ summary: 'List the sites of a federation with their live connection status' })
  list(@Param('federationId') federationId: string) {
    return this.sites.list(federationId);
  }

  @Post(':siteId/approve')
  @HttpCode(200)
  @Roles('admin')
  @ApiOperation({ summary: 'Approve a pending site so it can log in and be selected' })
  approve(
    @Param('federationId') federationId: string,
    @Param('siteId') siteId: string,
    @Req() req: AuthedRequest,
  ) {
    return this.sites.approve(federationId, siteId, actorOf(req));
  }

  @Post(':siteId/budget')
  @HttpCode(200)
  @Roles('admin')
  @ApiOperation({ summary: "Change a site's epsilon limit (logged with the reason)" })
  @ApiBody({
    schema: {
      type: 'object',
      required: ['epsilonLimit', 'reason'],
      properties: { epsilonLimit: { type: 'number' }, reason: { type: 'string' } },
    },
  })
  changeBudget(
    @Param('federationId') federationId: string,
    @Param('siteId') siteId: string,
    @Body() body: unknown,
    @Req() req: AuthedRequest,
  ) {
    return this.sites.changeBudget(federationId, siteId, body, actorOf(req));
  }

  @Post(':siteId/revoke')
  @HttpCode(200)
  @Roles('admin')
  @ApiOperation({ summary: 'Revoke a site: its connection is closed and it can no longer log in' })
  revoke(
    @Param('federationId') federationId: string,
    @Param('siteId') siteId: string,
    @Req() req: AuthedRequest,
  ) {
    return this.sites.revoke(federationId, siteId, actorOf(req));
  }
}
