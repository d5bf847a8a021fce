import { UsageError, type Command } from '../command';
import { admin, client, federationOpt, print } from './admin-common';

/** The chain position held for a site's receipt, as the API describes it. */
type HoldView = {
  seq: number;
  siteId: string;
  siteName: string | null;
  round: number;
  sum: string;
  reservedAt: string;
  connected: boolean;
};

function describe(h: HoldView): string {
  return `position ${h.seq} held for ${h.siteName ?? h.siteId}'s receipt of round ${h.round} (${h.sum}) since ${h.reservedAt}; the site is ${h.connected ? 'connected' : 'not connected'}`;
}

/** `confide admin ledger hold|release-hold`. */
export const ledgerCommands: Command[] = [
  admin(
    ['ledger', 'hold'],
    "Show the ledger position held for a site's receipt, if any (it passes on when the site sends its receipt or says it signed none)",
    { ...federationOpt },
    async (opts, _p, io) => {
      const r = await client(opts).get<{ hold: HoldView | null }>(
        `/api/v1/federations/${String(opts['federation'])}/ledger/hold`,
      );
      print(opts, io, r, () => (r.hold ? describe(r.hold) : 'no ledger position is held'));
    },
    ['confide admin ledger hold --federation 3f0c...'],
  ),
  admin(
    ['ledger', 'release-hold'],
    'Free the ledger position held by a site that will not come back (recorded with your reason; a receipt it signed there can then never be appended, and its local ledger will differ there)',
    {
      ...federationOpt,
      reason: {
        type: 'string',
        value: 'TEXT',
        description: 'why the site will not answer (recorded in the admin trail)',
        required: true,
      },
    },
    async (opts, _p, io) => {
      const reason = String(opts['reason']).trim();
      if (!reason) throw new UsageError('--reason must not be empty');
      const r = await client(opts).post<{ released: HoldView }>(
        `/api/v1/federations/${String(opts['federation'])}/ledger/hold/release`,
        { reason },
      );
      print(opts, io, r, () => `released: ${describe(r.released)}`);
    },
    [
      'confide admin ledger release-hold --federation 3f0c... --reason "hospital-4 decommissioned its node"',
    ],
  ),
];
