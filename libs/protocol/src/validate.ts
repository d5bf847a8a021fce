import type { z } from 'zod';
import { ErrorCode, ProtocolError } from './errors';
import {
  PROTOCOL_VERSION,
  serverMessageSchema,
  SERVER_MESSAGE_TYPES,
  siteMessageSchema,
  SITE_MESSAGE_TYPES,
  type ServerMessage,
  type SiteMessage,
} from './messages';

/** Human-readable summary of a zod error: `path: problem; ...`. */
export function describeZodError(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((i) => `${i.path.length ? i.path.join('.') : '(message)'}: ${i.message}`)
    .join('; ');
}

function check<T>(
  value: unknown,
  known: ReadonlySet<string>,
  schema: z.ZodType<T>,
  from: string,
): T {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ProtocolError(ErrorCode.MALFORMED_MESSAGE, `${from} message must be a JSON object`);
  }
  const rec = value as Record<string, unknown>;
  if (rec['v'] !== PROTOCOL_VERSION) {
    throw new ProtocolError(
      ErrorCode.UNSUPPORTED_VERSION,
      `protocol version ${JSON.stringify(rec['v'])} is not supported; this peer speaks v${PROTOCOL_VERSION}`,
    );
  }
  if (typeof rec['type'] !== 'string' || !known.has(rec['type'])) {
    throw new ProtocolError(
      ErrorCode.UNKNOWN_MESSAGE_TYPE,
      `unknown message type ${JSON.stringify(rec['type'])}; expected one of ${[...known].join(', ')}`,
    );
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    throw new ProtocolError(
      ErrorCode.MALFORMED_MESSAGE,
      `invalid ${rec['type']} message: ${describeZodError(parsed.error)}`,
    );
  }
  return parsed.data;
}

/** Validates a decoded message from a site; throws ProtocolError with a specific code. */
export function parseSiteMessage(value: unknown): SiteMessage {
  return check(value, SITE_MESSAGE_TYPES, siteMessageSchema, 'site');
}

/** Validates a decoded message from the aggregator; throws ProtocolError with a specific code. */
export function parseServerMessage(value: unknown): ServerMessage {
  return check(value, SERVER_MESSAGE_TYPES, serverMessageSchema, 'server');
}

/** Parses JSON text, mapping syntax errors to MALFORMED_MESSAGE. */
export function parseJsonText(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new ProtocolError(
      ErrorCode.MALFORMED_MESSAGE,
      `message is not valid JSON: ${(e as Error).message}`,
    );
  }
}
