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
import { addressKey } from '../net/client-address';
import { PendingLogins } from '../net/pending-logins';
import { SessionRegistry, type SiteSession } from './session-registry';
import { PRE_LOGIN_MAX_FRAME, setMessageLimit, siteMessageLimit } from './frame-limits';

export { MAX_WS_PAYLOAD } from './frame-limits';

/**
 * How long a connection closed before login may take to answer the close handshake before its
 * socket is destroyed: a peer that never answers must not keep its pending slot.
 */
const CLOSE_GRACE_MS = 1000;

interface Connection {
  id: string;
  ws: WebSocket;
  nonce: string;
  session: SiteSession | null;
  loggingIn: boolean;
  alive: boolean;
  /** The key its client address is counted under while it has not logged in; null once it has. */
  pendingKey: string | null;
  loginTimer: NodeJS.Timeout | null;
  /** Most elements one of its binary frames may carry (its federation's largest vector once logged in). */
  maxElements: number;
}

/**
 * The site protocol on `/v1/fl`: challenge-response login with the site's Ed25519 key, then round
 * messages. Nest's own message routing is bypassed (the adapter's parser drops everything) because the
 * protocol mixes JSON and binary frames and answers every bad input with a coded error frame.
 *
 * Before login a connection gets nothing for free: messages of at most PRE_LOGIN_MAX_FRAME (ws's
 * limit for every connection, raised per connection after login to its federation's model), a login
 * within `loginTimeoutMs`, capped numbers of such connections in all and per address, and any error
 * closes it.
 */
@WebSocketGateway({ path: '/v1/fl', maxPayload: PRE_LOGIN_MAX_FRAME, perMessageDeflate: false })
export class FlGateway implements OnGatewayConnection, OnGatewayDisconnect {
  private readonly connections = new Map<WebSocket, Connection>();
  private readonly pending: PendingLogins;
  /** Nonces already answered: a login that reuses one is refused as a replay. */
  private readonly usedNonces = new Set<string>();
  private heartbeat: NodeJS.Timeout | null = null;
  /**
   * Messages sent to many sites as one object (a round's advertisements, its end), signed and
   * encoded once, not once per recipient: the advertisements of a 1,000-site round are ~200 KB.
   */
  private readonly encoded = new WeakMap<object, Buffer>();

  constructor(
    @Inject(CONFIG) private readonly config: AggregatorConfig,
    @Inject(SessionRegistry) private readonly sessions: SessionRegistry,
    @Inject(RoundOrchestrator) private readonly orchestrator: RoundOrchestrator,
    @Inject(FederationRepository) private readonly federations: FederationRepository,
    @Inject(SiteRepository) private readonly sites: SiteRepository,
    @Inject(MetricsService) private readonly metrics: MetricsService,
  ) {
    this.pending = new PendingLogins(config.maxPendingLogins, config.maxPendingLoginsPerAddress);
  }

  handleConnection(ws: WebSocket, req?: IncomingMessage): void {
    const key = addressKey(
      this.config.clientAddresses.of(req?.socket.remoteAddress, req?.headers['x-forwarded-for']),
    );
    const refusal = this.pending.admit(key);
    if (refusal) {
      this.metrics.connectionsRefused.inc({ reason: refusal });
      const message =
        refusal === 'pending_logins'
          ? `${this.pending.maxTotal} connections are already waiting to log in; retry in a little while`
          : `${this.pending.maxPerAddress} connections from this address are already waiting to log in; retry in a little while`;
      ws.on('error', () => undefined);
      this.sendRefusal(ws, ErrorCode.SERVER_BUSY, message);
      closeSoon(ws, 1013, ErrorCode.SERVER_BUSY);
      return;
    }
    const conn: Connection = {
      id: randomUUID(),
      ws,
      nonce: toBase64(randomBytes(32)),
      session: null,
      loggingIn: false,
      alive: true,
      pendingKey: key,
      loginTimer: null,
      maxElements: Math.floor(PRE_LOGIN_MAX_FRAME / 4),
    };
    this.connections.set(ws, conn);
    this.metrics.pendingLogins.set(this.pending.size);
    this.ensureHeartbeat();
    conn.loginTimer = setTimeout(() => {
      conn.loginTimer = null;
      if (conn.session || conn.pendingKey === null) return;
      this.metrics.closedBeforeLogin.inc({ reason: 'login_timeout' });
      this.closeBeforeLogin(
        conn,
        ErrorCode.TIMEOUT,
        `no login within ${this.config.loginTimeoutMs / 1000} s of the challenge; connect again to log in`,
        undefined,
      );
    }, this.config.loginTimeoutMs);
    conn.loginTimer.unref();
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
    ws.on('error', (e: Error & { code?: string }) => {
      // ws refused a frame over this connection's limit from its header alone, before reading it,
      // and is closing the connection with 1009.
      if (e.code !== 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') return;
      if (conn.session) {
        this.metrics.protocolErrors.inc({ code: ErrorCode.FRAME_TOO_LARGE });
        this.config.log(
          `site ${conn.session.siteName} sent a message over its federation's limit; connection closed`,
        );
      } else {
        this.metrics.closedBeforeLogin.inc({ reason: 'frame_too_large' });
        this.endPending(conn);
      }
      closeSoon(ws, 1009, 'message too big');
    });
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
    if (conn) this.endPending(conn);
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
        const frame = decodeFrame(buf, Math.min(conn.maxElements, this.config.maxVectorElements));
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
      this.sessions.messageReceived(conn.session, msg, vector, buf.length);
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
      const serverKey = this.config.signer.publicKey;
      // The signature first, over the federation id the site sent: until a peer proves it holds
      // the key it presents, every answer is the same whether that key or federation is known.
      if (
        !verifyLogin(
          msg.publicKey,
          msg.signature,
          this.config.serverId,
          msg.nonce,
          msg.federationId,
          serverKey,
        )
      ) {
        throw new ProtocolError(ErrorCode.BAD_SIGNATURE);
      }
      const fed = await this.federations.findById(msg.federationId);
      const site =
        fed && fed.id === msg.federationId
          ? await this.sites.findByKey(fed.id, msg.publicKey)
          : null;
      // An unknown federation and a key not enrolled in it get one answer, naming nothing the
      // peer did not send: a key of one's own must not be a way to list federations.
      if (!fed || !site) {
        throw new ProtocolError(
          ErrorCode.UNKNOWN_SITE,
          'no site with this public key is enrolled in the federation this login names; check the federation id and ask an administrator to enrol the key',
        );
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
        sendSigned: (text) => {
          if (conn.ws.readyState === conn.ws.OPEN) conn.ws.send(text, { binary: false });
        },
        close: (code, message) => {
          // Fatal only where retrying cannot succeed (revoked, replaced): a shutdown is not, so sites reconnect.
          this.sendError(conn, code, message, undefined, FATAL_CODES.has(code));
          conn.ws.close(4000, code);
        },
      };
      const limit = siteMessageLimit(fed.modelSpec);
      setMessageLimit(conn.ws, limit.bytes);
      conn.maxElements = limit.elements;
      conn.session = session;
      this.endPending(conn);
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
    if (!conn.session) {
      if (conn.ws.readyState !== conn.ws.OPEN) return;
      this.metrics.closedBeforeLogin.inc({ reason: 'error' });
      this.closeBeforeLogin(conn, err.code, err.message, refId);
      return;
    }
    const fatal = FATAL_CODES.has(err.code);
    this.sendError(conn, err.code, err.message, refId, fatal);
    if (fatal) conn.ws.close(4000, err.code);
  }

  /**
   * Any error before login closes the connection: someone without a key gets one answer per
   * connection. `fatal` still says whether retrying can succeed (a site retries after a timeout).
   */
  private closeBeforeLogin(
    conn: Connection,
    code: ErrorCode,
    message: string,
    refId: string | undefined,
  ): void {
    this.sendError(conn, code, message, refId, FATAL_CODES.has(code));
    this.endPending(conn);
    closeSoon(conn.ws, 4000, code);
  }

  /** Stops counting a connection as waiting to log in (it logged in, or is going). */
  private endPending(conn: Connection): void {
    if (conn.loginTimer) clearTimeout(conn.loginTimer);
    conn.loginTimer = null;
    if (conn.pendingKey === null) return;
    this.pending.release(conn.pendingKey);
    conn.pendingKey = null;
    this.metrics.pendingLogins.set(this.pending.size);
  }

  /** The error that refuses a connection before its challenge (signed like every message of ours). */
  private sendRefusal(ws: WebSocket, code: ErrorCode, message: string): void {
    this.metrics.protocolErrors.inc({ code });
    if (ws.readyState !== ws.OPEN) return;
    const body = {
      v: PROTOCOL_VERSION,
      type: 'error',
      id: randomUUID(),
      code,
      message,
      fatal: false,
    };
    ws.send(JSON.stringify(this.config.signer.sign(body)));
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
   * Sends a message object that may go to many sites unchanged (it carries its own `v`): signed and
   * encoded once per object, the same bytes to every site (as a text frame).
   */
  private sendShared(conn: Connection, message: object): void {
    if (conn.ws.readyState !== conn.ws.OPEN) return;
    let data = this.encoded.get(message);
    if (data === undefined) {
      data = Buffer.from(JSON.stringify(this.config.signer.sign(message)), 'utf8');
      this.encoded.set(message, data);
    }
    conn.ws.send(data, { binary: false });
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

  /** Connections open but not logged in yet. */
  get pendingLogins(): number {
    return this.pending.size;
  }

  /** Closes every connection (shutdown). */
  closeAll(): void {
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = null;
    for (const conn of this.connections.values()) {
      if (conn.loginTimer) clearTimeout(conn.loginTimer);
      conn.ws.terminate();
    }
  }
}

/** Starts the close handshake, and destroys the socket if the peer has not answered it in time. */
function closeSoon(ws: WebSocket, code: number, reason: string): void {
  if (ws.readyState === ws.OPEN) ws.close(code, reason);
  setTimeout(() => ws.terminate(), CLOSE_GRACE_MS).unref();
}
