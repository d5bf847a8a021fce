/** The "start rounds now" and "schedule rounds" forms, rendered. */
import { ApiError } from '../api';
import { h } from '../dom';
import { FormView, textInput } from './form-view';
import {
  CRON_PRESETS,
  describeCron,
  roundsProblem,
  scheduleRequestBody,
  validateScheduleForm,
  type ScheduleField,
  type ScheduleFormState,
} from './schedule-form';

/** The viewer's time zone, the default for new schedules. */
export function localTimeZone(): string {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
}

export function scheduleForm(opts: {
  submit: (body: ReturnType<typeof scheduleRequestBody>) => Promise<unknown>;
  timeZone?: string;
}): HTMLFormElement {
  const state: ScheduleFormState = {
    cron: '0 2 * * *',
    timeZone: opts.timeZone ?? localTimeZone(),
    roundsPerTrigger: '1',
    endsAt: '',
  };
  const v = new FormView<ScheduleField | 'preset'>();
  const described = h('p', { class: 'hint', 'aria-live': 'polite' });
  const describe = (): void => {
    const d = describeCron(state.cron);
    described.textContent = d ? `Runs ${d} (${state.timeZone}).` : '';
  };
  const cron = textInput(state, 'cron', { class: 'mono', autocomplete: 'off' }, () => {
    v.clearError('cron');
    describe();
  });
  const preset = h(
    'select',
    null,
    h('option', { value: '' }, 'Choose a preset…'),
    CRON_PRESETS.map((p) => h('option', { value: p.cron }, `${p.label} (${p.cron})`)),
  );
  preset.addEventListener('change', () => {
    if (!preset.value) return;
    state.cron = preset.value;
    cron.value = preset.value;
    v.clearError('cron');
    describe();
  });
  const zones = h(
    'datalist',
    { id: 'time-zones' },
    (typeof Intl.supportedValuesOf === 'function'
      ? Intl.supportedValuesOf('timeZone')
      : ['UTC']
    ).map((z) => h('option', { value: z })),
  );
  const tz = textInput(state, 'timeZone', { list: 'time-zones', autocomplete: 'off' }, () => {
    v.clearError('timeZone');
    describe();
  });
  const ends = h('input', { type: 'datetime-local' });
  ends.addEventListener('input', () => {
    state.endsAt = ends.value;
    v.clearError('endsAt');
  });
  const button = h('button', { type: 'submit', class: 'primary' }, 'Add schedule');
  const form = h(
    'form',
    { class: 'form', novalidate: true, 'aria-label': 'Schedule rounds' },
    v.banner,
    h(
      'div',
      { class: 'grid-3' },
      v.field('preset', 'Preset', preset),
      v.field('cron', 'Cron expression', cron, 'minute hour day-of-month month day-of-week'),
      v.field('timeZone', 'Time zone', tz),
      v.field(
        'roundsPerTrigger',
        'Rounds per trigger',
        textInput(state, 'roundsPerTrigger', { inputmode: 'numeric' }, () =>
          v.clearError('roundsPerTrigger'),
        ),
      ),
      v.field('endsAt', 'Ends (optional)', ends, 'In the schedule’s time zone'),
    ),
    described,
    zones,
    h('div', { class: 'actions' }, button),
  );
  describe();
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    v.setBanner(null);
    const first = v.setErrors(validateScheduleForm(state));
    if (first) {
      first.focus();
      return;
    }
    button.disabled = true;
    opts
      .submit(scheduleRequestBody(state))
      .catch((e: unknown) => {
        const message = e instanceof ApiError ? e.message : String(e);
        v.setBanner(message);
        v.setErrors(
          /cron/i.test(message)
            ? { cron: message }
            : /time zone/i.test(message)
              ? { timeZone: message }
              : /endsAt/.test(message)
                ? { endsAt: message }
                : {},
        );
      })
      .finally(() => (button.disabled = false));
  });
  return form;
}

/** "Start [N] rounds now". */
export function startRoundsForm(opts: {
  submit: (rounds: number) => Promise<unknown>;
}): HTMLFormElement {
  const state = { rounds: '10' };
  const v = new FormView<'rounds'>();
  const button = h('button', { type: 'submit', class: 'primary' }, 'Start');
  const form = h(
    'form',
    { class: 'form inline-form row-form', novalidate: true, 'aria-label': 'Start rounds now' },
    v.field(
      'rounds',
      'Rounds to run now',
      textInput(state, 'rounds', { inputmode: 'numeric', size: 6 }, () => v.clearError('rounds')),
    ),
    button,
    v.banner,
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    v.setBanner(null);
    const problem = roundsProblem(state.rounds);
    const first = v.setErrors(problem ? { rounds: problem } : {});
    if (first) {
      first.focus();
      return;
    }
    button.disabled = true;
    opts
      .submit(Number(state.rounds))
      .catch((e: unknown) => v.setBanner(e instanceof ApiError ? e.message : String(e)))
      .finally(() => (button.disabled = false));
  });
  return form;
}
