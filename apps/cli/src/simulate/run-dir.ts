import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MemoryRoundStore, type RoundStore } from '@confide/federated';
import { SimulationError } from './errors';
import { FileRoundStore, writeAtomically } from './file-round-store';
import { reportOf, type RoundResult, type SimulationReport } from './report';
import type { SimulationOptions } from './simulator';

/** The options a --data-dir run is tied to. */
export const SETTINGS_FILE = 'simulation.json';
/** The report of the rounds run so far. */
export const REPORT_FILE = 'report.json';

/**
 * Where a simulation keeps its rounds: in memory, or with --data-dir a FileRoundStore beside the
 * settings it was started with and the report of its rounds so far. A directory written with
 * other settings (anything but the number of rounds) is refused.
 *
 * @example
 * const { store, previous } = await openRunDir(options, initialWeights(spec, seed));
 */
export async function openRunDir(
  o: SimulationOptions,
  initial: Float32Array,
): Promise<{ store: RoundStore; previous: RoundResult[] }> {
  if (!o.dataDir) return { store: new MemoryRoundStore(initial), previous: [] };
  const settings = settingsOf(o);
  const path = join(o.dataDir, SETTINGS_FILE);
  const saved = await readFile(path, 'utf8').catch(() => null);
  if (saved !== null) {
    const before = JSON.parse(saved) as Record<string, unknown>;
    const changed = Object.keys(settings).filter(
      (k) => JSON.stringify(before[k] ?? null) !== JSON.stringify(settings[k] ?? null),
    );
    if (changed.length > 0) {
      throw new SimulationError(
        'input',
        `--data-dir ${o.dataDir} holds a simulation with other settings (${changed.join(', ')}); ` +
          'rerun it with the same options (only --rounds may change) or use a fresh directory',
      );
    }
  }
  const store = await FileRoundStore.open(o.dataDir, initial);
  if (saved === null) await writeAtomically(path, `${JSON.stringify(settings, null, 1)}\n`);
  const report = await readFile(join(o.dataDir, REPORT_FILE), 'utf8').catch(() => null);
  const previous = report === null ? [] : (JSON.parse(report) as SimulationReport).rounds;
  return { store, previous };
}

/** Replaces the directory's report with the rounds so far. */
export async function writeReport(dir: string, rounds: RoundResult[]): Promise<void> {
  await writeAtomically(join(dir, REPORT_FILE), `${JSON.stringify(reportOf(rounds), null, 1)}\n`);
}

function settingsOf(o: SimulationOptions): Record<string, unknown> {
  return {
    sites: o.sites,
    fraction: o.fraction,
    strategy: o.strategy,
    strategyConfig: o.strategyConfig ?? null,
    partition: o.partition,
    alpha: o.partition === 'dirichlet' ? o.alpha : null,
    data: o.data,
    label: o.label,
    model: o.model,
    epochs: o.epochs,
    batchSize: o.batchSize,
    learningRate: o.learningRate,
    byzantine: o.byzantine,
    attack: o.attack,
    policy: o.policy,
    seed: o.seed,
  };
}
