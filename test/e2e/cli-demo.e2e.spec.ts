import { afterAll, describe, expect, it } from 'vitest';
import { cliEnv, spawnCli, type CliProcess } from '../support/cli';
import { databaseKind, freshDatabaseUrl } from '../support/database';

interface Metrics {
  accuracy: number;
  auc: number | null;
  loss: number;
}

interface DemoJson {
  database: string;
  rounds: Array<Record<string, unknown>>;
  final: Metrics;
  centralized: Metrics & { epochs: number };
  privacy?: {
    level: string;
    sites: Array<{ site: string; epsilon: number; limit: number }>;
  } | null;
  ledger?: { entries: number; verified: boolean } | null;
  policy: { secureAggregation: { required: boolean }; minSitesPerSum: number };
  transport: { tls: boolean; serverKeyPinned: boolean };
  secureAggregation: { enabled: boolean; droppedSites: number };
}

describe(`confide demo as a process (${databaseKind})`, () => {
  const children: CliProcess[] = [];
  const databases: Array<Awaited<ReturnType<typeof freshDatabaseUrl>>> = [];

  afterAll(async () => {
    await Promise.all(children.map((c) => c.stop('SIGKILL', 5000)));
    for (const db of databases) await db.drop();
  });

  /** Runs `confide demo ...args` on a fresh database; expects exit 0 and exactly one JSON object on stdout. */
  async function demo(...args: string[]): Promise<DemoJson & { stderr: string }> {
    const db = await freshDatabaseUrl();
    databases.push(db);
    const p = spawnCli(['demo', ...args], cliEnv({ DATABASE_URL: db.url }));
    children.push(p);
    const { code, signal } = await p.exited;
    const context = `\n--- stdout\n${p.stdout}\n--- stderr\n${p.stderr}`;
    expect({ code, signal }, context).toEqual({ code: 0, signal: null });
    // stdout is the report and nothing else: progress went to stderr.
    expect(p.stdout.trim().split('\n'), context).toHaveLength(1);
    const report = JSON.parse(p.stdout) as DemoJson;
    expect(report.database).toContain(db.url ? 'postgres' : 'PGlite');
    expect(report.rounds).toHaveLength(3);
    for (const [i, r] of report.rounds.entries()) {
      expect(r).toMatchObject({
        round: i + 1,
        accuracy: expect.any(Number),
        auc: expect.any(Number),
        loss: expect.any(Number),
        sites: args.includes('--drop-site-at') && i === 0 ? 3 : expect.any(Number),
        durationMs: expect.any(Number),
      });
    }
    // Over TLS with a throwaway CA; every site was given the aggregator's key, none pinned blindly.
    expect(report.transport).toMatchObject({ tls: true, serverKeyPinned: true });
    expect(p.stderr).not.toContain('pinned the aggregator key');
    expect(report.final.accuracy).toBe(report.rounds[2]!['accuracy']);
    expect(report.centralized).toMatchObject({
      accuracy: expect.any(Number),
      auc: expect.any(Number),
      loss: expect.any(Number),
      epochs: expect.any(Number),
    });
    expect(p.stderr).toMatch(/round {2}3\/3 {2}accuracy/);
    return { ...report, stderr: p.stderr };
  }

  it.concurrent(
    '--json --no-dp: one JSON report; federated logistic regression reaches 93% accuracy in 3 rounds',
    async () => {
      const report = await demo('--rounds', '3', '--json', '--no-dp');
      expect(report.final.accuracy).toBeGreaterThanOrEqual(0.93);
      expect(report.centralized.epochs).toBe(6);
      // The sites ran the default policy: secure aggregation required, sums of at least 3 sites.
      expect(report.policy).toMatchObject({
        secureAggregation: { required: true },
        minSitesPerSum: 3,
      });
    },
    120_000,
  );

  it.concurrent(
    '--json with the default record-level DP: one JSON report; every site within its budget, the ledger verified',
    async () => {
      const report = await demo('--rounds', '3', '--json');
      expect(report.privacy?.level).toBe('record');
      expect(report.privacy!.sites).toHaveLength(3);
      for (const s of report.privacy!.sites) expect(s.epsilon).toBeLessThanOrEqual(s.limit);
      expect(report.ledger).toMatchObject({ verified: true });
      // Noisier than without DP (3 rounds at epsilon 1), but far better than chance (63% benign).
      expect(report.final.accuracy).toBeGreaterThanOrEqual(0.85);
      // Every round charged the update and the evaluation counts of each site.
      expect(report.ledger!.entries).toBe(3 * 3 * 2);
    },
    120_000,
  );

  it.concurrent(
    '--drop-site-at collecting runs 4 sites, so the sum left after the drop still holds the 3 the policy asks for',
    async () => {
      const report = await demo(
        '--rounds',
        '3',
        '--json',
        '--no-dp',
        '--drop-site-at',
        'collecting',
      );
      expect(report.secureAggregation).toMatchObject({ enabled: true, droppedSites: 1 });
      expect(report.rounds[0]!['sites']).toBe(3);
      expect(report.stderr).toContain('4 sites enrolled');
    },
    120_000,
  );

  it.concurrent(
    '--no-secure-aggregation gives the sites a policy that allows it, and says so',
    async () => {
      const report = await demo('--rounds', '3', '--json', '--no-dp', '--no-secure-aggregation');
      expect(report.policy).toMatchObject({ secureAggregation: { required: false } });
      expect(report.stderr).toContain('WARNING: --no-secure-aggregation');
    },
    120_000,
  );
});
