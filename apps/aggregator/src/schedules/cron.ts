import { CronExpressionParser } from 'cron-parser';

const ALIASES = new Set(['@yearly', '@annually', '@monthly', '@weekly', '@daily', '@hourly']);

/**
 * Checks a 5-field cron expression (minute hour day-of-month month day-of-week) or an alias such as
 * `@daily`; returns what is wrong in words a user can act on, or null.
 */
export function cronProblem(cron: string): string | null {
  const expr = cron.trim();
  if (!expr) return 'the cron expression is empty; e.g. "0 2 * * *" is every night at 02:00';
  if (expr.startsWith('@')) {
    return ALIASES.has(expr.toLowerCase())
      ? null
      : `unknown cron alias "${expr}"; use one of ${[...ALIASES].join(', ')}`;
  }
  const fields = expr.split(/\s+/).length;
  if (fields !== 5) {
    return `a cron expression has 5 fields (minute hour day-of-month month day-of-week), got ${fields} in "${expr}"`;
  }
  try {
    CronExpressionParser.parse(expr, { tz: 'UTC' }).next();
    return null;
  } catch (e) {
    return `invalid cron expression "${expr}": ${(e as Error).message}`;
  }
}

/** The canonical IANA name of a time zone ("europe/berlin" -> "Europe/Berlin"), or null if unknown. */
export function canonicalTimeZone(tz: string): string | null {
  if (!tz.trim()) return null;
  try {
    return new Intl.DateTimeFormat('en-US', { timeZone: tz.trim() }).resolvedOptions().timeZone;
  } catch {
    return null;
  }
}

/** The first time strictly after `after` at which `cron` fires in `timeZone` (DST-aware). */
export function nextTrigger(cron: string, timeZone: string, after: Date): Date {
  return CronExpressionParser.parse(cron.trim(), { tz: timeZone, currentDate: after })
    .next()
    .toDate();
}

/** The next trigger after `after`, or null when it falls on or after `endsAt`. */
export function nextTriggerBefore(
  cron: string,
  timeZone: string,
  after: Date,
  endsAt: Date | null,
): Date | null {
  const next = nextTrigger(cron, timeZone, after);
  return endsAt && next.getTime() >= endsAt.getTime() ? null : next;
}
