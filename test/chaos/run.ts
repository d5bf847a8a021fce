/**
 * One chaos run: the federation of {@link Cluster} runs rounds while the seeded plan of
 * {@link planFaults} kills the aggregator, kills nodes and cuts connections at protocol stages; then
 * the checks of checks.ts. Returns the report; never throws for a failed check (only for a harness
 * that could not start).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkCharges, checkLedger, checkModels, wedgedSites, type RoundRow } from './checks';
import { Cluster } from './cluster';
import type { SeenMessage } from './proxy';
import { emptyReport, type ChaosReport } from './report';
import { describeFault, planFaults, type Fault } from './scheduler';

export interface ChaosOptions {
  seed: number;
  rounds: number;
  sites: number;
  roundTimeoutSeconds: number;
  evaluationTimeoutSeconds: number;
  /** Progress lines (per round and per fault). */
  log: (line: string) => void;
  /** Keep the data directories, logs and ledgers (printed) instead of deleting them. */
  keep?: boolean;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Runs the chaos suite once and returns its report. */
export async function runChaos(o: ChaosOptions): Promise<ChaosReport> {
  const started = Date.now();
  const dir = await mkdtemp(join(tmpdir(), `confide-chaos-${o.seed}-`));
  const report = emptyReport(o.seed);
  const cluster = new Cluster({ dir, ...o });
  const elapsed = (): string => `${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s`;
  const log = (line: string): void => o.log(`[${elapsed()}] ${line}`);
  const pending = new Set<Promise<void>>();
  const background = (p: Promise<void>): void => {
    const q = p.catch((e: unknown) => log(`harness: ${(e as Error).message}`));
    pending.add(q);
    void q.finally(() => pending.delete(q));
  };
  try {
    log(`seed ${o.seed}: ${o.sites} sites, ${o.rounds} rounds, data in ${dir}`);
    await cluster.start();
    report.database = cluster.databaseKind;
    log(`aggregator ${cluster.url} (${cluster.databaseKind}), federation ${cluster.federationId}`);
    const plans = planFaults(o.seed, o.rounds, o.sites);

    // Faults are armed when a round's first round.train crosses the proxy, and dropped at the next.
    const roundIndex = new Map<number, number>();
    let kills: Array<{ fault: Fault; round: number }> = [];
    let aggregatorDown = false;

    const fireKill = (f: Fault, round: number, m: SeenMessage): void => {
      const site = cluster.sites[f.site]!;
      if (f.kind === 'aggregatorKilled') {
        if (aggregatorDown) return;
        aggregatorDown = true;
        report.faults.aggregatorKilled++;
        log(`round ${round}: ${describeFault(f, site.name)} (on ${m.site ?? '?'}'s ${m.type})`);
        background(
          (async () => {
            await cluster.killAggregator();
            await sleep(f.downMs);
            await cluster.startAggregator();
            aggregatorDown = false;
            log('aggregator restarted');
          })(),
        );
        return;
      }
      if (!site.node) return;
      report.faults.nodeKilled++;
      log(`round ${round}: ${describeFault(f, site.name)}`);
      background(
        (async () => {
          await cluster.killNode(site);
          await sleep(f.downMs);
          cluster.startNode(site);
          log(`${site.name} restarted`);
        })(),
      );
    };

    cluster.proxy.beforeRules((m) => {
      if (m.dir === 'down' && m.type === 'round.train') {
        const round = Number(m.header['round']);
        if (!roundIndex.has(round)) {
          const idx = roundIndex.size;
          roundIndex.set(round, idx);
          cluster.proxy.disarm();
          kills = [];
          const plan = plans[idx] ?? [];
          log(`round ${round} started: ${plan.length} fault(s) planned`);
          for (const f of plan) {
            const site = cluster.sites[f.site]!;
            if (f.kind === 'connectionCut') {
              cluster.proxy.arm({
                ...f.stage,
                when: f.when,
                site: site.name,
                onFire: () => {
                  report.faults.connectionCut++;
                  report.stagesCut[f.stage.type] = (report.stagesCut[f.stage.type] ?? 0) + 1;
                  log(`round ${round}: ${describeFault(f, site.name)}`);
                },
              });
            } else kills.push({ fault: f, round });
          }
        }
      }
    });
    cluster.proxy.onMessage((m) => {
      for (const k of kills) {
        const { fault: f } = k;
        if (m.type !== f.stage.type || m.dir !== f.stage.dir) continue;
        if (f.kind === 'nodeKilled' && m.site !== cluster.sites[f.site]!.name) continue;
        kills = kills.filter((x) => x !== k);
        fireKill(f, k.round, m);
        break;
      }
    });

    await waitForSites(cluster, 120_000);
    log(`all ${o.sites} sites connected`);
    const rounds = await driveRounds(cluster, o, report, log, () => aggregatorDown);
    await Promise.all(pending);
    for (const s of cluster.sites) if (!s.node) cluster.startNode(s);
    for (const e of cluster.exitedNodes()) {
      report.problems.push(
        `${e.site.name}'s node exited by itself (code ${e.code}): ${lastLines(e.stderr)}`,
      );
    }

    log('checking: model versions, ledger, charges');
    const models = await checkModels(cluster, rounds);
    report.lost = models.lost;
    report.modelVersions = models.versions;
    report.problems.push(...models.problems);
    const ledger = await checkLedger(cluster);
    report.ledgerVerified = ledger.verified;
    report.ledgerEntries = ledger.entries;
    report.problems.push(...ledger.problems);
    const charges = checkCharges(cluster.proxy.messages, cluster.sites);
    report.maskedUpdates = charges.updates;
    report.underCharged = charges.underCharged;
    report.problems.push(...charges.problems);
    const wedged = wedgedSites(cluster.proxy.messages);
    report.stuckSites = wedged.length;
    for (const w of wedged) report.problems.push(`wedged site: ${w}`);
    for (const u of cluster.proxy.undecodable)
      report.problems.push(
        `proxy: undecodable ${u.dir} message on connection ${u.conn}: ${u.error}`,
      );
  } catch (e) {
    report.problems.push(`harness: ${(e as Error).message}`);
  } finally {
    report.seconds = Math.round((Date.now() - started) / 1000);
    if (o.keep) await cluster.writeRounds(join(dir, 'rounds.json')).catch(() => undefined);
    await cluster.stop().catch(() => undefined);
    if (o.keep) {
      await cluster.writeLogs(join(dir, 'logs')).catch(() => undefined);
      await writeFile(
        join(dir, 'logs', 'proxy.jsonl'),
        cluster.proxy.messages
          .map((m) =>
            JSON.stringify({
              at: new Date(m.at).toISOString(),
              conn: m.conn,
              site: m.site,
              dir: m.dir,
              type: m.type,
              round: m.header['round'],
              sum: m.header['sum'],
              delivered: m.delivered,
            }),
          )
          .join('\n'),
      ).catch(() => undefined);
      log(`kept ${dir} (process logs in logs/)`);
    } else await rm(dir, { recursive: true, force: true });
  }
  return report;
}

/**
 * Keeps runs going until `o.rounds` rounds have ended, then stops the run and waits for it to end.
 * A round that ends neither way within twice its deadlines (plus restarts) is counted stuck.
 */
async function driveRounds(
  cluster: Cluster,
  o: ChaosOptions,
  report: ChaosReport,
  log: (line: string) => void,
  aggregatorDown: () => boolean,
): Promise<RoundRow[]> {
  const fed = `/api/v1/federations/${cluster.federationId}`;
  const stallMs = 2 * (o.roundTimeoutSeconds + o.evaluationTimeoutSeconds) * 1000 + 60_000;
  const reported = new Set<number>();
  let rounds: RoundRow[] = [];
  let lastProgress = Date.now();
  let stopping = false;
  const ended = (): RoundRow[] =>
    rounds.filter((r) => r.state === 'committed' || r.state === 'aborted');
  for (;;) {
    await sleep(1000);
    if (aggregatorDown() || !cluster.aggregatorUp) {
      lastProgress = Math.max(lastProgress, Date.now() - stallMs / 2);
      continue;
    }
    let runs: Array<{ id: string; status: string }>;
    try {
      rounds = (await cluster.api.get<{ rounds: RoundRow[] }>(`${fed}/rounds`)).rounds;
      runs = await cluster.api.get<Array<{ id: string; status: string }>>(`${fed}/runs`);
    } catch {
      continue; // the aggregator is going down or coming up
    }
    for (const r of ended()) {
      if (reported.has(r.number)) continue;
      reported.add(r.number);
      lastProgress = Date.now();
      log(`round ${r.number} ${r.state}${r.reason ? `: ${r.reason}` : ''}`);
    }
    const running = runs.some((r) => r.status === 'running');
    const done = ended().length;
    if (done >= o.rounds) {
      if (!stopping) {
        stopping = true;
        lastProgress = Date.now();
        log(`${done} rounds ended; stopping the run`);
        if (running) await cluster.api.post(`${fed}/runs/stop`).catch(() => undefined);
      }
      if (!running && rounds.every((r) => r.state === 'committed' || r.state === 'aborted')) break;
    } else if (!running) {
      try {
        await cluster.api.post(`${fed}/runs`, { rounds: o.rounds - done });
        log(`run started for ${o.rounds - done} round(s)`);
      } catch (e) {
        log(`could not start a run yet: ${(e as Error).message}`);
      }
    }
    if (Date.now() - lastProgress > stallMs) {
      const open = rounds.filter((r) => r.state !== 'committed' && r.state !== 'aborted');
      report.stuck += Math.max(1, open.length);
      report.problems.push(
        `stuck: no round ended for ${Math.round(stallMs / 1000)} s; open rounds: ${open.map((r) => `${r.number} (${r.state})`).join(', ') || 'none'}; runs: ${runs.map((r) => r.status).join(', ')}`,
      );
      log(report.problems.at(-1)!);
      break;
    }
  }
  report.rounds.committed = rounds.filter((r) => r.state === 'committed').length;
  report.rounds.aborted = rounds.filter((r) => r.state === 'aborted').length;
  return rounds;
}

/** Waits until every site is connected, so that the first round has them all. */
async function waitForSites(cluster: Cluster, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const sites = await cluster.api.get<Array<{ connected: boolean }>>(
      `/api/v1/federations/${cluster.federationId}/sites`,
    );
    const n = sites.filter((s) => s.connected).length;
    if (n === cluster.sites.length) return;
    if (Date.now() > end) throw new Error(`only ${n} of ${cluster.sites.length} sites connected`);
    await sleep(500);
  }
}

function lastLines(text: string, n = 5): string {
  return text.trim().split('\n').slice(-n).join(' | ');
}
