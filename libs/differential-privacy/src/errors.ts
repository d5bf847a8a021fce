/**
 * Error codes of the differential-privacy library, so callers (the aggregator, the client node, the
 * CLI) can tell a bad parameter from a budget that cannot be met without parsing messages.
 *
 * @example
 * if (e instanceof DpError && e.code === DpErrorCode.BUDGET_TOO_LOW) refuseRound();
 */
export enum DpErrorCode {
  INVALID_SAMPLING_RATE = 'INVALID_SAMPLING_RATE',
  INVALID_NOISE_MULTIPLIER = 'INVALID_NOISE_MULTIPLIER',
  INVALID_STEPS = 'INVALID_STEPS',
  INVALID_DELTA = 'INVALID_DELTA',
  INVALID_EPSILON = 'INVALID_EPSILON',
  INVALID_ORDERS = 'INVALID_ORDERS',
  INVALID_RDP = 'INVALID_RDP',
  INVALID_VECTOR = 'INVALID_VECTOR',
  INVALID_CLIP_NORM = 'INVALID_CLIP_NORM',
  INVALID_ARGUMENT = 'INVALID_ARGUMENT',
  /** No noise multiplier up to the search limit meets the target epsilon. */
  BUDGET_TOO_LOW = 'BUDGET_TOO_LOW',
}

/**
 * An invalid input or an unreachable target; `message` names the parameter and what is allowed.
 *
 * @example
 * try { clipL2(new Float32Array(2), -1); } catch (e) { if (e instanceof DpError) console.log(e.code); }
 */
export class DpError extends Error {
  constructor(
    readonly code: DpErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'DpError';
  }
}

// ------------------------------------------------------------------------------------------------
// Shared input checks. Each names the parameter as the caller knows it.

/** q as a number in [0, 1], or INVALID_SAMPLING_RATE. */
export function checkSamplingRate(q: unknown, name = 'q'): number {
  if (typeof q !== 'number' || !Number.isFinite(q) || q < 0 || q > 1) {
    throw new DpError(
      DpErrorCode.INVALID_SAMPLING_RATE,
      `${name} (sampling rate) must be a number in [0, 1]; got ${String(q)}`,
    );
  }
  return q;
}

/** sigma as a finite number >= 0, or INVALID_NOISE_MULTIPLIER. */
export function checkNoiseMultiplier(sigma: unknown, name = 'sigma'): number {
  if (typeof sigma !== 'number' || !Number.isFinite(sigma) || sigma < 0) {
    throw new DpError(
      DpErrorCode.INVALID_NOISE_MULTIPLIER,
      `${name} (noise multiplier) must be a finite number >= 0; got ${String(sigma)}`,
    );
  }
  return sigma;
}

/** steps as a non-negative safe integer, or INVALID_STEPS. */
export function checkSteps(steps: unknown, name = 'steps'): number {
  if (typeof steps !== 'number' || !Number.isSafeInteger(steps) || steps < 0) {
    throw new DpError(
      DpErrorCode.INVALID_STEPS,
      `${name} must be a non-negative integer; got ${String(steps)}`,
    );
  }
  return steps;
}

/** delta as a number in (0, 1), or INVALID_DELTA. */
export function checkDelta(delta: unknown, name = 'delta'): number {
  if (typeof delta !== 'number' || !Number.isFinite(delta) || delta <= 0 || delta >= 1) {
    throw new DpError(
      DpErrorCode.INVALID_DELTA,
      `${name} must be a number in (0, 1); got ${String(delta)}`,
    );
  }
  return delta;
}

/** x as a finite number > 0, or `code`. */
export function checkPositive(
  x: unknown,
  name: string,
  code = DpErrorCode.INVALID_ARGUMENT,
): number {
  if (typeof x !== 'number' || !Number.isFinite(x) || x <= 0) {
    throw new DpError(code, `${name} must be a finite number > 0; got ${String(x)}`);
  }
  return x;
}

/** A sample count: an integer in [0, 2^31 - 1], or INVALID_ARGUMENT. */
export function checkCount(n: unknown, name = 'n'): number {
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0 || n > 2 ** 31 - 1) {
    throw new DpError(
      DpErrorCode.INVALID_ARGUMENT,
      `${name} must be an integer in [0, 2^31 - 1]; got ${String(n)}`,
    );
  }
  return n;
}
