/**
 * The round engine (DESIGN section 10): a round runner that composes workflows over the Grid,
 * with the strategy's server step and a store for rounds and models.
 */
export * from './messages';
export * from './round-store';
export * from './round-runner';
export * from './workflows/selection';
export * from './workflows/plain-training';
export * from './workflows/evaluation';
