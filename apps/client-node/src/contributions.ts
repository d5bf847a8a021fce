import { readFile } from 'node:fs/promises';
import type { ContributionStore } from '@confide/site-runtime';
import { appendDurably } from './durable-append';

export type { ContributionStore };

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
