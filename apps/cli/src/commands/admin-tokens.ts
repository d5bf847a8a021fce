import { parseDuration } from '../duration';
import { choiceOption, UsageError, type Command, type ParsedOptions } from '../command';
import { admin, client, print } from './admin-common';

/** A token as the API lists it: never its secret. */
export type TokenInfo = {
  id: string;
  role: string;
  label: string;
  createdAt: string;
  expiresAt: string | null;
  lastUsedAt: string | null;
  revokedAt: string | null;
};

/** `confide admin token create|list|revoke`. */
export const tokenCommands: Command[] = [
  admin(
    ['token', 'create'],
    'Create an API token for an admin or an auditor (shown once)',
    {
      role: { type: 'string', value: 'ROLE', description: 'admin|auditor', required: true },
      label: {
        type: 'string',
        value: 'TEXT',
        description: 'what the token is for',
        default: 'api token',
      },
      'expires-in': {
        type: 'string',
        value: 'DURATION',
        description:
          'lifetime, e.g. 30m, 12h, 90d (units s, m, h, d, w; at least 1m, at most 3660d); default: until revoked',
      },
    },
    async (opts, _p, io) => {
      const role = choiceOption(opts, 'role', ['admin', 'auditor'] as const);
      const expiresInSeconds = expiresInOption(opts);
      const r = await client(opts).post<TokenInfo & { token: string }>('/api/v1/tokens', {
        role,
        label: opts['label'],
        ...(expiresInSeconds === undefined ? {} : { expiresInSeconds }),
      });
      print(opts, io, r, () => r.token);
      if (!opts['json']) {
        io.err(
          `Created ${String(role)} token ${r.id}${r.expiresAt ? `, valid until ${r.expiresAt}` : ''}; it is shown only once.`,
        );
      }
    },
    [
      'confide admin token create --role auditor --label "external audit 2026" --expires-in 90d',
      'confide admin token create --role admin --label ci --expires-in 12h --json',
    ],
  ),
  admin(
    ['token', 'list'],
    'List API tokens: role, label, created, expires, last used, revoked (never the secrets)',
    {},
    async (opts, _p, io) => {
      const all = (await client(opts).get<TokenInfo[]>('/api/v1/tokens')).map(tokenInfo);
      print(opts, io, all, () => tokenTable(all, new Date()));
    },
    ['confide admin token list', 'confide admin token list --json'],
  ),
  {
    ...admin(
      ['token', 'revoke'],
      'Revoke an API token at once (the last usable admin token is refused)',
      {},
      async (opts, positionals, io) => {
        const id = positionals[0]!;
        const api = client(opts);
        const me = await api.get<{ tokenId: string }>('/api/v1/me');
        const t = tokenInfo(
          await api.post<TokenInfo>(`/api/v1/tokens/${encodeURIComponent(id)}/revoke`),
        );
        print(opts, io, t, () => `revoked ${t.role} token ${t.id} (${t.label}) at ${t.revokedAt}`);
        if (me.tokenId === t.id) {
          io.err('This was the token this command used: it no longer works; use another one.');
        }
      },
      ['confide admin token revoke 3f0c4b9e-...'],
    ),
    positionals: [
      { name: 'ID', description: 'the token id (from `confide admin token list`)', required: true },
    ],
  },
];

/** --expires-in in seconds, within the lifetimes the aggregator accepts; undefined when absent. */
function expiresInOption(opts: ParsedOptions): number | undefined {
  const raw = opts['expires-in'];
  if (raw === undefined) return undefined;
  const seconds = parseDuration(String(raw), 'expires-in');
  if (seconds < 60 || seconds > 3660 * 86_400) {
    throw new UsageError(`--expires-in must be from 1m to 3660d; got "${String(raw)}"`);
  }
  return seconds;
}

/** The fields `token list --json` promises, in that order, whatever else the API adds. */
function tokenInfo(t: TokenInfo): TokenInfo {
  const { id, role, label, createdAt, expiresAt, lastUsedAt, revokedAt } = t;
  return { id, role, label, createdAt, expiresAt, lastUsedAt, revokedAt };
}

function tokenTable(all: TokenInfo[], now: Date): string {
  if (!all.length) return '(no tokens)';
  const state = (t: TokenInfo): string =>
    t.revokedAt ? 'revoked' : t.expiresAt && new Date(t.expiresAt) <= now ? 'expired' : 'active';
  const rows = [
    ['ID', 'ROLE', 'STATE', 'CREATED', 'EXPIRES', 'LAST USED', 'LABEL'],
    ...all.map((t) => [
      t.id,
      t.role,
      state(t),
      t.createdAt,
      t.expiresAt ?? 'never',
      t.lastUsedAt ?? 'never',
      t.label,
    ]),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}
