import { describe, expect, it } from 'vitest';
import {
  describeCron,
  roundsProblem,
  scheduleRequestBody,
  validateScheduleForm,
  zonedWallTimeToUtc,
} from './schedule-form';
import { normalizeKey, siteRequestBody, validateSiteForm } from './site-form';

describe('schedule form', () => {
  const ok = { cron: '0 2 * * *', timeZone: 'Europe/Berlin', roundsPerTrigger: '1', endsAt: '' };

  it('accepts every night at 02:00 in Berlin', () => {
    expect(validateScheduleForm(ok)).toEqual({});
    expect(scheduleRequestBody(ok)).toEqual({
      cron: '0 2 * * *',
      timeZone: 'Europe/Berlin',
      roundsPerTrigger: 1,
    });
  });

  it('explains what is wrong with the cron, the zone and the rounds', () => {
    expect(
      validateScheduleForm({
        cron: '0 2 * *',
        timeZone: 'Mars/Base',
        roundsPerTrigger: '0',
        endsAt: '',
      }),
    ).toEqual({
      cron: '5 fields: minute hour day-of-month month day-of-week (got 4)',
      timeZone: 'an IANA time zone such as Europe/Berlin or UTC',
      roundsPerTrigger: 'a whole number, at least 1',
    });
    expect(validateScheduleForm({ ...ok, cron: '' }).cron).toMatch(/^required/);
    expect(validateScheduleForm({ ...ok, cron: '@daily' })).toEqual({});
  });

  it('reads the end date in the schedule’s time zone, across daylight saving time', () => {
    // Berlin is UTC+1 in winter and UTC+2 in summer.
    expect(zonedWallTimeToUtc('2026-12-31T23:30', 'Europe/Berlin').toISOString()).toBe(
      '2026-12-31T22:30:00.000Z',
    );
    expect(zonedWallTimeToUtc('2026-07-01T02:00', 'Europe/Berlin').toISOString()).toBe(
      '2026-07-01T00:00:00.000Z',
    );
    expect(zonedWallTimeToUtc('2026-07-01T02:00', 'America/New_York').toISOString()).toBe(
      '2026-07-01T06:00:00.000Z',
    );
    expect(scheduleRequestBody({ ...ok, endsAt: '2027-01-31T00:00' }).endsAt).toBe(
      '2027-01-30T23:00:00.000Z',
    );
    expect(() => zonedWallTimeToUtc('tomorrow', 'UTC')).toThrow(/not a date/);
  });

  it('describes common expressions in words', () => {
    expect(describeCron('0 2 * * *')).toBe('every day at 02:00');
    expect(describeCron('30 6 * * 1-5')).toBe('on weekdays at 06:30');
    expect(describeCron('0 3 * * 0')).toBe('every Sunday at 03:00');
    expect(describeCron('0 * * * *')).toBe('every hour');
    expect(describeCron('0 1 1 * *')).toBe('on day 1 of every month at 01:00');
    expect(describeCron('*/5 1-3 * * *')).toBeNull();
  });

  it('checks "start N rounds now"', () => {
    expect(roundsProblem('2')).toBeNull();
    expect(roundsProblem('0')).toBe('a whole number, at least 1');
    expect(roundsProblem('1.5')).toBe('a whole number, at least 1');
    expect(roundsProblem('100001')).toBe('at most 100,000');
  });
});

describe('site form', () => {
  const key = 'DTJbVqLdwWuoH0v6JCKjENGZGV7M8w4wp1mxm5zm9z0=';

  it('accepts a name and an Ed25519 key pasted with line breaks', () => {
    const s = {
      name: 'hospital-1',
      publicKey: `  ${key.slice(0, 20)}\n${key.slice(20)}\n`,
      approve: true,
    };
    expect(validateSiteForm(s)).toEqual({});
    expect(siteRequestBody(s)).toEqual({ name: 'hospital-1', publicKey: key });
    expect(normalizeKey(' a b\nc ')).toBe('abc');
  });

  it('refuses names with spaces and anything that is not a 32-byte key', () => {
    expect(validateSiteForm({ name: 'hospital 1', publicKey: 'abc', approve: false })).toEqual({
      name: 'use letters, digits, ".", "_" or "-" (no spaces)',
      publicKey:
        'not an Ed25519 public key: expected 44 base64 characters ending in "=", as printed by `confide node keys`',
    });
    expect(validateSiteForm({ name: '', publicKey: '', approve: false })).toEqual({
      name: 'required',
      publicKey: 'paste the public key printed by `confide node keys`',
    });
  });
});
