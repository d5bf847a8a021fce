import { Controller, Get, Req } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { Roles, type AuthedRequest } from '../auth/roles.guard';

@ApiTags('tokens')
@Controller('api/v1/me')
export class MeController {
  @Get()
  @Roles('admin', 'auditor')
  @ApiOperation({ summary: "The calling token's role, id and label (the dashboard's sign-in)" })
  me(@Req() req: AuthedRequest) {
    const t = req.token!;
    return { role: t.role, tokenId: t.id, label: t.label };
  }
}
