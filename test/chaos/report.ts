/** The chaos run's report: the JSON object `--json` prints, and whether every check held. */
import type { FaultKind } from './scheduler';

export interface ChaosReport {
  seed: number;
  faults: Record<FaultKind, number>;
  rounds: { committed: number; aborted: number };
  /** Committed model versions that are missing, do not load or do not match their hash. */
  lost: number;
  /** Rounds or runs that did not end. */
  stuck: number;
  /** Connected sites that stopped answering rounds (a wedged node). */
  stuckSites: number;
  /** Masked updates that left a site without a receipt charging at least the recomputed epsilon. */
  underCharged: number;
  /** `confide audit verify`, alone and with every site's local ledger, found nothing. */
  ledgerVerified: boolean;
  database: 'pglite' | 'postgres' | null;
  /** Masked updates the proxy saw leave a site, and cuts by the stage they hit. */
  maskedUpdates: number;
  stagesCut: Record<string, number>;
  modelVersions: number;
  ledgerEntries: number;
  seconds: number;
  /** Every failed check, in words. */
  problems: string[];
}

export function emptyReport(seed: number): ChaosReport {
  return {
    seed,
    faults: { aggregatorKilled: 0, nodeKilled: 0, connectionCut: 0 },
    rounds: { committed: 0, aborted: 0 },
    lost: 0,
    stuck: 0,
    stuckSites: 0,
    underCharged: 0,
    ledgerVerified: false,
    database: null,
    maskedUpdates: 0,
    stagesCut: {},
    modelVersions: 0,
    ledgerEntries: 0,
    seconds: 0,
    problems: [],
  };
}

/**
 * The checks a run must pass: nothing lost, stuck or under-charged, the ledger verified, at least
 * half the rounds committed, and the chaos itself real (three kinds of fault, one every two rounds).
 */
export function failedChecks(r: ChaosReport, roundsAsked: number): string[] {
  const out: string[] = [];
  const ended = r.rounds.committed + r.rounds.aborted;
  if (r.lost > 0) out.push(`${r.lost} committed model version(s) lost or torn`);
  if (r.stuck > 0) out.push(`${r.stuck} round(s) or run(s) stuck`);
  if (r.stuckSites > 0) out.push(`${r.stuckSites} site(s) stopped answering rounds`);
  if (r.underCharged > 0)
    out.push(`${r.underCharged} masked update(s) without a sufficient charge`);
  if (!r.ledgerVerified) out.push('the ledger does not verify or does not reconcile');
  if (ended < roundsAsked) out.push(`only ${ended} of ${roundsAsked} rounds ended`);
  if (r.rounds.committed * 2 < ended)
    out.push(`only ${r.rounds.committed} of ${ended} rounds committed`);
  const total = r.faults.aggregatorKilled + r.faults.nodeKilled + r.faults.connectionCut;
  if (total * 2 < roundsAsked) out.push(`only ${total} faults in ${roundsAsked} rounds`);
  if (roundsAsked >= 10 && Object.values(r.faults).some((n) => n === 0))
    out.push('not every kind of fault happened');
  const other = r.problems.filter(
    (p) => p.startsWith('harness:') || p.includes('exited by itself') || p.startsWith('proxy:'),
  );
  out.push(...other);
  return out;
}

/** The summary lines printed without --json. */
export function summaryLines(r: ChaosReport, failed: string[]): string[] {
  const lines = [
    `seed ${r.seed} on ${r.database ?? '?'}: ${r.rounds.committed} rounds committed, ${r.rounds.aborted} aborted in ${r.seconds} s`,
    `faults: aggregator killed ${r.faults.aggregatorKilled}, nodes killed ${r.faults.nodeKilled}, connections cut ${r.faults.connectionCut} (${Object.entries(
      r.stagesCut,
    )
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')})`,
    `model versions ${r.modelVersions} (lost ${r.lost}); masked updates ${r.maskedUpdates} (under-charged ${r.underCharged}); ledger entries ${r.ledgerEntries} (${r.ledgerVerified ? 'verified' : 'NOT verified'}); stuck ${r.stuck}`,
  ];
  for (const p of r.problems) lines.push(`  problem: ${p}`);
  lines.push(failed.length ? `FAILED: ${failed.join('; ')}` : 'all checks passed');
  return lines;
}
