import {
  type CanActivate,
  type ExecutionContext,
  Inject,
  Injectable,
  SetMetadata,
  applyDecorators,
  UseGuards,
} from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { ApiBearerAuth } from '@nestjs/swagger';
import { AuthService } from './auth.service';
import { ApiError } from '../common/errors';
import type { ApiTokenRow, Role } from '../database/rows';

const ROLES_KEY = 'confide:roles';

/** Requires a bearer token with one of `roles` on a controller or route. */
export function Roles(...roles: Role[]): MethodDecorator & ClassDecorator {
  return applyDecorators(SetMetadata(ROLES_KEY, roles), UseGuards(RolesGuard), ApiBearerAuth());
}

/** Request with the authenticated token attached by the guard. */
export interface AuthedRequest {
  headers: Record<string, string | string[] | undefined>;
  token?: ApiTokenRow;
}

/** Checks the bearer token on every guarded endpoint; the server, not the UI, enforces roles. */
@Injectable()
export class RolesGuard implements CanActivate {
  constructor(
    @Inject(Reflector) private readonly reflector: Reflector,
    @Inject(AuthService) private readonly auth: AuthService,
  ) {}

  async canActivate(ctx: ExecutionContext): Promise<boolean> {
    const roles = this.reflector.getAllAndOverride<Role[] | undefined>(ROLES_KEY, [
      ctx.getHandler(),
      ctx.getClass(),
    ]);
    if (!roles) return true;
    const req = ctx.switchToHttp().getRequest<AuthedRequest>();
    const header = req.headers['authorization'];
    const value = Array.isArray(header) ? header[0] : header;
    const match = value ? /^Bearer\s+(\S+)$/i.exec(value) : null;
    if (!match) {
      throw new ApiError('UNAUTHENTICATED', 'send an API token as "Authorization: Bearer <token>"');
    }
    const token = await this.auth.authenticate(match[1]!);
    if (!roles.includes(token.role)) {
      throw new ApiError(
        'FORBIDDEN',
        `this action needs the ${roles.join(' or ')} role; the token is ${token.role}`,
      );
    }
    req.token = token;
    return true;
  }
}

/** The actor string recorded in admin events for a request. */
export function actorOf(req: AuthedRequest): string {
  return req.token ? `${req.token.role}:${req.token.id}` : 'anonymous';
}
