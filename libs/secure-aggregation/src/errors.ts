/**
 * Error codes of the secure-aggregation protocol. Every refusal names one, so the aggregator and the
 * client node can map it to a protocol error frame and a person can tell a bug from an attack.
 */
export type SecAggErrorCode =
  | 'BAD_INPUT'
  | 'BAD_PARAMS'
  | 'WRONG_STATE'
  | 'UNKNOWN_SITE'
  | 'DUPLICATE_SITE'
  | 'BAD_SIGNATURE'
  | 'SUBSTITUTED_KEY'
  | 'BAD_KEY'
  | 'SESSION_MISMATCH'
  | 'REPLAYED_SHARE'
  | 'MISDIRECTED_SHARE'
  | 'DUPLICATE_SHARE'
  | 'DECRYPTION_FAILED'
  | 'NOT_NEIGHBOUR'
  | 'OVERLAPPING_LISTS'
  | 'INCONSISTENT_LISTS'
  | 'CONSISTENCY_FAILED'
  | 'REPEATED_UNMASK'
  | 'TOO_FEW_SURVIVORS'
  | 'BAD_SHARE'
  | 'BAD_RESPONSE'
  | 'NON_FINITE_INPUT'
  | 'ABORTED';

/**
 * What each code means, for logs and user-facing messages.
 *
 * @example
 * SECAGG_ERROR_MESSAGES.OVERLAPPING_LISTS; // 'the alive and dropped lists overlap: ...'
 */
export const SECAGG_ERROR_MESSAGES: { readonly [K in SecAggErrorCode]: string } = {
  BAD_INPUT: 'an argument or message field is malformed',
  BAD_PARAMS: 'the secure-aggregation parameters are invalid or unsafe',
  WRONG_STATE: 'the call does not fit the current state of the round',
  UNKNOWN_SITE: 'the site is not in the roster of this round',
  DUPLICATE_SITE: 'the site appears twice',
  BAD_SIGNATURE: "the signature does not verify with the site's enrolled identity key",
  SUBSTITUTED_KEY: 'a public key was replaced or reused: the key list cannot be trusted',
  BAD_KEY: 'a public key is invalid (low order) or the key agreement failed',
  SESSION_MISMATCH: 'the message belongs to another session (round, run or model)',
  REPLAYED_SHARE: 'the encrypted share belongs to another session',
  MISDIRECTED_SHARE: 'the encrypted share is not addressed to this site or not from its sender',
  DUPLICATE_SHARE: 'two shares from the same sender',
  DECRYPTION_FAILED: 'the encrypted share does not authenticate',
  NOT_NEIGHBOUR: 'the site is not a neighbour in the sharing graph',
  OVERLAPPING_LISTS:
    'the alive and dropped lists overlap: answering would reveal both shares of a site',
  INCONSISTENT_LISTS: 'the alive and dropped lists do not match what this site knows of the round',
  CONSISTENCY_FAILED: 'the signed survivor lists are missing, invalid or disagree',
  REPEATED_UNMASK: 'this site already answered an unmask request in this round',
  TOO_FEW_SURVIVORS:
    "fewer sites survive than the threshold or a site's own floor (minSurvivors): the round cannot complete",
  BAD_SHARE: 'a reconstructed secret is inconsistent with the advertised key or the field',
  BAD_RESPONSE: 'the unmask response does not answer the request',
  NON_FINITE_INPUT: 'the update contains NaN or Infinity',
  ABORTED: 'the round was aborted',
};

/**
 * An error with a secure-aggregation code; `message` says what happened and what to do.
 *
 * @example
 * throw new SecAggError('TOO_FEW_SURVIVORS', 'only 3 of 5 required sites sent their masked input');
 */
export class SecAggError extends Error {
  constructor(
    public readonly code: SecAggErrorCode,
    message?: string,
  ) {
    super(message ?? SECAGG_ERROR_MESSAGES[code]);
    this.name = 'SecAggError';
  }
}

/**
 * True when `e` is a SecAggError, optionally with the given code.
 *
 * @example
 * try { client.unmask(req); } catch (e) { if (isSecAggError(e, 'OVERLAPPING_LISTS')) alert(); }
 */
export function isSecAggError(e: unknown, code?: SecAggErrorCode): e is SecAggError {
  return e instanceof SecAggError && (code === undefined || e.code === code);
}
