// No orphaned receipt: a cut of the connection, a crash of the aggregator or of the site, at each step
// of a DP release (position asked for, position granted, receipt signed and fsynced, update sent,
// receipt re-sent), never leaves a site's signed receipt without its place in the aggregator's chain.
// After each, the chain verifies, every site's local ledger reconciles with it, no position is left
// held, and the run goes on. Runs on PGlite, and on Postgres when DATABASE_URL is set.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  confideAccountant,
  parseLedgerExport,
  verifyLedgerExport,
  type LedgerEntry,
} from '@confide/privacy-ledger';
import {
  startAggregator,
  type AggregatorOptions,
  type RunningAggregator,
} from '@confide/aggregator';
import { fileLedgerStore, parsePolicy, type ClientNode } from '@confide/client-node';
import { generateIdentity } from '@confide/protocol';
import { ApiClient } from '../../apps/cli/src/api-client';
import { main } from '../../apps/cli/src/main';
import { captureIo } from '../support/cli';
import { LedgerService } from '../../apps/aggregator/src/privacy/ledger.service';
import {
  startCapturingRelay,
  type CapturingRelay,
  type RelayAction,
  type RelayedMessage,
} from '../support/capturing-relay';
import { databaseKind, freshDatabaseUrl } from '../support/database';
import {
  createFederation,
  enrolSites,
  listRounds,
  startNode,
  waitForRun,
  waitUntil,
  type TestSite,
} from '../support/federation';

/** Plain updates, record-level DP: each round every site asks for a position and signs a receipt. */
const FEDERATION = {
  localEpochs: 1,
  batchSize: 64,
  learningRate: 0.1,
  optimizer: 'sgd',
  evaluation: { enabled: false },
  dp: { level: 'record', noiseMultiplier: 3, clipNorm: 1, delta: 1e-5, epsilonLimit: 100 },
  secureAggregation: { enabled: false },
  minSites: 2,
  roundTimeoutSeconds: 60,
} as const;
const POLICY = parsePolicy({ minSitesPerSum: 2, secureAggregation: { required: false } });

const fromSite =
  (type: string, withReceipt = false) =>
  (m: RelayedMessage) =>
    m.from === 'site' && m.message?.['type'] === type && (!withReceipt || !!m.message['receipt']);
const fromAggregator = (type: string) => (m: RelayedMessage) =>
  m.from === 'aggregator' && m.message?.['type'] === type;

interface Step {
  name: string;
  /** The message of site 1's connection at which the fault strikes (the first one matching). */
  at: (m: RelayedMessage) => boolean;
  action: Exclude<RelayAction, 'forward'>;
  /** Besides the cut: the aggregator or site 1 crashes at that moment. */
  crash?: 'aggregator' | 'site';
  /** A second fault: the next message matching this is cut too (the re-sent receipt). */
  then?: (m: RelayedMessage) => boolean;
}

const STEPS: Step[] = [
  {
    name: 'before ledger.reserve reaches the aggregator',
    at: fromSite('ledger.reserve'),
    action: 'cut-before',
  },
  {
    name: 'before the granted ledger.slot reaches the site',
    at: fromAggregator('ledger.slot'),
    action: 'cut-before',
  },
  {
    name: 'right after the site got its ledger.slot',
    at: fromAggregator('ledger.slot'),
    action: 'cut-after',
  },
  {
    name: 'after the site signed and recorded its receipt, before its update arrives',
    at: fromSite('round.update', true),
    action: 'cut-before',
  },
  {
    name: 'right after the update and its receipt reached the aggregator',
    at: fromSite('round.update', true),
    action: 'cut-after',
  },
  {
    name: 'of the signed update, and then of the re-sent receipt',
    at: fromSite('round.update', true),
    action: 'cut-before',
    then: fromSite('ledger.receipt'),
  },
  {
    name: 'of the signed update, with the aggregator crashing at that moment',
    at: fromSite('round.update', true),
    action: 'cut-before',
    crash: 'aggregator',
  },
  {
    name: 'of the signed update, with the site crashing at that moment',
    at: fromSite('round.update', true),
    action: 'cut-before',
    crash: 'site',
  },
  {
    name: 'before the granted ledger.slot reaches the site, and then of its "none"',
    at: fromAggregator('ledger.slot'),
    action: 'cut-before',
    then: fromSite('ledger.none'),
  },
];

describe(`no orphaned receipt after a cut or a crash at each step of a release (${databaseKind})`, () => {
  let db: Awaited<ReturnType<typeof freshDatabaseUrl>>;
  let dataDir: string | undefined;
  let workDir: string;
  let agg: RunningAggregator;
  let api: ApiClient;
  let token: string;
  const identity = generateIdentity();
  const options = (): AggregatorOptions => ({
    databaseUrl: db.url,
    dataDir,
    identity,
    reconnectGraceMs: 3000,
  });
  const live: ClientNode[] = [];
  const relays: CapturingRelay[] = [];

  beforeAll(async () => {
    db = await freshDatabaseUrl();
    dataDir = db.url ? undefined : await mkdtemp(join(tmpdir(), 'confide-orphans-db-'));
    workDir = await mkdtemp(join(tmpdir(), 'confide-orphans-'));
    agg = await startAggregator(options());
    token = agg.initialAdminToken!;
    api = new ApiClient(agg.url, token);
  });

  afterAll(async () => {
    for (const n of live) n.stop();
    for (const r of relays) await r.close();
    await agg?.close();
    await db?.drop();
    for (const d of [dataDir, workDir]) if (d) await rm(d, { recursive: true, force: true });
  });

  async function restartAggregator(): Promise<void> {
    const port = agg.port;
    // close() writes nothing about the round in flight: as far as the database knows, a crash.
    await agg.close();
    agg = await startAggregator({ ...options(), port });
    api = new ApiClient(agg.url, token);
  }

  /** Client nodes of `sites` connected straight to the aggregator (no relay, no faults). */
  async function startDirect(fedId: string, sites: TestSite[]): Promise<ClientNode[]> {
    const nodes: ClientNode[] = [];
    for (const s of sites) {
      const { node } = await startNode(agg, fedId, s, { policy: POLICY });
      live.push(node);
      nodes.push(node);
    }
    return nodes;
  }

  async function startRun(fedId: string, rounds: number): Promise<string> {
    return (await api.post<{ id: string }>(`/api/v1/federations/${fedId}/runs`, { rounds })).id;
  }

  /** The chain verifies, each site's own ledger reconciles with it, and no position is held. */
  async function expectConsistent(fedId: string, locals: Map<string, LedgerEntry[]>) {
    const exported = parseLedgerExport(
      await api.get<unknown>(`/api/v1/federations/${fedId}/ledger/export`),
    );
    const report = verifyLedgerExport(exported, {
      accountant: confideAccountant,
      localLedgers: locals,
    });
    expect(report.discrepancies).toEqual([]);
    expect(report.ok).toBe(true);
    expect(await agg.app.get(LedgerService).hold(fedId)).toBeNull();
    return exported.entries;
  }

  for (const step of STEPS) {
    it(`a cut ${step.name}`, async () => {
      const fed = await createFederation(api, FEDERATION);
      const sites: TestSite[] = await enrolSites(api, fed.id, 3);
      const ledgerPath = join(workDir, `${fed.id}-site1.jsonl`);
      let fired = 0;
      /** The restart a crash step started (in the relay's callback). */
      const crashed: { restart: Promise<void> | null } = { restart: null };
      let site1: ClientNode;
      const relay = await startCapturingRelay(agg.wsUrl, (m) => {
        if (fired === 0 && step.at(m)) {
          fired = 1;
          if (step.crash === 'aggregator') crashed.restart = restartAggregator();
          if (step.crash === 'site') {
            site1.stop();
            crashed.restart = (async () => {
              site1 = await node1();
            })();
          }
          return step.action;
        }
        if (fired === 1 && step.then?.(m)) {
          fired = 2;
          return 'cut-before';
        }
        return 'forward';
      });
      relays.push(relay);
      const node1 = async (): Promise<ClientNode> => {
        const { node } = await startNode(agg, fed.id, sites[0]!, {
          server: relay.url,
          policy: POLICY,
          ledgerStore: fileLedgerStore(ledgerPath),
          reconnectDelayMs: 50,
          maxBackoffMs: 200,
        });
        live.push(node);
        return node;
      };
      site1 = await node1();
      const others = await startDirect(fed.id, sites.slice(1));
      const runId = await startRun(fed.id, 2);
      // The fault strikes inside the run; a restarted aggregator is back before the run is polled.
      await waitUntil(() => fired > 0, 60_000, 'the fault to strike');
      if (crashed.restart) await crashed.restart;
      const run = await waitForRun(api, fed.id, runId, 90_000);
      expect(run.status).toBe('completed');
      expect(fired).toBeGreaterThanOrEqual(step.then ? 2 : 1);
      // Site 1 is back and answered for what it held.
      await waitUntil(
        async () => (await agg.app.get(LedgerService).hold(fed.id)) === null,
        10_000,
        'the held position to be settled',
      );
      const locals = new Map(
        [site1, ...others].map((n) => [n.siteId!, n.ledgerEntries()] as const),
      );
      const entries = await expectConsistent(fed.id, locals);
      // Every receipt site 1 signed, including the one whose update was cut, is in the chain.
      const mine = locals.get(sites[0]!.siteId)!;
      expect(mine.length).toBeGreaterThan(0);
      for (const e of mine) expect(entries.find((x) => x.seq === e.seq)?.hash).toBe(e.hash);
      expect((await listRounds(api, fed.id)).some((r) => r.state === 'committed')).toBe(true);
    }, 120_000);
  }

  it('a site gone for good holds its position until an admin releases it, on the record', async () => {
    const fed = await createFederation(api, FEDERATION);
    const sites: TestSite[] = await enrolSites(api, fed.id, 3);
    let gone = false;
    const site1Ref: { node: ClientNode | null } = { node: null };
    const relay = await startCapturingRelay(agg.wsUrl, (m) => {
      if (!gone && fromSite('round.update', true)(m)) {
        gone = true;
        site1Ref.node?.stop(); // signed, recorded, never sent, never back
        return 'cut-before';
      }
      return 'forward';
    });
    relays.push(relay);
    const site1 = (
      await startNode(agg, fed.id, sites[0]!, {
        server: relay.url,
        policy: POLICY,
        ledgerStore: fileLedgerStore(join(workDir, `${fed.id}-gone.jsonl`)),
      })
    ).node;
    site1Ref.node = site1;
    live.push(site1);
    const others = await startDirect(fed.id, sites.slice(1));
    const runId = await startRun(fed.id, 1);
    await waitUntil(() => gone, 60_000, 'site 1 to sign and vanish');
    const cli = async (...args: string[]) => {
      const io = captureIo();
      const code = await main(
        ['admin', 'ledger', ...args, '--server', agg.url, '--token', token, '--federation', fed.id],
        io,
      );
      return { code, out: io.stdout(), err: io.stderr() };
    };
    const held = await waitUntil(
      async () => {
        const r = await cli('hold', '--json');
        const h = (JSON.parse(r.out) as { hold: { siteId: string; connected: boolean } | null })
          .hold;
        return h && !h.connected ? h : undefined;
      },
      10_000,
      "site 1's position to be held while it is away",
    );
    expect(held.siteId).toBe(sites[0]!.siteId);
    // Nothing releases it on its own: no timer, no round end.
    await new Promise((r) => setTimeout(r, 500));
    expect(await agg.app.get(LedgerService).hold(fed.id)).not.toBeNull();

    const refused = await cli('release-hold');
    expect(refused.code).toBe(2);
    expect(refused.err).toMatch(/--reason/);
    const released = await cli('release-hold', '--reason', 'hospital-1 decommissioned its node');
    expect(released.code).toBe(0);
    expect(released.out).toMatch(/released: position \d+ held for hospital-1/);
    expect(await agg.app.get(LedgerService).hold(fed.id)).toBeNull();
    const events = await agg.db.manager.query<Array<{ details: { reason?: string } | string }>>(
      `SELECT details FROM admin_event WHERE action = 'ledger.hold.release' AND subject = $1`,
      [fed.id],
    );
    expect(events).toHaveLength(1);
    const details = events[0]!.details;
    expect(typeof details === 'string' ? JSON.parse(details) : details).toMatchObject({
      reason: 'hospital-1 decommissioned its node',
      siteName: 'hospital-1',
    });

    // The chain goes on; site 1's signed receipt has no place in it, as the audit then says.
    expect((await waitForRun(api, fed.id, runId, 90_000)).status).toBe('completed');
    const next = await startRun(fed.id, 1);
    expect((await waitForRun(api, fed.id, next, 90_000)).status).toBe('completed');
    const exported = parseLedgerExport(
      await api.get<unknown>(`/api/v1/federations/${fed.id}/ledger/export`),
    );
    const report = verifyLedgerExport(exported, {
      accountant: confideAccountant,
      localLedgers: new Map([[sites[0]!.siteId, site1.ledgerEntries()]]),
    });
    expect(report.discrepancies.map((d) => d.kind)).toContain('LOCAL_DIFFERS');
    const central = verifyLedgerExport(exported, { accountant: confideAccountant });
    expect(central.ok).toBe(true);
    for (const n of others) expect(n.ledgerEntries().length).toBeGreaterThan(0);
  }, 120_000);
});
