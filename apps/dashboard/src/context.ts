import type { Api, Capabilities } from './api';
import type { Me } from './types';

/** What every page gets: the API client, who is signed in, and navigation. */
export interface Ctx {
  api: Api;
  me: Me;
  capabilities(): Promise<Capabilities>;
  go(hash: string): void;
}

/** A rendered page: its element, the document title, and what to release when leaving it. */
export interface View {
  el: HTMLElement;
  title: string;
  dispose?: () => void;
}

export function isAdmin(ctx: Ctx): boolean {
  return ctx.me.role === 'admin';
}
