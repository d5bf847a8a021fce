/**
 * What must hold after a chaos run, checked from outside: the committed models, the ledger (with
 * `confide audit verify`, also against every site's local ledger file), a charge for every masked
 * update that left a site, and no run or round left hanging.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  confideAccountant,
  parseLocalLedger,
  siteLevelRelease,
  validateLedgerEntry,
  verifyReceipt,
  type LedgerEntry,
} from '@confide/privacy-ledger';
import { runCli } from '../support/cli';
import type { ChaosSite, Cluster } from './cluster';
import type { SeenMessage } from './proxy';

/** Relative slack for float noise between two computations of the same epsilon. */
const TOLERANCE = 1e-9;

export interface RoundRow {
  number: number;
  state: string;
  reason: string | null;
  modelVersionId: string | null;
}

/** Every committed round's model version is listed, loads, and its bytes hash to its recorded hash. */
export async function checkModels(
  cluster: Cluster,
  rounds: readonly RoundRow[],
): Promise<{ lost: number; versions: number; problems: string[] }> {
  const fed = cluster.federationId;
  const versions = await cluster.api.get<Array<{ id: string; hash: string }>>(
    `/api/v1/federations/${fed}/models`,
  );
  const byId = new Map(versions.map((v) => [v.id, v]));
  const problems: string[] = [];
  for (const r of rounds) {
    if (r.state !== 'committed') continue;
    if (!r.modelVersionId || !byId.has(r.modelVersionId))
      problems.push(`round ${r.number} committed without a listed model version`);
  }
  for (const v of versions) {
    try {
      const res = await fetch(`${cluster.url}/api/v1/federations/${fed}/models/${v.id}/weights`, {
        headers: { authorization: `Bearer ${cluster.token}` },
      });
      if (!res.ok) {
        problems.push(`model version ${v.id} does not load: HTTP ${res.status}`);
        continue;
      }
      const hash = createHash('sha256')
        .update(new Uint8Array(await res.arrayBuffer()))
        .digest('hex');
      if (hash !== v.hash) problems.push(`model version ${v.id} hashes to ${hash}, not ${v.hash}`);
    } catch (e) {
      problems.push(`model version ${v.id} does not load: ${(e as Error).message}`);
    }
  }
  return { lost: problems.length, versions: versions.length, problems };
}

/** `confide audit verify`, alone and with every site's local ledger. */
export async function checkLedger(
  cluster: Cluster,
): Promise<{ verified: boolean; entries: number; problems: string[] }> {
  const problems: string[] = [];
  const files = cluster.sites
    .map((s) => join(s.keyDir, 'ledger.jsonl'))
    .filter((f) => existsSync(f));
  let entries = 0;
  for (const extra of [[], ['--site-ledger', files.join(',')]]) {
    if (extra.length && files.length === 0) continue;
    const r = await runCli(['audit', 'verify', '--json', ...extra], cluster.cliEnv(), 120_000);
    let report: {
      ok: boolean;
      checks: Array<{ name: string; ok: boolean; detail: string }>;
      discrepancies: Array<{ kind: string; seq?: number; siteId?: string; message: string }>;
    };
    try {
      report = JSON.parse(r.stdout) as typeof report;
    } catch {
      problems.push(`audit verify ${extra.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
      continue;
    }
    const names = new Map(cluster.sites.map((s) => [s.id, s.name]));
    for (const d of report.discrepancies) {
      problems.push(
        `audit verify${extra.length ? ' --site-ledger' : ''}: ${d.kind}${d.seq !== undefined ? ` at seq ${d.seq}` : ''}${d.siteId ? ` (${names.get(d.siteId) ?? d.siteId})` : ''}: ${d.message}`,
      );
    }
    if (!report.ok && report.discrepancies.length === 0)
      problems.push(`audit verify ${extra.join(' ')} failed: ${r.stderr.trim()}`);
    const counted = report.checks.find((c) => /entries|chain/i.test(c.name));
    const m = counted?.detail.match(/(\d+) entr/);
    if (m) entries = Math.max(entries, Number(m[1]));
  }
  return { verified: problems.length === 0, entries, problems };
}

/**
 * The smallest epsilon a site-level release of this round may be charged, recomputed from the
 * round.train the site received (never from the receipt): the Shamir threshold or the announced
 * survivors, whichever assumes fewer noise-adding sites, and the model's own length as seen in the
 * frame.
 */
export function expectedCharge(train: SeenMessage): { epsilon: number; delta: number } | string {
  const h = train.header as {
    privacy?: {
      level: string;
      noiseMultiplier: number;
      clipNorm: number;
      delta: number;
      siteSamplingRate: number | null;
      survivorsAssumed: number | null;
    } | null;
    secureAggregation?: { params: { threshold?: number; scale?: number } } | null;
  };
  const p = h.privacy;
  if (!p) return 'round.train announced no DP';
  if (p.level !== 'site')
    return `a ${p.level}-level round (the harness recomputes site level only)`;
  const params = h.secureAggregation?.params;
  const threshold = params?.threshold;
  const survivors =
    threshold === undefined
      ? p.survivorsAssumed
      : Math.min(threshold, p.survivorsAssumed ?? threshold);
  const release = siteLevelRelease({
    siteSamplingRate: p.siteSamplingRate ?? 1,
    noiseMultiplier: p.noiseMultiplier,
    clipNorm: p.clipNorm,
    survivorsAssumed: survivors,
    integerNoise:
      params?.scale !== undefined && train.elements !== null
        ? { scale: params.scale, dimension: train.elements }
        : null,
  });
  const rdp = confideAccountant.releaseRdp(release);
  return { epsilon: confideAccountant.epsilon(rdp, p.delta).epsilon, delta: p.delta };
}

/**
 * No release without a charge: every round.update that left a site (delivered or stopped by a cut)
 * carries a receipt signed by that site for that round, recorded in its local ledger, charging at
 * least the epsilon recomputed from the round's announcement.
 */
export function checkCharges(
  messages: readonly SeenMessage[],
  sites: readonly ChaosSite[],
): { updates: number; underCharged: number; problems: string[] } {
  const problems: string[] = [];
  const byName = new Map(sites.map((s) => [s.name, s]));
  const local = new Map<string, Set<string>>();
  for (const s of sites) {
    const f = join(s.keyDir, 'ledger.jsonl');
    const hashes = new Set<string>();
    if (existsSync(f)) {
      try {
        for (const e of parseLocalLedger(readFileSync(f, 'utf8'))) hashes.add(e.hash);
      } catch (e) {
        problems.push(`${s.name}: its local ledger does not parse: ${(e as Error).message}`);
      }
    }
    local.set(s.name, hashes);
  }
  const trains = new Map<string, SeenMessage>();
  let updates = 0;
  let under = 0;
  for (const m of messages) {
    const key = `${m.site}|${String(m.header['runId'])}|${String(m.header['round'])}`;
    if (m.dir === 'down' && m.type === 'round.train') trains.set(key, m);
    if (m.dir !== 'up' || m.type !== 'round.update') continue;
    updates++;
    const fail = (why: string): void => {
      under++;
      problems.push(
        `${m.site ?? `connection ${m.conn}`} round ${String(m.header['round'])}${m.delivered ? '' : ' (cut at the proxy)'}: ${why}`,
      );
    };
    const site = m.site ? byName.get(m.site) : undefined;
    if (!site) {
      fail('an update on a connection that never logged in');
      continue;
    }
    const train = trains.get(key);
    if (!train) {
      fail('no round.train for this round went to this site first');
      continue;
    }
    if (m.header['receipt'] === undefined) {
      fail('no receipt in the update header');
      continue;
    }
    let receipt: LedgerEntry;
    try {
      receipt = validateLedgerEntry(m.header['receipt']);
    } catch (e) {
      fail(`a malformed receipt: ${(e as Error).message}`);
      continue;
    }
    if (!verifyReceipt(receipt, site.publicKey)) fail('the receipt is not signed by the site');
    else if (receipt.siteId !== site.id) fail(`the receipt names site ${receipt.siteId}`);
    else if (receipt.round !== m.header['round']) fail(`the receipt is for round ${receipt.round}`);
    else if (!local.get(site.name)?.has(receipt.hash))
      fail(`receipt seq ${receipt.seq} is not in the site's local ledger`);
    else {
      const expected = expectedCharge(train);
      if (typeof expected === 'string') {
        fail(`cannot recompute the charge: ${expected}`);
        continue;
      }
      const charged = confideAccountant.epsilon(receipt.rdp, expected.delta).epsilon;
      const floor = expected.epsilon * (1 - TOLERANCE);
      if (charged < floor || receipt.cumulativeEpsilon < floor) {
        fail(
          `charged epsilon ${charged} (cumulative ${receipt.cumulativeEpsilon}) for a release worth ${expected.epsilon}`,
        );
      }
    }
  }
  return { updates, underCharged: under, problems };
}

/**
 * Sites that stopped answering: they were sent the round.train of each of the last `window` rounds
 * that reached them and sent nothing back in any of them (a node must train or decline each round).
 */
export function wedgedSites(messages: readonly SeenMessage[], window = 2): string[] {
  const trained = new Map<string, number[]>();
  const answered = new Set<string>();
  for (const m of messages) {
    if (!m.site || typeof m.header['round'] !== 'number') continue;
    const round = m.header['round'];
    if (m.dir === 'down' && m.type === 'round.train') {
      const rs = trained.get(m.site) ?? [];
      if (!rs.includes(round)) rs.push(round);
      trained.set(m.site, rs);
    }
    if (m.dir === 'up') answered.add(`${m.site}|${round}`);
  }
  const out: string[] = [];
  for (const [site, rounds] of trained) {
    const last = rounds.slice(-window);
    if (last.length === window && last.every((r) => !answered.has(`${site}|${r}`)))
      out.push(`${site} (no answer to round.train of rounds ${last.join(', ')})`);
  }
  return out;
}
