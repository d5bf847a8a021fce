/** Why a ledger operation refused its input; the message says which field and what to do. */
export enum LedgerErrorCode {
  INVALID_MECHANISM = 'INVALID_MECHANISM',
  INVALID_ENTRY = 'INVALID_ENTRY',
  INVALID_ORDERS = 'INVALID_ORDERS',
  INVALID_ARGUMENT = 'INVALID_ARGUMENT',
  NOT_CANONICAL = 'NOT_CANONICAL',
  INVALID_KEY = 'INVALID_KEY',
  KEY_MISMATCH = 'KEY_MISMATCH',
  ACCOUNTANT_ERROR = 'ACCOUNTANT_ERROR',
  BUDGET_EXCEEDED = 'BUDGET_EXCEEDED',
  INVALID_EXPORT = 'INVALID_EXPORT',
  INVALID_LOCAL_LEDGER = 'INVALID_LOCAL_LEDGER',
}

/** An error of the privacy ledger: a code a script can match and a message a person can act on. */
export class LedgerError extends Error {
  constructor(
    public readonly code: LedgerErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'LedgerError';
  }
}
