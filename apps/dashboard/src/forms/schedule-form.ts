/** The "schedule rounds" and "start rounds now" forms: checks, body, and time-zone arithmetic. Pure. */

export interface ScheduleFormState {
  cron: string;
  timeZone: string;
  roundsPerTrigger: string;
  /** `YYYY-MM-DDTHH:MM` (an <input type="datetime-local">) read in `timeZone`; empty for no end. */
  endsAt: string;
}

export type ScheduleField = keyof ScheduleFormState;

/** Presets offered next to the cron field. */
export const CRON_PRESETS: Array<{ label: string; cron: string }> = [
  { label: 'Every night at 02:00', cron: '0 2 * * *' },
  { label: 'Every hour', cron: '0 * * * *' },
  { label: 'Weekdays at 06:30', cron: '30 6 * * 1-5' },
  { label: 'Sundays at 03:00', cron: '0 3 * * 0' },
  { label: 'First of the month at 01:00', cron: '0 1 1 * *' },
];

export function isTimeZone(tz: string): boolean {
  if (!tz.trim()) return false;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz.trim() });
    return true;
  } catch {
    return false;
  }
}

/** The UTC instant at which the wall clock in `timeZone` shows `wall` (`YYYY-MM-DDTHH:MM`). */
export function zonedWallTimeToUtc(wall: string, timeZone: string): Date {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?$/.exec(wall);
  if (!m) throw new Error(`not a date and time: "${wall}"`);
  const n = (i: number): number => Number(m[i] ?? 0);
  const asUtc = Date.UTC(n(1), n(2) - 1, n(3), n(4), n(5), n(6));
  // Two passes: the zone's offset at the guess, then at the corrected instant (DST edges).
  let t = asUtc - offsetMs(asUtc, timeZone);
  t = asUtc - offsetMs(t, timeZone);
  return new Date(t);
}

/** How far `timeZone`'s wall clock is ahead of UTC at instant `t`, in ms. */
export function offsetMs(t: number, timeZone: string): number {
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone,
    hourCycle: 'h23',
    year: 'numeric',
    month: 'numeric',
    day: 'numeric',
    hour: 'numeric',
    minute: 'numeric',
    second: 'numeric',
  }).formatToParts(new Date(t));
  const get = (type: string): number => Number(parts.find((p) => p.type === type)?.value ?? 0);
  const wall = Date.UTC(
    get('year'),
    get('month') - 1,
    get('day'),
    get('hour'),
    get('minute'),
    get('second'),
  );
  return wall - Math.floor(t / 1000) * 1000;
}

export function validateScheduleForm(s: ScheduleFormState): Partial<Record<ScheduleField, string>> {
  const e: Partial<Record<ScheduleField, string>> = {};
  const cron = s.cron.trim();
  if (!cron) e.cron = 'required, e.g. "0 2 * * *" for every night at 02:00';
  else if (!cron.startsWith('@') && cron.split(/\s+/).length !== 5) {
    e.cron = `5 fields: minute hour day-of-month month day-of-week (got ${cron.split(/\s+/).length})`;
  }
  if (!isTimeZone(s.timeZone)) e.timeZone = 'an IANA time zone such as Europe/Berlin or UTC';
  const r = s.roundsPerTrigger.trim();
  if (!/^\d+$/.test(r) || Number(r) < 1) e.roundsPerTrigger = 'a whole number, at least 1';
  else if (Number(r) > 100_000) e.roundsPerTrigger = 'at most 100,000';
  if (s.endsAt.trim() && !e.timeZone) {
    try {
      zonedWallTimeToUtc(s.endsAt.trim(), s.timeZone.trim());
    } catch {
      e.endsAt = 'a date and time, or empty for no end';
    }
  }
  return e;
}

/** The POST .../schedules body. */
export function scheduleRequestBody(s: ScheduleFormState): {
  cron: string;
  timeZone: string;
  roundsPerTrigger: number;
  endsAt?: string;
} {
  const body = {
    cron: s.cron.trim(),
    timeZone: s.timeZone.trim(),
    roundsPerTrigger: Number(s.roundsPerTrigger),
  };
  return s.endsAt.trim()
    ? { ...body, endsAt: zonedWallTimeToUtc(s.endsAt.trim(), body.timeZone).toISOString() }
    : body;
}

const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];

/** Plain words for common cron expressions ("every day at 02:00"); null for the rest. */
export function describeCron(cron: string): string | null {
  const c = cron.trim().toLowerCase();
  const alias: Record<string, string> = {
    '@hourly': 'every hour',
    '@daily': 'every day at 00:00',
    '@weekly': 'every Sunday at 00:00',
    '@monthly': 'on the 1st of every month at 00:00',
    '@yearly': 'every 1 January at 00:00',
    '@annually': 'every 1 January at 00:00',
  };
  const named = alias[c];
  if (named) return named;
  const f = c.split(/\s+/);
  if (f.length !== 5) return null;
  const [min, hour, dom, mon, dow] = f as [string, string, string, string, string];
  const num = (x: string): boolean => /^\d+$/.test(x);
  const at = (): string => `${hour.padStart(2, '0')}:${min.padStart(2, '0')}`;
  if (num(min) && hour === '*' && dom === '*' && mon === '*' && dow === '*') {
    return Number(min) === 0 ? 'every hour' : `every hour at minute ${min}`;
  }
  if (!num(min) || !num(hour) || mon !== '*') return null;
  if (dom === '*' && dow === '*') return `every day at ${at()}`;
  if (dom === '*' && dow === '1-5') return `on weekdays at ${at()}`;
  if (dom === '*' && num(dow) && Number(dow) <= 7)
    return `every ${DAYS[Number(dow) % 7]} at ${at()}`;
  if (num(dom) && dow === '*') return `on day ${dom} of every month at ${at()}`;
  return null;
}

/** Problem with "start N rounds now", or null. */
export function roundsProblem(text: string): string | null {
  const t = text.trim();
  if (!/^\d+$/.test(t) || Number(t) < 1) return 'a whole number, at least 1';
  if (Number(t) > 100_000) return 'at most 100,000';
  return null;
}
