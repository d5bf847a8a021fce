import { MlError } from '@confide/ml';
import { ErrorCode, ProtocolError } from '@confide/protocol';
import { isSecAggError } from '@confide/secure-aggregation';

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
  return e instanceof MlError ? ErrorCode.SCHEMA_MISMATCH : ErrorCode.INTERNAL;
}

/** An error's message, with the secure-aggregation library's own code in front of it. */
export function describe(e: unknown): string {
  return isSecAggError(e) ? `${e.code}: ${e.message}` : (e as Error).message;
}

/** The part of a round a refusal declines. */
export type Stage = 'statistics' | 'training' | 'evaluation';
