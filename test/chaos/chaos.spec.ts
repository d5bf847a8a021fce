import { describe, expect, it } from 'vitest';
import { databaseKind } from '../support/database';
import { failedChecks } from './report';
import { runChaos } from './run';
import { planFaults, STAGES } from './scheduler';

describe('the chaos plan', () => {
  it('is the same for the same seed and differs for another', () => {
    expect(planFaults(7, 20, 6)).toEqual(planFaults(7, 20, 6));
    expect(planFaults(8, 20, 6)).not.toEqual(planFaults(7, 20, 6));
  });

  it('plans three kinds of fault, at least one every two rounds, and cuts every stage', () => {
    const plan = planFaults(7, 40, 6).flat();
    expect(plan.length).toBeGreaterThanOrEqual(20);
    expect(new Set(plan.map((f) => f.kind))).toEqual(
      new Set(['aggregatorKilled', 'nodeKilled', 'connectionCut']),
    );
    const cut = new Set(plan.filter((f) => f.kind === 'connectionCut').map((f) => f.stage.type));
    expect(cut).toEqual(new Set(STAGES.map((s) => s.type)));
  });
});

/**
 * A short seeded chaos run as processes: a `confide server` and six `confide node join`s behind the
 * harness's proxy, three rounds with faults; every check of the full suite must hold.
 */
describe(`a short chaos run (${databaseKind})`, () => {
  it('loses no model, leaves nothing stuck, charges every release and verifies the ledger', async () => {
    const lines: string[] = [];
    const report = await runChaos({
      seed: 20261207,
      rounds: 3,
      sites: 6,
      roundTimeoutSeconds: 30,
      evaluationTimeoutSeconds: 15,
      log: (l) => lines.push(l),
    });
    const failed = failedChecks(report, 3);
    expect(failed, `${lines.join('\n')}\n${report.problems.join('\n')}`).toEqual([]);
    expect(report).toMatchObject({ lost: 0, stuck: 0, underCharged: 0, ledgerVerified: true });
    expect(report.maskedUpdates).toBeGreaterThan(0);
  }, 600_000);
});
