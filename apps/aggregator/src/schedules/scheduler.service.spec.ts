import { afterEach, describe, expect, it, vi } from 'vitest';
import { Scheduler, type ScheduleStore } from './scheduler.service';
import type { ScheduleRow } from './schedule.repository';

/** The schedule table in memory, with the repository's claim semantics. */
class FakeStore implements ScheduleStore {
  constructor(readonly rows: ScheduleRow[]) {}
  async active() {
    return this.rows.filter((r) => !r.paused && r.nextRunAt !== null).map((r) => ({ ...r }));
  }
  async claim(id: string, due: Date, next: Date | null, now: Date) {
    const r = this.rows.find((x) => x.id === id);
    if (!r || r.paused || r.nextRunAt?.getTime() !== due.getTime()) return false;
    r.nextRunAt = next;
    r.lastRunAt = now;
    return true;
  }
  async setNext(id: string, due: Date, next: Date | null) {
    const r = this.rows.find((x) => x.id === id);
    if (r && r.nextRunAt?.getTime() === due.getTime()) r.nextRunAt = next;
  }
  async setOutcome(id: string, outcome: string) {
    this.rows.find((x) => x.id === id)!.lastOutcome = outcome;
  }
}

function schedule(over: Partial<ScheduleRow> = {}): ScheduleRow {
  return {
    id: 's1',
    federationId: 'f1',
    cron: '0 2 * * *',
    timeZone: 'Europe/Berlin',
    roundsPerTrigger: 2,
    endsAt: null,
    paused: false,
    nextRunAt: new Date('2026-11-24T01:00:00Z'), // 02:00 in Berlin
    lastRunAt: null,
    lastOutcome: null,
    createdAt: new Date('2026-11-23T10:00:00Z'),
    createdBy: 'admin:t',
    ...over,
  };
}

function setup(rows: ScheduleRow[], now: string, running: { id: string } | null = null) {
  const clock = { t: new Date(now), now: () => clock.t };
  const store = new FakeStore(rows);
  const started: Array<[string, number]> = [];
  const runs = {
    fail: null as Error | null,
    async startRun(federationId: string, rounds: number) {
      if (runs.fail) throw runs.fail;
      started.push([federationId, rounds]);
      return { id: `run-${started.length}` };
    },
  };
  const lookup = {
    async runningRun() {
      return running ? { ...running, roundsDone: 1, roundsRequested: 5 } : null;
    },
  };
  const events: Array<{ action: string; subject: string | null; details: any }> = [];
  const recorder = {
    async record(_actor: string, action: string, subject: string | null, details: unknown) {
      events.push({ action, subject, details });
    },
  };
  const log: string[] = [];
  const scheduler = new Scheduler(
    clock,
    { log: (l) => log.push(l) },
    store,
    runs,
    lookup,
    recorder,
  );
  schedulers.push(scheduler);
  return { clock, store, started, runs, events, log, scheduler };
}

const schedulers: Scheduler[] = [];
afterEach(async () => {
  for (const s of schedulers.splice(0)) await s.onModuleDestroy();
  vi.useRealTimers();
});

describe('Scheduler (fake clock)', () => {
  it('does nothing before the trigger', async () => {
    const { scheduler, started, store } = setup([schedule()], '2026-11-24T00:59:59Z');
    await scheduler.runDue();
    expect(started).toEqual([]);
    expect(store.rows[0]!.nextRunAt!.toISOString()).toBe('2026-11-24T01:00:00.000Z');
  });

  it('starts roundsPerTrigger rounds at the trigger and moves on to the next night', async () => {
    const { scheduler, started, store, events } = setup([schedule()], '2026-11-24T01:00:00.200Z');
    await scheduler.runDue();
    expect(started).toEqual([['f1', 2]]);
    const row = store.rows[0]!;
    expect(row.nextRunAt!.toISOString()).toBe('2026-11-25T01:00:00.000Z');
    expect(row.lastRunAt!.toISOString()).toBe('2026-11-24T01:00:00.200Z');
    expect(row.lastOutcome).toBe('started run run-1 (2 rounds)');
    expect(events).toEqual([
      {
        action: 'schedule.trigger',
        subject: 's1',
        details: expect.objectContaining({ federationId: 'f1', runId: 'run-1', late: false }),
      },
    ]);
    // Running again at the same instant fires nothing more.
    await scheduler.runDue();
    expect(started).toHaveLength(1);
  });

  it('fires a trigger missed while the aggregator was down once, not once per missed night', async () => {
    const { scheduler, started, store, events, log } = setup([schedule()], '2026-11-27T09:30:00Z');
    await scheduler.runDue();
    expect(started).toEqual([['f1', 2]]);
    expect(store.rows[0]!.nextRunAt!.toISOString()).toBe('2026-11-28T01:00:00.000Z');
    expect(events[0]!.details).toMatchObject({ late: true, due: '2026-11-24T01:00:00.000Z' });
    expect(log.join('\n')).toMatch(/missed while the aggregator was down/);
  });

  it('does not fire a missed trigger that fell after the end date, and ends the schedule', async () => {
    const { scheduler, started, store } = setup(
      [schedule({ endsAt: new Date('2026-11-24T00:00:00Z') })],
      '2026-11-27T09:30:00Z',
    );
    await scheduler.runDue();
    expect(started).toEqual([]);
    expect(store.rows[0]!.nextRunAt).toBeNull();
  });

  it('fires the last trigger before the end date, then ends', async () => {
    const { scheduler, started, store } = setup(
      [schedule({ endsAt: new Date('2026-11-24T12:00:00Z') })],
      '2026-11-24T01:00:00Z',
    );
    await scheduler.runDue();
    expect(started).toEqual([['f1', 2]]);
    expect(store.rows[0]!.nextRunAt).toBeNull();
  });

  it('skips a trigger, with an admin event saying why, while the federation still has a run going', async () => {
    const { scheduler, started, store, events } = setup([schedule()], '2026-11-24T01:00:00Z', {
      id: 'busy',
    });
    await scheduler.runDue();
    expect(started).toEqual([]);
    expect(events).toEqual([
      {
        action: 'schedule.skip',
        subject: 's1',
        details: expect.objectContaining({ federationId: 'f1', runId: 'busy' }),
      },
    ]);
    expect(store.rows[0]!.lastOutcome).toBe('skipped: run busy was still running (1/5 rounds)');
    expect(store.rows[0]!.nextRunAt!.toISOString()).toBe('2026-11-25T01:00:00.000Z');
  });

  it('records a failed start and keeps going', async () => {
    const { scheduler, runs, store, events } = setup([schedule()], '2026-11-24T01:00:00Z');
    runs.fail = new Error('the aggregator is shutting down');
    await scheduler.runDue();
    expect(store.rows[0]!.lastOutcome).toBe('failed: the aggregator is shutting down');
    expect(events[0]!.action).toBe('schedule.fail');
    expect(store.rows[0]!.nextRunAt!.toISOString()).toBe('2026-11-25T01:00:00.000Z');
  });

  it('leaves paused schedules alone', async () => {
    const { scheduler, started } = setup([schedule({ paused: true })], '2026-11-24T01:00:00Z');
    await scheduler.runDue();
    expect(started).toEqual([]);
  });

  it('fires several schedules of several federations that are due at once', async () => {
    const { scheduler, started } = setup(
      [schedule(), schedule({ id: 's2', federationId: 'f2', roundsPerTrigger: 1 })],
      '2026-11-24T01:00:00Z',
    );
    await scheduler.runDue();
    expect(started).toEqual([
      ['f1', 2],
      ['f2', 1],
    ]);
  });

  it('sleeps until the next trigger and wakes up for it on its own', async () => {
    vi.useFakeTimers();
    const { scheduler, started, clock } = setup([schedule()], '2026-11-24T00:59:30Z');
    await scheduler.runDue();
    expect(started).toEqual([]);
    clock.t = new Date('2026-11-24T01:00:00Z');
    await vi.advanceTimersByTimeAsync(30_000);
    expect(started).toEqual([['f1', 2]]);
  });
});
