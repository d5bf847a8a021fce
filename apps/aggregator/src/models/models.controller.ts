import { Controller, Get, Inject, Param, Res } from '@nestjs/common';
import { ApiOperation, ApiProduces, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { float32ToBytes } from '@confide/protocol';
import { ModelVersionRepository } from './model-version.repository';
import { FederationsService } from '../federations/federations.service';
import { ApiError } from '../common/errors';
import { Roles } from '../auth/roles.guard';

@ApiTags('models')
@Controller('api/v1/federations/:federationId/models')
export class ModelsController {
  constructor(
    @Inject(ModelVersionRepository) private readonly models: ModelVersionRepository,
    @Inject(FederationsService) private readonly federations: FederationsService,
  ) {}

  @Get()
  @Roles('admin', 'auditor')
  @ApiOperation({ summary: 'List model versions (metadata and hashes)' })
  async list(@Param('federationId') federationId: string) {
    await this.federations.get(federationId);
    return this.models.list(federationId);
  }

  @Get(':versionId')
  @Roles('admin', 'auditor')
  @ApiOperation({
    summary: "A model version's metadata; 'current' names the federation's current model",
  })
  async get(@Param('federationId') federationId: string, @Param('versionId') versionId: string) {
    return this.resolve(federationId, versionId);
  }

  @Get(':versionId/weights')
  @Roles('admin', 'auditor')
  @ApiProduces('application/octet-stream')
  @ApiOperation({
    summary:
      'Download the weights: little-endian float32, in the order of the model spec (X-Model-Hash is SHA-256)',
  })
  async weights(
    @Param('federationId') federationId: string,
    @Param('versionId') versionId: string,
    @Res() res: Response,
  ): Promise<void> {
    const version = await this.resolve(federationId, versionId);
    const weights = await this.models.weights(version.id);
    res.setHeader('Content-Type', 'application/octet-stream');
    res.setHeader('X-Model-Hash', version.hash);
    res.setHeader('X-Model-Version', version.id);
    res.setHeader('X-Num-Params', String(version.numParams));
    res.setHeader('Content-Disposition', `attachment; filename="model-${version.id}.f32"`);
    res.end(Buffer.from(float32ToBytes(weights)));
  }

  private async resolve(federationId: string, versionId: string) {
    const fed = await this.federations.get(federationId);
    const id = versionId === 'current' ? fed.currentModelVersionId : versionId;
    const version = id ? await this.models.find(federationId, id) : null;
    if (!version)
      throw new ApiError(
        'NOT_FOUND',
        `no model version ${versionId} in federation ${federationId}`,
      );
    return version;
  }
}
