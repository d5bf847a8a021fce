import { open } from 'node:fs/promises';

/**
 * Appends `text` to the file at `path` (created 0600) and fsyncs it before resolving: what a site
 * records before something leaves it must survive a crash right after.
 */
export async function appendDurably(path: string, text: string): Promise<void> {
  const f = await open(path, 'a', 0o600);
  try {
    await f.write(text);
    await f.sync();
  } finally {
    await f.close();
  }
}
