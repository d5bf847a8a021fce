import type { Clock } from './grid';

interface Sleeper {
  readonly at: number;
  readonly seq: number;
  readonly wake: () => void;
}

/**
 * A clock that moves only when told: `advance(ms)` wakes the sleepers due, in deadline order, and
 * lets the code they resume run before moving on, so a whole round runs in milliseconds.
 *
 * @example
 * const clock = new FakeClock();
 * const done = grid.collect({ from, accept, until: clock.now() + 30_000 });
 * await clock.advance(30_000);
 */
export class FakeClock implements Clock {
  private time: number;
  private seq = 0;
  private sleepers: Sleeper[] = [];

  constructor(start = 0) {
    this.time = start;
  }

  now(): number {
    return this.time;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (ms <= 0 || signal?.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const sleeper: Sleeper = {
        at: this.time + ms,
        seq: this.seq++,
        wake: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      const onAbort = (): void => {
        this.sleepers = this.sleepers.filter((s) => s !== sleeper);
        resolve();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.sleepers.push(sleeper);
    });
  }

  /** Sleepers not yet woken (a test's check that nothing is left waiting). */
  get pending(): number {
    return this.sleepers.length;
  }

  /**
   * Moves time forward by `ms`, stopping at each sleeper's deadline to wake it and let the code it
   * resumes run (and perhaps sleep again) before time moves on.
   */
  async advance(ms: number): Promise<void> {
    if (!(ms >= 0)) throw new RangeError(`cannot move a clock by ${ms} ms`);
    const end = this.time + ms;
    await settle();
    for (;;) {
      const next = this.nextDue(end);
      if (!next) break;
      this.sleepers = this.sleepers.filter((s) => s !== next);
      this.time = next.at;
      next.wake();
      await settle();
    }
    this.time = end;
    await settle();
  }

  private nextDue(end: number): Sleeper | undefined {
    let best: Sleeper | undefined;
    for (const s of this.sleepers) {
      if (s.at > end) continue;
      if (!best || s.at < best.at || (s.at === best.at && s.seq < best.seq)) best = s;
    }
    return best;
  }
}

/** Lets queued promise callbacks run: a macrotask turn drains every microtask before it. */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
