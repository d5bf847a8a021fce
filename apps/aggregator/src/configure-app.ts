import type { INestApplication } from '@nestjs/common';
import { WsAdapter } from '@nestjs/platform-ws';
import type { WebSocketServer } from 'ws';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import { ApiExceptionFilter } from './common/exception.filter';
import { CONFIG, type AggregatorConfig } from './common/tokens';
import { DashboardAssets } from './dashboard/dashboard-assets.service';
import { dashboardFallback } from './dashboard/dashboard.controller';
import { AuthFailureLimiter } from './net/auth-failure-limiter';
import { authFailureMiddleware } from './net/auth-failure.middleware';
import { MetricsService } from './observability/metrics.service';

/**
 * Nest's ws adapter, less its logging of every client's socket errors with a stack trace: anyone
 * can cause those (an oversized frame, a bad handshake), and FlGateway handles and counts them.
 * Errors of the server itself are still logged.
 */
class SiteSocketAdapter extends WsAdapter {
  override bindErrorHandler(server: WebSocketServer): WebSocketServer {
    server.on('error', (err: Error) => this.logger.error(err));
    return server;
  }
}

/** Everything main.ts and the e2e harness both need: ws adapter, error filter, OpenAPI, body limits. */
export function configureApp(app: INestApplication, log: (line: string) => void): void {
  // Site messages are routed by FlGateway itself: the adapter's parser drops every frame.
  app.useWebSocketAdapter(new SiteSocketAdapter(app, { messageParser: () => undefined }));
  app.useGlobalFilters(new ApiExceptionFilter(log));
  const config = app.get<AggregatorConfig>(CONFIG);
  // First, so a limited address is answered before any token is looked up. Wall time, not the
  // injected clock: a test clock that stands still must not lock an address out for good.
  app.use(
    authFailureMiddleware(
      new AuthFailureLimiter(config.authFailureLimit, config.authFailureWindowMs),
      config.clientAddresses,
      app.get(MetricsService),
    ),
  );
  app.use(dashboardFallback(app.get(DashboardAssets)));
  const doc = SwaggerModule.createDocument(
    app,
    new DocumentBuilder()
      .setTitle('Confide aggregator')
      .setDescription(
        'REST API for admins and auditors. Sites speak the WebSocket protocol at /v1/fl. Send an API token as a bearer token.',
      )
      .setVersion('1')
      .addBearerAuth()
      .build(),
  );
  SwaggerModule.setup('api/docs', app, doc, { jsonDocumentUrl: 'api/docs/json' });
}
