/** Hash routes (`#/federations/<id>/rounds`): pure parsing and link building. */

export const TABS = ['overview', 'sites', 'rounds', 'metrics', 'privacy', 'ledger'] as const;
export type Tab = (typeof TABS)[number];

export type Route =
  | { page: 'signin' }
  | { page: 'federations' }
  | { page: 'new-federation' }
  | { page: 'federation'; id: string; tab: Tab; query: URLSearchParams }
  | { page: 'not-found'; path: string };

/** Parses `location.hash`. */
export function parseRoute(hash: string): Route {
  const raw = hash.replace(/^#/, '') || '/federations';
  const [path = '', search = ''] = raw.split('?', 2);
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  const query = new URLSearchParams(search);
  if (parts[0] === 'signin' && parts.length === 1) return { page: 'signin' };
  if (parts[0] === 'federations') {
    if (parts.length === 1) return { page: 'federations' };
    if (parts[1] === 'new' && parts.length === 2) return { page: 'new-federation' };
    const tab = (parts[2] ?? 'overview') as Tab;
    if (parts.length <= 3 && parts[1] && TABS.includes(tab)) {
      return { page: 'federation', id: parts[1], tab, query };
    }
  }
  return { page: 'not-found', path };
}

/** `#/federations/<id>/<tab>?<query>` */
export function federationHref(
  id: string,
  tab: Tab = 'overview',
  query?: Record<string, string | number | undefined>,
): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query ?? {}))
    if (v !== undefined && v !== '') q.set(k, String(v));
  const qs = q.toString();
  return `#/federations/${encodeURIComponent(id)}${tab === 'overview' ? '' : `/${tab}`}${qs ? `?${qs}` : ''}`;
}
