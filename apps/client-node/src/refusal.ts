import { MlError } from '@confide/ml';
import { ErrorCode, ProtocolError } from '@confide/protocol';
import { Refused } from '@confide/site-runtime';
import { isSecAggError } from '@confide/secure-aggregation';
import { LedgerError, LedgerErrorCode } from '@confide/privacy-ledger';

/** The code a round is declined with for an error: its own, or what kind of failure it was. */
export function codeOf(e: unknown): string {
  if (e instanceof Refused || e instanceof ProtocolError) return e.code;
  if (isSecAggError(e)) return ErrorCode.SECAGG_REFUSED;
  // The ledger refuses a receipt past the federation's limit (a site whose own limit is larger).
  if (e instanceof LedgerError && e.code === LedgerErrorCode.BUDGET_EXCEEDED) {
    return ErrorCode.BUDGET_EXCEEDED;
  }
  return e instanceof MlError ? ErrorCode.SCHEMA_MISMATCH : ErrorCode.INTERNAL;
}

/** An error's message, with the secure-aggregation library's own code in front of it. */
export function describe(e: unknown): string {
  return isSecAggError(e) ? `${e.code}: ${e.message}` : (e as Error).message;
}

export { assertModelHash, Refused, type Stage } from '@confide/site-runtime';
