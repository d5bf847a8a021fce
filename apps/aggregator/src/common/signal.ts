/** A level-less notifier: `wait` resolves at the next `notify` or after `ms`, whichever is first. */
export class Signal {
  private waiters: Array<() => void> = [];

  notify(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.waiters = this.waiters.filter((f) => f !== done);
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, ms));
      this.waiters.push(done);
    });
  }
}

/**
 * Waits until `ready()` holds or `deadline` passes, re-checking at every notify of `signal` and at
 * least every second (a deadline given as a function may move meanwhile). Returns whether `ready()`
 * held.
 */
export async function waitFor(
  signal: Signal,
  ready: () => boolean,
  deadline: number | (() => number),
  now: () => number = Date.now,
  stopped: () => boolean = () => false,
): Promise<boolean> {
  const end = typeof deadline === 'number' ? () => deadline : deadline;
  while (!ready()) {
    if (stopped()) return false;
    const left = end() - now();
    if (left <= 0) return ready();
    await signal.wait(Math.min(left, 1000));
  }
  return true;
}
