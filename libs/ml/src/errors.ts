/** What went wrong in `libs/ml`, as a stable code that callers can map to a protocol error. */
export type MlErrorCode =
  | 'INVALID_MODEL_SPEC'
  | 'CSV_SCHEMA'
  | 'CSV_PARSE'
  | 'DATASET'
  | 'WEIGHTS_LENGTH'
  | 'MODEL_MISMATCH'
  | 'STATS_MISMATCH'
  | 'PARTITION'
  | 'INVALID_ARGUMENT';

/** Error thrown by `libs/ml`: a code from {@link MlErrorCode} and a message a user can act on. */
export class MlError extends Error {
  constructor(
    public readonly code: MlErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'MlError';
  }
}
