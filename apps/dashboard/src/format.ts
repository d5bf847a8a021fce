/** Formatting shared by the pages; pure functions. */

/** A metric such as accuracy with 4 decimals, or an em dash when absent. */
export function metric(x: number | null | undefined, digits = 4): string {
  return x === null || x === undefined || !Number.isFinite(x) ? '—' : x.toFixed(digits);
}

/** 12,345 */
export function int(x: number): string {
  return x.toLocaleString('en-US');
}

/** "3.2 s", "850 ms", "2 min 5 s" */
export function duration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const m = Math.floor(s / 60);
  const rest = Math.round(s - m * 60);
  if (m < 60) return rest ? `${m} min ${rest} s` : `${m} min`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

/** "in 3 h", "5 min ago", "just now", relative to `now`. */
export function relative(at: Date | string | null | undefined, now: Date = new Date()): string {
  if (!at) return '—';
  const t = typeof at === 'string' ? new Date(at) : at;
  const diff = t.getTime() - now.getTime();
  const abs = Math.abs(diff);
  if (abs < 45_000) return 'just now';
  const units: Array<[number, string]> = [
    [86_400_000, 'd'],
    [3_600_000, 'h'],
    [60_000, 'min'],
  ];
  for (const [size, name] of units) {
    if (abs >= size) {
      const n = Math.round(abs / size);
      return diff > 0 ? `in ${n} ${name}` : `${n} ${name} ago`;
    }
  }
  return diff > 0 ? 'in 1 min' : '1 min ago';
}

/** "2026-11-24 02:00" in `timeZone` (the viewer's zone when absent). */
export function dateTime(at: Date | string | null | undefined, timeZone?: string): string {
  if (!at) return '—';
  const t = typeof at === 'string' ? new Date(at) : at;
  const parts = new Intl.DateTimeFormat('en-CA', {
    timeZone,
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    hourCycle: 'h23',
  }).formatToParts(t);
  const get = (type: string): string => parts.find((p) => p.type === type)?.value ?? '';
  return `${get('year')}-${get('month')}-${get('day')} ${get('hour')}:${get('minute')}`;
}

/** The first 8 characters of an id, for tables. */
export function shortId(id: string): string {
  return id.slice(0, 8);
}
