/**
 * Error codes of the strategies and their registry, so the API, the CLI and the round engine can tell
 * an unknown strategy from a bad configuration or a combination that cannot work without parsing
 * messages.
 *
 * @example
 * if (e instanceof StrategyError && e.code === StrategyErrorCode.STRATEGY_CONFIG_INVALID) reply400();
 */
export enum StrategyErrorCode {
  /** No strategy of that name is registered. */
  UNKNOWN_STRATEGY = 'UNKNOWN_STRATEGY',
  /** The strategy's configuration does not match its schema. */
  STRATEGY_CONFIG_INVALID = 'STRATEGY_CONFIG_INVALID',
  /** The strategy needs each site's update, but the federation only yields their (secure) sum. */
  STRATEGY_NEEDS_INDIVIDUAL_UPDATES = 'STRATEGY_NEEDS_INDIVIDUAL_UPDATES',
  /** A strategy of that name is already registered, or the definition is malformed. */
  STRATEGY_DEFINITION_INVALID = 'STRATEGY_DEFINITION_INVALID',
  /** Persisted strategy state is malformed or belongs to another strategy or model size. */
  STRATEGY_STATE_INVALID = 'STRATEGY_STATE_INVALID',
  /** The round's updates do not fit the model (length, weight, non-finite values) or are empty. */
  STRATEGY_INPUT_INVALID = 'STRATEGY_INPUT_INVALID',
  /** A robust rule got fewer updates than its guarantee needs (e.g. Krum: n > 2f + 2). */
  STRATEGY_TOO_FEW_UPDATES = 'STRATEGY_TOO_FEW_UPDATES',
}

/**
 * A strategy error; `message` says what was wrong and what is allowed.
 *
 * @example
 * throw new StrategyError(StrategyErrorCode.UNKNOWN_STRATEGY, 'unknown strategy "fedsgd"');
 */
export class StrategyError extends Error {
  constructor(
    readonly code: StrategyErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'StrategyError';
  }
}
