import { randomBytes } from 'node:crypto';
import {
  decodeFrame,
  ErrorCode,
  MAX_CONTROL_BYTES,
  parameterLimit,
  parseJsonText,
  parseServerMessage,
  ProtocolError,
  signLogin,
  toBase64,
  type IdentityKeyPair,
  type MessageOf,
  type ServerMessage,
} from '@confide/protocol';
import type { ServerTrust } from './server-trust';

/**
 * Decodes a message from the aggregator and checks that it is signed with the pinned key (the
 * challenge carries its own proof, checked when it is handled); throws on anything else, so neither
 * a relay nor a replay from another aggregator can configure a round.
 */
export function readServerMessage(
  data: Buffer,
  isBinary: boolean,
  trust: ServerTrust,
): { msg: ServerMessage; vector: Float32Array | null } {
  let raw: unknown;
  let vector: Float32Array | null = null;
  if (isBinary) {
    const frame = decodeFrame(data, parameterLimit);
    if (!(frame.vector instanceof Float32Array))
      throw new ProtocolError(ErrorCode.MALFORMED_MESSAGE, 'expected float32');
    raw = frame.header;
    vector = frame.vector;
  } else {
    if (data.length > MAX_CONTROL_BYTES) throw new ProtocolError(ErrorCode.FRAME_TOO_LARGE);
    raw = parseJsonText(data.toString('utf8'));
  }
  const type = (raw as { type?: unknown } | null)?.type;
  if (type !== 'challenge' && !trust.verify(raw as Record<string, unknown>)) {
    throw new ProtocolError(
      ErrorCode.BAD_SERVER_SIGNATURE,
      `${String(type)} is not signed with the aggregator's pinned key`,
    );
  }
  return { msg: parseServerMessage(raw), vector };
}

/**
 * The wait before reconnect attempt `attempt` (0 first): capped exponential backoff with jitter, so
 * sites that lost the same aggregator do not all come back at the same instant.
 */
export function reconnectDelay(
  attempt: number,
  o: { reconnectDelayMs?: number; maxBackoffMs?: number },
): number {
  const cap = o.maxBackoffMs ?? 30_000;
  const ceiling = Math.min(cap, (o.reconnectDelayMs ?? 1000) * 2 ** Math.min(attempt, 30));
  return ceiling / 2 + (Math.random() * ceiling) / 2;
}

/**
 * The login that answers a (verified) challenge, with a fresh nonce of the site's own: the signed
 * welcome must echo it, so a recorded challenge and welcome replayed by a relay cannot pass for a login.
 */
export function loginAnswer(
  challenge: MessageOf<ServerMessage, 'challenge'>,
  identity: IdentityKeyPair,
  federationId: string,
): { message: Record<string, unknown>; clientNonce: string } {
  const signature = signLogin(
    identity,
    challenge.serverId,
    challenge.nonce,
    federationId,
    challenge.serverKey,
  );
  const clientNonce = toBase64(randomBytes(32));
  return {
    clientNonce,
    message: {
      type: 'login',
      federationId,
      publicKey: identity.publicKey,
      nonce: challenge.nonce,
      clientNonce,
      signature,
      client: 'confide-node/0.2',
    },
  };
}
