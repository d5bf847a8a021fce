import { describe, expect, it } from 'vitest';
import { canonicalTimeZone, cronProblem, nextTrigger, nextTriggerBefore } from './cron';

describe('cron expressions and time zones', () => {
  it('fires every night at 02:00 Berlin time, following daylight saving time', () => {
    // CEST (UTC+2) until 25 October 2026, CET (UTC+1) after.
    const oct24 = nextTrigger('0 2 * * *', 'Europe/Berlin', new Date('2026-10-23T12:00:00Z'));
    expect(oct24.toISOString()).toBe('2026-10-24T00:00:00.000Z');
    // 02:00 happens twice on 25 October (clocks go back from 03:00 CEST to 02:00 CET): fire once.
    const oct25 = nextTrigger('0 2 * * *', 'Europe/Berlin', oct24);
    expect(oct25.toISOString()).toBe('2026-10-25T00:00:00.000Z');
    const oct26 = nextTrigger('0 2 * * *', 'Europe/Berlin', oct25);
    expect(oct26.toISOString()).toBe('2026-10-26T01:00:00.000Z');
    // 02:00 does not exist on 29 March 2026 (clocks jump to 03:00): it fires at 03:00 CEST.
    expect(
      nextTrigger('0 2 * * *', 'Europe/Berlin', new Date('2026-03-28T12:00:00Z')).toISOString(),
    ).toBe('2026-03-29T01:00:00.000Z');
  });

  it('gives the next trigger strictly after the given instant', () => {
    const at = new Date('2026-11-24T01:00:00Z');
    expect(nextTrigger('0 2 * * *', 'Europe/Berlin', at).toISOString()).toBe(
      '2026-11-25T01:00:00.000Z',
    );
  });

  it('stops before the end date', () => {
    const after = new Date('2026-11-23T12:00:00Z');
    expect(
      nextTriggerBefore('0 2 * * *', 'UTC', after, new Date('2026-11-24T02:00:00Z')),
    ).toBeNull();
    expect(
      nextTriggerBefore('0 2 * * *', 'UTC', after, new Date('2026-11-24T02:00:01Z'))?.toISOString(),
    ).toBe('2026-11-24T02:00:00.000Z');
  });

  it('explains what is wrong with an expression', () => {
    expect(cronProblem('0 2 * * *')).toBeNull();
    expect(cronProblem('@daily')).toBeNull();
    expect(cronProblem('')).toMatch(/empty/);
    expect(cronProblem('0 2 * *')).toBe(
      'a cron expression has 5 fields (minute hour day-of-month month day-of-week), got 4 in "0 2 * *"',
    );
    expect(cronProblem('0 0 2 * * *')).toMatch(/got 6/);
    expect(cronProblem('61 * * * *')).toMatch(/^invalid cron expression "61 \* \* \* \*": .*0-59/);
    expect(cronProblem('@reboot')).toMatch(/unknown cron alias/);
  });

  it('knows IANA time zones and spells them canonically', () => {
    expect(canonicalTimeZone('Europe/Berlin')).toBe('Europe/Berlin');
    expect(canonicalTimeZone('europe/berlin')).toBe('Europe/Berlin');
    expect(canonicalTimeZone('UTC')).toBe('UTC');
    expect(canonicalTimeZone('Mars/Olympus_Mons')).toBeNull();
    expect(canonicalTimeZone('')).toBeNull();
  });
});
