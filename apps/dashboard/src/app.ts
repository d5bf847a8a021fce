/** The shell: sign-in, the header, hash routing, and the federation store kept across its tabs. */
import { Api, ApiError, loadCapabilities, type Capabilities } from './api';
import type { Ctx, View } from './context';
import { empty, errorBox, fill, h, loading } from './dom';
import { federationPage } from './pages/federation';
import { federationsPage } from './pages/federations';
import { newFederationPage } from './pages/new-federation';
import { signinPage } from './pages/signin';
import { parseRoute, type Route } from './router';
import { clearToken, storedToken, storeToken } from './session';
import { FederationStore } from './store';
import type { Federation, Me } from './types';

export function startApp(root: HTMLElement): void {
  let session: { api: Api; me: Me } | null = null;
  let caps: Promise<Capabilities> | null = null;
  let view: View | null = null;
  let store: FederationStore | null = null;
  /** Where to go after signing in (the page that asked for it). */
  let after = '#/federations';
  let lastFocusKey = '';

  const main = h('main', { id: 'main', tabindex: -1 });
  const userBox = h('div', { class: 'user' });
  const header = h(
    'header',
    { class: 'topbar' },
    h('a', { class: 'skip', href: '#main', onClick: skipToMain }, 'Skip to content'),
    h(
      'a',
      { class: 'brand', href: '#/federations' },
      h('span', { class: 'logo', 'aria-hidden': 'true' }),
      'Confide',
    ),
    h(
      'nav',
      { class: 'mainnav', 'aria-label': 'Main' },
      h('a', { href: '#/federations' }, 'Federations'),
    ),
    userBox,
  );
  root.replaceChildren(header, main);

  function skipToMain(ev: Event): void {
    ev.preventDefault();
    main.focus();
  }

  const signOut = (notice?: string): void => {
    clearToken();
    session = null;
    store?.close();
    store = null;
    renderSignin(notice);
  };

  const ctx = (): Ctx => ({
    api: session!.api,
    me: session!.me,
    // A failed load is not kept, so the next visit to the form asks again.
    capabilities: () =>
      (caps ??= loadCapabilities(session!.api).catch((e: unknown) => {
        caps = null;
        throw e;
      })),
    go: (hash) => {
      if (location.hash === hash) void route();
      else location.hash = hash;
    },
  });

  function show(v: View, focusKey: string): void {
    view?.dispose?.();
    view = v;
    fill(main, v.el);
    document.title = `${v.title} · Confide`;
    // Focus the page heading on a new page (screen readers announce it); keep focus on tab switches.
    if (focusKey !== lastFocusKey) {
      lastFocusKey = focusKey;
      main.querySelector<HTMLElement>('h1')?.focus({ preventScroll: true });
      window.scrollTo(0, 0);
    }
  }

  function renderSignin(notice?: string): void {
    header.hidden = true;
    view?.dispose?.();
    view = null;
    lastFocusKey = 'signin';
    fill(
      main,
      signinPage({
        notice,
        onSignedIn: (token, me) => {
          storeToken(token);
          begin(token, me);
          const target = after;
          after = '#/federations';
          if (location.hash === target) void route();
          else location.hash = target;
        },
      }),
    );
    document.title = 'Sign in · Confide';
    main.querySelector<HTMLElement>('input')?.focus();
  }

  function begin(token: string, me: Me): void {
    session = {
      api: new Api(token, (message) => signOut(`Signed out: ${message}.`)),
      me,
    };
    header.hidden = false;
    fill(
      userBox,
      me.server
        ? h(
            'span',
            {
              class: 'server-key',
              'data-testid': 'server-key',
              title: `the aggregator's identity key, which sites pin (confide node join --server-key ${me.server.fingerprint}): ${me.server.publicKey}`,
            },
            `key ${me.server.fingerprint}${me.server.tls ? '' : ' (no TLS)'}`,
          )
        : '',
      h('span', { class: `role role-${me.role}`, 'data-testid': 'role' }, me.role),
      h('span', { class: 'label', title: `token ${me.tokenId}` }, me.label),
      h('button', { type: 'button', class: 'link', onClick: () => signOut() }, 'Sign out'),
    );
  }

  async function route(): Promise<void> {
    const r: Route = parseRoute(location.hash);
    if (!session) {
      if (r.page !== 'signin') after = location.hash || '#/federations';
      renderSignin();
      return;
    }
    if (r.page === 'signin') {
      location.hash = '#/federations';
      return;
    }
    if (r.page !== 'federation' && store) {
      store.close();
      store = null;
    }
    switch (r.page) {
      case 'federations':
        show(federationsPage(ctx()), 'federations');
        return;
      case 'new-federation':
        show(newFederationPage(ctx()), 'new');
        return;
      case 'not-found':
        show(
          {
            el: h(
              'div',
              { class: 'page' },
              h('h1', { tabindex: -1 }, 'Page not found'),
              empty(
                `There is no page at “${r.path}”.`,
                'Check the address, or start from the list of federations.',
                h('a', { class: 'button secondary', href: '#/federations' }, 'Federations'),
              ),
            ),
            title: 'Not found',
          },
          `nf:${r.path}`,
        );
        return;
      case 'federation': {
        if (!store || store.fed.id !== r.id) {
          store?.close();
          store = null;
          view?.dispose?.();
          view = null;
          fill(main, h('div', { class: 'page' }, loading('the federation')));
          let fed: Federation;
          try {
            fed = await ctx().api.get<Federation>(
              `/api/v1/federations/${encodeURIComponent(r.id)}`,
            );
          } catch (e) {
            const again = (): void => void route();
            show(
              {
                el: h(
                  'div',
                  { class: 'page' },
                  h(
                    'h1',
                    { tabindex: -1 },
                    e instanceof ApiError && e.status === 404
                      ? 'Federation not found'
                      : 'Could not load the federation',
                  ),
                  errorBox((e as Error).message, again),
                ),
                title: 'Federation',
              },
              `fed-error:${r.id}`,
            );
            return;
          }
          // Another navigation may have happened while loading.
          const now = parseRoute(location.hash);
          if (now.page !== 'federation' || now.id !== r.id) return;
          store = new FederationStore(ctx().api, fed);
          store.start();
        }
        show(federationPage(ctx(), store, r.tab, r.query), `fed:${r.id}`);
        return;
      }
    }
  }

  window.addEventListener('hashchange', () => void route());

  const token = storedToken();
  if (!token) {
    void route();
    return;
  }
  fill(main, h('div', { class: 'page' }, loading('your session')));
  new Api(token)
    .get<Me>('/api/v1/me')
    .then((me) => {
      begin(token, me);
      void route();
    })
    .catch((e: unknown) => {
      if (e instanceof ApiError && e.status === 401) {
        clearToken();
        if (parseRoute(location.hash).page !== 'signin') after = location.hash || '#/federations';
        renderSignin(`Your token is no longer accepted: ${e.message}.`);
      } else {
        fill(
          main,
          h(
            'div',
            { class: 'page' },
            errorBox((e as Error).message, () => location.reload()),
          ),
        );
      }
    });
}
