import { isMissingRoute } from '../api';
import { lineChart } from '../charts';
import type { Ctx } from '../context';
import { empty, errorBox, fill, h, loading } from '../dom';
import type { FederationStore } from '../store';
import type { Privacy } from '../types';
import type { TabView } from './federation';

/** Dashed limit lines: one per distinct limit, labelled with the sites it applies to when they differ. */
export function limitLines(sites: Privacy['sites']): Array<{ y: number; label: string }> {
  const byLimit = new Map<number, string[]>();
  for (const s of sites) {
    if (s.limit !== null) byLimit.set(s.limit, [...(byLimit.get(s.limit) ?? []), s.name]);
  }
  return [...byLimit].map(([y, names]) => ({
    y,
    label: byLimit.size === 1 ? `limit ε = ${y}` : `limit ε = ${y} (${names.join(', ')})`,
  }));
}

export function privacyTab(ctx: Ctx, store: FederationStore): TabView {
  const body = h('div', { class: 'stack' }, loading('the privacy budget'));
  let seen = '';
  const load = (): void => {
    ctx.api
      .get<Privacy>(`/api/v1/federations/${store.fed.id}/privacy`)
      .then((p) => fill(body, view(p)))
      .catch((e: unknown) =>
        fill(body, isMissingRoute(e) ? unavailable() : errorBox((e as Error).message, load)),
      );
  };
  load();
  // Epsilon moves when a round ends: reload then.
  const dispose = store.subscribe(() => {
    const r = store.rounds;
    const key =
      r.state === 'ok'
        ? r.data.filter((x) => x.state === 'committed' || x.state === 'aborted').length
        : -1;
    if (seen && String(key) !== seen) load();
    seen = String(key);
  });
  return { el: body, dispose };
}

function unavailable(): HTMLElement {
  return h(
    'div',
    { class: 'state error', role: 'alert' },
    h('strong', null, 'Privacy accounting is not available. '),
    'This aggregator does not serve ',
    h('code', null, 'GET /api/v1/federations/:id/privacy'),
    ' yet.',
  );
}

function view(p: Privacy): HTMLElement {
  if (p.level === 'none') {
    return empty(
      'This federation does not use differential privacy.',
      'No privacy budget is spent, so there is nothing to chart.',
    );
  }
  if (!p.sites.length) {
    return empty(
      'No sites enrolled yet.',
      'Each site’s privacy budget appears here once it is enrolled.',
    );
  }
  const released = p.sites.some((s) => s.history.length);
  return h(
    'div',
    { class: 'stack' },
    h(
      'section',
      { class: 'card' },
      released
        ? lineChart({
            title: 'Cumulative ε by round',
            xLabel: 'Round',
            yLabel: 'ε',
            integerX: true,
            // The chart spans the page: a wider drawing keeps its text at the size of the others.
            width: 1100,
            height: 320,
            yMin: 0,
            series: p.sites.map((s) => ({
              name: s.name,
              points: s.history.map((x) => ({ x: x.round, y: x.epsilon })),
            })),
            limits: limitLines(p.sites),
            format: (y) => y.toFixed(2),
          })
        : empty(
            'No privacy budget spent yet.',
            'Each site’s cumulative ε by round appears here after its first release.',
          ),
      h(
        'p',
        { class: 'hint' },
        `${p.level}-level differential privacy${p.delta === null ? '' : `, δ = ${p.delta}`}.`,
      ),
    ),
    h(
      'section',
      { class: 'card' },
      h('h2', null, 'Budget forecast'),
      h(
        'table',
        { class: 'table', 'aria-label': 'Budget forecast' },
        h(
          'thead',
          null,
          h(
            'tr',
            null,
            ['Site', 'ε spent', 'Limit', 'Used', 'Rounds left'].map((c) =>
              h('th', { scope: 'col' }, c),
            ),
          ),
        ),
        h(
          'tbody',
          null,
          p.sites.map((s) => {
            const used = s.limit ? Math.min(1, s.epsilon / s.limit) : 0;
            return h(
              'tr',
              { 'data-site': s.name },
              h('td', null, s.name),
              h('td', { class: 'num' }, s.epsilon.toFixed(3)),
              h('td', { class: 'num' }, s.limit === null ? '—' : String(s.limit)),
              h(
                'td',
                null,
                h('meter', {
                  min: 0,
                  max: 1,
                  low: 0.7,
                  high: 0.9,
                  optimum: 0,
                  value: used,
                  'aria-label': `${Math.round(used * 100)}% of the budget used`,
                }),
                ` ${Math.round(used * 100)}%`,
              ),
              h(
                'td',
                { class: 'num' },
                s.roundsLeft === null
                  ? '—'
                  : s.roundsLeft === 0
                    ? h('strong', { class: 'bad' }, 'exhausted')
                    : String(s.roundsLeft),
              ),
            );
          }),
        ),
      ),
      h(
        'p',
        { class: 'hint' },
        'Rounds left assume the federation’s current noise and sampling; a site that reaches its limit is no longer selected.',
      ),
    ),
  );
}
