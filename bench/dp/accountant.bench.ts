// Time to evaluate epsilon over a 10,000-round history with the RDP accountant (the target:
// under 50 ms), with warm per-(q, sigma) curves and with a cold cache; and the accountants'
// agreement with the reference values in libs/differential-privacy/src/fixtures (Opacus' RDP
// accountant: target 1e-6 relative; with --pld, dp_accounting's PLD accountant: target within
// [-0.5%, +1%], and the effect of coarsening large histories; about 110 s). Usage:
//   node bin/run-ts.js bench/dp/accountant.bench.ts [--rounds 10000] [--reps 5] [--pld] [--json]
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { computeEpsilon, PldAccountant } from '../../libs/differential-privacy/src/index';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '10000' },
    reps: { type: 'string', default: '5' },
    json: { type: 'boolean', default: false },
    pld: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log('Usage: bench/dp/accountant.bench.ts [--rounds N] [--reps R] [--pld] [--json]');
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
  agreement: { rdp: rdpAgreement(), pld: values.pld ? pldAgreement() : null },
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
  const { rdp, pld } = result.agreement;
  console.log(
    `RDP accountant vs Opacus' RDPAccountant, ${rdp.points} points: worst relative error ` +
      `${rdp.worst.toExponential(1)} (Balle et al. conversion), ${rdp.worstClassic.toExponential(1)} (classic); target 1e-6`,
  );
  if (pld) {
    const pct = (x: number): string => `${x >= 0 ? '+' : ''}${(100 * x).toFixed(2)}%`;
    console.log(
      `PLD accountant vs dp_accounting's PLDAccountant, ${pld.points} points (target within -0.5%/+1%):\n` +
        `  all points:                                   ${pct(pld.worstAbove)} / ${pct(pld.worstBelow)}\n` +
        `  where dp_accounting's own round-off < 0.25%: ${pct(pld.accurateAbove)} / ${pct(pld.accurateBelow)}\n` +
        `  vs dp_accounting's algorithm in long double: ${pld.worstExtended.toExponential(1)} relative\n` +
        `  histories coarsened past 2^23 grid points, vs the full grid (${pld.coarsened.settings} settings, ` +
        `deltas 1e-10, 1e-5, 0.1): ${pld.coarsened.worst.toExponential(1)} relative`,
    );
  } else console.log('PLD agreement: run with --pld (about 100 s)');
}

function fixture(name: string): { cases: (number | null)[][] } {
  const url = new URL(`../../libs/differential-privacy/src/fixtures/${name}`, import.meta.url);
  return JSON.parse(readFileSync(url, 'utf8')) as { cases: (number | null)[][] };
}

/** Worst relative epsilon error against the Opacus fixture (q, sigma, steps, delta, eps, order, epsClassic). */
function rdpAgreement(): { points: number; worst: number; worstClassic: number } {
  const rel = (got: number, want: number): number =>
    want === 0 ? Math.abs(got) : Math.abs(got - want) / want;
  let worst = 0;
  let worstClassic = 0;
  const rows = fixture('opacus-rdp.json').cases as number[][];
  for (const [q, sigma, steps, delta, eps, , epsClassic] of rows) {
    const h = { q: q!, sigma: sigma!, steps: steps! };
    worst = Math.max(worst, rel(computeEpsilon(h, delta!).epsilon, Math.max(0, eps!)));
    worstClassic = Math.max(
      worstClassic,
      rel(computeEpsilon(h, delta!, { conversion: 'classic' }).epsilon, Math.max(0, epsClassic!)),
    );
  }
  return { points: rows.length, worst, worstClassic };
}

/**
 * Signed relative differences against the dp_accounting fixture (q, sigma, steps, delta, eps in
 * double, eps of the same algorithm in long double, grid size), epsilons below the 1e-4 grid compared
 * on that floor, as pld.spec.ts does.
 */
function pldAgreement() {
  const rows = fixture('dp-accounting-pld.json').cases.map((r) =>
    r.map((v) => (v === null ? Infinity : v)),
  );
  const rel = (got: number, want: number): number =>
    got === want ? 0 : (got - want) / Math.max(want, 1e-4);
  const out = {
    points: 0,
    worstAbove: 0,
    worstBelow: 0,
    accurateAbove: 0,
    accurateBelow: 0,
    worstExtended: 0,
    coarsened: coarseningError(),
  };
  const groups = new Map<string, number[][]>();
  for (const r of rows) {
    const k = `${r[0]}:${r[1]}:${r[2]}`;
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  for (const group of groups.values()) {
    const [q, sigma, steps] = group[0]!;
    const acc = new PldAccountant().compose({ q: q!, sigma: sigma!, steps: steps! });
    for (const [, , , delta, eps, extended] of group) {
      const got = acc.getEpsilon(delta!);
      if (!Number.isFinite(got) || !Number.isFinite(eps!)) continue;
      out.points++;
      const d = rel(got, eps!);
      out.worstAbove = Math.max(out.worstAbove, d);
      out.worstBelow = Math.min(out.worstBelow, d);
      if (Math.abs(rel(eps!, extended!)) < 0.0025) {
        out.accurateAbove = Math.max(out.accurateAbove, d);
        out.accurateBelow = Math.min(out.accurateBelow, d);
      }
      out.worstExtended = Math.max(out.worstExtended, Math.abs(rel(got, extended!)));
    }
  }
  return out;
}

/**
 * Histories whose grid would pass the default 2^23 points get a doubled discretisation interval:
 * the worst relative epsilon difference from the same histories on the full grid (2^25 points,
 * about 10 s), for two such settings of the dense grid.
 */
function coarseningError(): { settings: number; worst: number } {
  const settings = [
    { q: 1, sigma: 2, steps: 10_000 },
    { q: 0.001, sigma: 0.3, steps: 1_000_000 },
  ];
  let worst = 0;
  for (const e of settings) {
    const coarse = new PldAccountant().compose(e);
    const full = new PldAccountant({ maxGridSize: 2 ** 25 }).compose(e);
    if (!(coarse.discretization > full.discretization)) {
      throw new Error(`(${e.q}, ${e.sigma}, ${e.steps}) is not coarsened by default`);
    }
    for (const delta of [1e-10, 1e-5, 0.1]) {
      const want = full.getEpsilon(delta);
      worst = Math.max(worst, Math.abs(coarse.getEpsilon(delta) - want) / want);
    }
  }
  return { settings: settings.length, worst };
}
