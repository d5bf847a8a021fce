import { readFile } from 'node:fs/promises';
import { appendDurably } from './durable-append';

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

/** The file beside a site's key that holds its contribution record. */
export const CONTRIBUTIONS_FILE = 'contributions.log';

/** A ContributionStore in a file of one key per line, appended and fsynced. */
export function fileContributionStore(path: string): ContributionStore {
  const keys = new Set<string>();
  return {
    async load() {
      try {
        for (const line of (await readFile(path, 'utf8')).split('\n')) if (line) keys.add(line);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
          throw new Error(`cannot read the contribution record ${path}: ${(e as Error).message}`);
        }
      }
    },
    has: (key) => keys.has(key),
    async add(key) {
      if (keys.has(key)) return;
      await appendDurably(path, `${key}\n`);
      keys.add(key);
    },
  };
}

/** A ContributionStore in memory (tests, the demo). */
export function memoryContributionStore(): ContributionStore {
  const keys = new Set<string>();
  return {
    load: () => Promise.resolve(),
    has: (key) => keys.has(key),
    add: (key) => {
      keys.add(key);
      return Promise.resolve();
    },
  };
}
