// The simulator's fixed settings and choices, without its heavy imports: the CLI lists them in
// `--help` without loading tfjs.

/** How the training rows are dealt to the virtual sites. */
export type PartitionKind = 'iid' | 'dirichlet' | 'shards';

export const PARTITION_KINDS: readonly PartitionKind[] = ['iid', 'dirichlet', 'shards'];

/** The fewest training rows a virtual site holds. */
export const MIN_SITE_ROWS = 10;

/** What a Byzantine virtual site sends instead of its honest update. */
export type AttackKind = 'scale' | 'sign-flip' | 'noise';

export const ATTACK_KINDS: readonly AttackKind[] = ['scale', 'sign-flip', 'noise'];

/** `scale`: the honest delta times this. */
export const SCALE_FACTOR = 100;
/**
 * `sign-flip`: the honest delta times this. A plain -1 would only slow FedAvg down (8 honest against 2
 * flipped sites still average to 0.6 of the honest step); -10 turns the average against the honest
 * sites, the attack robust aggregation exists for.
 */
export const SIGN_FLIP_FACTOR = -10;
/** `noise`: Gaussian noise whose standard deviation is this times the honest delta's RMS. */
export const NOISE_FACTOR = 10;

/** How each attack is made, in words, for help and reports. */
export const ATTACK_DESCRIPTIONS: Readonly<Record<AttackKind, string>> = {
  scale: `the honest delta x ${SCALE_FACTOR}`,
  'sign-flip': `the honest delta x ${SIGN_FLIP_FACTOR}`,
  noise: `Gaussian noise, sd ${NOISE_FACTOR} x the honest delta's per-coordinate RMS`,
};
