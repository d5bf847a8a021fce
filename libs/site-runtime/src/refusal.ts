import { ErrorCode, float32ToBytes, sha256Hex } from '@confide/protocol';

/** A refusal thrown inside a handler: the round is declined with this code. */
export class Refused extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
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
