import { Body, Controller, Get, HttpCode, Inject, Param, Post, Req } from '@nestjs/common';
import { ApiBody, ApiOperation, ApiTags } from '@nestjs/swagger';
import { parameterCount } from '@confide/ml/spec';
import { FederationsService } from './federations.service';
import { createFederationOpenApi } from './federation.schema';
import { actorOf, Roles, type AuthedRequest } from '../auth/roles.guard';
import type { FederationRow } from '../database/rows';

/** A federation as the API returns it. */
function view(f: FederationRow): FederationRow & { parameters: number } {
  return { ...f, parameters: parameterCount(f.modelSpec) };
}

@ApiTags('federations')
@Controller('api/v1/federations')
export class FederationsController {
  constructor(@Inject(FederationsService) private readonly federations: FederationsService) {}

  @Post()
  @HttpCode(201)
  @Roles('admin')
  @ApiOperation({
    summary: 'Create a federation (model spec, strategy, round and training settings)',
  })
  @ApiBody({ schema: createFederationOpenApi as object })
  async create(@Body() body: unknown, @Req() req: AuthedRequest) {
    return view(await this.federations.create(body, actorOf(req)));
  }

  @Get()
  @Roles('admin', 'auditor')
  @ApiOperation({ summary: 'List federations' })
  async list() {
    return (await this.federations.list()).map(view);
  }

  @Get(':id')
  @Roles('admin', 'auditor')
  @ApiOperation({ summary: 'One federation' })
  async get(@Param('id') id: string) {
    return view(await this.federations.get(id));
  }
}
