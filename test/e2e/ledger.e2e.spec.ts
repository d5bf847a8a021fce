// The epsilon ledger end to end: budgets enforced by the aggregator and by the site (each alone, with
// the other misbehaving), failed rounds still charged, no double-spend under concurrency, the database
// refusing changes, and `confide audit verify` catching every way an attacker with database access
// could rewrite the history. Runs on PGlite, and on Postgres when DATABASE_URL is set.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import nacl from 'tweetnacl';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { featureStatsPartial, parameterCount } from '@confide/ml';
import { ErrorCode, ProtocolError } from '@confide/protocol';
import {
  canonicalJson,
  confideAccountant,
  createReceipt,
  LedgerErrorCode,
  projectNextRound,
  recordLevelRelease,
  serializeLocalEntry,
  signReceipt,
  verifyLedger,
  type Discrepancy,
  type LedgerEntry,
  type LedgerEntryBody,
  type MechanismParams,
  type VerificationReport,
} from '@confide/privacy-ledger';
import { startAggregator, type RunningAggregator } from '@confide/aggregator';
import { fileLedgerStore, parsePolicy, type ClientNode } from '@confide/client-node';
import { ApiClient } from '../../apps/cli/src/api-client';
import { main } from '../../apps/cli/src/main';
import { CLOCK, type Clock } from '../../apps/aggregator/src/common/tokens';
import { FederationRepository } from '../../apps/aggregator/src/federations/federation.repository';
import { LedgerRepository } from '../../apps/aggregator/src/privacy/ledger.repository';
import { LedgerService } from '../../apps/aggregator/src/privacy/ledger.service';
import { SiteRepository } from '../../apps/aggregator/src/sites/site.repository';
import { secureQuantization } from '../../apps/aggregator/src/rounds/secure-quantization';
import { captureIo } from '../support/cli';
import { databaseKind, freshDatabaseUrl } from '../support/database';
import {
  createFederation,
  enrolSites,
  startNode,
  waitForRun,
  type TestSite,
  listRounds,
} from '../support/federation';
import { RawSite, type Received } from '../support/raw-site';

interface PrivacyView {
  sites: Array<{
    siteId: string;
    name: string;
    epsilon: number;
    limit: number;
    releases: number;
    roundsLeft: number | null;
  }>;
}

const DELTA = 1e-5;
/** A site policy that allows secure sums over two sites. */
const TWO_SITE_SUMS = parsePolicy({ minSitesPerSum: 2 });
/** A site policy that lets its updates go without secure aggregation (the federations that run so). */
const PLAIN_SUMS = parsePolicy({ minSitesPerSum: 2, secureAggregation: { required: false } });
/** Record-level DP-SGD as every federation here runs it: 1 epoch of batch 64, noise multiplier 3. */
const DP = { level: 'record', noiseMultiplier: 3, clipNorm: 1, delta: DELTA } as const;
/**
 * Training as every federation here runs it. Federated evaluation is off: under DP each evaluation is
 * a release of its own, and the budgets below are set around the update releases (secure-aggregation
 * and privacy e2e tests cover evaluation releases).
 */
const TRAIN = {
  localEpochs: 1,
  batchSize: 64,
  learningRate: 0.1,
  optimizer: 'sgd',
  evaluation: { enabled: false },
} as const;

/** The mechanism of one release of a site with `numExamples` records under {@link DP} and {@link TRAIN}. */
function releaseOf(numExamples: number): MechanismParams {
  return recordLevelRelease({
    batchSize: TRAIN.batchSize,
    epochs: TRAIN.localEpochs,
    numExamples,
    noiseMultiplier: DP.noiseMultiplier,
    clipNorm: DP.clipNorm,
  });
}

describe(`the epsilon ledger, its budgets and its audit (${databaseKind})`, () => {
  let agg: RunningAggregator;
  let api: ApiClient;
  /** The fresh Postgres database of this file, or undefined on PGlite. */
  let databaseUrl: string | undefined;
  let dropDatabase: () => Promise<void> = async () => undefined;
  let auditorToken: string;
  let workDir: string;
  const nodes: ClientNode[] = [];
  const raws: RawSite[] = [];

  beforeAll(async () => {
    const db = await freshDatabaseUrl();
    databaseUrl = db.url;
    dropDatabase = db.drop;
    agg = await startAggregator({ databaseUrl, reconnectGraceMs: 300 });
    api = new ApiClient(agg.url, agg.initialAdminToken!);
    auditorToken = await agg.createToken('auditor', 'ledger e2e auditor');
    workDir = await mkdtemp(join(tmpdir(), 'confide-ledger-e2e-'));
  });

  afterAll(async () => {
    for (const n of nodes) n.stop();
    for (const r of raws) r.ws.terminate();
    await agg?.close();
    await dropDatabase();
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  // ---------------------------------------------------------------------------------------------
  // Helpers

  async function node(
    fedId: string,
    site: TestSite,
    extra: Parameters<typeof startNode>[3] = {},
  ): Promise<ClientNode> {
    // These federations keep going with two sites when one is skipped or refuses: their sums are
    // over two sites, which the sites' policies here allow (the default asks for three).
    const { node: n } = await startNode(agg, fedId, site, { policy: TWO_SITE_SUMS, ...extra });
    nodes.push(n);
    return n;
  }

  /** A logged-in raw site that answers the statistics request honestly and hands round.train to `onTrain`. */
  async function rawParticipant(
    fedId: string,
    site: TestSite,
    onTrain: (raw: RawSite, train: Received) => void,
  ): Promise<{ raw: RawSite; siteId: string; siteName: string }> {
    const raw = await RawSite.connect(agg.wsUrl);
    raws.push(raw);
    raw.onMessage((r) => {
      if (r.type === 'stats.request') {
        const part = featureStatsPartial(site.data);
        raw.sendJson({
          type: 'stats.report',
          runId: r.msg['runId'],
          round: r.msg['round'],
          count: part.count,
          sum: part.sum,
          sumSq: part.sumSq,
        });
      } else if (r.type === 'round.train') {
        onTrain(raw, r);
      }
    });
    const message = { ...raw.loginMessage(site.identity, fedId), numExamples: site.data.numRows };
    const welcome = await raw.login(site.identity, fedId, { message });
    expect(welcome.type).toBe('welcome');
    return {
      raw,
      siteId: String(welcome.msg['siteId']),
      siteName: String(welcome.msg['siteName']),
    };
  }

  async function run(fedId: string, rounds: number) {
    const { id } = await api.post<{ id: string }>(`/api/v1/federations/${fedId}/runs`, { rounds });
    return waitForRun(api, fedId, id, 60_000);
  }

  async function ledgerOf(fedId: string): Promise<LedgerEntry[]> {
    return (
      await api.get<{ entries: LedgerEntry[] }>(`/api/v1/federations/${fedId}/ledger?pageSize=1000`)
    ).entries;
  }

  async function privacyOf(fedId: string): Promise<PrivacyView> {
    return api.get<PrivacyView>(`/api/v1/federations/${fedId}/privacy`);
  }

  async function serverVerify(fedId: string): Promise<VerificationReport> {
    return api.post<VerificationReport>(`/api/v1/federations/${fedId}/ledger/verify`);
  }

  function setBudget(fedId: string, siteId: string, epsilonLimit: number, reason: string) {
    return api.post(`/api/v1/federations/${fedId}/sites/${siteId}/budget`, {
      epsilonLimit,
      reason,
    });
  }

  /** `confide <args>` run in-process; `report` is the parsed output of `--json`. */
  async function confide(args: string[]) {
    const io = captureIo();
    const code = await main(args, io);
    const out = io.stdout();
    const json = args.includes('--json') ? (JSON.parse(out) as VerificationReport) : null;
    return { code, out, err: io.stderr(), report: json };
  }

  function fromServer(fedId: string): string[] {
    return ['--server', agg.url, '--token', auditorToken, '--federation', fedId];
  }

  /**
   * Runs `work` as an attacker with database access does: as the table owner, with the append-only
   * triggers disabled for the duration (one transaction, so nothing else sees them off).
   */
  async function asTableOwner(
    work: (q: (sql: string, params?: unknown[]) => Promise<unknown>) => Promise<void>,
  ) {
    await agg.db.transaction(async (em) => {
      await em.query('ALTER TABLE ledger_entry DISABLE TRIGGER USER');
      await work((sql, params) => em.query(sql, params));
      await em.query('ALTER TABLE ledger_entry ENABLE TRIGGER USER');
    });
  }

  // ---------------------------------------------------------------------------------------------
  // A clean ledger: three sites, three record-level DP rounds under secure aggregation.

  describe('with a clean ledger of three DP rounds', () => {
    let fedId: string;
    let sites: TestSite[];
    let clean: LedgerEntry[];
    /** Each site's local ledger file: sites 1 and 2 via fileLedgerStore, site 3 written from ledgerEntries(). */
    const siteLedgers: string[] = [];

    beforeAll(async () => {
      const fed = await createFederation(api, {
        ...TRAIN,
        dp: { ...DP, epsilonLimit: 10 },
      });
      fedId = fed.id;
      sites = await enrolSites(api, fedId, 3);
      const started: ClientNode[] = [];
      for (const [i, site] of sites.entries()) {
        const file = join(workDir, `clean-site-${i + 1}.jsonl`);
        siteLedgers.push(file);
        started.push(await node(fedId, site, i < 2 ? { ledgerStore: fileLedgerStore(file) } : {}));
      }
      const ended = await run(fedId, 3);
      expect(ended).toMatchObject({ status: 'completed', roundsDone: 3 });
      for (const n of started) n.stop();
      // The node's file is JSON lines: exactly one serializeLocalEntry line per signed receipt.
      for (const i of [0, 1]) {
        expect(await readFile(siteLedgers[i]!, 'utf8')).toBe(
          started[i]!.ledgerEntries().map(serializeLocalEntry).join(''),
        );
      }
      await writeFile(
        siteLedgers[2]!,
        started[2]!.ledgerEntries().map(serializeLocalEntry).join(''),
      );
      clean = await ledgerOf(fedId);
      expect(clean.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    }, 120_000);

    /** Puts the clean rows back (triggers off), so each tamper case starts from the same ledger. */
    async function restore(): Promise<void> {
      const repo = agg.app.get(LedgerRepository);
      await agg.db.transaction(async (em) => {
        await em.query('ALTER TABLE ledger_entry DISABLE TRIGGER USER');
        await em.query('DELETE FROM ledger_entry WHERE federation_id = $1', [fedId]);
        for (const e of clean) await repo.insert(em, e);
        await em.query('ALTER TABLE ledger_entry ENABLE TRIGGER USER');
      });
      expect(await ledgerOf(fedId)).toEqual(clean);
    }

    /** The local ledger file of the site that released `entry`. */
    function ledgerFileOf(entry: LedgerEntry): string {
      return siteLedgers[sites.findIndex((s) => s.siteId === entry.siteId)]!;
    }

    it('is refused UPDATE, DELETE and TRUNCATE by the database itself', async () => {
      const refused = async (sql: string, table: string, op: string): Promise<void> => {
        const params = sql.startsWith('TRUNCATE') ? [] : [fedId];
        const err = await agg.db.manager.query(sql, params).then(
          () => null,
          (e: unknown) => e as Error & { driverError?: { code?: string } },
        );
        expect(err, sql).not.toBeNull();
        expect(err!.message).toContain(`${table} is append-only: ${op} refused`);
        expect(err!.driverError?.code).toBe('42501'); // insufficient_privilege
      };
      for (const table of ['ledger_entry', 'privacy_budget_change']) {
        await refused(
          `UPDATE ${table} SET federation_id = federation_id WHERE federation_id = $1`,
          table,
          'UPDATE',
        );
        await refused(`DELETE FROM ${table} WHERE federation_id = $1`, table, 'DELETE');
        await refused(`TRUNCATE ${table}`, table, 'TRUNCATE');
      }
      expect(await ledgerOf(fedId)).toEqual(clean);
      const changes: Array<{ n: number }> = await agg.db.manager.query(
        'SELECT count(*)::int AS n FROM privacy_budget_change WHERE federation_id = $1',
        [fedId],
      );
      expect(changes[0]!.n).toBe(3);
    });

    it('verifies with exit 0 from the server, an export file and the sites’ local ledgers', async () => {
      const server = await confide([
        'audit',
        'verify',
        ...fromServer(fedId),
        '--site-ledger',
        siteLedgers.join(','),
        '--json',
      ]);
      expect(server.err).toBe('');
      expect(server.code).toBe(0);
      expect(server.report!.discrepancies).toEqual([]);
      const checks = server.report!.checks.map((c) => c.name);
      for (const s of sites) expect(checks).toContain(`local ledger of ${s.siteId}`);
      expect(server.report!.checks.every((c) => c.ok)).toBe(true);

      const file = join(workDir, 'clean-export.json');
      const exported = await confide(['audit', 'export', ...fromServer(fedId), '--out', file]);
      expect(exported.code).toBe(0);
      expect(exported.err).toContain(`wrote 9 entries of federation ${fedId}`);
      const offline = await confide(['audit', 'verify', '--export', file]);
      expect(offline.code).toBe(0);
      expect(offline.out).toContain('VERIFIED: every check holds');
      expect((await serverVerify(fedId)).ok).toBe(true);
    });

    it.skipIf(!process.env['DATABASE_URL'])(
      'verifies straight from Postgres with --database-url (skipped on PGlite: its in-memory database has no URL outside this process)',
      async () => {
        const direct = await confide([
          'audit',
          'verify',
          '--database-url',
          databaseUrl!,
          '--federation',
          fedId,
          '--json',
        ]);
        expect(direct.err).toBe('');
        expect(direct.code).toBe(0);
        expect(direct.report!.ok).toBe(true);
      },
    );

    /** Every way the verifier is pointed at the tampered ledger: server, export file, and Postgres. */
    async function expectCaught(
      expected: Array<Pick<Discrepancy, 'kind' | 'seq'>>,
      siteLedger?: string,
    ): Promise<Discrepancy[]> {
      const local = siteLedger ? ['--site-ledger', siteLedger] : [];
      const viaServer = await confide([
        'audit',
        'verify',
        ...fromServer(fedId),
        ...local,
        '--json',
      ]);
      expect(viaServer.err).toBe('');
      expect(viaServer.code).toBe(1);
      expect(viaServer.report!.ok).toBe(false);
      for (const d of expected) {
        expect(viaServer.report!.discrepancies).toContainEqual(expect.objectContaining(d));
      }
      const file = join(workDir, 'tampered-export.json');
      expect((await confide(['audit', 'export', ...fromServer(fedId), '--out', file])).code).toBe(
        0,
      );
      const viaFile = await confide(['audit', 'verify', '--export', file, ...local, '--json']);
      expect(viaFile.code).toBe(1);
      expect(viaFile.report!.discrepancies).toEqual(viaServer.report!.discrepancies);
      if (databaseUrl) {
        const viaDb = await confide([
          'audit',
          'verify',
          '--database-url',
          databaseUrl,
          '--federation',
          fedId,
          ...local,
          '--json',
        ]);
        expect(viaDb.code).toBe(1);
        expect(viaDb.report!.discrepancies).toEqual(viaServer.report!.discrepancies);
      }
      // The aggregator's own verify endpoint agrees (it has no site's local ledger to reconcile).
      if (!siteLedger) expect((await serverVerify(fedId)).ok).toBe(false);
      return viaServer.report!.discrepancies;
    }

    it('`audit verify` exits 1 on a changed cumulative epsilon, and says so in plain text too', async () => {
      const target = clean[4]!;
      await asTableOwner(async (q) => {
        await q(
          'UPDATE ledger_entry SET cumulative_epsilon = cumulative_epsilon / 2 WHERE federation_id = $1 AND seq = $2',
          [fedId, target.seq],
        );
      });
      try {
        await expectCaught([
          { kind: 'EPSILON_MISMATCH', seq: target.seq },
          { kind: 'HASH_MISMATCH', seq: target.seq },
          { kind: 'BAD_SIGNATURE', seq: target.seq },
        ]);
        const text = await confide(['audit', 'verify', ...fromServer(fedId)]);
        expect(text.code).toBe(1);
        expect(text.out).toContain(`discrepancy EPSILON_MISMATCH at seq ${target.seq}`);
        expect(text.out).toContain(`recorded cumulative epsilon ${target.cumulativeEpsilon / 2}`);
        expect(text.out).toMatch(/NOT VERIFIED: \d+ discrepancy/);
      } finally {
        await restore();
      }
    });

    it('`audit verify` exits 1 on a changed noise multiplier', async () => {
      const target = clean[2]!;
      await asTableOwner(async (q) => {
        await q(
          'UPDATE ledger_entry SET noise_multiplier = noise_multiplier * 2 WHERE federation_id = $1 AND seq = $2',
          [fedId, target.seq],
        );
      });
      try {
        const found = await expectCaught([
          { kind: 'RDP_MISMATCH', seq: target.seq },
          { kind: 'HASH_MISMATCH', seq: target.seq },
          { kind: 'BAD_SIGNATURE', seq: target.seq },
        ]);
        expect(found.find((d) => d.kind === 'RDP_MISMATCH')!.message).toMatch(
          /the recorded RDP is .* the accountant gives .* for the recorded mechanism/,
        );
      } finally {
        await restore();
      }
    });

    it('`audit verify` exits 1 on a deleted row', async () => {
      const target = clean[3]!;
      await asTableOwner(async (q) => {
        await q('DELETE FROM ledger_entry WHERE federation_id = $1 AND seq = $2', [
          fedId,
          target.seq,
        ]);
      });
      try {
        const found = await expectCaught([
          { kind: 'SEQ_GAP', seq: target.seq },
          { kind: 'CHAIN_BROKEN', seq: target.seq + 1 },
        ]);
        expect(found.find((d) => d.kind === 'SEQ_GAP')!.message).toContain(
          `seq ${target.seq} is missing`,
        );
      } finally {
        await restore();
      }
    });

    it('`audit verify` exits 1 on a reordered row (two rows swap their seq)', async () => {
      const [a, b] = [clean[5]!, clean[6]!];
      await asTableOwner(async (q) => {
        // The (federation_id, seq) key is checked row by row: move one row aside first.
        const move = 'UPDATE ledger_entry SET seq = $3 WHERE federation_id = $1 AND seq = $2';
        await q(move, [fedId, a.seq, 1_000_000]);
        await q(move, [fedId, b.seq, a.seq]);
        await q(move, [fedId, 1_000_000, b.seq]);
      });
      try {
        expect((await ledgerOf(fedId)).map((e) => e.hash)).toEqual(
          clean.map((e) => (e === a ? b.hash : e === b ? a.hash : e.hash)),
        );
        await expectCaught([
          { kind: 'HASH_MISMATCH', seq: a.seq },
          { kind: 'HASH_MISMATCH', seq: b.seq },
          { kind: 'CHAIN_BROKEN', seq: a.seq },
          { kind: 'CHAIN_BROKEN', seq: b.seq },
          { kind: 'CHAIN_BROKEN', seq: b.seq + 1 },
        ]);
        // The same swap made in an export file instead, rows moved but seq kept: REORDERED.
        const file = join(workDir, 'reordered-export.json');
        await restore();
        expect((await confide(['audit', 'export', ...fromServer(fedId), '--out', file])).code).toBe(
          0,
        );
        const exp = JSON.parse(await readFile(file, 'utf8')) as { entries: LedgerEntry[] };
        [exp.entries[5], exp.entries[6]] = [exp.entries[6]!, exp.entries[5]!];
        await writeFile(file, JSON.stringify(exp));
        const offline = await confide(['audit', 'verify', '--export', file, '--json']);
        expect(offline.code).toBe(1);
        expect(offline.report!.discrepancies).toContainEqual(
          expect.objectContaining({ kind: 'REORDERED', seq: a.seq }),
        );
      } finally {
        await restore();
      }
    });

    it('`audit verify` exits 1 on a forged signature', async () => {
      const target = clean[7]!;
      const attacker = nacl.sign.keyPair();
      const forged = Buffer.from(
        nacl.sign.detached(Buffer.from(target.hash, 'hex'), attacker.secretKey),
      ).toString('base64');
      await asTableOwner(async (q) => {
        await q('UPDATE ledger_entry SET signature = $3 WHERE federation_id = $1 AND seq = $2', [
          fedId,
          target.seq,
          forged,
        ]);
      });
      try {
        const found = await expectCaught([{ kind: 'BAD_SIGNATURE', seq: target.seq }]);
        // Only the signature is wrong: the content still hashes to the recorded hash.
        expect(found).toEqual([
          expect.objectContaining({
            kind: 'BAD_SIGNATURE',
            seq: target.seq,
            siteId: target.siteId,
          }),
        ]);
      } finally {
        await restore();
      }
    });

    it('`audit verify --site-ledger` exits 1 when a site’s local ledger disagrees with the aggregator’s', async () => {
      // The aggregator drops the federation's latest release: the chain alone stays valid (nothing
      // after it links to it), so only the site's own ledger can show the charge went missing.
      const last = clean.at(-1)!;
      await asTableOwner(async (q) => {
        await q('DELETE FROM ledger_entry WHERE federation_id = $1 AND seq = $2', [
          fedId,
          last.seq,
        ]);
      });
      try {
        const chainOnly = await confide(['audit', 'verify', ...fromServer(fedId), '--json']);
        expect(chainOnly.code).toBe(0);
        const found = await expectCaught(
          [{ kind: 'LOCAL_EXTRA', seq: last.seq }],
          ledgerFileOf(last),
        );
        expect(found).toEqual([
          expect.objectContaining({ kind: 'LOCAL_EXTRA', seq: last.seq, siteId: last.siteId }),
        ]);
      } finally {
        await restore();
      }
      // And a local ledger that lost an entry (written with serializeLocalEntry) is a LOCAL_MISSING.
      const site3 = sites[2]!;
      const mine = clean.filter((e) => e.siteId === site3.siteId);
      const partial = join(workDir, 'partial-site-3.jsonl');
      await writeFile(partial, mine.slice(0, -1).map(serializeLocalEntry).join(''));
      const missing = await confide([
        'audit',
        'verify',
        ...fromServer(fedId),
        '--site-ledger',
        partial,
        '--json',
      ]);
      expect(missing.code).toBe(1);
      expect(missing.report!.discrepancies).toEqual([
        expect.objectContaining({ kind: 'LOCAL_MISSING', seq: mine.at(-1)!.seq }),
      ]);
    });

    it('verifies again once every tamper is undone (the cases were independent)', async () => {
      expect(await ledgerOf(fedId)).toEqual(clean);
      const again = await confide([
        'audit',
        'verify',
        ...fromServer(fedId),
        '--site-ledger',
        siteLedgers.join(','),
        '--json',
      ]);
      expect(again.code).toBe(0);
    });
  });

  // ---------------------------------------------------------------------------------------------

  it('aggregator alone: a site that ignores its own limit is skipped once its projected epsilon passes the aggregator’s budget', async () => {
    const fed = await createFederation(api, { ...TRAIN, dp: { ...DP, epsilonLimit: 10 } });
    const sites = await enrolSites(api, fed.id, 3);
    const [greedy, ...others] = sites as [TestSite, TestSite, TestSite];
    // One release (1.02) fits under 1.2, the second (1.39) does not.
    await setBudget(fed.id, greedy.siteId, 1.2, 'tighter budget for this site');
    let greedyTrained = 0;
    // The misbehaving site: its own limit is effectively none, so it would train every round.
    const greedyNode = await node(fed.id, greedy, {
      epsilonLimit: 1e6,
      onUpdate: () => greedyTrained++,
    });
    for (const s of others) await node(fed.id, s);
    const ended = await run(fed.id, 2);
    expect(ended).toMatchObject({ status: 'completed', roundsDone: 2 });

    const [first, second] = await listRounds(api, fed.id);
    expect(first!.participants.map((p) => p.status)).toEqual([
      'submitted',
      'submitted',
      'submitted',
    ]);
    const skipped = second!.participants.find((p) => p.siteId === greedy.siteId)!;
    expect(skipped.status).toBe('skipped');
    const m = /projected epsilon (\d+\.\d+) would exceed its limit 1\.2$/.exec(
      skipped.detail ?? '',
    );
    expect(m, skipped.detail).not.toBeNull();
    const mine = (await ledgerOf(fed.id)).filter((e) => e.siteId === greedy.siteId);
    expect(mine).toHaveLength(1);
    const projected = projectNextRound(mine, mine[0]!.mechanism, DELTA, 1.2, confideAccountant);
    expect(Number(m![1])).toBeCloseTo(projected.projectedEpsilon, 4);
    expect(Number(m![1])).toBeGreaterThan(1.2);
    expect(second!.state).toBe('committed');
    expect(second!.participants.filter((p) => p.status === 'submitted')).toHaveLength(2);
    // The site was never asked to train again, so it released nothing more.
    expect(greedyTrained).toBe(1);
    expect(greedyNode.ledgerEntries()).toEqual(mine);
    expect((await serverVerify(fed.id)).ok).toBe(true);
  }, 60_000);

  it('aggregator alone: a receipt claiming a smaller epsilon, or another mechanism, is RECEIPT_INVALID and its update is not used; a rejected site gives its ledger slot back at once', async () => {
    // Without secure aggregation a raw site can send a plain update with any receipt it likes.
    const fed = await createFederation(api, {
      ...TRAIN,
      dp: { ...DP, epsilonLimit: 10 },
      secureAggregation: { enabled: false },
    });
    const [honestA, honestB, liar] = (await enrolSites(api, fed.id, 3)) as [
      TestSite,
      TestSite,
      TestSite,
    ];
    // In round 3 the honest sites ask for the ledger slot only after the liar has taken it.
    const afterTheLiar = {
      name: 'wait for the liar',
      apply: async (update: Float32Array, ctx: { round: number }) => {
        if (ctx.round === 3) await new Promise((r) => setTimeout(r, 500));
        return update;
      },
    };
    for (const s of [honestA, honestB])
      await node(fed.id, s, { transforms: [afterTheLiar], policy: PLAIN_SUMS });
    const lies: Record<number, (body: LedgerEntryBody) => LedgerEntryBody> = {
      // Round 1: the right mechanism, but half the epsilon it costs (validly signed by the site).
      1: (body) => ({ ...body, cumulativeEpsilon: body.cumulativeEpsilon / 2 }),
      // Round 2: a cheaper mechanism (ten times the noise) than the round prescribes, accounted honestly.
      2: (body) => {
        const mechanism = {
          ...body.mechanism,
          noiseMultiplier: body.mechanism.noiseMultiplier * 10,
        };
        return createReceipt({ ...body, mechanism, siteHistory: [] }, confideAccountant);
      },
      // Round 3: an honest receipt, but the update it comes with is malformed (one value short).
      3: (body) => body,
      // Round 4: an honest receipt with an update far past the clip: charged, then left out.
      4: (body) => body,
    };
    const lieAbout = async (
      raw: RawSite,
      train: Received,
      who: { siteId: string; siteName: string },
    ) => {
      const h = train.msg as {
        runId: string;
        round: number;
        privacy: { noiseMultiplier: number; clipNorm: number };
        train: { batchSize: number; epochs: number };
      };
      const from = raw.received.length;
      raw.sendJson({ type: 'ledger.reserve', runId: h.runId, round: h.round, sum: 'update' });
      const slot = (
        await raw.waitFor((r, i) => i >= from && r.type === 'ledger.slot', 10_000, 'a ledger slot')
      ).msg as {
        seq: number;
        prevHash: string;
        createdAt: string;
        epsilonLimit: number;
        delta: number;
      };
      const honest = createReceipt(
        {
          seq: slot.seq,
          federationId: fed.id,
          siteId: who.siteId,
          siteName: who.siteName,
          round: h.round,
          mechanism: releaseOf(liar.data.numRows),
          delta: slot.delta,
          epsilonLimit: slot.epsilonLimit,
          createdAt: slot.createdAt,
          sitePublicKey: liar.identity.publicKey,
          // What the aggregator holds for it: its honest receipts (round 3's, though its update was not).
          siteHistory: (await ledgerOf(fed.id)).filter((e) => e.siteId === liar.siteId),
        },
        confideAccountant,
      );
      const receipt = signReceipt(lies[h.round]!(honest), slot.prevHash, liar.identity.secretKey);
      raw.sendFrame(
        {
          type: 'round.update',
          runId: h.runId,
          round: h.round,
          numExamples: liar.data.numRows,
          trainLoss: 0.5,
          receipt,
        },
        new Float32Array(train.vector!.length - (h.round === 3 ? 1 : 0)).fill(1000),
      );
    };
    const who = { siteId: liar.siteId, siteName: liar.name };
    const { raw } = await rawParticipant(fed.id, liar, (r, train) => {
      void lieAbout(r, train, who).catch(() => undefined);
    });
    const ended = await run(fed.id, 4);
    expect(ended).toMatchObject({ status: 'completed', roundsDone: 4 });

    const errors = raw.received.filter((r) => r.type === 'error');
    expect(errors.map((e) => e.msg['code'])).toEqual([
      ErrorCode.RECEIPT_INVALID,
      ErrorCode.RECEIPT_INVALID,
      ErrorCode.WRONG_VECTOR_LENGTH,
      ErrorCode.UPDATE_NORM_EXCEEDED,
    ]);
    expect(String(errors[0]!.msg['message'])).toMatch(
      /the receipt says cumulative epsilon .*; the ledger gives/,
    );
    expect(String(errors[1]!.msg['message'])).toMatch(
      /the receipt's mechanism .* is not this round's/,
    );
    const rounds = await listRounds(api, fed.id);
    for (const r of rounds) {
      expect(r.state).toBe('committed');
      const p = r.participants.find((x) => x.siteId === liar.siteId)!;
      expect(p.status).toBe('rejected');
      expect(p.detail).toMatch(
        r.number === 4
          ? /^UPDATE_NORM_EXCEEDED: .*\(the release was charged to the ledger; the update is not used\)/
          : r.number === 3
            ? /update/
            : /receipt/,
      );
      // The slot the site reserved was given back at once, not held for its 30 s lease.
      expect(r.durationMs).toBeLessThan(15_000);
      // Only the two honest updates were aggregated.
      expect(r.participants.filter((x) => x.status === 'submitted')).toHaveLength(2);
    }
    // The releases it made with honest receipts are in the ledger, as in its own: round 3's too,
    // although its malformed update was refused (the site signed the receipt; its place is kept).
    const entries = await ledgerOf(fed.id);
    expect(entries.filter((e) => e.siteId === liar.siteId).map((e) => e.round)).toEqual([3, 4]);
    expect(entries).toHaveLength(10);
    expect((await serverVerify(fed.id)).ok).toBe(true);
  }, 60_000);

  it('site alone: a node declines with BUDGET_EXCEEDED when a misbehaving aggregator selects it past its own limit', async () => {
    const fed = await createFederation(api, { ...TRAIN, dp: { ...DP, epsilonLimit: 10 } });
    const sites = await enrolSites(api, fed.id, 3);
    const [careful, ...others] = sites as [TestSite, TestSite, TestSite];
    const ownLimit = 1.2; // one release (1.02) fits, the second (1.39) does not
    await setBudget(fed.id, careful.siteId, ownLimit, 'what the site agreed to');
    const carefulNode = await node(fed.id, careful, { epsilonLimit: ownLimit });
    for (const s of others) await node(fed.id, s);
    expect(await run(fed.id, 1)).toMatchObject({ status: 'completed', roundsDone: 1 });
    expect(carefulNode.ledgerEntries()).toHaveLength(1);

    // The aggregator turns against the site: it raises the budget and keeps selecting it.
    await setBudget(fed.id, careful.siteId, 50, 'the aggregator wants more rounds');
    expect(await run(fed.id, 1)).toMatchObject({ status: 'completed', roundsDone: 1 });
    const second = (await listRounds(api, fed.id))[1]!;
    const p = second.participants.find((x) => x.siteId === careful.siteId)!;
    expect(p.status).toBe('declined');
    expect(p.detail).toMatch(
      /^BUDGET_EXCEEDED: this round would bring the site's epsilon to 1\.\d+, past its own limit 1\.2$/,
    );
    expect(second.state).toBe('committed');

    // No receipt past its own limit was signed, and the aggregator holds none either.
    const local = carefulNode.ledgerEntries();
    expect(local).toHaveLength(1);
    for (const e of local) expect(e.cumulativeEpsilon).toBeLessThanOrEqual(ownLimit);
    const charged = (await ledgerOf(fed.id)).filter((e) => e.siteId === careful.siteId);
    expect(charged).toEqual(local);
    expect((await serverVerify(fed.id)).ok).toBe(true);
  }, 60_000);

  it('a round that aborts still charges the releases it accepted', async () => {
    const fed = await createFederation(api, {
      ...TRAIN,
      minSites: 3,
      dp: { ...DP, epsilonLimit: 10 },
      secureAggregation: { enabled: false },
    });
    const [honest, ...droppers] = (await enrolSites(api, fed.id, 3)) as [
      TestSite,
      TestSite,
      TestSite,
    ];
    const honestNode = await node(fed.id, honest, { policy: PLAIN_SUMS });
    // Two sites vanish as soon as they are asked to train: the round cannot reach minSites=3.
    for (const s of droppers) await rawParticipant(fed.id, s, (raw) => raw.ws.terminate());
    const ended = await run(fed.id, 1);
    expect(ended.status).toBe('stopped');
    expect(ended.roundsDone).toBe(0);

    const [round] = await listRounds(api, fed.id);
    expect(round!.state).toBe('aborted');
    expect(round!.reason).toMatch(/only 1 of 3 selected site\(s\) sent an update/);
    expect(round!.participants.find((p) => p.siteId === honest.siteId)!.status).toBe('submitted');
    // The release happened (the update left the site), so the charge stays.
    const entries = await ledgerOf(fed.id);
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatchObject({ siteId: honest.siteId, round: round!.number, seq: 1 });
    expect(honestNode.ledgerEntries()).toEqual(entries);
    const privacy = await privacyOf(fed.id);
    const mine = privacy.sites.find((s) => s.siteId === honest.siteId)!;
    expect(mine.releases).toBe(1);
    expect(mine.epsilon).toBe(entries[0]!.cumulativeEpsilon);
    const next = await agg.app
      .get(LedgerService)
      .project(fed.id, honest.siteId, entries[0]!.mechanism);
    expect(next.current).toBeCloseTo(entries[0]!.cumulativeEpsilon, 12);
    expect(next.projected).toBeGreaterThan(next.current);
    expect((await serverVerify(fed.id)).ok).toBe(true);
  }, 60_000);

  it('parallel attempts to charge one site cannot double-spend its budget', async () => {
    const limit = 1.5; // two releases (1.02, 1.39) fit, a third (1.68) does not
    const fed = await createFederation(api, { ...TRAIN, dp: { ...DP, epsilonLimit: limit } });
    const [site] = (await enrolSites(api, fed.id, 1)) as [TestSite];
    const fedRow = (await agg.app.get(FederationRepository).findById(fed.id))!;
    const siteRow = (await agg.app.get(SiteRepository).findById(fed.id, site.siteId))!;
    const repo = agg.app.get(LedgerRepository);
    // Two ledger services over one database, as two aggregator processes would be. Each hands out the
    // chain head one site at a time in memory, but the two know nothing of each other's queue. The
    // database keeps them apart: the held position is a row (one per federation), so the second
    // process's grant is refused while the first's is held (SERVER_BUSY, try again), and acceptReceipt
    // locks the site's privacy_budget row (SELECT ... FOR UPDATE) before it reads the site's history,
    // so a release is counted against a history that includes every earlier one. The (federation_id,
    // seq) primary key backs it up: two rows can never take one place in the chain.
    const services = [
      agg.app.get(LedgerService),
      new LedgerService(
        agg.db,
        agg.app.get<unknown, Clock>(CLOCK),
        repo,
        agg.app.get(SiteRepository),
      ),
    ];
    const mechanism = releaseOf(190);
    const expected = (m: MechanismParams): string | null =>
      canonicalJson(m) === canonicalJson(mechanism) ? null : 'not this round’s mechanism';
    const raced: string[] = [];

    // Each flow is a site that wants a release and will sign past its limit if asked: it retries
    // when it lost a race, and stops only when the aggregator says the budget is spent.
    const flow = async (i: number): Promise<'accepted' | 'refused'> => {
      const service = services[i % 2]!;
      for (let attempt = 0; attempt < 200; attempt++) {
        let slot;
        try {
          slot = await service.reserve(fedRow, siteRow, 1, 'update');
        } catch (e) {
          if (!(e instanceof ProtocolError) || e.code !== ErrorCode.SERVER_BUSY) throw e;
          raced.push(e.message);
          await new Promise((r) => setTimeout(r, Math.random() * 20));
          continue;
        }
        if (!slot) throw new Error('a position nobody stopped wanting was not granted');
        const history = await repo.siteEntries(fed.id, site.siteId);
        const body = createReceipt(
          {
            seq: slot.seq,
            federationId: fed.id,
            siteId: site.siteId,
            siteName: site.name,
            round: 1,
            mechanism,
            delta: slot.delta,
            epsilonLimit: 1e6, // no local veto...
            createdAt: slot.createdAt,
            sitePublicKey: site.identity.publicKey,
            siteHistory: history,
          },
          confideAccountant,
        );
        const receipt = signReceipt(
          { ...body, epsilonLimit: slot.epsilonLimit }, // ...but the limit the slot names
          slot.prevHash,
          site.identity.secretKey,
        );
        await new Promise((r) => setTimeout(r, Math.random() * 5));
        try {
          await service.acceptReceipt(slot, siteRow, receipt, expected);
          return 'accepted';
        } catch (e) {
          if (!(e instanceof ProtocolError)) throw e;
          if (e.code === ErrorCode.BUDGET_EXCEEDED) return 'refused';
          expect(e.code).toBe(ErrorCode.RECEIPT_INVALID);
          raced.push(e.message);
        }
      }
      throw new Error(`flow ${i} neither landed nor was refused`);
    };
    const outcomes = await Promise.all(Array.from({ length: 8 }, (_, i) => flow(i)));

    expect(outcomes.filter((o) => o === 'accepted')).toHaveLength(2);
    expect(outcomes.filter((o) => o === 'refused')).toHaveLength(6);
    for (const m of raced) {
      expect(m).toMatch(/another aggregator process holds/);
    }
    const entries = await repo.all(fed.id);
    expect(entries.map((e) => e.seq)).toEqual([1, 2]);
    expect(Math.max(...entries.map((e) => e.cumulativeEpsilon))).toBeLessThanOrEqual(limit);
    const report = await services[0]!.verify(fedRow);
    expect(report.discrepancies).toEqual([]);
    expect(report.ok).toBe(true);
    // A receipt can still not be made past the limit by an honest site.
    expect(() =>
      createReceipt(
        {
          seq: 3,
          federationId: fed.id,
          siteId: site.siteId,
          siteName: site.name,
          round: 1,
          mechanism,
          delta: DELTA,
          epsilonLimit: limit,
          createdAt: new Date().toISOString(),
          sitePublicKey: site.identity.publicKey,
          siteHistory: entries,
        },
        confideAccountant,
      ),
    ).toThrow(expect.objectContaining({ code: LedgerErrorCode.BUDGET_EXCEEDED }));
  }, 60_000);

  it('forecasts rounds left per site consistently with the rounds the budget then allows', async () => {
    // Two sites of 285 and 284 records, 20% of each held out for evaluation: they train on 228 and
    // 227, and releases cost about 0.97, 1.32, 1.60, 1.84 cumulatively.
    const fed = await createFederation(api, { ...TRAIN, dp: { ...DP, epsilonLimit: 1.65 } });
    const sites = await enrolSites(api, fed.id, 2);
    for (const s of sites) await node(fed.id, s);
    expect(await run(fed.id, 1)).toMatchObject({ status: 'completed', roundsDone: 1 });
    const after1 = await privacyOf(fed.id);
    const left = after1.sites.map((s) => s.roundsLeft!);
    expect(left).toEqual([2, 2]);
    for (const s of after1.sites) {
      expect(s.releases).toBe(1);
      // roundsLeft more releases fit under the limit, one more does not.
      const mine = (await ledgerOf(fed.id)).filter((e) => e.siteId === s.siteId);
      const m = mine[0]!.mechanism;
      const plus = (k: number) => [
        ...mine,
        ...Array.from({ length: k }, () => ({ rdp: mine[0]!.rdp })),
      ];
      expect(
        projectNextRound(plus(s.roundsLeft! - 1), m, DELTA, 1.65, confideAccountant).allowed,
      ).toBe(true);
      expect(projectNextRound(plus(s.roundsLeft!), m, DELTA, 1.65, confideAccountant).allowed).toBe(
        false,
      );
    }

    // Asked for one round more than the forecast, the run does exactly the forecast, then stops.
    const k = Math.min(...left);
    const ended = await run(fed.id, k + 1);
    expect(ended.status).toBe('stopped');
    expect(ended.roundsDone).toBe(k);
    expect(ended.reason).toMatch(/privacy budget/);
    const last = (await listRounds(api, fed.id)).at(-1)!;
    expect(last.state).toBe('aborted');
    expect(last.participants.map((p) => p.status)).toEqual(['skipped', 'skipped']);
    const done = await privacyOf(fed.id);
    for (const s of done.sites) {
      expect(s.releases).toBe(1 + k);
      expect(s.roundsLeft).toBe(0);
      expect(s.epsilon).toBeLessThanOrEqual(1.65);
    }
    expect(
      verifyLedger({
        entries: await ledgerOf(fed.id),
        orders: confideAccountant.orders,
        accountant: confideAccountant,
        sites: new Map(sites.map((s) => [s.siteId, s.identity.publicKey])),
        limits: new Map(done.sites.map((s) => [s.siteId, s.limit])),
      }).ok,
    ).toBe(true);
  }, 90_000);

  // ---------------------------------------------------------------------------------------------
  // Site-level DP under secure aggregation: the distributed discrete Gaussian and its own bound.

  describe('site-level DP under secure aggregation', () => {
    const SITE_DP = { level: 'site', noiseMultiplier: 1, clipNorm: 1, delta: DELTA } as const;
    let fedId: string;
    let sites: TestSite[];
    let entries: LedgerEntry[];
    let nodesOf: ClientNode[];
    const localFiles: string[] = [];
    /** The budget of the first site: one release (epsilon 4.73) fits, two (7.08) do not. */
    const TIGHT = 6;

    beforeAll(async () => {
      const fed = await createFederation(api, {
        ...TRAIN,
        dp: { ...SITE_DP, epsilonLimit: 50 },
      });
      expect(fed).toMatchObject({ config: { secureAggregation: { enabled: true } } });
      fedId = fed.id;
      sites = await enrolSites(api, fedId, 3);
      await setBudget(fedId, sites[0]!.siteId, TIGHT, 'one site-level release only');
      nodesOf = [];
      for (const [i, site] of sites.entries()) {
        const file = join(workDir, `ddg-site-${i + 1}.jsonl`);
        localFiles.push(file);
        // The first site's own limit is none: the aggregator alone must skip it in round 2.
        nodesOf.push(
          await node(fedId, site, {
            ledgerStore: fileLedgerStore(file),
            ...(i === 0 ? { epsilonLimit: 1e6 } : {}),
          }),
        );
      }
      expect(await run(fedId, 2)).toMatchObject({ status: 'completed', roundsDone: 2 });
      for (const n of nodesOf) n.stop();
      entries = await ledgerOf(fedId);
    }, 120_000);

    it('records the distributed discrete Gaussian with each round’s scale, the model’s dimension and t', async () => {
      // Round 1: 3 sites; round 2: 2 (the first site is out of budget). Every site takes part in every
      // round it is offered (no self-sampling), so q = 1 in both: no amplification is claimed that the
      // sites' own coins did not earn. The noise shares are sized for t = 2 survivors (the threshold
      // of 3 and of 2 sites). Here both rounds get 2^23: the headroom would allow more, the discrete
      // Gaussian sampler's 1e14 variance cap not.
      expect(entries.map((e) => e.round)).toEqual([1, 1, 1, 2, 2]);
      const d = parameterCount({ kind: 'logistic', inputDim: 30 });
      const scaleFor = (n: number) =>
        secureQuantization(10, { noiseMultiplier: 1, clipNorm: 1 }, n, 2).scale;
      expect([scaleFor(3), scaleFor(2)]).toEqual([2 ** 23, 2 ** 23]);
      for (const e of entries) {
        expect(e.mechanism).toEqual({
          level: 'site',
          samplingRate: 1,
          noiseMultiplier: 1,
          steps: 1,
          clipNorm: 1,
          survivorsAssumed: 2,
          accountant: 'rdp',
          noise: 'distributed-discrete-gaussian',
          quantizationScale: scaleFor(e.round === 1 ? 3 : 2),
          dimension: d,
        });
        expect(e.rdp).toEqual(confideAccountant.releaseRdp(e.mechanism));
      }
      // Each site's local ledger holds the very entries it signed.
      for (const [i, n] of nodesOf.entries()) {
        const mine = entries.filter((e) => e.siteId === sites[i]!.siteId);
        expect(n.ledgerEntries()).toEqual(mine);
        expect(await readFile(localFiles[i]!, 'utf8')).toBe(mine.map(serializeLocalEntry).join(''));
      }
    });

    it('skipped a site whose projected epsilon under that bound passed the aggregator’s budget', async () => {
      const [, second] = await listRounds(api, fedId);
      const skipped = second!.participants.find((p) => p.siteId === sites[0]!.siteId)!;
      expect(skipped.status).toBe('skipped');
      const m = /projected epsilon (\d+\.\d+) would exceed its limit 6$/.exec(skipped.detail ?? '');
      expect(m, skipped.detail).not.toBeNull();
      const mine = entries.filter((e) => e.siteId === sites[0]!.siteId);
      expect(mine).toHaveLength(1);
      expect(mine[0]!.cumulativeEpsilon).toBeLessThan(TIGHT);
      // Projected with the round's scale for 3 selected sites and q = 1: the first release's mechanism.
      const projected = projectNextRound(mine, mine[0]!.mechanism, DELTA, TIGHT, confideAccountant);
      expect(Number(m![1])).toBeCloseTo(projected.projectedEpsilon, 4);
      expect(projected.allowed).toBe(false);
    });

    it('`audit verify` recomputes every curve from the recorded parameters and exits 0', async () => {
      const viaServer = await confide([
        'audit',
        'verify',
        ...fromServer(fedId),
        '--site-ledger',
        localFiles.join(','),
        '--json',
      ]);
      expect(viaServer.err).toBe('');
      expect(viaServer.report!.discrepancies).toEqual([]);
      expect(viaServer.code).toBe(0);
      const rdpCheck = viaServer.report!.checks.find((c) => c.name === 'rdp curves')!;
      expect(rdpCheck).toMatchObject({ ok: true });
      expect(rdpCheck.detail).toContain('5 curves recomputed');
      const file = join(workDir, 'ddg-export.json');
      expect((await confide(['audit', 'export', ...fromServer(fedId), '--out', file])).code).toBe(
        0,
      );
      const exported = JSON.parse(await readFile(file, 'utf8')) as { entries: LedgerEntry[] };
      expect(exported.entries.map((e) => e.mechanism.noise)).toEqual(
        Array(5).fill('distributed-discrete-gaussian'),
      );
      const offline = await confide(['audit', 'verify', '--export', file]);
      expect(offline.code).toBe(0);
      expect(offline.out).toContain('VERIFIED: every check holds');
      if (databaseUrl) {
        const direct = await confide([
          'audit',
          'verify',
          '--database-url',
          databaseUrl,
          '--federation',
          fedId,
          '--json',
        ]);
        expect(direct.code).toBe(0);
      }
    });

    it.each([
      ['a halved quantization scale', 'quantization_scale = quantization_scale / 2'],
      ['a larger dimension', 'dimension = dimension * 4'],
      [
        'the noise rewritten as a continuous Gaussian',
        'noise = NULL, quantization_scale = NULL, dimension = NULL',
      ],
    ])('`audit verify` exits 1 on %s', async (_name, set) => {
      const target = entries[3]!;
      await asTableOwner(async (q) => {
        await q(`UPDATE ledger_entry SET ${set} WHERE federation_id = $1 AND seq = $2`, [
          fedId,
          target.seq,
        ]);
      });
      try {
        const found = await confide(['audit', 'verify', ...fromServer(fedId), '--json']);
        expect(found.code).toBe(1);
        const kinds = found
          .report!.discrepancies.filter((d) => d.seq === target.seq)
          .map((d) => d.kind);
        for (const k of ['RDP_MISMATCH', 'HASH_MISMATCH', 'BAD_SIGNATURE'])
          expect(kinds).toContain(k);
        // The site's own ledger still holds what it signed.
        const site = sites.findIndex((s) => s.siteId === target.siteId);
        const local = await confide([
          'audit',
          'verify',
          ...fromServer(fedId),
          '--site-ledger',
          localFiles[site]!,
          '--json',
        ]);
        expect(local.report!.discrepancies).toContainEqual(
          expect.objectContaining({ kind: 'LOCAL_DIFFERS', seq: target.seq }),
        );
      } finally {
        const repo = agg.app.get(LedgerRepository);
        await agg.db.transaction(async (em) => {
          await em.query('ALTER TABLE ledger_entry DISABLE TRIGGER USER');
          await em.query('DELETE FROM ledger_entry WHERE federation_id = $1', [fedId]);
          for (const e of entries) await repo.insert(em, e);
          await em.query('ALTER TABLE ledger_entry ENABLE TRIGGER USER');
        });
        expect(await ledgerOf(fedId)).toEqual(entries);
      }
    });
  });
});
