import { type DynamicModule, Module } from '@nestjs/common';
import { ApiTokenRepository } from './auth/api-token.repository';
import { AuthService } from './auth/auth.service';
import { RolesGuard } from './auth/roles.guard';
import { TokensController } from './auth/tokens.controller';
import { AdminEventRepository } from './common/admin-event.repository';
import { CLOCK, CONFIG, DATABASE, type AggregatorConfig, type Clock } from './common/tokens';
import { DashboardAssets } from './dashboard/dashboard-assets.service';
import { DashboardController } from './dashboard/dashboard.controller';
import { LiveEventsController } from './dashboard/live-events.controller';
import { LiveEventsService } from './dashboard/live-events.service';
import { MeController } from './dashboard/me.controller';
import type { Database } from './database/database';
import { LedgerRepository } from './privacy/ledger.repository';
import { LedgerService } from './privacy/ledger.service';
import { PrivacyController } from './privacy/privacy.controller';
import { FederationRepository } from './federations/federation.repository';
import { FederationsController } from './federations/federations.controller';
import { FederationsService } from './federations/federations.service';
import { StrategiesController } from './federations/strategies.controller';
import { FlGateway } from './fl/fl.gateway';
import { SessionRegistry } from './fl/session-registry';
import { ModelVersionRepository } from './models/model-version.repository';
import { ModelsController } from './models/models.controller';
import { HealthController } from './observability/health.controller';
import { MetricsService } from './observability/metrics.service';
import { RoundEvents } from './rounds/round-events';
import { RoundOrchestrator } from './rounds/round-orchestrator.service';
import { RoundSumsService } from './rounds/round-sums.service';
import { RoundRepository } from './rounds/round.repository';
import { RoundsController } from './rounds/rounds.controller';
import { ScheduleRepository } from './schedules/schedule.repository';
import { Scheduler } from './schedules/scheduler.service';
import { SchedulesController } from './schedules/schedules.controller';
import { SchedulesService } from './schedules/schedules.service';
import { SiteRepository } from './sites/site.repository';
import { SitesController } from './sites/sites.controller';
import { SitesService } from './sites/sites.service';

@Module({})
export class AppModule {
  /** The aggregator, wired to an open database, its settings and a clock. */
  static forRoot(deps: { config: AggregatorConfig; db: Database; clock: Clock }): DynamicModule {
    return {
      module: AppModule,
      controllers: [
        FederationsController,
        StrategiesController,
        SitesController,
        RoundsController,
        ModelsController,
        TokensController,
        HealthController,
        MeController,
        LiveEventsController,
        SchedulesController,
        DashboardController,
        PrivacyController,
      ],
      providers: [
        { provide: CONFIG, useValue: deps.config },
        { provide: DATABASE, useValue: deps.db },
        { provide: CLOCK, useValue: deps.clock },
        ApiTokenRepository,
        AdminEventRepository,
        FederationRepository,
        SiteRepository,
        RoundRepository,
        ModelVersionRepository,
        AuthService,
        RolesGuard,
        FederationsService,
        SitesService,
        SessionRegistry,
        MetricsService,
        RoundOrchestrator,
        RoundSumsService,
        FlGateway,
        RoundEvents,
        LiveEventsService,
        ScheduleRepository,
        SchedulesService,
        Scheduler,
        DashboardAssets,
        LedgerRepository,
        LedgerService,
      ],
    };
  }
}
