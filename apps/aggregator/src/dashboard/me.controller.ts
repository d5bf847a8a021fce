import { Controller, Get, Inject, Req } from '@nestjs/common';
import { CONFIG, type AggregatorConfig } from '../common/tokens';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { Roles, type AuthedRequest } from '../auth/roles.guard';

@ApiTags('tokens')
@Controller('api/v1/me')
export class MeController {
  constructor(@Inject(CONFIG) private readonly config: AggregatorConfig) {}

  @Get()
  @Roles('admin', 'auditor')
  @ApiOperation({
    summary:
      "The calling token's role, id and label (the dashboard's sign-in), and the aggregator's identity key that sites pin",
  })
  me(@Req() req: AuthedRequest) {
    const t = req.token!;
    return {
      role: t.role,
      tokenId: t.id,
      label: t.label,
      server: {
        publicKey: this.config.signer.publicKey,
        fingerprint: this.config.signer.fingerprint,
        tls: this.config.tls,
      },
    };
  }
}
