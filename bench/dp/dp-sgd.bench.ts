/**
 * Cost of record-level DP-SGD against non-private local training, per epoch.
 *
 *   node bin/run-ts.js bench/dp/dp-sgd.bench.ts [--epochs 3] [--reps 5] [--backends wasm,cpu] [--json]
 *
 * Two models: the demo's logistic model (30 features, one breast-cancer site of ~142 rows, batch 32)
 * and a 784-128-10 relu MLP on 4,096 synthetic MNIST-shaped rows (batch 128). Plain training is
 * `trainModel` with SGD and that batch size; DP-SGD is `trainModelDpSgd` with q = batch / rows (so the
 * same number of steps per epoch and the same expected batch), z = 1, C = 1 and its CSPRNG noise, and
 * once more with z = 0 to show what drawing the noise costs. Both use plain SGD. Each figure is the
 * median over the repetitions of (time of one call) / epochs; one warm-up call of each comes first.
 */
import * as tf from '@tensorflow/tfjs';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import {
  buildModel,
  combineFeatureStats,
  featureStatsPartial,
  loadCsv,
  partitionIid,
  seededRandom,
  standardize,
  trainModel,
  trainModelDpSgd,
  type Dataset,
  type ModelSpec,
} from '@confide/ml';
import { selectBackend } from '../../apps/client-node/src/backend';
import { intOption, parseFlags, runBenchmark, UsageError } from '../support/cli';

type Backend = 'wasm' | 'cpu';

interface Options {
  epochs: number;
  reps: number;
  backends: Backend[];
  json: boolean;
}

const USAGE = `Usage: node bin/run-ts.js bench/dp/dp-sgd.bench.ts [options]

Times DP-SGD (Poisson sampling, per-example clipping, Gaussian noise) against plain SGD training,
per epoch, for the demo logistic model and a 784-128-10 MLP.

Options:
  --epochs E      epochs per timed call (1-100, default 3; x10 for the small demo model)
  --reps R        timed calls per figure, median reported (1-100, default 5)
  --backends L    comma-separated tfjs backends: wasm, cpu (default wasm,cpu)
  --json          print one JSON object on stdout instead of the table
  --help          this text
`;

function parseOptions(argv: string[]): Options | 'help' {
  const values = parseFlags(argv, {
    epochs: { type: 'string' },
    reps: { type: 'string' },
    backends: { type: 'string' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  });
  if (values.help) return 'help';
  const backends = (values.backends ?? 'wasm,cpu').split(',').map((b) => b.trim());
  for (const b of backends) {
    if (b !== 'wasm' && b !== 'cpu') {
      throw new UsageError(`--backends takes wasm and/or cpu, got "${b}"`);
    }
  }
  return {
    epochs: intOption('epochs', values.epochs, 3, 1, 100),
    reps: intOption('reps', values.reps, 5, 1, 100),
    backends: backends as Backend[],
    json: values.json,
  };
}

// ------------------------------------------------------------------------------------------------
// Workloads

interface Workload {
  name: string;
  spec: ModelSpec;
  data: Dataset;
  batchSize: number;
  learningRate: number;
  /** Epochs per timed call = this x --epochs: the demo's epochs take milliseconds. */
  epochScale: number;
}

async function demoSite(): Promise<Dataset> {
  const path = join(import.meta.dirname, '../../datasets/breast-cancer-wisconsin.csv');
  const bc = await loadCsv(path, { label: 'diagnosis', expectedFeatures: 30 });
  const sites = partitionIid(bc, 4, 1);
  const site = sites[0] as Dataset;
  return standardize(site, combineFeatureStats(sites.map(featureStatsPartial)));
}

/** MNIST-shaped rows: 784 features in [0, 1), labels 0..9, seeded. */
function mnistShaped(numRows: number): Dataset {
  const rng = seededRandom(1);
  const features = Float32Array.from({ length: numRows * 784 }, () => rng());
  const labels = Float32Array.from({ length: numRows }, () => Math.floor(rng() * 10));
  return {
    features,
    labels,
    numRows,
    numFeatures: 784,
    featureNames: Array.from({ length: 784 }, (_, j) => `px${j}`),
    labelName: 'digit',
  };
}

// ------------------------------------------------------------------------------------------------
// Timing

interface Result {
  backend: Backend;
  workload: string;
  rows: number;
  parameters: number;
  batchSize: number;
  samplingRate: number;
  /** DP-SGD steps per epoch, round(1 / q), against trainModel's ceil(rows / batch) batches. */
  stepsPerEpoch: number;
  plainBatchesPerEpoch: number;
  epochsPerCall: number;
  plainMsPerEpoch: number;
  dpMsPerEpoch: number;
  dpNoNoiseMsPerEpoch: number;
  ratio: number;
  ratioNoNoise: number;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1
    ? (s[mid] as number)
    : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
};

async function timeIt(run: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await run();
  return performance.now() - t0;
}

async function measure(backend: Backend, w: Workload, opts: Options): Promise<Result> {
  const model = buildModel(w.spec);
  const n = w.data.numRows;
  const q = w.batchSize / n;
  const epochs = w.epochScale * opts.epochs;
  const plain = (epochs: number): Promise<unknown> =>
    trainModel(model, w.spec, w.data, {
      epochs,
      batchSize: w.batchSize,
      learningRate: w.learningRate,
      optimizer: 'sgd',
    });
  const dp =
    (noiseMultiplier: number) =>
    (epochs: number): Promise<unknown> =>
      trainModelDpSgd(model, w.spec, w.data, {
        epochs,
        samplingRate: q,
        clipNorm: 1,
        noiseMultiplier,
        learningRate: w.learningRate,
        optimizer: 'sgd',
      });
  const runs = { plain, dp: dp(1), dpNoNoise: dp(0) };
  const times: Record<keyof typeof runs, number[]> = { plain: [], dp: [], dpNoNoise: [] };
  for (const run of Object.values(runs)) await run(1); // warm-up: kernels, wasm code, JIT
  for (let rep = 0; rep < opts.reps; rep++) {
    // Interleaved, so that drift (thermal, other load) hits all three alike.
    for (const key of Object.keys(runs) as (keyof typeof runs)[]) {
      times[key].push((await timeIt(() => runs[key](epochs))) / epochs);
    }
  }
  const parameters = model.countParams();
  model.dispose();
  const plainMs = median(times.plain);
  const dpMs = median(times.dp);
  const dpNoNoiseMs = median(times.dpNoNoise);
  return {
    backend,
    workload: w.name,
    rows: n,
    parameters,
    batchSize: w.batchSize,
    samplingRate: q,
    stepsPerEpoch: Math.round(1 / q),
    plainBatchesPerEpoch: Math.ceil(n / w.batchSize),
    epochsPerCall: epochs,
    plainMsPerEpoch: plainMs,
    dpMsPerEpoch: dpMs,
    dpNoNoiseMsPerEpoch: dpNoNoiseMs,
    ratio: dpMs / plainMs,
    ratioNoNoise: dpNoNoiseMs / plainMs,
  };
}

// ------------------------------------------------------------------------------------------------

function printTable(opts: Options, details: Record<string, string>, results: Result[]): void {
  const f = (x: number, digits = 1): string => x.toFixed(digits);
  const lines = [
    `DP-SGD vs plain SGD training: ms per epoch, median of ${opts.reps} timed calls of the given epochs`,
    `node ${process.version}, ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? 'unknown'}), tfjs ${tf.version.tfjs}`,
    ...Object.entries(details).map(([b, d]) => `backend ${b}: ${d}`),
    'DP-SGD: z = 1, C = 1, q = batch / rows, CSPRNG noise (node:crypto); both with SGD, lr 0.05',
    '',
  ];
  const header = [
    'backend',
    'model',
    'rows',
    'params',
    'batch',
    'q',
    'steps DP/plain',
    'epochs',
    'plain ms',
    'DP ms',
    'DP z=0 ms',
    'DP/plain',
    'z=0/plain',
  ];
  const rows = results.map((r) => [
    r.backend,
    r.workload,
    String(r.rows),
    String(r.parameters),
    String(r.batchSize),
    r.samplingRate.toFixed(4),
    `${r.stepsPerEpoch}/${r.plainBatchesPerEpoch}`,
    String(r.epochsPerCall),
    f(r.plainMsPerEpoch),
    f(r.dpMsPerEpoch),
    f(r.dpNoNoiseMsPerEpoch),
    f(r.ratio, 2),
    f(r.ratioNoNoise, 2),
  ]);
  const widths = header.map((h, i) =>
    Math.max(h.length, ...rows.map((row) => (row[i] ?? '').length)),
  );
  for (const row of [header, ...rows]) {
    lines.push(row.map((cell, i) => cell.padStart(widths[i] ?? 0)).join('  '));
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

async function main(opts: Options): Promise<void> {
  const workloads: Workload[] = [
    {
      name: 'logistic-30 (demo site)',
      spec: { kind: 'logistic', inputDim: 30 },
      data: await demoSite(),
      batchSize: 32,
      learningRate: 0.05,
      epochScale: 10,
    },
    {
      name: 'mlp-784-128-10',
      spec: {
        kind: 'mlp',
        inputDim: 784,
        hidden: [128],
        activation: 'relu',
        output: { classes: 10 },
      },
      data: mnistShaped(4096),
      batchSize: 128,
      learningRate: 0.05,
      epochScale: 1,
    },
  ];
  const details: Record<string, string> = {};
  const results: Result[] = [];
  for (const backend of opts.backends) {
    details[backend] = (await selectBackend(backend)).detail;
    for (const w of workloads) {
      const r = await measure(backend, w, opts);
      results.push(r);
      if (!opts.json) {
        process.stderr.write(`${backend} ${w.name}: DP/plain ${r.ratio.toFixed(2)}\n`);
      }
    }
  }
  if (opts.json) {
    const out = {
      bench: 'dp-sgd',
      node: process.version,
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model ?? 'unknown',
      tfjs: tf.version.tfjs,
      epochs: opts.epochs,
      reps: opts.reps,
      dp: {
        noiseMultiplier: 1,
        clipNorm: 1,
        optimizer: 'sgd',
        learningRate: 0.05,
        noise: 'node:crypto',
      },
      backends: details,
      results,
    };
    process.stdout.write(`${JSON.stringify(out)}\n`);
  } else {
    printTable(opts, details, results);
  }
}

try {
  await runBenchmark(USAGE, parseOptions, main);
} catch (e) {
  process.stderr.write(`dp-sgd benchmark failed: ${(e as Error).stack ?? String(e)}\n`);
  process.exitCode = 1;
}
