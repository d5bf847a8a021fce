import { readFile, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import {
  confideAccountant,
  parseLedgerExport,
  parseLocalLedger,
  serializeLedgerExport,
  verifyLedgerExport,
  type LedgerEntry,
  type LedgerExport,
  type VerificationReport,
} from '@confide/privacy-ledger';
import { ApiClient } from '../api-client';
import { caOption, readCaOption } from '../ca-option';
import {
  CliError,
  str,
  UsageError,
  type Command,
  type OptionSpec,
  type ParsedOptions,
} from '../command';

/** Where the ledger to verify comes from: the REST API, the database (read-only), or an export file. */
export type LedgerSource =
  | { kind: 'server'; server: string; token: string; federationId: string; ca?: string }
  | { kind: 'database'; databaseUrl: string; federationId: string }
  | { kind: 'file'; path: string };

/** Fetches a federation's ledger export from the chosen source. */
export async function loadLedger(source: LedgerSource): Promise<LedgerExport> {
  switch (source.kind) {
    case 'server': {
      const api = new ApiClient(source.server, source.token, source.ca ? { ca: source.ca } : {});
      return parseLedgerExport(
        await api.get<unknown>(`/api/v1/federations/${source.federationId}/ledger/export`),
      );
    }
    case 'file': {
      let text: string;
      try {
        text = await readFile(source.path, 'utf8');
      } catch (e) {
        throw new CliError(`cannot read ${source.path}: ${(e as Error).message}`, 2);
      }
      return parseLedgerExport(text);
    }
    case 'database':
      return exportFromDatabase(source.databaseUrl, source.federationId);
  }
}

/** Reads the ledger straight from Postgres in a read-only transaction (no aggregator involved). */
async function exportFromDatabase(
  databaseUrl: string,
  federationId: string,
): Promise<LedgerExport> {
  const { openDatabase, ledgerEntryFromRow } = await import('@confide/aggregator');
  const db = await openDatabase({ databaseUrl, migrate: false });
  try {
    return await db.transaction(async (em) => {
      await em.query('SET TRANSACTION READ ONLY');
      const fed = await em.query(`SELECT id, config FROM federation WHERE id::text = $1`, [
        federationId,
      ]);
      if (!fed.length) throw new CliError(`no federation ${federationId} in that database`);
      const sites = await em.query(
        `SELECT id, name, public_key FROM site WHERE federation_id = $1 ORDER BY created_at`,
        [federationId],
      );
      const rows = await em.query(
        `SELECT * FROM ledger_entry WHERE federation_id = $1 ORDER BY seq`,
        [federationId],
      );
      const dp = (fed[0].config as { dp?: { level: string; delta?: number } }).dp;
      return parseLedgerExport({
        format: 'confide-ledger/1',
        federationId,
        orders: [...confideAccountant.orders],
        ...(dp && dp.level !== 'none' && dp.delta !== undefined ? { delta: dp.delta } : {}),
        sites: (sites as Array<Record<string, string>>).map((s) => ({
          siteId: s['id'],
          name: s['name'],
          publicKey: s['public_key'],
        })),
        entries: (rows as Array<Record<string, unknown>>).map(ledgerEntryFromRow),
        exportedAt: new Date().toISOString(),
      });
    });
  } finally {
    await db.close();
  }
}

/**
 * The auditor's verification: recomputes every epsilon with Confide's accountant, checks the chain and
 * every signature, and reconciles a site's local ledger when given. The demo and the dashboard's
 * Verify button run this same function.
 */
export async function auditVerify(
  source: LedgerSource,
  siteLedgerFiles: string[] = [],
): Promise<{ report: VerificationReport; ledger: LedgerExport }> {
  const ledger = await loadLedger(source);
  const localLedgers = new Map<string, LedgerEntry[]>();
  for (const file of siteLedgerFiles) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (e) {
      throw new CliError(`cannot read the site ledger ${file}: ${(e as Error).message}`, 2);
    }
    const entries = parseLocalLedger(text).filter((e) => e.federationId === ledger.federationId);
    const siteId = entries[0]?.siteId;
    if (!siteId) throw new CliError(`${file} holds no entry of federation ${ledger.federationId}`);
    localLedgers.set(siteId, [...(localLedgers.get(siteId) ?? []), ...entries]);
  }
  return {
    report: verifyLedgerExport(ledger, { accountant: confideAccountant, localLedgers }),
    ledger,
  };
}

const sourceOptions: Record<string, OptionSpec> = {
  server: {
    type: 'string',
    value: 'URL',
    description: 'aggregator URL (with --token and --federation)',
    env: 'CONFIDE_SERVER',
  },
  ...caOption,
  token: {
    type: 'string',
    value: 'TOKEN',
    description: 'auditor or admin API token',
    env: 'CONFIDE_TOKEN',
  },
  federation: {
    type: 'string',
    value: 'ID',
    description: 'federation id',
    env: 'CONFIDE_FEDERATION',
  },
  'database-url': {
    type: 'string',
    value: 'URL',
    description: 'read the ledger from Postgres directly (read-only), instead of --server',
  },
  export: {
    type: 'string',
    value: 'FILE',
    description:
      'verify an export file offline (from `confide audit export` or GET .../ledger/export)',
  },
};

function sourceOf(opts: ParsedOptions): LedgerSource {
  const file = opts['export'] as string | undefined;
  const dbUrl = opts['database-url'] as string | undefined;
  const server = opts['server'] as string | undefined;
  const chosen = [file, dbUrl].filter(Boolean).length;
  if (chosen > 1) throw new UsageError('give one of --export, --database-url or --server');
  if (file) return { kind: 'file', path: resolve(file) };
  const federationId = opts['federation'] as string | undefined;
  if (!federationId) throw new UsageError('--federation is required (or set CONFIDE_FEDERATION)');
  if (dbUrl) return { kind: 'database', databaseUrl: dbUrl, federationId };
  if (!server)
    throw new UsageError('give --server URL --token TOKEN, --database-url URL, or --export FILE');
  const token = opts['token'] as string | undefined;
  if (!token) throw new UsageError('--token is required with --server (or set CONFIDE_TOKEN)');
  const ca = readCaOption(opts);
  return { kind: 'server', server, token, federationId, ...(ca ? { ca } : {}) };
}

export const auditCommands: Command[] = [
  {
    path: ['audit', 'verify'],
    summary: 'Verify a federation’s epsilon ledger independently',
    description:
      'Recomputes every epsilon from the recorded mechanism parameters with Confide’s accountant, checks\n' +
      'the hash chain and every site signature, and reconciles a site’s local ledger (--site-ledger) with\n' +
      'the aggregator’s. Prints what it checked and every discrepancy. Exit 0 when all holds, 1 on a\n' +
      'discrepancy, 2 on bad usage.',
    options: {
      ...sourceOptions,
      'site-ledger': {
        type: 'string',
        value: 'FILE',
        description:
          'a site’s local ledger (ledger.jsonl beside its key); comma-separated for several',
      },
      json: { type: 'boolean', description: 'print the report as JSON' },
    },
    examples: [
      'confide audit verify --server https://fl.example.org --token $AUDITOR --federation 3f0c... --site-ledger site/ledger.jsonl',
      'confide audit verify --export ledger.json',
      'confide audit verify --database-url postgres://auditor@db/confide --federation 3f0c...',
    ],
    async run(opts, _p, io) {
      const source = sourceOf(opts);
      const files = opts['site-ledger']
        ? String(opts['site-ledger'])
            .split(',')
            .map((f) => resolve(f.trim()))
        : [];
      const { report, ledger } = await auditVerify(source, files);
      if (opts['json']) {
        io.out(
          JSON.stringify(
            { federationId: ledger.federationId, entries: ledger.entries.length, ...report },
            null,
            2,
          ),
        );
      } else {
        io.out(
          `ledger of federation ${ledger.federationId}: ${ledger.entries.length} entries, ${ledger.sites.length} sites`,
        );
        for (const c of report.checks)
          io.out(`  ${c.ok ? 'ok  ' : 'FAIL'}  ${c.name}: ${c.detail}`);
        for (const d of report.discrepancies) {
          io.out(
            `  discrepancy ${d.kind}${d.seq !== undefined ? ` at seq ${d.seq}` : ''}${d.siteId ? ` (site ${d.siteId})` : ''}: ${d.message}`,
          );
        }
        io.out(
          report.ok
            ? 'VERIFIED: every check holds'
            : `NOT VERIFIED: ${report.discrepancies.length} discrepancy(ies)`,
        );
      }
      return report.ok ? 0 : 1;
    },
  },
  {
    path: ['audit', 'export'],
    summary: 'Export a federation’s ledger (entries, site keys, order grid) to a JSON file',
    options: {
      ...sourceOptions,
      out: {
        type: 'string',
        value: 'FILE',
        description: 'where to write the export',
        required: true,
      },
    },
    async run(opts, _p, io) {
      const source = sourceOf(opts);
      if (source.kind === 'file')
        throw new UsageError('--export is for verify; export reads --server or --database-url');
      const ledger = await loadLedger(source);
      const out = resolve(str(opts, 'out'));
      await writeFile(out, serializeLedgerExport(ledger));
      io.err(
        `wrote ${ledger.entries.length} entries of federation ${ledger.federationId} to ${out}`,
      );
    },
  },
];
