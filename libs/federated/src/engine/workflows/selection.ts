import type { Grid } from '../../grid/grid';
import { shuffled } from '../../strategies/random';
import type { UniformRandom } from '../../strategies/types';

/**
 * Waits until at least `minSites` sites are connected, or the deadline passes, or `signal`
 * aborts; returns the sites connected then.
 */
export async function awaitSites<M>(
  grid: Grid<M>,
  minSites: number,
  until: number,
  signal?: AbortSignal,
): Promise<string[]> {
  if (grid.connected().size >= minSites) return [...grid.connected()];
  const wake = new AbortController();
  const stop = grid.onChange(() => {
    if (grid.connected().size >= minSites) wake.abort();
  });
  const onAbort = (): void => wake.abort();
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    await grid.clock.sleep(until - grid.clock.now(), wake.signal);
  } finally {
    stop();
    signal?.removeEventListener('abort', onAbort);
  }
  return [...grid.connected()];
}

/** The aggregator's draw of a round's sites, recorded with the round. */
export interface SiteDraw {
  readonly selected: string[];
  readonly sampling: { fraction: number; eligible: number; drawn: number } | null;
}

/**
 * Client sampling: with `fraction` below 1, a uniform draw of max(minSites, ceil(fraction x n))
 * of the eligible sites (the draw's randomness is injected: a CSPRNG in the aggregator, a seeded
 * one in the simulator); all of them otherwise.
 */
export function drawSites(
  eligible: readonly string[],
  fraction: number,
  minSites: number,
  random: UniformRandom,
): SiteDraw {
  if (!(fraction > 0 && fraction <= 1)) {
    throw new RangeError(`the sampling fraction must be in (0, 1], not ${fraction}`);
  }
  const sorted = [...eligible].sort();
  if (fraction === 1) return { selected: sorted, sampling: null };
  const n = Math.min(sorted.length, Math.max(minSites, Math.ceil(fraction * sorted.length)));
  const selected = shuffled(sorted, random).slice(0, n).sort();
  return { selected, sampling: { fraction, eligible: sorted.length, drawn: n } };
}
