import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAggregator, type RunningAggregator } from '@confide/aggregator';
import { ApiClient, ApiRequestError } from '../../apps/cli/src/api-client';
import { databaseKind, freshDatabaseUrl } from '../support/database';
import { createFederation, waitUntil } from '../support/federation';

interface ScheduleView {
  id: string;
  cron: string;
  timeZone: string;
  roundsPerTrigger: number;
  status: string;
  paused: boolean;
  nextRunAt: string | null;
  lastRunAt: string | null;
  lastOutcome: string | null;
}
interface RunView {
  id: string;
  status: string;
  roundsRequested: number;
}

/** A clock that runs with real time from a chosen instant (the aggregator's injected CLOCK). */
class ShiftedClock {
  offset = 0;
  now = (): Date => new Date(Date.now() + this.offset);
  /** Makes the clock read `iso` now. */
  set(iso: string): void {
    this.offset = new Date(iso).getTime() - Date.now();
  }
  /** Makes the clock read `ms` before the next whole minute (for `* * * * *`). */
  justBeforeMinute(ms: number): void {
    const now = this.now().getTime();
    const next = Math.ceil(now / 60_000) * 60_000 + 60_000;
    this.offset += next - ms - now;
  }
}

async function refused(p: Promise<unknown>): Promise<ApiRequestError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof ApiRequestError) return e;
    throw e;
  }
  throw new Error('the request was not refused');
}

describe(`round schedules (${databaseKind})`, () => {
  let db: Awaited<ReturnType<typeof freshDatabaseUrl>>;
  let dataDir: string | undefined;
  let agg: RunningAggregator;
  let api: ApiClient;
  let auditor: ApiClient;
  let token: string;
  const clock = new ShiftedClock();
  let fedId: string;
  let nightly: ScheduleView;
  let paused: ScheduleView;

  const start = async (): Promise<RunningAggregator> =>
    startAggregator({ databaseUrl: db.url, dataDir, clock, reconnectGraceMs: 300 });
  const schedules = (id = fedId) => api.get<ScheduleView[]>(`/api/v1/federations/${id}/schedules`);

  beforeAll(async () => {
    db = await freshDatabaseUrl();
    dataDir = db.url ? undefined : mkdtempSync(join(tmpdir(), 'confide-schedules-'));
    clock.set('2026-11-23T22:00:00Z');
    agg = await start();
    token = agg.initialAdminToken!;
    api = new ApiClient(agg.url, token);
    auditor = new ApiClient(agg.url, await agg.createToken('auditor', 'audit'));
    fedId = (await createFederation(api, { roundTimeoutSeconds: 600 })).id;
  }, 60_000);

  afterAll(async () => {
    await agg?.close();
    await db?.drop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it('creates a nightly schedule in a time zone and computes its next trigger', async () => {
    nightly = await api.post<ScheduleView>(`/api/v1/federations/${fedId}/schedules`, {
      cron: '0 2 * * *',
      timeZone: 'europe/berlin',
      roundsPerTrigger: 2,
      endsAt: '2027-06-30T00:00:00+02:00',
    });
    expect(nightly).toMatchObject({
      cron: '0 2 * * *',
      timeZone: 'Europe/Berlin',
      roundsPerTrigger: 2,
      status: 'active',
      nextRunAt: '2026-11-24T01:00:00.000Z',
      lastRunAt: null,
    });
    paused = await api.post<ScheduleView>(`/api/v1/federations/${fedId}/schedules`, {
      cron: '30 3 * * *',
      timeZone: 'UTC',
    });
    paused = await api.post<ScheduleView>(
      `/api/v1/federations/${fedId}/schedules/${paused.id}/pause`,
    );
    expect(paused).toMatchObject({ status: 'paused', paused: true, roundsPerTrigger: 1 });
    expect((await schedules()).map((s) => s.id)).toEqual([nightly.id, paused.id]);
  });

  it('refuses bad schedules with a message naming the problem', async () => {
    const post = (body: unknown) =>
      refused(api.post(`/api/v1/federations/${fedId}/schedules`, body));
    const cases: Array<[unknown, RegExp]> = [
      [{ cron: '0 2 * *', timeZone: 'UTC' }, /a cron expression has 5 fields .* got 4/],
      [{ cron: '0 25 * * *', timeZone: 'UTC' }, /invalid cron expression "0 25 \* \* \*"/],
      [{ cron: '0 2 * * *', timeZone: 'Mars/Olympus' }, /unknown time zone "Mars\/Olympus"/],
      [{ cron: '0 2 * * *', timeZone: 'UTC', endsAt: '2020-01-01T00:00:00Z' }, /is in the past/],
      [{ cron: '0 2 * * *', timeZone: 'UTC', endsAt: 'soon' }, /endsAt: Invalid ISO datetime/],
      [
        { cron: '0 2 * * *', timeZone: 'UTC', endsAt: '2026-11-24T01:00:00Z' },
        /would never fire: its first trigger \(2026-11-24T02:00:00.000Z\) is after endsAt/,
      ],
      [{ cron: '0 2 * * *', timeZone: 'UTC', roundsPerTrigger: 0 }, /roundsPerTrigger/],
      [{ cron: '0 2 * * *', timeZone: 'UTC', every: 'day' }, /every/],
    ];
    for (const [body, message] of cases) {
      const e = await post(body);
      expect(e.status, JSON.stringify(body)).toBe(400);
      expect(e.code).toBe('VALIDATION_FAILED');
      expect(e.message).toMatch(message);
    }
    const missing = await refused(
      api.post(`/api/v1/federations/00000000-0000-4000-8000-000000000000/schedules`, {
        cron: '0 2 * * *',
        timeZone: 'UTC',
      }),
    );
    expect(missing.status).toBe(404);
    expect(
      (await refused(api.post(`/api/v1/federations/${fedId}/schedules/nope/pause`))).status,
    ).toBe(404);
  });

  it('lets auditors read schedules but not change them', async () => {
    expect(
      (await auditor.get<ScheduleView[]>(`/api/v1/federations/${fedId}/schedules`)).length,
    ).toBe(2);
    for (const attempt of [
      () =>
        auditor.post(`/api/v1/federations/${fedId}/schedules`, {
          cron: '0 2 * * *',
          timeZone: 'UTC',
        }),
      () => auditor.post(`/api/v1/federations/${fedId}/schedules/${nightly.id}/pause`),
      () => auditor.post(`/api/v1/federations/${fedId}/schedules/${paused.id}/resume`),
      () => auditor.request('DELETE', `/api/v1/federations/${fedId}/schedules/${nightly.id}`),
    ]) {
      const e = await refused(attempt());
      expect(e.status).toBe(403);
      expect(e.message).toMatch(/needs the admin role; the token is auditor/);
    }
  });

  it('survives a restart: a trigger missed while the aggregator was down fires once on start', async () => {
    await agg.close();
    // Three nights later.
    clock.set('2026-11-26T12:00:00Z');
    agg = await start();
    api = new ApiClient(agg.url, token);
    const after = await waitUntil(
      async () => (await schedules()).find((s) => s.id === nightly.id && s.lastOutcome),
      10_000,
      'the missed trigger to fire',
    );
    expect(after).toMatchObject({
      status: 'active',
      nextRunAt: '2026-11-27T01:00:00.000Z',
      lastOutcome: expect.stringMatching(/^started run [0-9a-f-]{36} \(2 rounds\)$/),
    });
    const runs = await api.get<RunView[]>(`/api/v1/federations/${fedId}/runs`);
    expect(runs).toHaveLength(1);
    expect(runs[0]).toMatchObject({ status: 'running', roundsRequested: 2 });
    expect(after.lastOutcome).toContain(runs[0]!.id);
    // The paused schedule stayed paused and fired nothing.
    expect((await schedules()).find((s) => s.id === paused.id)).toMatchObject({
      status: 'paused',
      lastRunAt: null,
    });
    const events = await agg.db.manager.query(
      `SELECT actor, action, subject, details FROM admin_event WHERE action LIKE 'schedule.%' ORDER BY id`,
    );
    expect(events.map((e: { action: string }) => e.action)).toEqual([
      'schedule.create',
      'schedule.create',
      'schedule.pause',
      'schedule.trigger',
    ]);
    expect(events[3]).toMatchObject({
      actor: 'scheduler',
      subject: nightly.id,
      details: { late: true, due: '2026-11-24T01:00:00.000Z', runId: runs[0]!.id },
    });
  }, 30_000);

  it('skips a trigger with an admin event while the federation still has a run going', async () => {
    const every = await api.post<ScheduleView>(`/api/v1/federations/${fedId}/schedules`, {
      cron: '* * * * *',
      timeZone: 'UTC',
    });
    clock.justBeforeMinute(1500);
    // Re-arm the timer for the moved clock (the scheduler looks again at least once a minute).
    await api.post(`/api/v1/federations/${fedId}/schedules/${every.id}/pause`);
    await api.post(`/api/v1/federations/${fedId}/schedules/${every.id}/resume`);
    const skipped = await waitUntil(
      async () => (await schedules()).find((s) => s.id === every.id && s.lastOutcome),
      10_000,
      'the every-minute trigger',
    );
    expect(skipped.lastOutcome).toMatch(
      /^skipped: run [0-9a-f-]{36} was still running \(0\/2 rounds\)$/,
    );
    expect(await api.get<RunView[]>(`/api/v1/federations/${fedId}/runs`)).toHaveLength(1);
    const skips = await agg.db.manager.query(
      `SELECT subject FROM admin_event WHERE action = 'schedule.skip'`,
    );
    expect(skips.map((r: { subject: string }) => r.subject)).toContain(every.id);
    await api.request('DELETE', `/api/v1/federations/${fedId}/schedules/${every.id}`);
  }, 20_000);

  it('fires on time while running, and resumes a paused schedule from now', async () => {
    const other = (await createFederation(api)).id;
    const every = await api.post<ScheduleView>(`/api/v1/federations/${other}/schedules`, {
      cron: '* * * * *',
      timeZone: 'Asia/Tokyo',
      roundsPerTrigger: 3,
    });
    clock.justBeforeMinute(1500);
    await api.post(`/api/v1/federations/${other}/schedules/${every.id}/pause`);
    const resumed = await api.post<ScheduleView>(
      `/api/v1/federations/${other}/schedules/${every.id}/resume`,
    );
    expect(resumed.status).toBe('active');
    expect(new Date(resumed.nextRunAt!).getTime() - clock.now().getTime()).toBeLessThanOrEqual(
      1500,
    );
    const fired = await waitUntil(
      async () => (await schedules(other)).find((s) => s.lastOutcome),
      10_000,
      'the trigger to fire',
    );
    expect(fired.lastOutcome).toMatch(/^started run .* \(3 rounds\)$/);
    const runs = await api.get<RunView[]>(`/api/v1/federations/${other}/runs`);
    expect(runs.map((r) => r.roundsRequested)).toEqual([3]);
    await api.request('DELETE', `/api/v1/federations/${other}/schedules/${every.id}`);
    expect(await schedules(other)).toEqual([]);
  }, 20_000);
});
