import { isAdmin, type Ctx, type View } from '../context';
import { empty, errorBox, fill, h, loading, toast } from '../dom';
import { federationForm } from '../forms/federation-form.view';
import { federationHref } from '../router';
import type { Federation } from '../types';

export function newFederationPage(ctx: Ctx): View {
  const body = h('div', null, loading('the form'));
  const el = h(
    'div',
    { class: 'page narrow' },
    h(
      'nav',
      { class: 'crumbs', 'aria-label': 'Breadcrumb' },
      h('a', { href: '#/federations' }, 'Federations'),
      ' / ',
      h('span', null, 'New'),
    ),
    h('header', { class: 'page-header' }, h('h1', { tabindex: -1 }, 'New federation')),
    body,
  );
  if (!isAdmin(ctx)) {
    fill(
      body,
      empty(
        'Only admins can create federations.',
        `You are signed in as an ${ctx.me.role}; the server refuses this action for your token.`,
        h('a', { class: 'button secondary', href: '#/federations' }, 'Back to federations'),
      ),
    );
    return { el, title: 'New federation' };
  }
  ctx
    .capabilities()
    .then((caps) =>
      fill(
        body,
        federationForm({
          caps,
          cancel: () => ctx.go('#/federations'),
          submit: async (reqBody) => {
            const fed = await ctx.api.post<Federation>('/api/v1/federations', reqBody);
            toast(`Federation ${fed.name} created`);
            ctx.go(federationHref(fed.id, 'sites'));
          },
        }),
      ),
    )
    .catch((e: Error) => fill(body, errorBox(e.message)));
  return { el, title: 'New federation' };
}
