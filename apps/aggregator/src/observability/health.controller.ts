import { createHash, timingSafeEqual } from 'node:crypto';
import { Controller, Get, Header, Inject, Req, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiTags } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { MetricsService } from './metrics.service';
import { CONFIG, DATABASE, type AggregatorConfig } from '../common/tokens';
import type { Database } from '../database/database';
import { SessionRegistry } from '../fl/session-registry';
import { FlGateway } from '../fl/fl.gateway';
import { AuthService } from '../auth/auth.service';
import { ApiError } from '../common/errors';

/** The bearer token of a request; undefined without an Authorization header. */
function bearerToken(req: Request): string | undefined {
  const header = req.headers['authorization'];
  if (header === undefined) return undefined;
  const match = /^Bearer\s+(\S+)$/i.exec(header);
  if (!match) {
    throw new ApiError('UNAUTHENTICATED', 'send the token as "Authorization: Bearer <token>"');
  }
  return match[1]!;
}

/** Constant-time comparison of two secrets of any length. */
function sameSecret(a: string, b: string): boolean {
  const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();
  return timingSafeEqual(digest(a), digest(b));
}

@ApiTags('operations')
@Controller()
export class HealthController {
  constructor(
    @Inject(CONFIG) private readonly config: AggregatorConfig,
    @Inject(MetricsService) private readonly metrics: MetricsService,
    @Inject(DATABASE) private readonly db: Database,
    @Inject(SessionRegistry) private readonly sessions: SessionRegistry,
    @Inject(FlGateway) private readonly gateway: FlGateway,
    @Inject(AuthService) private readonly auth: AuthService,
  ) {}

  /**
   * Anyone (a load balancer, a container's health check) learns ok or not; where the data lives,
   * which database host it uses and why it is down are for holders of an API token.
   */
  @Get('health')
  @ApiBearerAuth()
  @ApiOperation({
    summary:
      'Liveness and database reachability: { status } to anyone (503 when the database is unreachable); with an API token also the database, its error and connection counts',
  })
  async health(@Req() req: Request, @Res({ passthrough: true }) res: Response) {
    const token = bearerToken(req);
    let error: string | null = null;
    try {
      await this.db.manager.query('SELECT 1');
    } catch (e) {
      error = (e as Error).message;
      this.config.log(`health check: database unreachable: ${error}`);
    }
    const status = error === null ? 'ok' : 'unavailable';
    if (error !== null) res.status(503);
    // Without a database no token can be checked: the answer stays the public one.
    if (token === undefined || error !== null) return { status };
    if (!(await this.auth.authenticate(token))) {
      throw new ApiError('UNAUTHENTICATED', 'the API token is unknown or revoked');
    }
    return {
      status,
      database: this.db.description,
      connectedSites: this.sessions.size,
      pendingLogins: this.gateway.pendingLogins,
    };
  }

  @Get('metrics')
  @Header('Content-Type', 'text/plain; version=0.0.4')
  @ApiBearerAuth()
  @ApiOperation({
    summary: 'Prometheus metrics (with --metrics-token, only for "Authorization: Bearer <it>")',
  })
  async prometheus(@Req() req: Request): Promise<string> {
    const expected = this.config.metricsToken;
    if (expected !== null) {
      const token = bearerToken(req);
      if (token === undefined || !sameSecret(token, expected)) {
        throw new ApiError(
          'UNAUTHENTICATED',
          'this aggregator serves its metrics only with its metrics token: "Authorization: Bearer <metrics token>"',
        );
      }
    }
    this.metrics.connectedSites.set(this.sessions.size);
    return this.metrics.registry.metrics();
  }
}
