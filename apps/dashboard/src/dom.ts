/** Tiny DOM helpers: the dashboard is plain TypeScript, no framework. */

export type Child = Node | string | number | null | undefined | false | Child[];
export type Attrs = Record<
  string,
  string | number | boolean | null | undefined | ((event: never) => void)
>;

const SVG_NS = 'http://www.w3.org/2000/svg';

function apply(el: Element, attrs: Attrs | null | undefined): void {
  if (!attrs) return;
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (typeof value === 'function') {
      el.addEventListener(key.slice(2).toLowerCase(), value as EventListener);
    } else if (key === 'value' && 'value' in el) {
      (el as HTMLInputElement).value = String(value);
    } else if (key === 'checked' && 'checked' in el) {
      (el as HTMLInputElement).checked = Boolean(value);
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
}

function append(el: Element, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

/** Creates an HTML element: `h('button', { class: 'primary', onClick }, 'Save')`. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs?: Attrs | null,
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  apply(el, attrs);
  append(el, children);
  return el;
}

/** Creates an SVG element. */
export function s<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attrs?: Attrs | null,
  ...children: Child[]
): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG_NS, tag);
  apply(el, attrs);
  append(el, children);
  return el;
}

/** Replaces the children of `el`. */
export function fill(el: Element, ...children: Child[]): void {
  el.replaceChildren();
  append(el, children);
}

/** A loading placeholder with a spinner. */
export function loading(what: string): HTMLElement {
  return h(
    'div',
    { class: 'state loading', role: 'status', 'aria-live': 'polite' },
    h('span', { class: 'spinner', 'aria-hidden': 'true' }),
    `Loading ${what}…`,
  );
}

/** An error box with the server's message and an optional retry. */
export function errorBox(message: string, retry?: () => void): HTMLElement {
  return h(
    'div',
    { class: 'state error', role: 'alert' },
    h('strong', null, 'Something went wrong. '),
    h('span', { class: 'message' }, message),
    retry ? h('button', { type: 'button', class: 'link', onClick: retry }, 'Try again') : null,
  );
}

/** A friendly empty state: what is missing and what to do about it. */
export function empty(title: string, hint: Child, action?: Child): HTMLElement {
  return h(
    'div',
    { class: 'state empty' },
    h('p', { class: 'empty-title' }, title),
    h('p', { class: 'muted' }, hint),
    action ?? null,
  );
}

/** A small status pill. */
export function badge(text: string, tone: string = text): HTMLElement {
  return h('span', { class: `badge badge-${tone.replace(/[^a-z-]/gi, '')}` }, text);
}

/** Asks for confirmation with a modal <dialog> (Escape cancels); resolves true on confirm. */
export function confirmDialog(title: string, body: string, confirmLabel: string): Promise<boolean> {
  return new Promise((resolve) => {
    const dialog = h(
      'dialog',
      { class: 'dialog', 'aria-labelledby': 'dialog-title' },
      h(
        'form',
        { method: 'dialog' },
        h('h2', { id: 'dialog-title' }, title),
        h('p', null, body),
        h(
          'div',
          { class: 'actions' },
          h('button', { value: 'cancel', type: 'submit', class: 'secondary' }, 'Cancel'),
          h('button', { value: 'ok', type: 'submit', class: 'danger' }, confirmLabel),
        ),
      ),
    );
    dialog.addEventListener('close', () => {
      resolve(dialog.returnValue === 'ok');
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

/** Shows a short message at the bottom of the screen (announced to screen readers). */
export function toast(message: string, tone: 'ok' | 'error' = 'ok'): void {
  let region = document.getElementById('toasts');
  if (!region) {
    region = h('div', { id: 'toasts', 'aria-live': 'polite', role: 'status' });
    document.body.append(region);
  }
  const t = h('div', { class: `toast toast-${tone}`, title: 'Click to dismiss' }, message);
  t.addEventListener('click', () => t.remove());
  region.append(t);
  // A few at a time, briefly: they must not cover the page's own buttons for long.
  while (region.children.length > 3) region.firstElementChild?.remove();
  setTimeout(() => t.remove(), tone === 'error' ? 8000 : 3000);
}
