// Held-out accuracy of the demo with record-level DP at each site's default budget (epsilon 1.0,
// delta 1e-5), averaged over seeds, beside the same demo without DP. Usage:
//   node bin/run-ts.js bench/dp/demo-accuracy.bench.ts [--seeds 5] [--json]
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { runDemo, type DemoOptions } from '../../apps/cli/src/commands/demo';

const { values } = parseArgs({
  options: {
    seeds: { type: 'string', default: '5' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean' },
  },
});
if (values.help) {
  console.log('Usage: bench/dp/demo-accuracy.bench.ts [--seeds N] [--json]');
  process.exit(0);
}
const seeds = Number(values.seeds);
if (!Number.isInteger(seeds) || seeds < 1) {
  console.error('--seeds must be a positive integer');
  process.exit(2);
}
const base: Omit<
  DemoOptions,
  'seed' | 'dp' | 'epochs' | 'batchSize' | 'learningRate' | 'optimizer'
> = {
  sites: 3,
  rounds: 10,
  partition: 'iid',
  alpha: 0.5,
  data: fileURLToPath(new URL('../../datasets/breast-cancer-wisconsin.csv', import.meta.url)),
  label: 'diagnosis',
  model: null,
  secureAggregation: true,
  dropSiteAt: null,
  backend: 'auto',
  dataDir: null,
  databaseUrl: null,
  log: () => undefined,
};
const rows: Array<{
  seed: number;
  dpAccuracy: number;
  maxEpsilon: number;
  noiseMultiplier: number | null;
  plainAccuracy: number;
  verified: boolean;
}> = [];
for (let seed = 1; seed <= seeds; seed++) {
  const dp = await runDemo({
    ...base,
    seed,
    epochs: 1,
    batchSize: 256,
    learningRate: 2,
    optimizer: 'sgd',
    dp: { level: 'record', epsilonLimit: 1, delta: 1e-5, noiseMultiplier: null, clipNorm: 1 },
  });
  const plain = await runDemo({
    ...base,
    seed,
    epochs: 2,
    batchSize: 32,
    learningRate: 0.05,
    optimizer: 'adam',
    dp: { level: 'none' },
  });
  rows.push({
    seed,
    dpAccuracy: dp.final.accuracy,
    maxEpsilon: Math.max(...dp.privacy.sites.map((s) => s.epsilon)),
    noiseMultiplier: dp.privacy.noiseMultiplier,
    plainAccuracy: plain.final.accuracy,
    verified: dp.ledger.verified,
  });
  if (!values.json)
    console.error(
      `seed ${seed}: DP accuracy ${dp.final.accuracy.toFixed(4)} (max epsilon ${rows.at(-1)!.maxEpsilon.toFixed(4)}), no-DP accuracy ${plain.final.accuracy.toFixed(4)}`,
    );
}
const mean = (f: (r: (typeof rows)[number]) => number): number =>
  rows.reduce((a, r) => a + f(r), 0) / rows.length;
const result = {
  parameters: {
    sites: 3,
    rounds: 10,
    epsilonLimit: 1,
    delta: 1e-5,
    level: 'record',
    seeds,
    node: process.version,
  },
  meanDpAccuracy: mean((r) => r.dpAccuracy),
  meanPlainAccuracy: mean((r) => r.plainAccuracy),
  maxEpsilon: Math.max(...rows.map((r) => r.maxEpsilon)),
  allVerified: rows.every((r) => r.verified),
  rows,
};
if (values.json) console.log(JSON.stringify(result));
else {
  console.log('seed  DP accuracy  max epsilon  no-DP accuracy');
  for (const r of rows)
    console.log(
      `${String(r.seed).padStart(4)}  ${r.dpAccuracy.toFixed(4).padStart(11)}  ${r.maxEpsilon.toFixed(4).padStart(11)}  ${r.plainAccuracy.toFixed(4).padStart(14)}`,
    );
  console.log(
    `mean  ${result.meanDpAccuracy.toFixed(4).padStart(11)}  ${result.maxEpsilon.toFixed(4).padStart(11)}  ${result.meanPlainAccuracy.toFixed(4).padStart(14)}   (target: DP mean >= 0.93 with every site at epsilon <= 1.0)`,
  );
}
process.exit(0);
