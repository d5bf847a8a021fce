import { isAdmin, type Ctx } from '../context';
import { badge, confirmDialog, empty, errorBox, fill, h, loading, toast } from '../dom';
import { siteForm } from '../forms/site-form.view';
import { dateTime, relative } from '../format';
import type { FederationStore } from '../store';
import type { Site } from '../types';
import type { TabView } from './federation';

const STATUS_TONES: Record<Site['status'], string> = {
  pending: 'warn',
  approved: 'ok',
  revoked: 'bad',
};

export function sitesTab(ctx: Ctx, store: FederationStore): TabView {
  const base = `/api/v1/federations/${store.fed.id}/sites`;
  const list = h('div');
  const act = async (site: Site, action: 'approve' | 'revoke'): Promise<void> => {
    if (
      action === 'revoke' &&
      !(await confirmDialog(
        `Revoke ${site.name}?`,
        'Its connection is closed at once and its key can never log in again. To bring the site back, enrol a new key.',
        'Revoke site',
      ))
    ) {
      return;
    }
    try {
      await ctx.api.post(`${base}/${site.id}/${action}`);
      toast(`${site.name} ${action === 'approve' ? 'approved' : 'revoked'}`);
    } catch (e) {
      toast((e as Error).message, 'error');
    }
    await store.refresh(['sites']);
  };
  const draw = (): void => {
    const s = store.sites;
    if (s.state === 'loading') return fill(list, loading('sites'));
    if (s.state === 'error')
      return fill(
        list,
        errorBox(s.message, () => void store.refresh(['sites'])),
      );
    if (!s.data.length) {
      return fill(
        list,
        empty(
          'No sites enrolled yet.',
          isAdmin(ctx)
            ? 'Each site runs `confide node keys` and sends you the public key it prints. Paste it above to enrol the site.'
            : 'An admin enrols sites by their public keys.',
        ),
      );
    }
    fill(
      list,
      h(
        'table',
        { class: 'table', 'aria-label': 'Sites' },
        h(
          'thead',
          null,
          h(
            'tr',
            null,
            [
              'Site',
              'Status',
              'Connection',
              'Key fingerprint',
              'Enrolled',
              isAdmin(ctx) ? 'Actions' : null,
            ]
              .filter((c): c is string => c !== null)
              .map((c) => h('th', { scope: 'col' }, c)),
          ),
        ),
        h(
          'tbody',
          null,
          s.data.map((site) => {
            const connected = store.isConnected(site);
            return h(
              'tr',
              { 'data-site': site.name },
              h('td', null, h('strong', null, site.name)),
              h('td', null, badge(site.status, STATUS_TONES[site.status])),
              h(
                'td',
                { 'data-testid': 'connection' },
                h(
                  'span',
                  { class: connected ? 'conn on' : 'conn off' },
                  connected ? 'connected' : 'offline',
                ),
              ),
              h('td', null, h('code', null, site.fingerprint)),
              h('td', { title: dateTime(site.createdAt) }, relative(site.createdAt)),
              isAdmin(ctx)
                ? h(
                    'td',
                    { class: 'row-actions' },
                    site.status === 'pending'
                      ? h(
                          'button',
                          {
                            type: 'button',
                            class: 'small primary',
                            onClick: () => void act(site, 'approve'),
                            'aria-label': `Approve ${site.name}`,
                          },
                          'Approve',
                        )
                      : null,
                    site.status !== 'revoked'
                      ? h(
                          'button',
                          {
                            type: 'button',
                            class: 'small danger-outline',
                            onClick: () => void act(site, 'revoke'),
                            'aria-label': `Revoke ${site.name}`,
                          },
                          'Revoke',
                        )
                      : null,
                  )
                : null,
            );
          }),
        ),
      ),
    );
  };
  draw();
  const dispose = store.subscribe(draw);
  const enrol = isAdmin(ctx)
    ? h(
        'section',
        { class: 'card' },
        h('h2', null, 'Enrol a site'),
        siteForm({
          submit: async (body, approve) => {
            const site = await ctx.api.post<Site>(base, body);
            if (approve) await ctx.api.post(`${base}/${site.id}/approve`);
            toast(`${site.name} enrolled${approve ? ' and approved' : ''}`);
            await store.refresh(['sites']);
          },
        }),
      )
    : null;
  return {
    el: h(
      'div',
      { class: 'stack' },
      enrol,
      h('section', { class: 'card' }, h('h2', null, 'Sites'), list),
    ),
    dispose,
  };
}
