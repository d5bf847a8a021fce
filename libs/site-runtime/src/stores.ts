import type { LedgerEntry } from '@confide/privacy-ledger';

/**
 * What a site has put into secure sums without differential privacy, kept so that it never puts the
 * same values into a second sum: an aggregator that unmasks two sums of the same values, one with this
 * site and one that it declares it dropped from, learns this site's values by subtracting them. With
 * DP every release is noised afresh and charged, so a repeat is accounted, not refused.
 *
 * Keys: `statistics/<federation>` (its statistics, once per federation), `evaluation/<model hash>`
 * (its counts for one model), `update/<run>/<round>` (the update of one round configuration).
 */
export interface ContributionStore {
  /** Reads what was recorded before (call once, before `has`). */
  load(): Promise<void>;
  has(key: string): boolean;
  /** Durable (fsync) before it resolves: the values leave only after. */
  add(key: string): Promise<void>;
}

/** Durable storage of a site's local ledger (a port: a file beside the site's key in Node). */
export interface LocalLedgerStore {
  load(): Promise<LedgerEntry[]>;
  /** Appends one entry durably (fsync) before it resolves. */
  append(entry: LedgerEntry): Promise<void>;
}
