/** The "enrol a site" form, rendered. */
import { ApiError } from '../api';
import { h } from '../dom';
import { checkbox, FormView, textInput } from './form-view';
import { siteRequestBody, validateSiteForm, type SiteFormState } from './site-form';

export function siteForm(opts: {
  submit: (body: { name: string; publicKey: string }, approve: boolean) => Promise<unknown>;
}): HTMLFormElement {
  const state: SiteFormState = { name: '', publicKey: '', approve: true };
  const v = new FormView<'name' | 'publicKey' | 'approve'>();
  const key = h('textarea', {
    rows: 2,
    spellcheck: 'false',
    class: 'mono',
    placeholder: '44 base64 characters ending in "="',
  });
  key.addEventListener('input', () => {
    state.publicKey = key.value;
    v.clearError('publicKey');
  });
  const button = h('button', { type: 'submit', class: 'primary' }, 'Enrol site');
  const form = h(
    'form',
    { class: 'form inline-form', novalidate: true, 'aria-label': 'Enrol a site' },
    v.banner,
    h(
      'div',
      { class: 'grid-2' },
      v.field(
        'name',
        'Site name',
        textInput(state, 'name', { autocomplete: 'off', placeholder: 'hospital-1' }, () =>
          v.clearError('name'),
        ),
      ),
      v.field('publicKey', 'Public key', key, 'As printed by `confide node keys` on the site'),
    ),
    h(
      'div',
      { class: 'actions' },
      v.field('approve', 'Approve right away', checkbox(state, 'approve')),
      button,
    ),
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    v.setBanner(null);
    const first = v.setErrors(validateSiteForm(state));
    if (first) {
      first.focus();
      return;
    }
    button.disabled = true;
    opts
      .submit(siteRequestBody(state), state.approve)
      .then(() => {
        state.name = '';
        state.publicKey = '';
        form.reset();
        (form.elements.namedItem('approve') as HTMLInputElement).checked = state.approve;
      })
      .catch((e: unknown) => {
        const message = e instanceof ApiError ? e.message : String(e);
        v.setBanner(message);
        v.setErrors(
          /public key|publicKey/i.test(message)
            ? { publicKey: message }
            : /name/i.test(message)
              ? { name: message }
              : {},
        );
      })
      .finally(() => (button.disabled = false));
  });
  return form;
}
