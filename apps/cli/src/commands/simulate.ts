import { resolve } from 'node:path';
import { strategyCatalog } from '@confide/federated';
import type { ModelSpec } from '@confide/ml';
import type { SitePolicy } from '@confide/client-node';
import {
  choiceOption,
  CliError,
  numberOption,
  UsageError,
  type Command,
  type Io,
} from '../command';
import {
  ATTACK_DESCRIPTIONS,
  ATTACK_KINDS,
  MIN_SITE_ROWS,
  PARTITION_KINDS,
} from '../simulate/settings';
import type { SimulationProgress, SimulationOptions } from '../simulate/simulator';
import { jsonOption, jsonOrFileOption } from './admin-common';
import { DEFAULT_DATA } from './demo';

const DEFAULT_MODEL = '{"kind":"mlp","inputDim":30,"hidden":[16],"output":"binary"}';

// The `confide simulate` command: its options and output; the run itself is runSimulation.

export const simulateCommand: Command = {
  path: ['simulate'],
  summary: 'Simulate a federation in this process: virtual sites, the round engine, no network',
  description:
    'Runs N virtual sites on the in-memory Grid with the round engine and a strategy from the\n' +
    'registry; the sites train in a pool of worker threads (at most one per core). A stratified 20%\n' +
    'of the data is held out as the global test set before the rest is dealt to the sites; after\n' +
    'each round the new model is evaluated on it. No sockets, no database (--data-dir keeps the\n' +
    'rounds and models in files, and a rerun with the same options continues from them).',
  options: {
    sites: { type: 'string', value: 'N', description: 'virtual sites', default: '10' },
    fraction: {
      type: 'string',
      value: 'F',
      description: 'share of the sites drawn each round (client sampling)',
      default: '1',
    },
    rounds: { type: 'string', value: 'N', description: 'rounds to run', default: '10' },
    strategy: {
      type: 'string',
      value: 'NAME',
      description: `server strategy: ${strategyCatalog()
        .map((e) => e.name)
        .join(', ')}`,
      default: 'fedavg',
    },
    'strategy-config': {
      type: 'string',
      value: 'JSON|@FILE',
      description:
        "the strategy's settings, e.g. '{\"byzantine\":2}' for krum (default: its defaults)",
    },
    partition: {
      type: 'string',
      value: 'KIND',
      description: `${PARTITION_KINDS.join('|')}: how the training rows are dealt (at least ${MIN_SITE_ROWS} per site)`,
      default: 'iid',
    },
    alpha: {
      type: 'string',
      value: 'A',
      description: 'Dirichlet concentration (with --partition dirichlet; smaller is more skewed)',
      default: '0.5',
    },
    data: {
      type: 'string',
      value: 'FILE.csv',
      description: 'dataset (CSV with a header line)',
      default: 'datasets/breast-cancer-wisconsin.csv',
    },
    label: { type: 'string', value: 'COLUMN', description: 'label column', default: 'diagnosis' },
    model: { type: 'string', value: 'JSON', description: 'model spec', default: DEFAULT_MODEL },
    epochs: { type: 'string', value: 'N', description: 'local epochs per round', default: '1' },
    'batch-size': { type: 'string', value: 'N', description: 'local batch size', default: '32' },
    'learning-rate': {
      type: 'string',
      value: 'LR',
      description: 'local learning rate (adam)',
      default: '0.05',
    },
    byzantine: {
      type: 'string',
      value: 'N',
      description: 'how many sites (the first N) send adversarial updates',
      default: '0',
    },
    attack: {
      type: 'string',
      value: 'KIND',
      description: `what they send: ${ATTACK_KINDS.map((k) => `${k} (${ATTACK_DESCRIPTIONS[k]})`).join(', ')}`,
    },
    policy: {
      type: 'string',
      value: 'FILE',
      description:
        "the virtual sites' policy file (default: one that allows plain rounds, secureAggregation.required false)",
    },
    seed: {
      type: 'string',
      value: 'N',
      description: 'seed of the split, partition, initial weights, shuffles and draws',
      default: '1',
    },
    'data-dir': {
      type: 'string',
      value: 'DIR',
      description: 'keep rounds and models here and continue from them (default: memory only)',
    },
    json: {
      type: 'boolean',
      description:
        'print one JSON object { rounds: [{ round, accuracy, auc, loss, sites, durationMs }], final } on stdout',
    },
  },
  examples: [
    'confide simulate --rounds 20 --partition dirichlet --alpha 0.1 --strategy fedprox',
    'confide simulate --strategy median --byzantine 2 --attack sign-flip --partition dirichlet --alpha 1',
    `confide simulate --strategy fedadam --strategy-config '{"serverLearningRate":0.03}' --json`,
  ],
  async run(opts, _p, io) {
    const options = await simulationOptions(opts);
    const json = Boolean(opts['json']);
    const { runSimulation } = await import('../simulate/simulator');
    const { SimulationError } = await import('../simulate/errors');
    const progress = progressReporter(io, json);
    try {
      const { report } = await runSimulation({ ...options, onProgress: progress.event });
      progress.done();
      if (json) io.out(JSON.stringify(report));
      else {
        const f = report.final;
        io.out(
          `final: accuracy ${f.accuracy.toFixed(4)} auc ${f.auc?.toFixed(4) ?? '-'} loss ${f.loss.toFixed(4)}`,
        );
      }
      return 0;
    } catch (e) {
      progress.done();
      if (e instanceof SimulationError) {
        // A setting that cannot work is the user's to change (exit code 2), as a usage error is.
        throw new CliError(e.message, e.kind === 'input' ? 2 : 1);
      }
      throw e;
    }
  },
};

type ParsedOptions = Parameters<Command['run']>[0];

/** The command line as simulation options; a UsageError names the first bad option. */
async function simulationOptions(
  opts: ParsedOptions,
): Promise<Omit<SimulationOptions, 'onProgress'>> {
  const { parseModelSpec } = await import('@confide/ml');
  let model: ModelSpec;
  try {
    model = parseModelSpec(jsonOption(opts, 'model')['model']);
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`--model: ${(e as Error).message}`);
  }
  const strategyConfig = (await jsonOrFileOption(opts, 'strategy-config', 'config'))['config'];
  let policy: SitePolicy | null = null;
  if (typeof opts['policy'] === 'string') {
    const { loadPolicyFile } = await import('@confide/client-node');
    try {
      policy = await loadPolicyFile(resolve(opts['policy']));
    } catch (e) {
      throw new UsageError(`--policy: ${(e as Error).message}`);
    }
  }
  const dataArg = String(opts['data']);
  const attack = choiceOption(opts, 'attack', ATTACK_KINDS) ?? null;
  return {
    sites: numberOption(opts, 'sites', { integer: true, min: 1, max: 10_000 })!,
    fraction: fractionOption(opts),
    rounds: numberOption(opts, 'rounds', { integer: true, min: 1, max: 100_000 })!,
    strategy: String(opts['strategy']),
    ...(strategyConfig !== undefined ? { strategyConfig } : {}),
    partition: choiceOption(opts, 'partition', PARTITION_KINDS)!,
    alpha: alphaOption(opts),
    // The default names the copy shipped in the repo, wherever the command runs from.
    data: dataArg === simulateCommand.options['data']!.default ? DEFAULT_DATA : resolve(dataArg),
    label: String(opts['label']),
    model,
    epochs: numberOption(opts, 'epochs', { integer: true, min: 1, max: 10_000 })!,
    batchSize: numberOption(opts, 'batch-size', { integer: true, min: 1, max: 1_000_000 })!,
    learningRate: positiveOption(opts, 'learning-rate', 10),
    byzantine: numberOption(opts, 'byzantine', { integer: true, min: 0, max: 10_000 })!,
    attack,
    policy,
    seed: numberOption(opts, 'seed', { integer: true, min: 0, max: 2 ** 31 - 1 })!,
    dataDir: typeof opts['data-dir'] === 'string' ? resolve(opts['data-dir']) : null,
  };
}

function fractionOption(opts: ParsedOptions): number {
  const f = numberOption(opts, 'fraction')!;
  if (!(f > 0 && f <= 1)) throw new UsageError(`--fraction must be in (0, 1]; got ${f}`);
  return f;
}

function alphaOption(opts: ParsedOptions): number {
  return positiveOption(opts, 'alpha', 1e6);
}

function positiveOption(opts: ParsedOptions, name: string, max: number): number {
  const v = numberOption(opts, name, { max })!;
  if (!(v > 0)) throw new UsageError(`--${name} must be a positive number; got ${v}`);
  return v;
}

/**
 * Progress on stderr: on a terminal, a bar redrawn in place as the sites of a round reply; a line
 * per round otherwise. Without --json the round lines go to stdout, as the command's output.
 */
function progressReporter(
  io: Io,
  json: boolean,
): { event: (e: SimulationProgress) => void; done: () => void } {
  const tty = Boolean(process.stderr.isTTY);
  let bar = false;
  const clear = (): void => {
    if (bar) process.stderr.write('\r\x1b[K');
    bar = false;
  };
  const line = (text: string): void => {
    clear();
    if (json) io.err(text);
    else io.out(text);
  };
  let rounds = 0;
  let round = 0;
  return {
    event(e) {
      switch (e.kind) {
        case 'setup':
          for (const l of e.lines) line(l);
          return;
        case 'round-started':
          rounds = e.rounds;
          round = e.round;
          if (tty) drawBar(0, e.sites);
          return;
        case 'site-replied':
          if (tty && e.round === round) drawBar(e.replied, e.sites);
          return;
        case 'round-ended': {
          const r = e.result;
          line(
            `round ${r.round}/${e.rounds}: accuracy ${r.accuracy.toFixed(4)} auc ${r.auc?.toFixed(4) ?? '-'} ` +
              `loss ${r.loss.toFixed(4)}, ${r.sites} site(s), ${(r.durationMs / 1000).toFixed(2)} s`,
          );
          return;
        }
      }
    },
    done: clear,
  };

  function drawBar(done: number, of: number): void {
    const width = 24;
    const filled = Math.round((done / Math.max(1, of)) * width);
    process.stderr.write(
      `\rround ${round}/${rounds} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${of} sites`,
    );
    bar = true;
  }
}
