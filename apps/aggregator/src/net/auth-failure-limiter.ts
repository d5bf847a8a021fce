/** Tracked addresses above which those with no failure inside the window are forgotten. */
const PRUNE_ABOVE = 10_000;
/** Hard bound on tracked addresses: the oldest are dropped past it (an attacker with many addresses). */
const MAX_TRACKED = 100_000;

/**
 * Failed authentications per client address in a sliding window: after `limit` of them within
 * `windowMs`, the address is refused until the oldest leaves the window.
 */
export class AuthFailureLimiter {
  private readonly failures = new Map<string, number[]>();

  constructor(
    readonly limit: number,
    readonly windowMs: number,
    private readonly now: () => number = Date.now,
  ) {
    if (!Number.isInteger(limit) || limit < 1) {
      throw new RangeError(
        `the failed-authentication limit must be a positive integer; got ${limit}`,
      );
    }
    if (!Number.isFinite(windowMs) || windowMs <= 0) {
      throw new RangeError(`the failed-authentication window must be positive; got ${windowMs} ms`);
    }
  }

  /** How long `key` must wait before it may try again, in ms; 0 when it may try now. */
  retryAfterMs(key: string): number {
    const times = this.recent(key);
    if (times.length < this.limit) return 0;
    return Math.max(1, times[times.length - this.limit]! + this.windowMs - this.now());
  }

  /** Records one failed authentication from `key`. */
  recordFailure(key: string): void {
    const times = this.recent(key);
    times.push(this.now());
    // Only the last `limit` failures decide when the address may try again.
    if (times.length > this.limit) times.splice(0, times.length - this.limit);
    this.failures.delete(key);
    this.failures.set(key, times);
    if (this.failures.size > PRUNE_ABOVE) this.prune();
  }

  /** Addresses tracked now. */
  get size(): number {
    return this.failures.size;
  }

  private recent(key: string): number[] {
    const times = this.failures.get(key);
    if (!times) return [];
    const from = this.now() - this.windowMs;
    while (times.length > 0 && times[0]! <= from) times.shift();
    if (times.length === 0) this.failures.delete(key);
    return times;
  }

  private prune(): void {
    for (const key of [...this.failures.keys()]) this.recent(key);
    // Map order is the order of last failure: the first keys are the stalest.
    for (const key of this.failures.keys()) {
      if (this.failures.size <= MAX_TRACKED) break;
      this.failures.delete(key);
    }
  }
}
