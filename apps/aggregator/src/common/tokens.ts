import type { ServerSigner } from '@confide/protocol';
import type { ClientAddresses } from '../net/client-address';

/** Injection tokens for the aggregator's edges: configuration, database, clock. */
export const CONFIG = Symbol('AggregatorConfig');
export const DATABASE = Symbol('Database');
export const CLOCK = Symbol('Clock');

/** Settings an aggregator instance runs with. */
export interface AggregatorConfig {
  /** Stable id the sites' login signatures are bound to. */
  serverId: string;
  /** The aggregator's Ed25519 identity: signs the challenge and every message sent to a site. */
  signer: ServerSigner;
  /** Whether the aggregator serves TLS itself (https and wss). */
  tls: boolean;
  /** Grace after a site's disconnect before it counts as dropped from the round, in ms. */
  reconnectGraceMs: number;
  /** Websocket heartbeat interval in ms. */
  heartbeatMs: number;
  /** Largest vector a site may send, in elements (the model size is checked separately). */
  maxVectorElements: number;
  /** How long a connection may stay open without logging in, in ms; then it is closed. */
  loginTimeoutMs: number;
  /** Connections not logged in yet, in all: more are refused until some log in or close. */
  maxPendingLogins: number;
  /** Connections not logged in yet from one client address (IPv6: one /64). */
  maxPendingLoginsPerAddress: number;
  /** Whom a request comes from (X-Forwarded-For is believed only from trusted proxies). */
  clientAddresses: ClientAddresses;
  /** Failed REST authentications per client address within the window before 429. */
  authFailureLimit: number;
  authFailureWindowMs: number;
  /** Bearer token that /metrics requires; null leaves /metrics open. */
  metricsToken: string | null;
  /**
   * Worker threads that expand the masks removed when unmasking a secure-aggregation sum, split by
   * vector range; 0 expands them on the event loop.
   */
  maskWorkers: number;
  /** Print informational lines (the CLI's server) or stay quiet (tests, demo). */
  log: (line: string) => void;
}

/** The source of time, injected so deadlines are testable. */
export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };
