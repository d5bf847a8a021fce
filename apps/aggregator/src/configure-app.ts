import type { INestApplication } from '@nestjs/common';
import { WsAdapter } from '@nestjs/platform-ws';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import { ApiExceptionFilter } from './common/exception.filter';
import { DashboardAssets } from './dashboard/dashboard-assets.service';
import { dashboardFallback } from './dashboard/dashboard.controller';

/** Everything main.ts and the e2e harness both need: ws adapter, error filter, OpenAPI, body limits. */
export function configureApp(app: INestApplication, log: (line: string) => void): void {
  // Site messages are routed by FlGateway itself: the adapter's parser drops every frame.
  app.useWebSocketAdapter(new WsAdapter(app, { messageParser: () => undefined }));
  app.useGlobalFilters(new ApiExceptionFilter(log));
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
