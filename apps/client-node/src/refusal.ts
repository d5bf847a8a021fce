import { MlError } from '@confide/ml';
import { ErrorCode, float32ToBytes, ProtocolError, sha256Hex } from '@confide/protocol';
import { isSecAggError } from '@confide/secure-aggregation';
import { LedgerError, LedgerErrorCode } from '@confide/privacy-ledger';

/** A refusal thrown inside a handler: the round is declined with this code. */
export class Refused extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

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

/** The part of a round a refusal declines. */
export type Stage = 'statistics' | 'training' | 'evaluation';

/** Refuses weights that are not the model whose hash the aggregator signed. */
export function assertModelHash(weights: Float32Array, hash: string): void {
  if (sha256Hex(float32ToBytes(weights)) !== hash) {
    throw new Refused(
      ErrorCode.BAD_SERVER_SIGNATURE,
      "the model's weights do not match the hash the aggregator signed",
    );
  }
}
