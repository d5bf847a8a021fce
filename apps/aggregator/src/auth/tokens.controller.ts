import { Body, Controller, Get, HttpCode, Inject, Post, Req } from '@nestjs/common';
import { ApiBody, ApiOperation, ApiTags } from '@nestjs/swagger';
import { z } from 'zod';
import { AuthService } from './auth.service';
import { actorOf, Roles, type AuthedRequest } from './roles.guard';
import { parseInput } from '../common/validation';

const createTokenSchema = z
  .object({
    role: z.enum(['admin', 'auditor']),
    label: z.string().min(1).max(200).default('api token'),
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
      },
    },
  })
  async create(@Body() body: unknown, @Req() req: AuthedRequest) {
    const input = parseInput(createTokenSchema, body);
    const { token, row } = await this.auth.createToken(input.role, input.label, actorOf(req));
    return { ...row, token };
  }

  @Get()
  @Roles('admin')
  @ApiOperation({ summary: 'List tokens (never the secrets)' })
  list() {
    return this.auth.list();
  }
}
