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
}

describe(`confide demo as a process (${databaseKind})`, () => {
  const children: CliProcess[] = [];
  const databases: Array<Awaited<ReturnType<typeof freshDatabaseUrl>>> = [];

  afterAll(async () => {
    await Promise.all(children.map((c) => c.stop('SIGKILL', 5000)));
    for (const db of databases) await db.drop();
  });

  /** Runs `confide demo ...args` on a fresh database; expects exit 0 and exactly one JSON object on stdout. */
  async function demo(...args: string[]): Promise<DemoJson> {
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
        sites: 3,
        durationMs: expect.any(Number),
      });
    }
    expect(report.final.accuracy).toBe(report.rounds[2]!['accuracy']);
    expect(report.centralized).toMatchObject({
      accuracy: expect.any(Number),
      auc: expect.any(Number),
      loss: expect.any(Number),
      epochs: expect.any(Number),
    });
    expect(p.stderr).toMatch(/round {2}3\/3 {2}accuracy/);
    return report;
  }

  it.concurrent(
    '--json --no-dp: one JSON report; federated logistic regression reaches 93% accuracy in 3 rounds',
    async () => {
      const report = await demo('--rounds', '3', '--json', '--no-dp');
      expect(report.final.accuracy).toBeGreaterThanOrEqual(0.93);
      expect(report.centralized.epochs).toBe(6);
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
    },
    120_000,
  );
});
