import { UsageError } from './command';

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 };

/**
 * Seconds in a duration such as `30m`, `12h`, `90d` (units s, m, h, d, w; one whole number and one
 * unit); a usage error naming `--option` otherwise.
 */
export function parseDuration(raw: string, option: string): number {
  const m = /^(\d{1,9})([smhdw])$/.exec(raw.trim());
  const n = m ? Number(m[1]) : NaN;
  if (!m || n <= 0) {
    throw new UsageError(
      `--${option} must be a duration such as 30m, 12h or 90d (a positive whole number and one of the units s, m, h, d, w); got "${raw}"`,
    );
  }
  return n * UNIT_SECONDS[m[2]!]!;
}
