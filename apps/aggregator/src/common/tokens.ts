import type { ServerSigner } from '@confide/protocol';

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
