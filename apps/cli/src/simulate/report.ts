import type { RoundRecord } from '@confide/federated';
import type { TestMetrics } from './pool-messages';

/** One round as the report gives it: the new model's metrics on the global test set. */
export interface RoundResult {
  round: number;
  accuracy: number;
  auc: number | null;
  loss: number;
  /** Sites whose update the round took. */
  sites: number;
  durationMs: number;
}

/** The `--json` report: every round, and the final model's metrics. */
export interface SimulationReport {
  rounds: RoundResult[];
  final: { accuracy: number; auc: number | null; loss: number };
}

/** A committed round's line of the report. */
export function roundResult(record: RoundRecord, m: TestMetrics, durationMs: number): RoundResult {
  return {
    round: record.round,
    accuracy: m.accuracy,
    auc: m.auc,
    loss: m.loss,
    sites: record.participants.filter((p) => p.status === 'submitted').length,
    durationMs,
  };
}

/** The report of the rounds so far (at least one). */
export function reportOf(rounds: RoundResult[]): SimulationReport {
  const last = rounds.at(-1);
  if (!last) throw new Error('a report needs at least one round');
  return { rounds, final: { accuracy: last.accuracy, auc: last.auc, loss: last.loss } };
}
