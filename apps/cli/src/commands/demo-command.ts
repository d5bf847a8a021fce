import { resolve } from 'node:path';
import type { ModelSpec } from '@confide/ml';
import { choiceOption, numberOption, UsageError, type Command } from '../command';
import { DEFAULT_DATA, runDemo } from './demo';

// The `confide demo` command: its options, and the report it prints; the run itself is runDemo.

export const demoCommand: Command = {
  path: ['demo'],
  summary: 'Run a demo federation on this machine (aggregator + hospital sites on loopback)',
  description:
    'Starts an aggregator on the embedded database (or DATABASE_URL) and --sites client nodes over real\n' +
    'WebSockets, each holding a shard of the data (Wisconsin breast cancer by default). Holds out a\n' +
    'stratified 20% test set, runs --rounds FedAvg rounds, prints a line per round, and trains the same\n' +
    'model centrally on the pooled training data as the baseline.',
  options: {
    sites: {
      type: 'string',
      value: 'N',
      description: 'number of sites (4 with --drop-site-at)',
      default: '3',
    },
    rounds: { type: 'string', value: 'N', description: 'number of rounds', default: '10' },
    partition: { type: 'string', value: 'KIND', description: 'iid|dirichlet', default: 'iid' },
    alpha: {
      type: 'string',
      value: 'A',
      description: 'Dirichlet concentration (with --partition dirichlet)',
      default: '0.5',
    },
    data: {
      type: 'string',
      value: 'FILE.csv',
      description: 'dataset',
      default: 'datasets/breast-cancer-wisconsin.csv',
    },
    label: { type: 'string', value: 'COLUMN', description: 'label column', default: 'diagnosis' },
    seed: {
      type: 'string',
      value: 'N',
      description: 'seed of the split, the partition and the initial weights',
      default: '1',
    },
    epochs: {
      type: 'string',
      value: 'N',
      description: 'local epochs per round (default: 2; 1 with DP)',
    },
    'batch-size': {
      type: 'string',
      value: 'N',
      description:
        'local batch size; with record-level DP the expected Poisson batch (default: 32; 256 with DP)',
    },
    'learning-rate': {
      type: 'string',
      value: 'LR',
      description: 'local learning rate (default: 0.05; 2 with DP)',
    },
    optimizer: {
      type: 'string',
      value: 'NAME',
      description: 'sgd|adam (default: adam; sgd with DP)',
    },
    'no-dp': {
      type: 'boolean',
      description: 'turn differential privacy off (it is on by default: record level)',
    },
    'dp-level': {
      type: 'string',
      value: 'LEVEL',
      description: 'record (DP-SGD at each site) or site (DP-FedAvg)',
      default: 'record',
    },
    'epsilon-limit': {
      type: 'string',
      value: 'E',
      description: "each site's privacy budget",
      default: '1',
    },
    delta: { type: 'string', value: 'D', description: 'DP delta', default: '1e-5' },
    'noise-multiplier': {
      type: 'string',
      value: 'Z',
      description:
        'DP noise multiplier (default: the smallest that keeps every site within its budget for all rounds)',
    },
    'clip-norm': { type: 'string', value: 'C', description: 'DP clip norm', default: '1' },
    'no-secure-aggregation': {
      type: 'boolean',
      description: 'turn secure aggregation off (it is on by default)',
    },
    'drop-site-at': {
      type: 'string',
      value: 'STAGE',
      description:
        'make hospital-1 vanish in round 1: sharing (before sharing keys), collecting (before its masked input) or unmasking (before unmasking); runs 4 sites',
    },
    model: {
      type: 'string',
      value: 'JSON',
      description: 'model spec (default: logistic regression)',
    },
    backend: {
      type: 'string',
      value: 'NAME',
      description: 'auto|tfjs-node-gpu|tfjs-node|wasm|cpu',
      default: 'auto',
    },
    'data-dir': {
      type: 'string',
      value: 'DIR',
      description: 'keep the embedded database here (default: a temporary directory)',
    },
    json: {
      type: 'boolean',
      description: 'print one JSON report on stdout (progress goes to stderr)',
    },
  },
  examples: [
    'npm start',
    'npm start -- --json',
    'confide demo --sites 5 --partition dirichlet --alpha 0.3 --rounds 20',
  ],
  async run(opts, _p, io) {
    const partition = choiceOption(opts, 'partition', ['iid', 'dirichlet'] as const)!;
    let model: ModelSpec | null = null;
    if (opts['model'] !== undefined) {
      const { parseModelSpec } = await import('@confide/ml');
      try {
        model = parseModelSpec(JSON.parse(String(opts['model'])));
      } catch (e) {
        throw new UsageError(`--model: ${(e as Error).message}`);
      }
    }
    const dataArg = String(opts['data']);
    // The default names the copy shipped in the repo, wherever the command runs from.
    const data = dataArg === demoCommand.options['data']!.default ? DEFAULT_DATA : resolve(dataArg);
    const json = Boolean(opts['json']);
    const dpOn = !opts['no-dp'];
    const dropSiteAt =
      choiceOption(opts, 'drop-site-at', ['sharing', 'collecting', 'unmasking'] as const) ?? null;
    // Dropping a site needs 4, so that the sum left after the drop still holds the 3 sites the
    // default site policy asks for.
    const sitesGiven = opts['sites'] !== demoCommand.options['sites']!.default;
    const sites = numberOption(opts, 'sites', { integer: true, min: 1, max: 100 })!;
    if (dropSiteAt && sitesGiven && sites < 4) {
      throw new UsageError(
        `--drop-site-at needs at least 4 sites (the sum after the drop must hold the 3 the default site policy asks for); got --sites ${sites}`,
      );
    }
    if (sites < 2 && !opts['no-secure-aggregation']) {
      throw new UsageError(
        'secure aggregation needs at least 2 sites: give --sites 2 or more, or --no-secure-aggregation',
      );
    }
    const report = await runDemo({
      sites: dropSiteAt && !sitesGiven ? 4 : sites,
      rounds: numberOption(opts, 'rounds', { integer: true, min: 1, max: 10_000 })!,
      partition,
      alpha: numberOption(opts, 'alpha', { min: 0.001, max: 1000 })!,
      data,
      label: String(opts['label']),
      seed: numberOption(opts, 'seed', { integer: true, min: 0, max: 2 ** 31 - 1 })!,
      epochs: numberOption(opts, 'epochs', { integer: true, min: 1, max: 1000 }) ?? (dpOn ? 1 : 2),
      batchSize: numberOption(opts, 'batch-size', { integer: true, min: 1 }) ?? (dpOn ? 256 : 32),
      learningRate:
        numberOption(opts, 'learning-rate', { min: 1e-6, max: 10 }) ?? (dpOn ? 2 : 0.05),
      optimizer:
        choiceOption(opts, 'optimizer', ['sgd', 'adam'] as const) ?? (dpOn ? 'sgd' : 'adam'),
      dp: dpOn
        ? {
            level: choiceOption(opts, 'dp-level', ['record', 'site'] as const)!,
            epsilonLimit: numberOption(opts, 'epsilon-limit', { min: 1e-6, max: 1e6 })!,
            delta: numberOption(opts, 'delta', { min: 1e-300, max: 0.999999 })!,
            noiseMultiplier:
              numberOption(opts, 'noise-multiplier', { min: 1e-6, max: 1000 }) ?? null,
            clipNorm: numberOption(opts, 'clip-norm', { min: 1e-9, max: 1e6 })!,
          }
        : { level: 'none' },
      model,
      secureAggregation: !opts['no-secure-aggregation'],
      dropSiteAt,
      backend: choiceOption(opts, 'backend', [
        'auto',
        'tfjs-node-gpu',
        'tfjs-node',
        'wasm',
        'cpu',
      ] as const)!,
      dataDir: opts['data-dir'] ? resolve(String(opts['data-dir'])) : null,
      databaseUrl: process.env['DATABASE_URL'] || null,
      log: json ? (l) => io.err(l) : (l) => io.out(l),
    });
    if (json) {
      io.out(JSON.stringify(report));
    } else {
      io.out(`done in ${(report.durationMs / 1000).toFixed(1)} s`);
    }
    return 0;
  },
};
