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
  /** Too many connections are waiting to log in (in all, or from this address): retry later. */
  SERVER_BUSY = 'SERVER_BUSY',
  /** The aggregator's identity key is not the one this site pinned or was given. */
  SERVER_KEY_MISMATCH = 'SERVER_KEY_MISMATCH',
  /** A message from the aggregator is unsigned or its signature does not verify with the pinned key. */
  BAD_SERVER_SIGNATURE = 'BAD_SERVER_SIGNATURE',
  /** A round configuration is stale (its deadline passed) or replays an earlier round. */
  STALE_CONFIGURATION = 'STALE_CONFIGURATION',
  POLICY_TLS = 'POLICY_TLS',
  POLICY_SECURE_AGGREGATION = 'POLICY_SECURE_AGGREGATION',
  POLICY_THREAT_MODEL = 'POLICY_THREAT_MODEL',
  POLICY_GRAPH = 'POLICY_GRAPH',
  POLICY_THRESHOLD = 'POLICY_THRESHOLD',
  POLICY_MIN_SITES_PER_SUM = 'POLICY_MIN_SITES_PER_SUM',
  POLICY_DP_REQUIRED = 'POLICY_DP_REQUIRED',
  POLICY_DP_LEVEL = 'POLICY_DP_LEVEL',
  POLICY_NOISE = 'POLICY_NOISE',
  POLICY_CLIP = 'POLICY_CLIP',
  POLICY_DELTA = 'POLICY_DELTA',
  POLICY_EPSILON_LIMIT = 'POLICY_EPSILON_LIMIT',
  POLICY_MODEL_KIND = 'POLICY_MODEL_KIND',
  POLICY_MODEL_SIZE = 'POLICY_MODEL_SIZE',
  POLICY_REVEAL_OWN_METRICS = 'POLICY_REVEAL_OWN_METRICS',
  POLICY_SAMPLING = 'POLICY_SAMPLING',
  /** A secure sum of values this site already put into another sum, without DP. */
  POLICY_REPEATED_RELEASE = 'POLICY_REPEATED_RELEASE',
  /** A message names another run than the one the round belongs to. */
  WRONG_RUN = 'WRONG_RUN',
  /** A site's claimed weight (record count) is outside the range the round announced. */
  WEIGHT_OUT_OF_RANGE = 'WEIGHT_OUT_OF_RANGE',
  /** A plain update's L2 norm is above the federation's update clip. */
  UPDATE_NORM_EXCEEDED = 'UPDATE_NORM_EXCEEDED',
  /** Evaluation metrics outside their ranges (accuracy, F1, AUC in [0, 1]; loss finite, >= 0). */
  METRICS_OUT_OF_RANGE = 'METRICS_OUT_OF_RANGE',
  /** Feature statistics that no data within the declared bounds could produce. */
  STATISTICS_OUT_OF_RANGE = 'STATISTICS_OUT_OF_RANGE',
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
  [ErrorCode.SERVER_BUSY]:
    'the aggregator has too many connections waiting to log in; retry in a little while',
  [ErrorCode.SERVER_KEY_MISMATCH]:
    "the aggregator's identity key is not the one this site pinned; refusing to talk to it",
  [ErrorCode.BAD_SERVER_SIGNATURE]:
    "the message is not signed with the aggregator's pinned identity key",
  [ErrorCode.STALE_CONFIGURATION]:
    'the round configuration is stale (past its deadline) or replays an earlier round',
  [ErrorCode.POLICY_TLS]: "the site's policy requires TLS to the aggregator",
  [ErrorCode.POLICY_SECURE_AGGREGATION]: "the site's policy requires secure aggregation",
  [ErrorCode.POLICY_THREAT_MODEL]:
    "the round's threat model is weaker than the site's policy allows",
  [ErrorCode.POLICY_GRAPH]: "the round's neighbour graph is weaker than the site's policy allows",
  [ErrorCode.POLICY_THRESHOLD]: "the round's Shamir threshold is below the site's policy minimum",
  [ErrorCode.POLICY_MIN_SITES_PER_SUM]:
    "a sum the site would contribute to could hold fewer sites than its policy's minimum",
  [ErrorCode.POLICY_DP_REQUIRED]: "the site's policy requires differential privacy",
  [ErrorCode.POLICY_DP_LEVEL]: "the round's DP level is not the one the site's policy requires",
  [ErrorCode.POLICY_NOISE]: "the round's noise multiplier is below the site's policy minimum",
  [ErrorCode.POLICY_CLIP]: "the round's clip norm is above the site's policy maximum",
  [ErrorCode.POLICY_DELTA]: "the round's delta is above the site's policy delta",
  [ErrorCode.POLICY_EPSILON_LIMIT]: "the release would pass the site's own epsilon limit",
  [ErrorCode.POLICY_MODEL_KIND]: "the model's kind is not one the site's policy accepts",
  [ErrorCode.POLICY_MODEL_SIZE]: 'the model has more parameters than the site accepts',
  [ErrorCode.POLICY_REVEAL_OWN_METRICS]:
    "the site's policy does not reveal its own metrics outside a secure sum",
  [ErrorCode.POLICY_SAMPLING]: "the round's sampling settings are not ones the site can account",
  [ErrorCode.POLICY_REPEATED_RELEASE]:
    'without DP a site puts the same values into one secure sum only (two could be subtracted)',
  [ErrorCode.WRONG_RUN]: 'the message is for another run than the one the round belongs to',
  [ErrorCode.WEIGHT_OUT_OF_RANGE]:
    "the site's weight (its record count) is outside the range the round allows",
  [ErrorCode.UPDATE_NORM_EXCEEDED]: "the update's L2 norm is above the federation's update clip",
  [ErrorCode.METRICS_OUT_OF_RANGE]: 'the evaluation metrics are outside their possible ranges',
  [ErrorCode.STATISTICS_OUT_OF_RANGE]:
    "the feature statistics are impossible for data within the federation's declared bounds",
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
  ErrorCode.SERVER_KEY_MISMATCH,
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
