import nacl from 'tweetnacl';
import { canonicalJson, fromCanonicalBase64, isIsoInstant } from './canonical';
import { type LedgerEntry, validateLedgerEntry } from './entry';
import { LedgerError, LedgerErrorCode } from './errors';
import { type Fail, failWith, inRange, record, text } from './fields';
import { noiseOf, releaseOf, validateOrders } from './mechanism';

/** The version tag of the export format. */
export const LEDGER_EXPORT_FORMAT = 'confide-ledger/1';

/** A site as the export lists it: the key its entries must be signed with. */
export interface LedgerSite {
  siteId: string;
  name: string;
  /** Ed25519 public key, padded base64. */
  publicKey: string;
}

/** A federation's whole ledger as `confide audit export` writes it and `confide audit verify` reads it. */
export interface LedgerExport {
  format: typeof LEDGER_EXPORT_FORMAT;
  federationId: string;
  /** The Renyi orders of every curve; each entry carries their fingerprint as `ordersHash`. */
  orders: number[];
  /** The federation's delta, when it pins one. */
  delta?: number;
  sites: LedgerSite[];
  /** All entries in chain (seq) order. */
  entries: LedgerEntry[];
  exportedAt: string;
}

const EXPORT_KEYS = [
  'format',
  'federationId',
  'orders',
  'delta',
  'sites',
  'entries',
  'exportedAt',
] as const;

/**
 * Parses and checks a ledger export (JSON text or an already parsed value); throws INVALID_EXPORT
 * naming the offending field. Checks the shape only: `verifyLedger` checks the content.
 * @example const exp = parseLedgerExport(readFileSync('ledger.json', 'utf8'))
 */
export function parseLedgerExport(json: unknown): LedgerExport {
  const fail: Fail = failWith(LedgerErrorCode.INVALID_EXPORT);
  let value = json;
  if (typeof json === 'string') {
    try {
      value = JSON.parse(json) as unknown;
    } catch (err) {
      fail('export', `not JSON (${err instanceof Error ? err.message : String(err)})`);
    }
  }
  const x = record(value, 'export', fail);
  if (x.format !== LEDGER_EXPORT_FORMAT) {
    fail(
      'export.format',
      typeof x.format === 'string' && x.format.startsWith('confide-ledger/')
        ? `version ${x.format} is not supported; this verifier reads ${LEDGER_EXPORT_FORMAT}`
        : `must be '${LEDGER_EXPORT_FORMAT}'; is this a Confide ledger export?`,
    );
  }
  record(value, 'export', fail, EXPORT_KEYS);
  if (!isIsoInstant(x.exportedAt)) fail('export.exportedAt', 'must be an ISO-8601 UTC instant');
  if (!Array.isArray(x.sites)) fail('export.sites', 'must be an array');
  if (!Array.isArray(x.entries)) fail('export.entries', 'must be an array');
  const seen = new Set<string>();
  const sites = (x.sites as unknown[]).map((s, i): LedgerSite => {
    const path = `export.sites[${i}]`;
    const site = record(s, path, fail, ['siteId', 'name', 'publicKey']);
    const siteId = text(site.siteId, `${path}.siteId`, fail);
    if (seen.has(siteId)) fail(`${path}.siteId`, `site ${siteId} is listed twice`);
    seen.add(siteId);
    if (fromCanonicalBase64(site.publicKey, nacl.sign.publicKeyLength) === null) {
      fail(`${path}.publicKey`, 'must be a 32-byte Ed25519 public key in padded base64');
    }
    return {
      siteId,
      name: text(site.name, `${path}.name`, fail),
      publicKey: site.publicKey as string,
    };
  });
  const out: LedgerExport = {
    format: LEDGER_EXPORT_FORMAT,
    federationId: text(x.federationId, 'export.federationId', fail),
    orders: rethrow(() => validateOrders(x.orders, 'export.orders')),
    sites,
    entries: (x.entries as unknown[]).map((e, i) =>
      rethrow(() => validateLedgerEntry(e, `export.entries[${i}]`, true)),
    ),
    exportedAt: x.exportedAt,
  };
  if (x.delta !== undefined) {
    out.delta = inRange(x.delta, 'export.delta', fail, { gt: 0, lt: 1 }, 'in (0, 1)');
  }
  return out;
}

/**
 * The JSON text of an export (checked first), two-space indented, with a final newline.
 * @example writeFileSync('ledger.json', serializeLedgerExport(exp))
 */
export function serializeLedgerExport(exp: LedgerExport): string {
  return `${JSON.stringify(parseLedgerExport(exp), null, 2)}\n`;
}

/**
 * Parses a site's local ledger (`ledger.jsonl` beside its key): one signed LedgerEntry per line, as
 * `serializeLocalEntry` writes it; blank lines are skipped. Throws INVALID_LOCAL_LEDGER naming the line.
 * Local entries are whole LedgerEntries, identical to the aggregator's: the site knows every field,
 * because it recomputes the hash it signs (signing a hash it could not recompute would be signing blind).
 * @example const mine = parseLocalLedger(readFileSync(join(keyDir, 'ledger.jsonl'), 'utf8'))
 */
export function parseLocalLedger(textIn: string): LedgerEntry[] {
  const lines = textIn.split('\n');
  const out: LedgerEntry[] = [];
  lines.forEach((line, i) => {
    const where = `line ${i + 1}`;
    if (line.trim() === '') return;
    let value: unknown;
    try {
      value = JSON.parse(line) as unknown;
    } catch (err) {
      const torn =
        i === lines.length - 1 ? ' (the last line has no newline: an interrupted write?)' : '';
      throw new LedgerError(
        LedgerErrorCode.INVALID_LOCAL_LEDGER,
        `${where}: not JSON${torn} (${err instanceof Error ? err.message : String(err)})`,
      );
    }
    try {
      out.push(validateLedgerEntry(value, where, true));
    } catch (err) {
      throw new LedgerError(
        LedgerErrorCode.INVALID_LOCAL_LEDGER,
        err instanceof Error ? err.message : String(err),
      );
    }
  });
  return out;
}

/**
 * One line of the local ledger: the entry's canonical JSON and a newline, for the client node to append.
 * @example appendFileSync(path, serializeLocalEntry(entry))
 */
export function serializeLocalEntry(entry: LedgerEntry): string {
  return `${canonicalJson(validateLedgerEntry(entry, 'entry', true))}\n`;
}

const CSV_COLUMNS = [
  'seq',
  'federationId',
  'siteId',
  'siteName',
  'round',
  'level',
  'samplingRate',
  'noiseMultiplier',
  'steps',
  'clipNorm',
  'survivorsAssumed',
  'accountant',
  'noise',
  'quantizationScale',
  'dimension',
  'release',
  'delta',
  'cumulativeEpsilon',
  'epsilonLimit',
  'createdAt',
  'ordersHash',
  'rdp',
  'prevHash',
  'hash',
  'signature',
  'sitePublicKey',
] as const;

/**
 * The entries as CSV (RFC 4180, CRLF): one row per entry, the mechanism flattened, the RDP curve as a
 * JSON cell, an empty cell for no survivors assumed; `noise` is 'gaussian' or
 * 'distributed-discrete-gaussian', whose scale and dimension cells are empty for the Gaussian. Text that a spreadsheet would run as a formula
 * (starting with = + - @) is prefixed with an apostrophe.
 * @example writeFileSync('ledger.csv', ledgerToCsv(exp.entries))
 */
export function ledgerToCsv(entries: readonly LedgerEntry[]): string {
  const rows = entries.map((e) => {
    const m = e.mechanism;
    const cells: Record<(typeof CSV_COLUMNS)[number], string> = {
      seq: String(e.seq),
      federationId: textCell(e.federationId),
      siteId: textCell(e.siteId),
      siteName: textCell(e.siteName),
      round: String(e.round),
      level: m.level,
      samplingRate: String(m.samplingRate),
      noiseMultiplier: String(m.noiseMultiplier),
      steps: String(m.steps),
      clipNorm: String(m.clipNorm),
      survivorsAssumed: m.survivorsAssumed === null ? '' : String(m.survivorsAssumed),
      accountant: m.accountant,
      noise: noiseOf(m),
      quantizationScale: m.quantizationScale === undefined ? '' : String(m.quantizationScale),
      dimension: m.dimension === undefined ? '' : String(m.dimension),
      release: releaseOf(m),
      delta: String(e.delta),
      cumulativeEpsilon: String(e.cumulativeEpsilon),
      epsilonLimit: String(e.epsilonLimit),
      createdAt: e.createdAt,
      ordersHash: e.ordersHash,
      rdp: JSON.stringify(e.rdp),
      prevHash: e.prevHash,
      hash: e.hash,
      signature: e.signature,
      sitePublicKey: e.sitePublicKey,
    };
    return CSV_COLUMNS.map((c) => quote(cells[c])).join(',');
  });
  return [CSV_COLUMNS.join(','), ...rows].map((r) => `${r}\r\n`).join('');
}

function textCell(s: string): string {
  return /^[=+\-@\t\r]/.test(s) ? `'${s}` : s;
}

function quote(cell: string): string {
  return /[",\r\n]/.test(cell) ? `"${cell.replaceAll('"', '""')}"` : cell;
}

function rethrow<T>(f: () => T): T {
  try {
    return f();
  } catch (err) {
    if (err instanceof LedgerError && err.code !== LedgerErrorCode.INVALID_EXPORT) {
      throw new LedgerError(LedgerErrorCode.INVALID_EXPORT, err.message);
    }
    throw err;
  }
}
