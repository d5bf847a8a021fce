/** Why a connection was refused before its challenge: the cap it would have passed. */
export type PendingRefusal = 'pending_logins' | 'pending_logins_per_address';

/**
 * Counts connections that have not logged in yet, in all and per client address, so that nobody
 * without a key can hold more of the aggregator than the caps allow.
 */
export class PendingLogins {
  private readonly perAddress = new Map<string, number>();
  private total = 0;

  constructor(
    readonly maxTotal: number,
    readonly maxPerAddress: number,
  ) {
    for (const [name, v] of [
      ['maxTotal', maxTotal],
      ['maxPerAddress', maxPerAddress],
    ] as const) {
      if (!Number.isInteger(v) || v < 1) {
        throw new RangeError(`${name} must be a positive integer; got ${v}`);
      }
    }
  }

  /** Connections counted now. */
  get size(): number {
    return this.total;
  }

  /** Counts one more connection from `key`, or says which cap it would pass (and counts nothing). */
  admit(key: string): PendingRefusal | null {
    if (this.total >= this.maxTotal) return 'pending_logins';
    const n = this.perAddress.get(key) ?? 0;
    if (n >= this.maxPerAddress) return 'pending_logins_per_address';
    this.perAddress.set(key, n + 1);
    this.total++;
    return null;
  }

  /** Stops counting one connection from `key` (it logged in or closed). */
  release(key: string): void {
    const n = this.perAddress.get(key);
    if (n === undefined) return;
    if (n <= 1) this.perAddress.delete(key);
    else this.perAddress.set(key, n - 1);
    this.total--;
  }
}
