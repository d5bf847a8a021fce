// Time to evaluate epsilon over a 10,000-round history with the RDP accountant (the target:
// under 50 ms), with warm per-(q, sigma) curves and with a cold cache. Usage:
//   node bin/run-ts.js bench/dp/accountant.bench.ts [--rounds 10000] [--reps 5] [--json]
import { parseArgs } from 'node:util';
import { computeEpsilon } from '../../libs/differential-privacy/src/index';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '10000' },
    reps: { type: 'string', default: '5' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log('Usage: bench/dp/accountant.bench.ts [--rounds N] [--reps R] [--json]');
  process.exit(0);
}
const rounds = Number(values.rounds);
const reps = Number(values.reps);
if (!Number.isInteger(rounds) || rounds < 1 || !Number.isInteger(reps) || reps < 1) {
  console.error('--rounds and --reps must be positive integers');
  process.exit(2);
}
// Heterogeneous history: four (q, sigma) settings, one step per round, delta 1e-5.
const settings = [
  { q: 0.01, sigma: 1.1 },
  { q: 0.02, sigma: 1.3 },
  { q: 0.005, sigma: 0.9 },
  { q: 0.1, sigma: 4 },
];
const history = Array.from({ length: rounds }, (_, i) => ({ ...settings[i % 4]!, steps: 1 }));
const time = (h: typeof history): number => {
  const t0 = performance.now();
  computeEpsilon({ history: h }, 1e-5);
  return performance.now() - t0;
};
const cold: number[] = [];
for (let r = 0; r < reps; r++) {
  const shift = (r + 1) * 1e-3; // new sigmas: nothing cached
  cold.push(time(history.map((e) => ({ ...e, sigma: e.sigma + shift }))));
}
time(history);
const warm = Array.from({ length: reps }, () => time(history));
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const result = {
  parameters: {
    rounds,
    reps,
    settings: settings.length,
    delta: 1e-5,
    accountant: 'rdp',
    node: process.version,
  },
  warmMs: { median: median(warm), min: Math.min(...warm) },
  coldMs: { median: median(cold), min: Math.min(...cold) },
  targetMs: 50,
};
if (values.json) console.log(JSON.stringify(result));
else {
  console.log(
    `RDP accountant, ${rounds}-round history over ${settings.length} (q, sigma) settings, ${reps} reps`,
  );
  console.log(
    `  warm curves: median ${result.warmMs.median.toFixed(1)} ms, min ${result.warmMs.min.toFixed(1)} ms (target < 50 ms)`,
  );
  console.log(
    `  cold cache:  median ${result.coldMs.median.toFixed(1)} ms, min ${result.coldMs.min.toFixed(1)} ms`,
  );
}
