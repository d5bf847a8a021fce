import { isMissingRoute } from '../api';
import type { Ctx } from '../context';
import { badge, empty, errorBox, fill, h, loading, toast } from '../dom';
import { dateTime } from '../format';
import { federationHref } from '../router';
import type { FederationStore } from '../store';
import type { LedgerEntry, LedgerPage, VerifyResult } from '../types';
import type { TabView } from './federation';

export const PAGE_SIZE = 50;

/** The ledger query of a route: page (from 1), optional site and round filters. */
export interface LedgerQuery {
  page: number;
  site: string;
  round: string;
}

export function ledgerQuery(q: URLSearchParams): LedgerQuery {
  const page = Number(q.get('page'));
  return {
    page: Number.isInteger(page) && page > 0 ? page : 1,
    site: q.get('site') ?? '',
    round: /^\d+$/.test(q.get('round') ?? '') ? q.get('round')! : '',
  };
}

/** GET path of one page of the ledger; without paging for the CSV export. */
export function ledgerPath(federationId: string, q: LedgerQuery, paged = true): string {
  const p = new URLSearchParams();
  if (paged) {
    p.set('page', String(q.page));
    p.set('pageSize', String(PAGE_SIZE));
  }
  if (q.site) p.set('site', q.site);
  if (q.round) p.set('round', q.round);
  const qs = p.toString();
  return `/api/v1/federations/${federationId}/ledger${qs ? `?${qs}` : ''}`;
}

export function ledgerTab(ctx: Ctx, store: FederationStore, query: URLSearchParams): TabView {
  const fedId = store.fed.id;
  const q = ledgerQuery(query);
  const table = h('div', null, loading('the ledger'));
  const result = h('div', { 'aria-live': 'polite' });

  const siteSelect = h(
    'select',
    { id: 'ledger-site', name: 'site' },
    h('option', { value: '' }, 'All sites'),
  );
  const fillSites = (): void => {
    if (store.sites.state !== 'ok') return;
    siteSelect.replaceChildren(
      h('option', { value: '' }, 'All sites'),
      ...store.sites.data.map((s) =>
        h('option', { value: s.id, selected: s.id === q.site }, s.name),
      ),
    );
    siteSelect.value = q.site;
  };
  fillSites();
  const roundInput = h('input', {
    id: 'ledger-round',
    name: 'round',
    inputmode: 'numeric',
    size: 6,
    value: q.round,
    placeholder: 'any',
  });
  const filters = h(
    'form',
    { class: 'filters', 'aria-label': 'Filter the ledger' },
    h('div', { class: 'field' }, h('label', { for: 'ledger-site' }, 'Site'), siteSelect),
    h('div', { class: 'field' }, h('label', { for: 'ledger-round' }, 'Round'), roundInput),
    h('button', { type: 'submit', class: 'secondary' }, 'Apply filters'),
    q.site || q.round
      ? h('a', { class: 'button link', href: federationHref(fedId, 'ledger') }, 'Clear')
      : null,
  );
  filters.addEventListener('submit', (ev) => {
    ev.preventDefault();
    ctx.go(
      federationHref(fedId, 'ledger', {
        site: siteSelect.value,
        round: roundInput.value.trim(),
      }),
    );
  });

  const verifyButton = h('button', { type: 'button', class: 'primary' }, 'Verify ledger');
  verifyButton.addEventListener('click', () => {
    verifyButton.disabled = true;
    verifyButton.textContent = 'Verifying…';
    fill(result, loading('the verification (hash chain, signatures, ε recomputed)'));
    ctx.api
      .post<VerifyResult>(`/api/v1/federations/${fedId}/ledger/verify`)
      .then((r) => fill(result, verifyView(r)))
      .catch((e: Error) => fill(result, errorBox(e.message)))
      .finally(() => {
        verifyButton.disabled = false;
        verifyButton.textContent = 'Verify ledger';
      });
  });
  const exportButton = h('button', { type: 'button', class: 'secondary' }, 'Export CSV');
  exportButton.addEventListener('click', () => {
    exportButton.disabled = true;
    ctx.api
      .text(ledgerPath(fedId, q, false), 'text/csv')
      .then((csv) => {
        const url = URL.createObjectURL(new Blob([csv], { type: 'text/csv' }));
        const a = h('a', { href: url, download: `ledger-${store.fed.name}.csv` });
        document.body.append(a);
        a.click();
        a.remove();
        setTimeout(() => URL.revokeObjectURL(url), 10_000);
      })
      .catch((e: Error) => toast(e.message, 'error'))
      .finally(() => (exportButton.disabled = false));
  });

  const load = (): void => {
    fill(table, loading('the ledger'));
    ctx.api
      .get<LedgerPage>(ledgerPath(fedId, q))
      .then((page) => fill(table, pageView(fedId, q, page)))
      .catch((e: unknown) => {
        if (isMissingRoute(e)) {
          verifyButton.disabled = true;
          exportButton.disabled = true;
          fill(
            table,
            h(
              'div',
              { class: 'state error', role: 'alert' },
              h('strong', null, 'The privacy ledger is not available. '),
              'This aggregator does not serve ',
              h('code', null, 'GET /api/v1/federations/:id/ledger'),
              ' yet.',
            ),
          );
        } else fill(table, errorBox((e as Error).message, load));
      });
  };
  load();
  const dispose = store.subscribe(fillSites);
  return {
    el: h(
      'div',
      { class: 'stack' },
      h(
        'section',
        { class: 'card' },
        h(
          'header',
          { class: 'card-header' },
          h('h2', null, 'Epsilon ledger'),
          h('div', { class: 'toolbar' }, exportButton, verifyButton),
        ),
        h(
          'p',
          { class: 'hint' },
          'Append-only: one entry per release, signed by the site, chained by hash. Verify runs the same checks as ',
          h('code', null, 'confide audit verify'),
          '.',
        ),
        result,
        filters,
        table,
      ),
    ),
    dispose,
  };
}

/** 4 significant digits, no trailing zeros. */
function num(x: number): string {
  return String(Number(x.toPrecision(4)));
}

/** A quantisation scale: 2^k when it is a power of two (it always is in Confide), else 4 digits. */
function scaleText(x: number): string {
  const k = Math.log2(x);
  return Number.isInteger(k) ? `2^${k}` : num(x);
}

function short(x: string): string {
  return x.length > 12 ? `${x.slice(0, 10)}…` : x;
}

function pageView(fedId: string, q: LedgerQuery, page: LedgerPage): HTMLElement {
  if (!page.entries.length) {
    return q.site || q.round
      ? empty('No entries match these filters.', 'Clear the filters to see the whole ledger.')
      : empty(
          'The ledger is empty.',
          'An entry is written each time a site releases an update under differential privacy.',
        );
  }
  const pages = Math.max(1, Math.ceil(page.total / page.pageSize));
  const from = (page.page - 1) * page.pageSize + 1;
  const to = from + page.entries.length - 1;
  const link = (p: number, label: string, rel: string): HTMLElement =>
    p < 1 || p > pages
      ? h('span', { class: 'button secondary small disabled', 'aria-disabled': 'true' }, label)
      : h(
          'a',
          {
            class: 'button secondary small',
            rel,
            href: federationHref(fedId, 'ledger', { ...q, page: p }),
          },
          label,
        );
  return h(
    'div',
    null,
    h(
      'table',
      { class: 'table compact ledger', 'aria-label': 'Ledger entries' },
      h(
        'thead',
        null,
        h(
          'tr',
          null,
          [
            '#',
            'Site',
            'Round',
            'Mechanism',
            'Cumulative ε',
            'δ',
            'Hash',
            'Signature',
            'Recorded',
          ].map((c) => h('th', { scope: 'col' }, c)),
        ),
      ),
      h('tbody', null, page.entries.map(entryRow)),
    ),
    h(
      'nav',
      { class: 'pager', 'aria-label': 'Ledger pages' },
      link(page.page - 1, '← Previous', 'prev'),
      h('span', null, `Entries ${from}–${to} of ${page.total} · page ${page.page} of ${pages}`),
      link(page.page + 1, 'Next →', 'next'),
    ),
  );
}

function entryRow(e: LedgerEntry): HTMLElement {
  const m = e.mechanism;
  const over = e.cumulativeEpsilon > e.epsilonLimit;
  return h(
    'tr',
    { 'data-seq': e.seq },
    h('td', { class: 'num' }, String(e.seq)),
    h('td', null, e.siteName),
    h('td', { class: 'num' }, String(e.round)),
    h(
      'td',
      { class: 'mechanism', 'data-release': m.release ?? 'update' },
      m.release ? h('span', { class: 'release' }, `${m.release} sum, `) : '',
      `${m.level}: z=${num(m.noiseMultiplier)}, q=${num(m.samplingRate)}, steps=${m.steps}, ${m.release ? 'sensitivity' : 'C'}=${num(m.clipNorm)}`,
      m.survivorsAssumed ? `, t=${m.survivorsAssumed}` : '',
      m.noise === 'distributed-discrete-gaussian'
        ? h(
            'span',
            {
              class: 'noise',
              title:
                'distributed discrete Gaussian under secure aggregation (Kairouz et al. 2021), ' +
                'accounted with its own bound',
            },
            `, discrete Gaussian: scale=${scaleText(m.quantizationScale ?? 0)}, d=${m.dimension ?? '?'}`,
          )
        : '',
    ),
    h(
      'td',
      { class: `num${over ? ' bad' : ''}` },
      `${e.cumulativeEpsilon.toFixed(3)} / ${e.epsilonLimit}`,
    ),
    h('td', { class: 'num' }, String(e.delta)),
    h('td', null, h('code', { title: `hash ${e.hash}\nprev ${e.prevHash}` }, short(e.hash))),
    h('td', null, h('code', { title: e.signature }, short(e.signature))),
    h('td', null, dateTime(e.createdAt)),
  );
}

function verifyView(r: VerifyResult): HTMLElement {
  return h(
    'section',
    {
      class: `verify ${r.ok ? 'verify-ok' : 'verify-bad'}`,
      'data-testid': 'verify-result',
      'aria-label': 'Verification result',
    },
    h('h3', null, r.ok ? '✓ The ledger verifies' : '✗ The ledger does not verify'),
    h(
      'ul',
      { class: 'checks' },
      r.checks.map((c) =>
        h(
          'li',
          { class: c.ok ? 'ok' : 'bad' },
          badge(c.ok ? 'pass' : 'fail', c.ok ? 'ok' : 'bad'),
          ' ',
          h('strong', null, c.name),
          c.detail ? h('span', { class: 'muted' }, ` — ${c.detail}`) : null,
        ),
      ),
    ),
    r.discrepancies.length
      ? h(
          'table',
          { class: 'table compact', 'aria-label': 'Discrepancies' },
          h(
            'thead',
            null,
            h(
              'tr',
              null,
              ['#', 'Site', 'Kind', 'Message'].map((c) => h('th', { scope: 'col' }, c)),
            ),
          ),
          h(
            'tbody',
            null,
            r.discrepancies.map((d) =>
              h(
                'tr',
                null,
                h('td', null, d.seq === undefined ? '—' : String(d.seq)),
                h('td', null, d.siteId ?? '—'),
                h('td', null, d.kind),
                h('td', null, d.message),
              ),
            ),
          ),
        )
      : null,
  );
}
