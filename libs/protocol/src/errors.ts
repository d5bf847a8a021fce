/**
 * One error-code enum for the aggregator and the client node, so every protocol and API error has a
 * name a script can match and a message a person can act on.
 */
export enum ErrorCode {
  MALFORMED_MESSAGE = 'MALFORMED_MESSAGE',
  UNKNOWN_MESSAGE_TYPE = 'UNKNOWN_MESSAGE_TYPE',
  UNSUPPORTED_VERSION = 'UNSUPPORTED_VERSION',
  FRAME_TOO_LARGE = 'FRAME_TOO_LARGE',
  WRONG_VECTOR_LENGTH = 'WRONG_VECTOR_LENGTH',
  NON_FINITE_VALUES = 'NON_FINITE_VALUES',
  NOT_AUTHENTICATED = 'NOT_AUTHENTICATED',
  ALREADY_AUTHENTICATED = 'ALREADY_AUTHENTICATED',
  UNKNOWN_SITE = 'UNKNOWN_SITE',
  SITE_REVOKED = 'SITE_REVOKED',
  SITE_NOT_APPROVED = 'SITE_NOT_APPROVED',
  BAD_SIGNATURE = 'BAD_SIGNATURE',
  NONCE_REPLAYED = 'NONCE_REPLAYED',
  NONCE_MISMATCH = 'NONCE_MISMATCH',
  UNKNOWN_FEDERATION = 'UNKNOWN_FEDERATION',
  DUPLICATE_CONNECTION = 'DUPLICATE_CONNECTION',
  UNEXPECTED_MESSAGE = 'UNEXPECTED_MESSAGE',
  SCHEMA_MISMATCH = 'SCHEMA_MISMATCH',
  ROUND_ABORTED = 'ROUND_ABORTED',
  BUDGET_EXCEEDED = 'BUDGET_EXCEEDED',
  RECEIPT_INVALID = 'RECEIPT_INVALID',
  SECAGG_REFUSED = 'SECAGG_REFUSED',
  TIMEOUT = 'TIMEOUT',
  INTERNAL = 'INTERNAL',
}

/** What each code means, for people reading logs, CLI output and API errors. */
export const ERROR_MESSAGES: { readonly [K in ErrorCode]: string } = {
  [ErrorCode.MALFORMED_MESSAGE]: 'the message is not a valid protocol message',
  [ErrorCode.UNKNOWN_MESSAGE_TYPE]: 'the message type is not part of the protocol',
  [ErrorCode.UNSUPPORTED_VERSION]: 'the protocol version is not supported by this peer',
  [ErrorCode.FRAME_TOO_LARGE]: 'the frame is larger than the limit for its kind',
  [ErrorCode.WRONG_VECTOR_LENGTH]: "the vector's length does not match the model",
  [ErrorCode.NON_FINITE_VALUES]: 'the vector contains NaN or Infinity',
  [ErrorCode.NOT_AUTHENTICATED]: 'log in before sending round messages',
  [ErrorCode.ALREADY_AUTHENTICATED]: 'this connection is already logged in',
  [ErrorCode.UNKNOWN_SITE]: 'no site with this public key is enrolled in the federation',
  [ErrorCode.SITE_REVOKED]: 'this site has been revoked by an administrator',
  [ErrorCode.SITE_NOT_APPROVED]: 'this site is enrolled but not yet approved by an administrator',
  [ErrorCode.BAD_SIGNATURE]: 'the signature does not verify with the enrolled public key',
  [ErrorCode.NONCE_REPLAYED]: 'this login nonce was already used',
  [ErrorCode.NONCE_MISMATCH]: 'the login does not answer the challenge issued on this connection',
  [ErrorCode.UNKNOWN_FEDERATION]: 'no federation with this id exists',
  [ErrorCode.DUPLICATE_CONNECTION]: 'this site connected again; the older connection is closed',
  [ErrorCode.UNEXPECTED_MESSAGE]: 'the message does not fit the current state of the round',
  [ErrorCode.SCHEMA_MISMATCH]: "the site's data does not match the federation's model",
  [ErrorCode.ROUND_ABORTED]: 'the round was aborted',
  [ErrorCode.BUDGET_EXCEEDED]: "the release would exceed the site's privacy budget",
  [ErrorCode.RECEIPT_INVALID]: 'the privacy receipt does not verify',
  [ErrorCode.SECAGG_REFUSED]: 'a secure-aggregation message was refused',
  [ErrorCode.TIMEOUT]: 'the peer did not answer in time',
  [ErrorCode.INTERNAL]: 'internal error',
};

/** Codes after which the aggregator closes the connection: retrying the same thing cannot succeed. */
export const FATAL_CODES: ReadonlySet<ErrorCode> = new Set([
  ErrorCode.UNKNOWN_SITE,
  ErrorCode.SITE_REVOKED,
  ErrorCode.SITE_NOT_APPROVED,
  ErrorCode.BAD_SIGNATURE,
  ErrorCode.NONCE_REPLAYED,
  ErrorCode.NONCE_MISMATCH,
  ErrorCode.UNKNOWN_FEDERATION,
  ErrorCode.UNSUPPORTED_VERSION,
  ErrorCode.DUPLICATE_CONNECTION,
]);

/** An error with a protocol code; `message` says what happened and what to do. */
export class ProtocolError extends Error {
  constructor(
    public readonly code: ErrorCode,
    message?: string,
  ) {
    super(message ?? ERROR_MESSAGES[code]);
    this.name = 'ProtocolError';
  }
}

/** True when `x` is one of the codes of the enum. */
export function isErrorCode(x: unknown): x is ErrorCode {
  return typeof x === 'string' && Object.prototype.hasOwnProperty.call(ERROR_MESSAGES, x);
}
