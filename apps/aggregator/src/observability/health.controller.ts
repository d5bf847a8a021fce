import { Controller, Get, Header, Inject } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { MetricsService } from './metrics.service';
import { DATABASE } from '../common/tokens';
import type { Database } from '../database/database';
import { SessionRegistry } from '../fl/session-registry';
import { ApiError } from '../common/errors';

@ApiTags('operations')
@Controller()
export class HealthController {
  constructor(
    @Inject(MetricsService) private readonly metrics: MetricsService,
    @Inject(DATABASE) private readonly db: Database,
    @Inject(SessionRegistry) private readonly sessions: SessionRegistry,
  ) {}

  @Get('health')
  @ApiOperation({ summary: 'Liveness and database reachability' })
  async health() {
    try {
      await this.db.manager.query('SELECT 1');
    } catch (e) {
      throw new ApiError('INVALID_STATE', `database unreachable: ${(e as Error).message}`);
    }
    return { status: 'ok', database: this.db.description, connectedSites: this.sessions.size };
  }

  @Get('metrics')
  @Header('Content-Type', 'text/plain; version=0.0.4')
  @ApiOperation({ summary: 'Prometheus metrics' })
  async prometheus(): Promise<string> {
    this.metrics.connectedSites.set(this.sessions.size);
    return this.metrics.registry.metrics();
  }
}
