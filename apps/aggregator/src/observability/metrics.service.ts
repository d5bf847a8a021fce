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

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'confide_process_' });
  }
}
