import { liveRoundPanel } from '../components/live-round';
import { isAdmin, type Ctx } from '../context';
import { badge, confirmDialog, empty, errorBox, fill, h, loading, toast } from '../dom';
import { describeCron } from '../forms/schedule-form';
import { scheduleForm, startRoundsForm } from '../forms/schedule-form.view';
import { dateTime, duration, metric, relative, shortId } from '../format';
import type { FederationStore } from '../store';
import type { Round, Run, Schedule } from '../types';
import type { TabView } from './federation';
import { roundSites } from '../round-sites';

const ROUND_TONES: Record<string, string> = { committed: 'ok', aborted: 'bad' };
const RUN_TONES: Record<Run['status'], string> = {
  running: 'progress',
  completed: 'ok',
  stopped: 'warn',
};
const SCHEDULE_TONES: Record<Schedule['status'], string> = {
  active: 'ok',
  paused: 'warn',
  ended: 'neutral',
};

export function roundsTab(ctx: Ctx, store: FederationStore): TabView {
  const base = `/api/v1/federations/${store.fed.id}`;
  const admin = isAdmin(ctx);
  const live = h('div');
  const runBox = h('div', { class: 'run-box' });
  const schedules = h('div');
  const history = h('div');
  const runs = h('div');

  const call = async (what: () => Promise<unknown>, done: string): Promise<void> => {
    try {
      await what();
      toast(done);
    } catch (e) {
      toast((e as Error).message, 'error');
    }
    await store.refresh(['runs', 'rounds', 'schedules']);
  };

  // Built once so a live event never wipes what the admin is typing.
  const startForm = admin
    ? startRoundsForm({
        submit: async (rounds) => {
          await ctx.api.post(`${base}/runs`, { rounds });
          toast(`Started ${rounds} round${rounds === 1 ? '' : 's'}`);
          await store.refresh(['runs', 'rounds']);
        },
      })
    : null;
  const progress = h('div');
  const resume = h('div');
  runBox.append(progress, h('div', { class: 'row-form' }, startForm, resume));

  const drawRun = (): void => {
    if (store.runs.state !== 'ok') {
      if (startForm) startForm.hidden = true;
      fill(resume);
      fill(progress, store.runs.state === 'error' ? errorBox(store.runs.message) : loading('runs'));
      return;
    }
    const all = store.runs.data;
    const running = all.find((r) => r.status === 'running');
    const last = all[all.length - 1];
    if (startForm) startForm.hidden = Boolean(running);
    if (running) {
      const pct = Math.round((running.roundsDone / running.roundsRequested) * 100);
      fill(resume);
      fill(
        progress,
        h(
          'div',
          { class: 'run-progress', 'data-testid': 'run-progress' },
          h(
            'p',
            null,
            h('strong', null, `Run ${shortId(running.id)}: `),
            `${running.roundsDone} of ${running.roundsRequested} rounds done`,
          ),
          h('progress', {
            max: running.roundsRequested,
            value: running.roundsDone,
            'aria-label': `${pct}% of the run done`,
          }),
          admin
            ? h(
                'button',
                {
                  type: 'button',
                  class: 'secondary',
                  onClick: () =>
                    void call(
                      () => ctx.api.post(`${base}/runs/stop`),
                      'The run stops after the current round',
                    ),
                },
                'Pause after this round',
              )
            : null,
        ),
      );
      return;
    }
    const left = last && last.status === 'stopped' ? last.roundsRequested - last.roundsDone : 0;
    fill(progress, admin ? null : h('p', { class: 'muted' }, 'No run in progress.'));
    fill(
      resume,
      admin && left > 0
        ? h(
            'button',
            {
              type: 'button',
              class: 'secondary',
              title: last?.reason ?? '',
              onClick: () =>
                void call(
                  () => ctx.api.post(`${base}/runs`, { rounds: left }),
                  `Resumed: ${left} round${left === 1 ? '' : 's'}`,
                ),
            },
            `Resume (${left} round${left === 1 ? '' : 's'} left)`,
          )
        : null,
    );
  };

  const drawSchedules = (): void => {
    const s = store.schedules;
    if (s.state === 'loading') return fill(schedules, loading('schedules'));
    if (s.state === 'error')
      return fill(
        schedules,
        errorBox(s.message, () => void store.refresh(['schedules'])),
      );
    if (!s.data.length) {
      return fill(
        schedules,
        empty(
          'No schedules.',
          admin
            ? 'Add one below, e.g. every night at 02:00 in your time zone.'
            : 'An admin can schedule rounds on a calendar.',
        ),
      );
    }
    fill(
      schedules,
      h(
        'table',
        { class: 'table', 'aria-label': 'Schedules' },
        h(
          'thead',
          null,
          h(
            'tr',
            null,
            ['When', 'Rounds', 'Next run', 'Last run', 'Ends', 'Status', admin ? 'Actions' : null]
              .filter((c): c is string => c !== null)
              .map((c) => h('th', { scope: 'col' }, c)),
          ),
        ),
        h(
          'tbody',
          null,
          s.data.map((sc) =>
            h(
              'tr',
              { 'data-schedule': sc.id },
              h(
                'td',
                null,
                h('code', null, sc.cron),
                ' ',
                h('span', { class: 'muted' }, sc.timeZone),
                describeCron(sc.cron) ? h('div', { class: 'hint' }, describeCron(sc.cron)) : null,
              ),
              h('td', { class: 'num' }, String(sc.roundsPerTrigger)),
              h(
                'td',
                {
                  title: sc.nextRunAt
                    ? `${dateTime(sc.nextRunAt, sc.timeZone)} ${sc.timeZone}`
                    : '',
                },
                sc.nextRunAt && !sc.paused
                  ? `${dateTime(sc.nextRunAt)} (${relative(sc.nextRunAt)})`
                  : '—',
              ),
              h(
                'td',
                null,
                sc.lastRunAt ? relative(sc.lastRunAt) : 'never',
                sc.lastOutcome ? h('div', { class: 'hint' }, sc.lastOutcome) : null,
              ),
              h('td', null, sc.endsAt ? dateTime(sc.endsAt, sc.timeZone) : 'never'),
              h('td', null, badge(sc.status, SCHEDULE_TONES[sc.status])),
              admin
                ? h(
                    'td',
                    { class: 'row-actions' },
                    sc.status === 'active'
                      ? h(
                          'button',
                          {
                            type: 'button',
                            class: 'small secondary',
                            onClick: () =>
                              void call(
                                () => ctx.api.post(`${base}/schedules/${sc.id}/pause`),
                                'Schedule paused',
                              ),
                          },
                          'Pause',
                        )
                      : null,
                    sc.status === 'paused'
                      ? h(
                          'button',
                          {
                            type: 'button',
                            class: 'small secondary',
                            onClick: () =>
                              void call(
                                () => ctx.api.post(`${base}/schedules/${sc.id}/resume`),
                                'Schedule resumed',
                              ),
                          },
                          'Resume',
                        )
                      : null,
                    h(
                      'button',
                      {
                        type: 'button',
                        class: 'small danger-outline',
                        onClick: () =>
                          void confirmDialog(
                            'Delete this schedule?',
                            `${sc.cron} (${sc.timeZone}) will no longer start rounds.`,
                            'Delete',
                          ).then((ok) =>
                            ok
                              ? call(
                                  () => ctx.api.delete(`${base}/schedules/${sc.id}`),
                                  'Schedule deleted',
                                )
                              : undefined,
                          ),
                      },
                      'Delete',
                    ),
                  )
                : null,
            ),
          ),
        ),
      ),
    );
  };

  const drawHistory = (): void => {
    const r = store.rounds;
    if (r.state === 'loading') return fill(history, loading('rounds'));
    if (r.state === 'error')
      return fill(
        history,
        errorBox(r.message, () => void store.refresh(['rounds'])),
      );
    if (!r.data.length)
      return fill(history, empty('No rounds yet.', 'Rounds appear here as soon as they start.'));
    fill(history, roundsTable([...r.data].reverse()));
  };

  const drawRuns = (): void => {
    if (store.runs.state !== 'ok' || !store.runs.data.length) return fill(runs);
    fill(
      runs,
      h(
        'details',
        { class: 'card' },
        h('summary', null, h('h2', { class: 'inline' }, `Runs (${store.runs.data.length})`)),
        h(
          'table',
          { class: 'table compact', 'aria-label': 'Runs' },
          h(
            'thead',
            null,
            h(
              'tr',
              null,
              ['Run', 'Status', 'Rounds', 'Started', 'Reason'].map((c) =>
                h('th', { scope: 'col' }, c),
              ),
            ),
          ),
          h(
            'tbody',
            null,
            [...store.runs.data]
              .reverse()
              .map((run) =>
                h(
                  'tr',
                  null,
                  h('td', null, h('code', null, shortId(run.id))),
                  h('td', null, badge(run.status, RUN_TONES[run.status])),
                  h('td', { class: 'num' }, `${run.roundsDone}/${run.roundsRequested}`),
                  h('td', { title: dateTime(run.createdAt) }, relative(run.createdAt)),
                  h('td', { class: 'muted' }, run.reason ?? ''),
                ),
              ),
          ),
        ),
      ),
    );
  };

  const draw = (): void => {
    fill(live, liveRoundPanel(store));
    drawRun();
    drawSchedules();
    drawHistory();
    drawRuns();
  };
  draw();
  const dispose = store.subscribe(draw);
  const el = h(
    'div',
    { class: 'stack' },
    live,
    h('section', { class: 'card' }, h('h2', null, 'Run rounds'), runBox),
    h(
      'section',
      { class: 'card' },
      h('h2', null, 'Schedules'),
      schedules,
      admin
        ? h(
            'details',
            { class: 'add-schedule' },
            h('summary', null, 'Add a schedule'),
            scheduleForm({
              submit: async (body) => {
                await ctx.api.post(`${base}/schedules`, body);
                toast('Schedule added');
                await store.refresh(['schedules']);
              },
            }),
          )
        : null,
    ),
    h('section', { class: 'card' }, h('h2', null, 'Round history'), history),
    runs,
  );
  return { el, dispose };
}

function roundsTable(rounds: Round[]): HTMLElement {
  return h(
    'table',
    { class: 'table', 'aria-label': 'Rounds' },
    h(
      'thead',
      null,
      h(
        'tr',
        null,
        ['Round', 'State', 'Sites', 'Accuracy', 'AUC', 'Loss', 'Duration', 'Started', 'Reason'].map(
          (c) => h('th', { scope: 'col' }, c),
        ),
      ),
    ),
    h(
      'tbody',
      null,
      rounds.map((r) => {
        const ev = r.metrics?.evaluation ?? null;
        const sites = roundSites(r);
        return h(
          'tr',
          { 'data-round': r.number },
          h('td', { class: 'num' }, String(r.number)),
          h('td', null, badge(r.state, ROUND_TONES[r.state] ?? 'progress')),
          h('td', { class: 'num', title: sites.title }, sites.text),
          h('td', { class: 'num' }, metric(ev?.accuracy)),
          h('td', { class: 'num' }, metric(ev?.auc)),
          h('td', { class: 'num' }, metric(ev?.loss)),
          h('td', { class: 'num' }, duration(r.durationMs)),
          h('td', { title: dateTime(r.startedAt) }, relative(r.startedAt)),
          h('td', { class: 'muted reason' }, r.reason ?? ''),
        );
      }),
    ),
  );
}
