import { HttpException, HttpStatus } from '@nestjs/common';

/** REST error codes (protocol codes live in @confide/protocol). */
export type ApiErrorCode =
  | 'VALIDATION_FAILED'
  | 'NOT_FOUND'
  | 'CONFLICT'
  | 'UNAUTHENTICATED'
  | 'FORBIDDEN'
  | 'INVALID_STATE';

const STATUS: { [K in ApiErrorCode]: HttpStatus } = {
  VALIDATION_FAILED: HttpStatus.BAD_REQUEST,
  NOT_FOUND: HttpStatus.NOT_FOUND,
  CONFLICT: HttpStatus.CONFLICT,
  UNAUTHENTICATED: HttpStatus.UNAUTHORIZED,
  FORBIDDEN: HttpStatus.FORBIDDEN,
  INVALID_STATE: HttpStatus.CONFLICT,
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
