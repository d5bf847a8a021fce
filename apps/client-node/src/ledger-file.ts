import { readFile } from 'node:fs/promises';
import { parseLocalLedger, serializeLocalEntry, type LedgerEntry } from '@confide/privacy-ledger';
import type { LocalLedgerStore } from '@confide/site-runtime';
import { appendDurably } from './durable-append';

/** Name of a site's local ledger, beside its identity key. */
export const LEDGER_FILE = 'ledger.jsonl';

/**
 * A site's signed local ledger as a JSON-lines file: one receipt per line, appended and fsynced before
 * the update it charges is sent, so a crash can lose an update but never a charge.
 */
export function fileLedgerStore(path: string): LocalLedgerStore {
  return {
    async load(): Promise<LedgerEntry[]> {
      let text: string;
      try {
        text = await readFile(path, 'utf8');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
        throw e;
      }
      return parseLocalLedger(text);
    },
    async append(entry: LedgerEntry): Promise<void> {
      await appendDurably(path, serializeLocalEntry(entry)); // one line, its newline included
    },
  };
}
