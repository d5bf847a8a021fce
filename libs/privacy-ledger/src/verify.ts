import { canonicalJson } from './canonical';
import {
  entryHash,
  GENESIS_HASH,
  type LedgerEntry,
  signatureHolds,
  validateLedgerEntry,
  verifyReceipt,
} from './entry';
import type { LedgerExport } from './formats';
import {
  accountantEpsilon,
  addRdp,
  type LedgerAccountant,
  ordersFingerprint,
  releaseCurve,
  validateOrders,
} from './mechanism';

/** Relative tolerance when recomputed RDP values and epsilons are compared with recorded ones. */
export const RELATIVE_TOLERANCE = 1e-9;

/** What can be wrong with a ledger, one kind per finding. */
export type DiscrepancyKind =
  | 'MALFORMED_ENTRY'
  | 'FEDERATION_MISMATCH'
  | 'ORDERS_MISMATCH'
  | 'DELTA_MISMATCH'
  | 'SEQ_GAP'
  | 'DUPLICATE_SEQ'
  | 'REORDERED'
  | 'CHAIN_BROKEN'
  | 'HASH_MISMATCH'
  | 'UNKNOWN_SITE'
  | 'KEY_MISMATCH'
  | 'BAD_SIGNATURE'
  | 'ACCOUNTANT_ERROR'
  | 'RDP_MISMATCH'
  | 'EPSILON_MISMATCH'
  | 'LIMIT_EXCEEDED'
  | 'LOCAL_INVALID'
  | 'LOCAL_MISSING'
  | 'LOCAL_EXTRA'
  | 'LOCAL_DIFFERS';

/** One finding of the verifier. */
export interface Discrepancy {
  seq?: number;
  siteId?: string;
  kind: DiscrepancyKind;
  message: string;
}

/** One thing the verifier checked, for the auditor's printout. */
export interface VerificationCheck {
  name: string;
  ok: boolean;
  detail: string;
}

/** Everything the verifier checked and found; `ok` only when every check holds. */
export interface VerificationReport {
  ok: boolean;
  checks: VerificationCheck[];
  discrepancies: Discrepancy[];
}

/** The ledger to verify and what to verify it against. */
export interface VerifyLedgerInput {
  /** The federation's entries in chain order. */
  entries: readonly LedgerEntry[];
  /** The order grid the entries' curves are over (the export header's). */
  orders: readonly number[];
  /** Confide's accountant; its orders must be `orders`. */
  accountant: LedgerAccountant;
  /** siteId -> enrolled Ed25519 public key (padded base64), obtained independently where possible. */
  sites: ReadonlyMap<string, string>;
  /** siteId -> that site's local ledger, to reconcile with the aggregator's. */
  localLedgers?: ReadonlyMap<string, readonly LedgerEntry[]>;
  /** siteId -> the epsilon limit in force; no site's cumulative epsilon may pass it. */
  limits?: ReadonlyMap<string, number>;
  /** The federation every entry must belong to (default: the first entry's). */
  federationId?: string;
  /** The delta every entry must use, when the federation pins one. */
  delta?: number;
}

type Finding = Discrepancy & { check: string };

const CHECK = {
  wellFormed: 'well-formed entries',
  federation: 'federation',
  orders: 'order grid',
  delta: 'delta',
  sequence: 'sequence',
  chain: 'hash chain',
  hashes: 'entry hashes',
  signatures: 'signatures',
  rdp: 'rdp curves',
  epsilon: 'cumulative epsilon',
  limits: 'limits',
} as const;

/**
 * Audits a federation's ledger: recomputes every release's RDP curve and every site's cumulative
 * epsilon with the accountant, checks seq 1..N, the hash chain, every hash and signature against the
 * enrolled keys and every limit, and reconciles the sites' local ledgers. Never throws on bad data:
 * every problem is a discrepancy.
 * @example const report = verifyLedger({ entries, orders, accountant, sites }); process.exitCode = report.ok ? 0 : 1
 */
export function verifyLedger(input: VerifyLedgerInput): VerificationReport {
  const findings: Finding[] = [];
  const add = (check: string, d: Discrepancy): void => {
    findings.push({ ...d, check });
  };
  const details = new Map<string, string>();
  const notChecked = new Set<string>();

  // The order grid, and whether the accountant can recompute curves over it.
  let orders: number[] | null = null;
  try {
    orders = validateOrders(input.orders);
  } catch (err) {
    add(CHECK.orders, { kind: 'ORDERS_MISMATCH', message: `the ledger's ${messageOf(err)}` });
  }
  const fingerprint = orders ? ordersFingerprint(orders) : null;
  const accountantFits = orders !== null && sameNumbers(input.accountant.orders, orders);
  if (orders && !accountantFits) {
    add(CHECK.orders, {
      kind: 'ORDERS_MISMATCH',
      message:
        `the accountant's ${input.accountant.orders.length} orders are not the ledger's ` +
        `${orders.length}: curves cannot be recomputed`,
    });
  }

  // Entries that are not even well-formed take no further part, except in the sequence and chain.
  const valid: (LedgerEntry | null)[] = input.entries.map((raw, i) => {
    try {
      return validateLedgerEntry(raw, `entry at position ${i + 1}`);
    } catch (err) {
      add(CHECK.wellFormed, { seq: seqOf(raw), kind: 'MALFORMED_ENTRY', message: messageOf(err) });
      return null;
    }
  });
  const entries = valid.filter((e): e is LedgerEntry => e !== null);
  const federationId = input.federationId ?? entries[0]?.federationId;

  for (const e of entries) {
    const at = { seq: e.seq, siteId: e.siteId };
    if (e.federationId !== federationId) {
      add(CHECK.federation, {
        ...at,
        kind: 'FEDERATION_MISMATCH',
        message: `the entry belongs to federation ${e.federationId}, not ${federationId}`,
      });
    }
    if (fingerprint !== null && e.ordersHash !== fingerprint) {
      add(CHECK.orders, {
        ...at,
        kind: 'ORDERS_MISMATCH',
        message: `ordersHash ${e.ordersHash} is not the fingerprint of the ledger's orders (${fingerprint})`,
      });
    }
    if (orders !== null && e.rdp.length !== orders.length) {
      add(CHECK.orders, {
        ...at,
        kind: 'ORDERS_MISMATCH',
        message: `the curve has ${e.rdp.length} values for ${orders.length} orders`,
      });
    }
    if (input.delta !== undefined && e.delta !== input.delta) {
      add(CHECK.delta, {
        ...at,
        kind: 'DELTA_MISMATCH',
        message: `the entry uses delta ${e.delta}, the federation ${input.delta}`,
      });
    }
  }

  checkSequence(input.entries, add);
  checkChain(input.entries, add);

  // Every hash recomputed; every signature checked against the enrolled key over the true hash.
  const signers = new Set<string>();
  for (const e of entries) {
    const at = { seq: e.seq, siteId: e.siteId };
    const hash = entryHash(e, e.prevHash);
    if (hash !== e.hash) {
      add(CHECK.hashes, {
        ...at,
        kind: 'HASH_MISMATCH',
        message: `the entry's content hashes to ${hash}, not to its recorded hash ${e.hash}: it was changed after it was hashed`,
      });
    }
    const enrolled = input.sites.get(e.siteId);
    if (enrolled === undefined) {
      add(CHECK.signatures, {
        ...at,
        kind: 'UNKNOWN_SITE',
        message: `site ${e.siteId} is not among the enrolled sites`,
      });
    } else if (enrolled !== e.sitePublicKey) {
      add(CHECK.signatures, {
        ...at,
        kind: 'KEY_MISMATCH',
        message: `the entry names key ${e.sitePublicKey}, the site's enrolled key is ${enrolled}`,
      });
    }
    if (!signatureHolds(hash, e.signature, enrolled ?? e.sitePublicKey)) {
      add(CHECK.signatures, {
        ...at,
        kind: 'BAD_SIGNATURE',
        message: `the signature does not verify under ${enrolled === undefined ? "the entry's own" : "the site's enrolled"} key`,
      });
    }
    signers.add(e.siteId);
  }

  // Curves and cumulative epsilons, recomputed from the recorded parameters, per site in seq order.
  const bySeq = entries
    .map((e, i) => ({ e, i }))
    .sort((a, b) => a.e.seq - b.e.seq || a.i - b.i)
    .map(({ e }) => e);
  const spent = new Map<string, { rdp: number[]; releases: number }>();
  if (!accountantFits) {
    notChecked.add(CHECK.rdp);
    notChecked.add(CHECK.epsilon);
  } else {
    for (const e of bySeq) {
      const at = { seq: e.seq, siteId: e.siteId };
      let curve: number[];
      try {
        curve = releaseCurve(input.accountant, e.mechanism);
        const diff = firstDifference(e.rdp, curve, input.accountant.orders);
        if (diff !== null) add(CHECK.rdp, { ...at, kind: 'RDP_MISMATCH', message: diff });
      } catch (err) {
        add(CHECK.rdp, { ...at, kind: 'ACCOUNTANT_ERROR', message: messageOf(err) });
        if (e.rdp.length !== input.accountant.orders.length) continue;
        curve = e.rdp;
      }
      const before = spent.get(e.siteId) ?? { rdp: [], releases: 0 };
      const now = { rdp: addRdp(before.rdp, curve), releases: before.releases + 1 };
      spent.set(e.siteId, now);
      try {
        const { epsilon } = accountantEpsilon(input.accountant, now.rdp, e.delta);
        if (!close(epsilon, e.cumulativeEpsilon)) {
          add(CHECK.epsilon, {
            ...at,
            kind: 'EPSILON_MISMATCH',
            message:
              `recorded cumulative epsilon ${e.cumulativeEpsilon}, recomputed ${epsilon} from the ` +
              `site's ${now.releases} release(s) so far`,
          });
        }
      } catch (err) {
        add(CHECK.epsilon, { ...at, kind: 'ACCOUNTANT_ERROR', message: messageOf(err) });
      }
    }
  }

  // Limits: the one each entry recorded, and the one in force when given.
  const latest = new Map<string, LedgerEntry>();
  for (const e of bySeq) {
    latest.set(e.siteId, e);
    if (e.cumulativeEpsilon > e.epsilonLimit) {
      add(CHECK.limits, {
        seq: e.seq,
        siteId: e.siteId,
        kind: 'LIMIT_EXCEEDED',
        message: `cumulative epsilon ${e.cumulativeEpsilon} exceeds the entry's limit ${e.epsilonLimit}`,
      });
    }
  }
  for (const [siteId, limit] of input.limits ?? []) {
    const last = latest.get(siteId);
    if (last && last.cumulativeEpsilon > limit) {
      add(CHECK.limits, {
        seq: last.seq,
        siteId,
        kind: 'LIMIT_EXCEEDED',
        message: `cumulative epsilon ${last.cumulativeEpsilon} exceeds the site's limit in force ${limit}`,
      });
    }
  }

  const n = input.entries.length;
  details.set(CHECK.wellFormed, `${n} entries`);
  details.set(CHECK.federation, `every entry belongs to ${federationId ?? '(none)'}`);
  details.set(
    CHECK.orders,
    orders
      ? `${orders.length} orders, fingerprint ${fingerprint}; the accountant uses the same`
      : '',
  );
  details.set(
    CHECK.delta,
    input.delta === undefined
      ? `not pinned; entries use ${[...new Set(entries.map((e) => e.delta))].join(', ') || 'none'}`
      : `every entry uses ${input.delta}`,
  );
  details.set(
    CHECK.sequence,
    n === 0 ? 'no entries' : `seq 1..${n}, no gap, duplicate or reordering`,
  );
  details.set(CHECK.chain, `${n} links from the genesis hash`);
  details.set(CHECK.hashes, `${entries.length} hashes recomputed`);
  details.set(
    CHECK.signatures,
    `${entries.length} signatures verified under the enrolled keys of ${signers.size} site(s)`,
  );
  details.set(
    CHECK.rdp,
    accountantFits
      ? `${entries.length} curves recomputed from the recorded mechanisms (relative tolerance ${RELATIVE_TOLERANCE})`
      : 'not checked: the accountant does not use the ledger order grid',
  );
  details.set(
    CHECK.epsilon,
    accountantFits
      ? `${entries.length} cumulative epsilons recomputed by adding each site's curves, then converting`
      : 'not checked: the accountant does not use the ledger order grid',
  );
  details.set(
    CHECK.limits,
    `no entry exceeds its limit${input.limits ? ', no site exceeds the limit in force' : ''}`,
  );

  for (const [siteId, local] of input.localLedgers ?? []) {
    const name = `local ledger of ${siteId}`;
    details.set(
      name,
      reconcile(siteId, local, entries, federationId, input.sites.get(siteId), (d) => add(name, d)),
    );
  }

  const checks: VerificationCheck[] = [...details].map(([name, detail]) => {
    const count = findings.filter((f) => f.check === name).length;
    if (notChecked.has(name)) return { name, ok: false, detail };
    return count === 0
      ? { name, ok: true, detail }
      : { name, ok: false, detail: `${count} discrepanc${count === 1 ? 'y' : 'ies'}` };
  });
  const discrepancies = findings.map(({ check: _check, ...d }) => d);
  return {
    ok: discrepancies.length === 0 && checks.every((c) => c.ok),
    checks,
    discrepancies,
  };
}

/**
 * Verifies a parsed export: its entries against its orders, delta and federation. The export's own
 * site list is the aggregator's word; pass `sites` with keys obtained from the sites to check against those.
 * @example verifyLedgerExport(parseLedgerExport(text), { accountant, localLedgers: new Map([[siteId, mine]]) })
 */
export function verifyLedgerExport(
  exp: LedgerExport,
  options: Pick<VerifyLedgerInput, 'accountant' | 'localLedgers' | 'limits'> & {
    sites?: ReadonlyMap<string, string>;
  },
): VerificationReport {
  return verifyLedger({
    entries: exp.entries,
    orders: exp.orders,
    accountant: options.accountant,
    sites: options.sites ?? new Map(exp.sites.map((s) => [s.siteId, s.publicKey])),
    localLedgers: options.localLedgers,
    limits: options.limits,
    federationId: exp.federationId,
    delta: exp.delta,
  });
}

/**
 * The fields (dotted paths) where two entries differ; `[]` when they are identical.
 * @example diffEntries(local, remote) // ['cumulativeEpsilon', 'mechanism.noiseMultiplier']
 */
export function diffEntries(a: LedgerEntry, b: LedgerEntry): string[] {
  const out: string[] = [];
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  for (const k of [...keys].sort()) {
    const x = (a as unknown as Record<string, unknown>)[k];
    const y = (b as unknown as Record<string, unknown>)[k];
    if (k === 'mechanism' && isObject(x) && isObject(y)) {
      for (const m of [...new Set([...Object.keys(x), ...Object.keys(y)])].sort()) {
        if (!sameJson(x[m], y[m])) out.push(`mechanism.${m}`);
      }
    } else if (!sameJson(x, y)) {
      out.push(k);
    }
  }
  return out;
}

// Seq must run 1..N in order: a missing number is a deleted row, a smaller one after a larger a moved row.
function checkSequence(
  raw: readonly unknown[],
  add: (check: string, d: Discrepancy) => void,
): void {
  const seen = new Set<number>();
  let highest = 0;
  for (const x of raw) {
    const seq = seqOf(x);
    if (seq === undefined) continue;
    if (seen.has(seq)) {
      add(CHECK.sequence, {
        seq,
        kind: 'DUPLICATE_SEQ',
        message: `seq ${seq} appears more than once`,
      });
    } else if (seq < highest) {
      add(CHECK.sequence, {
        seq,
        kind: 'REORDERED',
        message: `seq ${seq} comes after seq ${highest}: the rows are out of order`,
      });
    }
    seen.add(seq);
    highest = Math.max(highest, seq);
  }
  const sorted = [...seen].sort((a, b) => a - b);
  let expected = 1;
  for (const seq of sorted) {
    if (seq > expected) {
      add(CHECK.sequence, {
        seq: expected,
        kind: 'SEQ_GAP',
        message:
          seq - 1 === expected
            ? `seq ${expected} is missing (a deleted row?)`
            : `seq ${expected}..${seq - 1} are missing (deleted rows?)`,
      });
    }
    expected = seq + 1;
  }
}

// Each entry's prevHash must be the recorded hash of the entry before it, in the order given.
function checkChain(raw: readonly unknown[], add: (check: string, d: Discrepancy) => void): void {
  raw.forEach((x, i) => {
    const prev = i === 0 ? GENESIS_HASH : fieldOf(raw[i - 1], 'hash');
    const prevHash = fieldOf(x, 'prevHash');
    if (prevHash === prev && prev !== undefined) return;
    add(CHECK.chain, {
      seq: seqOf(x),
      siteId:
        typeof fieldOf(x, 'siteId') === 'string' ? (fieldOf(x, 'siteId') as string) : undefined,
      kind: 'CHAIN_BROKEN',
      message:
        i === 0
          ? "the first entry's prevHash is not the genesis hash (64 zeros): entries before it are missing"
          : `prevHash does not match the hash of the entry before it (seq ${seqOf(raw[i - 1]) ?? '?'})`,
    });
  });
}

function reconcile(
  siteId: string,
  local: readonly LedgerEntry[],
  entries: readonly LedgerEntry[],
  federationId: string | undefined,
  enrolled: string | undefined,
  add: (d: Discrepancy) => void,
): string {
  const aggregatorBySeq = new Map<number, LedgerEntry>();
  for (const e of entries) if (!aggregatorBySeq.has(e.seq)) aggregatorBySeq.set(e.seq, e);
  const ofSite = entries.filter((e) => e.siteId === siteId);
  const localSeqs = new Set<number>();
  let otherFederations = 0;
  local.forEach((raw, i) => {
    let l: LedgerEntry;
    try {
      l = validateLedgerEntry(raw, `local entry ${i + 1}`);
    } catch (err) {
      add({ seq: seqOf(raw), siteId, kind: 'LOCAL_INVALID', message: messageOf(err) });
      return;
    }
    if (l.federationId !== federationId) {
      otherFederations += 1;
      return;
    }
    const at = { seq: l.seq, siteId };
    if (l.siteId !== siteId) {
      add({ ...at, kind: 'LOCAL_INVALID', message: `the local entry belongs to site ${l.siteId}` });
      return;
    }
    if (!verifyReceipt(l, enrolled ?? l.sitePublicKey)) {
      add({
        ...at,
        kind: 'LOCAL_INVALID',
        message: "the local entry's hash or signature does not verify under the site's key",
      });
    }
    localSeqs.add(l.seq);
    const a = aggregatorBySeq.get(l.seq);
    if (a === undefined) {
      add({
        ...at,
        kind: 'LOCAL_EXTRA',
        message: `the site signed seq ${l.seq} (round ${l.round}) but the aggregator's ledger has no such entry`,
      });
    } else if (a.siteId !== siteId) {
      add({
        ...at,
        kind: 'LOCAL_DIFFERS',
        message: `the site signed seq ${l.seq} (round ${l.round}); in the aggregator's ledger seq ${l.seq} belongs to site ${a.siteId}`,
      });
    } else {
      const fields = diffEntries(l, a);
      if (fields.length > 0) {
        add({
          ...at,
          kind: 'LOCAL_DIFFERS',
          message: `the local and the aggregator's entry differ in ${fields.join(', ')}`,
        });
      }
    }
  });
  for (const a of ofSite) {
    if (!localSeqs.has(a.seq)) {
      add({
        seq: a.seq,
        siteId,
        kind: 'LOCAL_MISSING',
        message: `the aggregator's ledger charges the site at seq ${a.seq} (round ${a.round}); its local ledger has no such entry`,
      });
    }
  }
  const skipped = otherFederations > 0 ? ` (${otherFederations} of other federations skipped)` : '';
  return `${local.length - otherFederations} local entries match the aggregator's ${ofSite.length}${skipped}`;
}

function firstDifference(
  recorded: readonly number[],
  recomputed: readonly number[],
  orders: readonly number[],
): string | null {
  if (recorded.length !== recomputed.length) {
    return `the recorded curve has ${recorded.length} values, the accountant's ${recomputed.length}`;
  }
  for (let i = 0; i < recorded.length; i += 1) {
    const r = recorded[i] as number;
    const c = recomputed[i] as number;
    if (!close(r, c)) {
      return `at order ${orders[i]} the recorded RDP is ${r}, the accountant gives ${c} for the recorded mechanism`;
    }
  }
  return null;
}

function close(a: number, b: number): boolean {
  return a === b || Math.abs(a - b) <= RELATIVE_TOLERANCE * Math.max(Math.abs(a), Math.abs(b));
}

function sameNumbers(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function sameJson(a: unknown, b: unknown): boolean {
  try {
    return canonicalJson(a) === canonicalJson(b);
  } catch {
    return Object.is(a, b);
  }
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function fieldOf(x: unknown, key: string): unknown {
  return isObject(x) ? x[key] : undefined;
}

function seqOf(x: unknown): number | undefined {
  const seq = fieldOf(x, 'seq');
  return typeof seq === 'number' && Number.isSafeInteger(seq) ? seq : undefined;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
