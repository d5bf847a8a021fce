import { Injectable } from '@nestjs/common';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Prometheus metrics of one aggregator instance (its own registry, so tests can run several). */
@Injectable()
export class MetricsService {
  readonly registry = new Registry();
  readonly connectedSites = new Gauge({
    name: 'confide_connected_sites',
    help: 'Sites currently connected and logged in',
    registers: [this.registry],
  });
  readonly rounds = new Counter({
    name: 'confide_rounds_total',
    help: 'Rounds ended, by outcome',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly roundDuration = new Histogram({
    name: 'confide_round_duration_seconds',
    help: 'Duration of committed rounds',
    buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900],
    registers: [this.registry],
  });
  readonly bytesReceived = new Counter({
    name: 'confide_bytes_received_total',
    help: 'Bytes received from sites over the protocol socket',
    registers: [this.registry],
  });
  readonly protocolErrors = new Counter({
    name: 'confide_protocol_errors_total',
    help: 'Protocol errors sent to sites, by code',
    labelNames: ['code'] as const,
    registers: [this.registry],
  });

  readonly pendingLogins = new Gauge({
    name: 'confide_pending_logins',
    help: 'Site-protocol connections open but not logged in yet',
    registers: [this.registry],
  });
  readonly connectionsRefused = new Counter({
    name: 'confide_connections_refused_total',
    help: 'Site-protocol connections refused before their challenge, by the cap they would pass',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly closedBeforeLogin = new Counter({
    name: 'confide_connections_closed_before_login_total',
    help: 'Site-protocol connections closed before logging in, by reason (login_timeout, frame_too_large, error)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly authFailures = new Counter({
    name: 'confide_auth_failures_total',
    help: 'REST requests that presented a credential and were answered 401',
    registers: [this.registry],
  });
  readonly authRateLimited = new Counter({
    name: 'confide_auth_rate_limited_total',
    help: 'REST requests refused with 429 after too many failed authentications from their address',
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'confide_process_' });
  }
}
