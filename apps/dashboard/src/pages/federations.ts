import { isAdmin, type Ctx, type View } from '../context';
import { empty, errorBox, fill, h, loading } from '../dom';
import { dateTime, int, relative } from '../format';
import { federationHref } from '../router';
import type { Federation } from '../types';
import { dpOf, modelSummary } from './summary';

export function federationsPage(ctx: Ctx): View {
  const body = h('div', null, loading('federations'));
  const el = h(
    'div',
    { class: 'page' },
    h(
      'header',
      { class: 'page-header' },
      h('h1', { tabindex: -1 }, 'Federations'),
      isAdmin(ctx)
        ? h('a', { class: 'button primary', href: '#/federations/new' }, 'New federation')
        : null,
    ),
    body,
  );
  const load = (): void => {
    fill(body, loading('federations'));
    ctx.api
      .get<Federation[]>('/api/v1/federations')
      .then((feds) => fill(body, feds.length ? table(feds) : none(ctx)))
      .catch((e: Error) => fill(body, errorBox(e.message, load)));
  };
  load();
  return { el, title: 'Federations' };
}

function none(ctx: Ctx): HTMLElement {
  return isAdmin(ctx)
    ? empty(
        'No federations yet.',
        'A federation is one model trained by a group of sites. Create one, then enrol its sites.',
        h(
          'a',
          { class: 'button primary', href: '#/federations/new' },
          'Create the first federation',
        ),
      )
    : empty('No federations yet.', 'An admin has not created any federation on this aggregator.');
}

function table(feds: Federation[]): HTMLElement {
  return h(
    'table',
    { class: 'table', 'aria-label': 'Federations' },
    h(
      'thead',
      null,
      h(
        'tr',
        null,
        ['Name', 'Model', 'Parameters', 'Strategy', 'Min sites', 'Privacy', 'Created'].map((c) =>
          h('th', { scope: 'col' }, c),
        ),
      ),
    ),
    h(
      'tbody',
      null,
      feds.map((f) => {
        const dp = dpOf(f);
        return h(
          'tr',
          null,
          h('td', null, h('a', { href: federationHref(f.id) }, f.name)),
          h('td', null, modelSummary(f)),
          h('td', { class: 'num' }, int(f.parameters)),
          h('td', null, f.strategy),
          h('td', { class: 'num' }, String(f.config.minSites)),
          h('td', null, dp && dp.level !== 'none' ? `${dp.level}-level DP` : '—'),
          h('td', { title: dateTime(f.createdAt) }, relative(f.createdAt)),
        );
      }),
    ),
  );
}
