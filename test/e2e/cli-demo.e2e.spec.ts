import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliEnv, spawnCli, type CliProcess } from '../support/cli';
import { databaseKind, freshDatabaseUrl } from '../support/database';

describe(`confide demo as a process (${databaseKind})`, () => {
  let db: Awaited<ReturnType<typeof freshDatabaseUrl>>;
  let demo: CliProcess | undefined;

  beforeAll(async () => {
    db = await freshDatabaseUrl();
  });
  afterAll(async () => {
    await demo?.stop('SIGKILL', 5000);
    await db?.drop();
  });

  it('--json prints exactly one JSON report on stdout, whose federated model reaches 93% accuracy', async () => {
    demo = spawnCli(['demo', '--rounds', '3', '--json'], cliEnv({ DATABASE_URL: db.url }));
    const { code, signal } = await demo.exited;
    const context = `\n--- stdout\n${demo.stdout}\n--- stderr\n${demo.stderr}`;
    expect({ code, signal }, context).toEqual({ code: 0, signal: null });

    // stdout is the report and nothing else: progress went to stderr.
    expect(demo.stdout.trim().split('\n'), context).toHaveLength(1);
    const report = JSON.parse(demo.stdout) as {
      rounds: Array<Record<string, unknown>>;
      final: { accuracy: number; auc: number | null; loss: number };
      centralized: { accuracy: number; auc: number | null; epochs: number };
      database: string;
    };
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
    expect(report.final.accuracy).toBeGreaterThanOrEqual(0.93);
    expect(report.final.accuracy).toBe(report.rounds[2]!.accuracy);
    expect(report.centralized).toMatchObject({ accuracy: expect.any(Number), epochs: 6 });
    expect(report.database).toContain(db.url ? 'postgres' : 'PGlite');
    expect(demo.stderr).toMatch(/round {2}3\/3 {2}accuracy/);
  }, 120_000);
});
