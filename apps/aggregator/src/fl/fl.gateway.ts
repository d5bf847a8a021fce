import { randomBytes, randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { Inject } from '@nestjs/common';
import {
  WebSocketGateway,
  type OnGatewayConnection,
  type OnGatewayDisconnect,
} from '@nestjs/websockets';
import type { WebSocket } from 'ws';
import {
  BINARY_TYPES,
  decodeFrame,
  ERROR_MESSAGES,
  ErrorCode,
  FATAL_CODES,
  MAX_CONTROL_BYTES,
  PROTOCOL_VERSION,
  ProtocolError,
  parseJsonText,
  parseSiteMessage,
  challengeBytes,
  toBase64,
  verifyLogin,
  type SiteMessage,
} from '@confide/protocol';
import { CONFIG, type AggregatorConfig } from '../common/tokens';
import { FederationRepository } from '../federations/federation.repository';
import { SiteRepository } from '../sites/site.repository';
import { RoundOrchestrator } from '../rounds/round-orchestrator.service';
import { MetricsService } from '../observability/metrics.service';
import { SessionRegistry, type SiteSession } from './session-registry';

/** Hard cap on one websocket message; the per-model limit is checked in the frame decoder. */
export const MAX_WS_PAYLOAD = 512 * 1024 * 1024;

interface Connection {
  id: string;
  ws: WebSocket;
  nonce: string;
  session: SiteSession | null;
  loggingIn: boolean;
  alive: boolean;
}

/**
 * The site protocol on `/v1/fl`: challenge-response login with the site's Ed25519 key, then round
 * messages. Nest's own message routing is bypassed (the adapter's parser drops everything) because the
 * protocol mixes JSON and binary frames and answers every bad input with a coded error frame.
 */
@WebSocketGateway({ path: '/v1/fl', maxPayload: MAX_WS_PAYLOAD, perMessageDeflate: false })
export class FlGateway implements OnGatewayConnection, OnGatewayDisconnect {
  private readonly connections = new Map<WebSocket, Connection>();
  /** Nonces already answered: a login that reuses one is refused as a replay. */
  private readonly usedNonces = new Set<string>();
  private heartbeat: NodeJS.Timeout | null = null;
  /**
   * Signatures of messages sent to many sites as one object (a round's advertisements, its end):
   * signed once, not once per recipient.
   */
  private readonly signatures = new WeakMap<object, string>();

  constructor(
    @Inject(CONFIG) private readonly config: AggregatorConfig,
    @Inject(SessionRegistry) private readonly sessions: SessionRegistry,
    @Inject(RoundOrchestrator) private readonly orchestrator: RoundOrchestrator,
    @Inject(FederationRepository) private readonly federations: FederationRepository,
    @Inject(SiteRepository) private readonly sites: SiteRepository,
    @Inject(MetricsService) private readonly metrics: MetricsService,
  ) {}

  handleConnection(ws: WebSocket, _req?: IncomingMessage): void {
    const conn: Connection = {
      id: randomUUID(),
      ws,
      nonce: toBase64(randomBytes(32)),
      session: null,
      loggingIn: false,
      alive: true,
    };
    this.connections.set(ws, conn);
    this.ensureHeartbeat();
    ws.on('pong', () => (conn.alive = true));
    ws.on('message', (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => {
      const buf = Array.isArray(data)
        ? Buffer.concat(data)
        : Buffer.isBuffer(data)
          ? data
          : Buffer.from(data);
      this.metrics.bytesReceived.inc(buf.length);
      void this.onMessage(conn, buf, isBinary).catch((e: unknown) => this.fail(conn, e, undefined));
    });
    ws.on('error', () => undefined);
    const signer = this.config.signer;
    this.send(conn, {
      type: 'challenge',
      id: randomUUID(),
      nonce: conn.nonce,
      serverId: this.config.serverId,
      serverKey: signer.publicKey,
      sig: signer.signBytes(challengeBytes(this.config.serverId, conn.nonce, signer.publicKey)),
    });
  }

  handleDisconnect(ws: WebSocket): void {
    const conn = this.connections.get(ws);
    this.connections.delete(ws);
    if (conn?.session) {
      this.sessions.remove(conn.session);
      this.metrics.connectedSites.set(this.sessions.size);
    }
    if (this.connections.size === 0 && this.heartbeat) {
      clearInterval(this.heartbeat);
      this.heartbeat = null;
    }
  }

  private async onMessage(conn: Connection, buf: Buffer, isBinary: boolean): Promise<void> {
    let msg: SiteMessage;
    let vector: Float32Array | Uint32Array | null = null;
    let refId: string | undefined;
    try {
      if (isBinary) {
        const frame = decodeFrame(buf, this.config.maxVectorElements);
        refId = typeof frame.header['id'] === 'string' ? frame.header['id'] : undefined;
        msg = parseSiteMessage(frame.header);
        if (!BINARY_TYPES.has(msg.type)) {
          throw new ProtocolError(
            ErrorCode.MALFORMED_MESSAGE,
            `${msg.type} must be sent as JSON text, not binary`,
          );
        }
        vector = frame.vector;
      } else {
        if (buf.length > MAX_CONTROL_BYTES) {
          throw new ProtocolError(
            ErrorCode.FRAME_TOO_LARGE,
            `control message of ${buf.length} bytes exceeds the ${MAX_CONTROL_BYTES}-byte limit`,
          );
        }
        const value = parseJsonText(buf.toString('utf8'));
        refId =
          typeof (value as { id?: unknown })?.id === 'string'
            ? (value as { id: string }).id
            : undefined;
        msg = parseSiteMessage(value);
        if (BINARY_TYPES.has(msg.type)) {
          throw new ProtocolError(
            ErrorCode.MALFORMED_MESSAGE,
            `${msg.type} must be sent as a binary frame`,
          );
        }
      }
      if (msg.type === 'login') {
        await this.login(conn, msg);
        return;
      }
      if (!conn.session) throw new ProtocolError(ErrorCode.NOT_AUTHENTICATED);
      await this.orchestrator.handleSiteMessage(conn.session, msg, vector, buf.length);
    } catch (e) {
      this.fail(conn, e, refId);
    }
  }

  private async login(
    conn: Connection,
    msg: Extract<SiteMessage, { type: 'login' }>,
  ): Promise<void> {
    if (conn.session || conn.loggingIn) throw new ProtocolError(ErrorCode.ALREADY_AUTHENTICATED);
    if (msg.nonce !== conn.nonce) {
      throw new ProtocolError(
        this.usedNonces.has(msg.nonce) ? ErrorCode.NONCE_REPLAYED : ErrorCode.NONCE_MISMATCH,
        this.usedNonces.has(msg.nonce)
          ? 'this login answers a challenge that was already used; log in on a fresh connection'
          : undefined,
      );
    }
    if (this.usedNonces.has(msg.nonce)) throw new ProtocolError(ErrorCode.NONCE_REPLAYED);
    this.usedNonces.add(msg.nonce);
    if (this.usedNonces.size > 100_000) this.usedNonces.clear();
    conn.loggingIn = true;
    try {
      const fed = await this.federations.findById(msg.federationId);
      if (!fed)
        throw new ProtocolError(
          ErrorCode.UNKNOWN_FEDERATION,
          `no federation with id ${msg.federationId}`,
        );
      const site = await this.sites.findByKey(fed.id, msg.publicKey);
      if (!site) {
        throw new ProtocolError(
          ErrorCode.UNKNOWN_SITE,
          `no site with this public key is enrolled in federation "${fed.name}"; ask an administrator to enrol it`,
        );
      }
      const serverKey = this.config.signer.publicKey;
      if (
        !verifyLogin(
          msg.publicKey,
          msg.signature,
          this.config.serverId,
          msg.nonce,
          fed.id,
          serverKey,
        )
      ) {
        throw new ProtocolError(ErrorCode.BAD_SIGNATURE);
      }
      if (site.status === 'revoked') throw new ProtocolError(ErrorCode.SITE_REVOKED);
      if (site.status !== 'approved') throw new ProtocolError(ErrorCode.SITE_NOT_APPROVED);
      if (conn.ws.readyState !== conn.ws.OPEN) return;
      const session: SiteSession = {
        connectionId: conn.id,
        siteId: site.id,
        siteName: site.name,
        federationId: fed.id,
        sendJson: (m) => this.sendShared(conn, m),
        sendBinary: (frame) => {
          if (conn.ws.readyState === conn.ws.OPEN) conn.ws.send(frame, { binary: true });
        },
        close: (code, message) => {
          // Fatal only where retrying cannot succeed (revoked, replaced): a shutdown is not, so sites reconnect.
          this.sendError(conn, code, message, undefined, FATAL_CODES.has(code));
          conn.ws.close(4000, code);
        },
      };
      conn.session = session;
      this.send(conn, {
        type: 'welcome',
        id: randomUUID(),
        siteId: site.id,
        siteName: site.name,
        federationId: fed.id,
        clientNonce: msg.clientNonce,
      });
      this.sessions.add(session);
      this.metrics.connectedSites.set(this.sessions.size);
      this.config.log(`site ${site.name} connected`);
    } finally {
      conn.loggingIn = false;
    }
  }

  private fail(conn: Connection, e: unknown, refId: string | undefined): void {
    const err =
      e instanceof ProtocolError
        ? e
        : new ProtocolError(
            ErrorCode.INTERNAL,
            `internal error: ${(e as Error)?.message ?? String(e)}`,
          );
    if (!(e instanceof ProtocolError))
      this.config.log(`protocol handler failed: ${(e as Error)?.stack ?? String(e)}`);
    const fatal = FATAL_CODES.has(err.code);
    this.sendError(conn, err.code, err.message, refId, fatal);
    if (fatal) conn.ws.close(4000, err.code);
  }

  private sendError(
    conn: Connection,
    code: ErrorCode,
    message: string,
    refId: string | undefined,
    fatal: boolean,
  ): void {
    this.metrics.protocolErrors.inc({ code });
    this.send(conn, {
      type: 'error',
      id: randomUUID(),
      code,
      message: message || ERROR_MESSAGES[code],
      ...(refId ? { refId } : {}),
      fatal,
    });
  }

  /** Sends a message of this connection's own, signed with the aggregator's key (`sig`). */
  private send(conn: Connection, body: Record<string, unknown>): void {
    if (conn.ws.readyState !== conn.ws.OPEN) return;
    const msg = { v: PROTOCOL_VERSION, ...body };
    conn.ws.send(JSON.stringify('sig' in body ? msg : this.config.signer.sign(msg)));
  }

  /**
   * Sends a message object that may go to many sites unchanged (it carries its own `v`): its
   * signature is computed once per object.
   */
  private sendShared(conn: Connection, message: object): void {
    if (conn.ws.readyState !== conn.ws.OPEN) return;
    let sig = this.signatures.get(message);
    if (sig === undefined) {
      sig = this.config.signer.sign(message).sig;
      this.signatures.set(message, sig);
    }
    conn.ws.send(JSON.stringify({ ...message, sig }));
  }

  private ensureHeartbeat(): void {
    if (this.heartbeat) return;
    this.heartbeat = setInterval(() => {
      for (const conn of this.connections.values()) {
        if (!conn.alive) {
          conn.ws.terminate();
          continue;
        }
        conn.alive = false;
        conn.ws.ping();
      }
    }, this.config.heartbeatMs);
    this.heartbeat.unref();
  }

  /** Closes every connection (shutdown). */
  closeAll(): void {
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = null;
    for (const conn of this.connections.values()) conn.ws.terminate();
  }
}
