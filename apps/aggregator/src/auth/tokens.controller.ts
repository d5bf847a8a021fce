import { Body, Controller, Get, HttpCode, Inject, Param, Post, Req } from '@nestjs/common';
import { ApiBody, ApiOperation, ApiTags } from '@nestjs/swagger';
import { z } from 'zod';
import { AuthService, TOKEN_LIFETIME_SECONDS } from './auth.service';
import { actorOf, Roles, type AuthedRequest } from './roles.guard';
import { parseInput } from '../common/validation';

const createTokenSchema = z
  .object({
    role: z.enum(['admin', 'auditor']),
    label: z.string().min(1).max(200).default('api token'),
    expiresInSeconds: z
      .number()
      .int()
      .min(TOKEN_LIFETIME_SECONDS.min)
      .max(TOKEN_LIFETIME_SECONDS.max)
      .optional(),
  })
  .strict();

@ApiTags('tokens')
@Controller('api/v1/tokens')
export class TokensController {
  constructor(@Inject(AuthService) private readonly auth: AuthService) {}

  @Post()
  @HttpCode(201)
  @Roles('admin')
  @ApiOperation({
    summary: 'Create an API token; the token is returned once and stored only as a hash',
  })
  @ApiBody({
    schema: {
      type: 'object',
      required: ['role'],
      properties: {
        role: { type: 'string', enum: ['admin', 'auditor'] },
        label: { type: 'string' },
        expiresInSeconds: {
          type: 'integer',
          minimum: TOKEN_LIFETIME_SECONDS.min,
          maximum: TOKEN_LIFETIME_SECONDS.max,
          description: 'lifetime from now; absent: valid until revoked',
        },
      },
    },
  })
  async create(@Body() body: unknown, @Req() req: AuthedRequest) {
    const input = parseInput(createTokenSchema, body);
    const { token, row } = await this.auth.createToken(
      input.role,
      input.label,
      actorOf(req),
      input.expiresInSeconds,
    );
    return { ...row, token };
  }

  @Get()
  @Roles('admin')
  @ApiOperation({
    summary:
      'List tokens (never the secrets): id, role, label, createdAt, expiresAt, lastUsedAt (to the minute), revokedAt',
  })
  list() {
    return this.auth.list();
  }

  @Post(':id/revoke')
  @HttpCode(200)
  @Roles('admin')
  @ApiOperation({
    summary:
      'Revoke a token at once (its open live-event streams end too); revoking it again changes nothing. The last usable admin token cannot be revoked (409).',
  })
  revoke(@Param('id') id: string, @Req() req: AuthedRequest) {
    return this.auth.revoke(id, actorOf(req));
  }
}
