/** One federation: a header, a tab bar, and the selected tab. */
import type { Ctx, View } from '../context';
import { badge, h } from '../dom';
import { federationHref, TABS, type Tab } from '../router';
import type { FederationStore } from '../store';
import { ledgerTab } from './ledger';
import { metricsTab } from './metrics';
import { overviewTab } from './overview';
import { privacyTab } from './privacy';
import { roundsTab } from './rounds';
import { sitesTab } from './sites';
import { dpOf, modelSummary, secAggOf } from './summary';

const TAB_LABELS: Record<Tab, string> = {
  overview: 'Overview',
  sites: 'Sites',
  rounds: 'Rounds',
  metrics: 'Metrics',
  privacy: 'Privacy',
  ledger: 'Ledger',
};

export type TabView = { el: HTMLElement; dispose?: () => void };

export function federationPage(
  ctx: Ctx,
  store: FederationStore,
  tab: Tab,
  query: URLSearchParams,
): View {
  const fed = store.fed;
  const dp = dpOf(fed);
  const secAgg = secAggOf(fed);
  const content: TabView =
    tab === 'overview'
      ? overviewTab(ctx, store)
      : tab === 'sites'
        ? sitesTab(ctx, store)
        : tab === 'rounds'
          ? roundsTab(ctx, store)
          : tab === 'metrics'
            ? metricsTab(ctx, store)
            : tab === 'privacy'
              ? privacyTab(ctx, store)
              : ledgerTab(ctx, store, query);
  const nav = h(
    'nav',
    { class: 'tabs', 'aria-label': 'Federation sections' },
    TABS.map((t) =>
      h(
        'a',
        {
          href: federationHref(fed.id, t),
          'aria-current': t === tab ? 'page' : undefined,
          'data-tab': t,
        },
        TAB_LABELS[t],
      ),
    ),
  );
  // Arrow keys move between the tabs, as in any tab bar.
  nav.addEventListener('keydown', (ev) => {
    if (ev.key !== 'ArrowRight' && ev.key !== 'ArrowLeft') return;
    const links = Array.from(nav.querySelectorAll('a'));
    const i = links.indexOf(document.activeElement as HTMLAnchorElement);
    if (i < 0) return;
    ev.preventDefault();
    links[(i + (ev.key === 'ArrowRight' ? 1 : links.length - 1)) % links.length]!.focus();
  });
  const el = h(
    'div',
    { class: 'page' },
    h(
      'nav',
      { class: 'crumbs', 'aria-label': 'Breadcrumb' },
      h('a', { href: '#/federations' }, 'Federations'),
      ' / ',
      h('span', null, fed.name),
    ),
    h(
      'header',
      { class: 'page-header' },
      h(
        'div',
        null,
        h('h1', { tabindex: -1 }, fed.name),
        h(
          'p',
          { class: 'meta' },
          h('span', null, modelSummary(fed)),
          h('span', null, fed.strategy === 'fedavg' ? 'FedAvg' : fed.strategy),
          h('span', null, `min ${fed.config.minSites} sites`),
          dp && dp.level !== 'none' ? badge(`${dp.level}-level DP`, 'info') : null,
          secAgg?.enabled ? badge('secure aggregation', 'info') : null,
          h('code', { class: 'id', title: 'Federation id' }, fed.id),
        ),
      ),
    ),
    nav,
    h('div', { class: 'tab-content' }, content.el),
  );
  return { el, title: `${TAB_LABELS[tab]} · ${fed.name}`, dispose: content.dispose };
}
