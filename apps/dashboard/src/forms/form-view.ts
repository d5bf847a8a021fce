/** DOM side of the forms: labelled controls with inline errors and a banner for the server's answer. */
import { h, type Child } from '../dom';

type Control = HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement;

let uid = 0;

/** Keeps each field's control and error element so errors can be set without re-rendering. */
export class FormView<F extends string> {
  readonly banner = h('div', { class: 'form-banner', role: 'alert', hidden: true });
  private readonly errors = new Map<F, HTMLElement>();
  private readonly controls = new Map<F, Control>();
  private readonly rows = new Map<F, HTMLElement>();
  private readonly prefix = `f${++uid}`;

  /** A labelled row: label, control, hint, and a slot for the field's error. */
  field(name: F, label: string, control: Control, hint?: Child): HTMLElement {
    const id = `${this.prefix}-${name}`;
    control.id = id;
    control.name = name;
    const error = h('p', { class: 'field-error', id: `${id}-error`, hidden: true });
    const hintEl = hint ? h('p', { class: 'hint', id: `${id}-hint` }, hint) : null;
    control.setAttribute(
      'aria-describedby',
      [hintEl ? `${id}-hint` : '', `${id}-error`].join(' ').trim(),
    );
    const row =
      control instanceof HTMLInputElement && control.type === 'checkbox'
        ? h(
            'div',
            { class: 'field checkbox' },
            control,
            h('label', { for: id }, label),
            hintEl,
            error,
          )
        : h('div', { class: 'field' }, h('label', { for: id }, label), control, hintEl, error);
    this.errors.set(name, error);
    this.controls.set(name, control);
    this.rows.set(name, row);
    return row;
  }

  /** Shows `errors` next to their fields (clearing the others); returns the first invalid control. */
  setErrors(errors: Partial<Record<F, string>>): Control | null {
    let first: Control | null = null;
    for (const [name, el] of this.errors) {
      const message = errors[name];
      const control = this.controls.get(name)!;
      el.textContent = message ?? '';
      el.hidden = !message;
      if (message) {
        control.setAttribute('aria-invalid', 'true');
        if (!first && !this.rows.get(name)?.closest('[hidden]')) first = control;
      } else control.removeAttribute('aria-invalid');
    }
    return first;
  }

  clearError(name: F): void {
    const el = this.errors.get(name);
    if (el) {
      el.hidden = true;
      el.textContent = '';
    }
    this.controls.get(name)?.removeAttribute('aria-invalid');
  }

  /** The server's message, verbatim (null hides the banner). */
  setBanner(message: string | null, title = 'The server refused this:'): void {
    this.banner.replaceChildren();
    this.banner.hidden = message === null;
    if (message !== null) {
      this.banner.append(
        h('strong', null, title),
        ' ',
        h('span', { class: 'server-message' }, message),
      );
    }
  }

  row(name: F): HTMLElement | undefined {
    return this.rows.get(name);
  }
}

/** `<input>` bound to a string property of `state`. */
export function textInput<S extends object>(
  state: S,
  key: keyof S & string,
  attrs: Record<string, string | number | boolean | undefined> = {},
  onChange?: () => void,
): HTMLInputElement {
  const el = h('input', { type: 'text', ...attrs, value: String(state[key] ?? '') });
  el.addEventListener('input', () => {
    (state as Record<string, unknown>)[key] = el.value;
    onChange?.();
  });
  return el;
}

/** `<select>` bound to a string property of `state`. */
export function selectInput<S extends object>(
  state: S,
  key: keyof S & string,
  options: Array<[value: string, label: string]>,
  onChange?: () => void,
): HTMLSelectElement {
  const el = h(
    'select',
    null,
    options.map(([value, label]) => h('option', { value, selected: state[key] === value }, label)),
  );
  el.value = String(state[key]);
  el.addEventListener('change', () => {
    (state as Record<string, unknown>)[key] = el.value;
    onChange?.();
  });
  return el;
}

/** `<input type=checkbox>` bound to a boolean property of `state`. */
export function checkbox<S extends object>(
  state: S,
  key: keyof S & string,
  onChange?: () => void,
): HTMLInputElement {
  const el = h('input', { type: 'checkbox', checked: Boolean(state[key]) });
  el.addEventListener('change', () => {
    (state as Record<string, unknown>)[key] = el.checked;
    onChange?.();
  });
  return el;
}
