/**
 * Throughput of the differential-privacy noise samplers (libs/differential-privacy), all drawing
 * from the CSPRNG (crypto.getRandomValues):
 *
 *   node bin/run-ts.js bench/dp/samplers.bench.ts [--n 1000000] [--reps 5] [--json]
 *
 * - gaussian: continuous N(0, sigma^2), Box-Muller over 53-bit uniforms (gaussianNoise);
 * - discrete-gaussian: exact N_Z(0, sigma2) of Canonne, Kamath, Steinke 2020
 *   (sampleDiscreteGaussian), at an integer variance (number arithmetic) and at a binary-fraction
 *   variance (exact BigInt arithmetic);
 * - skellam: Poisson(mu) - Poisson(mu) (sampleSkellam), small mu (inversion) and large mu (PTRS).
 *
 * Each row is the best of --reps runs of n samples (after one warm-up run), in samples per second.
 */
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import {
  gaussianNoise,
  sampleDiscreteGaussian,
  sampleSkellam,
} from '@confide/differential-privacy';
import { intOption, parseFlags, runBenchmark } from '../support/cli';

const USAGE = `Usage: node bin/run-ts.js bench/dp/samplers.bench.ts [options]

Samples per second of the CSPRNG noise samplers of @confide/differential-privacy.

Options:
  --n N        samples per run for the continuous Gaussian (1000-100000000, default 1000000);
               the discrete samplers use N/10
  --reps R     measured runs per sampler, best reported (1-100, default 5)
  --json       print one JSON object on stdout instead of the table
  --help       this text
`;

interface Options {
  n: number;
  reps: number;
  json: boolean;
}

function parseOptions(argv: string[]): Options | 'help' {
  const values = parseFlags(argv, {
    n: { type: 'string' },
    reps: { type: 'string' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  });
  if (values.help) return 'help';
  return {
    n: intOption('n', values.n, 1_000_000, 1000, 100_000_000),
    reps: intOption('reps', values.reps, 5, 1, 100),
    json: values.json,
  };
}

interface Row {
  sampler: string;
  parameter: string;
  samples: number;
  bestMs: number;
  samplesPerSecond: number;
}

function measure(
  sampler: string,
  parameter: string,
  samples: number,
  reps: number,
  run: () => unknown,
): Row {
  run(); // warm-up: JIT and buffers
  let best = Infinity;
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    run();
    best = Math.min(best, performance.now() - t0);
  }
  return { sampler, parameter, samples, bestMs: best, samplesPerSecond: samples / (best / 1000) };
}

function main(opts: Options): void {
  const { n, reps } = opts;
  const m = Math.max(1000, Math.floor(n / 10));
  const rows: Row[] = [
    measure('gaussian', 'sigma=1', n, reps, () => gaussianNoise(n, 1)),
    measure('discrete-gaussian', 'sigma2=4', m, reps, () => sampleDiscreteGaussian(4, m)),
    measure('discrete-gaussian', 'sigma2=10000', m, reps, () => sampleDiscreteGaussian(10_000, m)),
    measure('discrete-gaussian', 'sigma2=0.1 (BigInt)', m, reps, () =>
      sampleDiscreteGaussian(0.1, m),
    ),
    measure('skellam', 'mu=5', m, reps, () => sampleSkellam(5, m)),
    measure('skellam', 'mu=5000', m, reps, () => sampleSkellam(5000, m)),
  ];
  const parameters = {
    n,
    discreteN: m,
    reps,
    node: process.version,
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cpus: os.cpus().length,
    loadAverage1m: Number(os.loadavg()[0]!.toFixed(2)),
  };
  if (opts.json) {
    process.stdout.write(
      `${JSON.stringify({ benchmark: 'dp-samplers', parameters, results: rows })}\n`,
    );
    return;
  }
  const lines = [
    `DP noise samplers (CSPRNG), best of ${reps} runs; n = ${n} (continuous), ${m} (discrete)`,
    `node ${parameters.node}, ${parameters.cpus} x ${parameters.cpu}, load ${parameters.loadAverage1m}`,
    '',
    `${'sampler'.padEnd(20)}${'parameter'.padEnd(22)}${'samples'.padStart(11)}${'best ms'.padStart(10)}${'samples/s'.padStart(14)}`,
    ...rows.map(
      (r) =>
        `${r.sampler.padEnd(20)}${r.parameter.padEnd(22)}${String(r.samples).padStart(11)}` +
        `${r.bestMs.toFixed(1).padStart(10)}${Math.round(r.samplesPerSecond).toLocaleString('en-US').padStart(14)}`,
    ),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

await runBenchmark(USAGE, parseOptions, main);
