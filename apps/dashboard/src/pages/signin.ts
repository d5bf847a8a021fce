import { Api, ApiError } from '../api';
import { h } from '../dom';
import type { Me } from '../types';

/** Sign-in with an API token; the token is checked with GET /api/v1/me before it is kept. */
export function signinPage(opts: {
  notice?: string;
  onSignedIn: (token: string, me: Me) => void;
}): HTMLElement {
  const input = h('input', {
    type: 'password',
    id: 'token',
    name: 'token',
    autocomplete: 'off',
    spellcheck: 'false',
    placeholder: 'cfd_admin_… or cfd_auditor_…',
    'aria-describedby': 'token-hint',
    required: true,
  });
  const error = h('p', { class: 'form-banner', role: 'alert', hidden: true });
  const button = h('button', { type: 'submit', class: 'primary wide' }, 'Sign in');
  const form = h(
    'form',
    { class: 'signin card', 'aria-labelledby': 'signin-title', novalidate: true },
    h(
      'div',
      { class: 'brand big' },
      h('span', { class: 'logo', 'aria-hidden': 'true' }),
      'Confide',
    ),
    h('h1', { id: 'signin-title', tabindex: -1 }, 'Sign in'),
    opts.notice ? h('p', { class: 'notice' }, opts.notice) : null,
    error,
    h(
      'div',
      { class: 'field' },
      h('label', { for: 'token' }, 'API token'),
      input,
      h(
        'p',
        { class: 'hint', id: 'token-hint' },
        'An admin or auditor token (',
        h('code', null, 'confide admin token create --role auditor'),
        '). It is kept in this browser tab only and sent to this aggregator only.',
      ),
    ),
    button,
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const token = input.value.trim();
    if (!token) {
      error.hidden = false;
      error.textContent = 'Paste your API token.';
      input.focus();
      return;
    }
    button.disabled = true;
    button.textContent = 'Signing in…';
    new Api(token)
      .get<Me>('/api/v1/me')
      .then((me) => opts.onSignedIn(token, me))
      .catch((e: unknown) => {
        error.hidden = false;
        error.textContent =
          e instanceof ApiError && e.status === 401
            ? `This token was not accepted: ${e.message}.`
            : (e as Error).message;
        input.select();
        input.focus();
      })
      .finally(() => {
        button.disabled = false;
        button.textContent = 'Sign in';
      });
  });
  return h('div', { class: 'signin-page' }, form);
}
