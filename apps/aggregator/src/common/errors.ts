import { HttpException, HttpStatus } from '@nestjs/common';

/** REST error codes (protocol codes live in @confide/protocol). */
export type ApiErrorCode =
  | 'VALIDATION_FAILED'
  | 'NOT_FOUND'
  | 'CONFLICT'
  | 'UNAUTHENTICATED'
  | 'FORBIDDEN'
  | 'INVALID_STATE'
  | 'UNKNOWN_STRATEGY'
  | 'STRATEGY_CONFIG_INVALID'
  | 'STRATEGY_NEEDS_INDIVIDUAL_UPDATES';

const STATUS: { [K in ApiErrorCode]: HttpStatus } = {
  VALIDATION_FAILED: HttpStatus.BAD_REQUEST,
  NOT_FOUND: HttpStatus.NOT_FOUND,
  CONFLICT: HttpStatus.CONFLICT,
  UNAUTHENTICATED: HttpStatus.UNAUTHORIZED,
  FORBIDDEN: HttpStatus.FORBIDDEN,
  INVALID_STATE: HttpStatus.CONFLICT,
  UNKNOWN_STRATEGY: HttpStatus.BAD_REQUEST,
  STRATEGY_CONFIG_INVALID: HttpStatus.BAD_REQUEST,
  STRATEGY_NEEDS_INDIVIDUAL_UPDATES: HttpStatus.BAD_REQUEST,
};

/** An API error rendered as `{ error: { code, message } }` with the matching HTTP status. */
export class ApiError extends HttpException {
  constructor(
    readonly code: ApiErrorCode,
    message: string,
  ) {
    super({ error: { code, message } }, STATUS[code]);
  }
}
