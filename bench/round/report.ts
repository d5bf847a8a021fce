// The round benchmark's figures: medians over the measured rounds, and the table it prints.
import os from 'node:os';
import type { SitePhase } from './sites';

/**
 * The phase each part the sites time falls in: the statistics (once per federation) between
 * 'scheduled' and the next transition, the evaluation before 'evaluated'; both are secure sums under
 * secure aggregation.
 */
const SITE_PHASE_IN: Readonly<Record<string, SitePhase>> = {
  'select+load+encode': 'statistics',
  'store+evaluate': 'evaluation',
};

export interface RoundFigures {
  round: number;
  wallMs: number;
  aggregatorMs: number;
  mbReceived: number;
  mbReceivedCounter: number;
  mbSent: number;
  mbPerS: number;
  /** CPU time of this process (aggregator, in-memory PGlite, driver; all threads) during the round. */
  aggregatorCpuMs: number;
  /** CPU time of all site processes during the round (real sites would each use their own). */
  sitesCpuMs: number;
  phasesMs: Record<string, number>;
  /** The phases as [name, start, end] in epoch ms, from the round's recorded transitions. */
  phaseSpans: Array<[string, number, number]>;
  /** The feature statistics, timed at the sites (see Span); NaN in a round without them. */
  statisticsMs: number;
  /** The evaluation, timed at the sites (see Span); NaN in a round without one. */
  evaluationMs: number;
}

export interface Stat {
  median: number;
  min: number;
}

export function stat(xs: number[]): Stat {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { median, min: s[0]! };
}

export function summarise(rounds: RoundFigures[]) {
  const of = (f: (r: RoundFigures) => number): Stat => stat(rounds.map(f));
  return {
    wallMs: of((r) => r.wallMs),
    aggregatorMs: of((r) => r.aggregatorMs),
    mbReceived: of((r) => r.mbReceived),
    mbReceivedCounter: of((r) => r.mbReceivedCounter),
    mbSent: of((r) => r.mbSent),
    mbPerS: of((r) => r.mbPerS),
    aggregatorCpuMs: of((r) => r.aggregatorCpuMs),
    sitesCpuMs: of((r) => r.sitesCpuMs),
    evaluationMs: of((r) => r.evaluationMs),
    phasesMs: Object.fromEntries(
      Object.keys(rounds[0]?.phasesMs ?? {}).map((name) => [
        name,
        of((r) => r.phasesMs[name] ?? NaN),
      ]),
    ),
  };
}

export function fmt(x: number): string {
  if (!Number.isFinite(x)) return '-';
  return x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2);
}

export function printTable(report: {
  secureAggregation: boolean;
  statisticsMs: number;
  parameters: {
    sites: number;
    parameters: number;
    reps: number;
    warmup: number;
    interleaved: boolean;
    database: string;
  };
  environment: {
    node: string;
    platform: string;
    cpus: number;
    cpuModel: string;
    bufferutil: { aggregator: string; sites: string };
  };
  summary: ReturnType<typeof summarise>;
}): void {
  const { parameters: p, environment: e, summary: s } = report;
  const how = report.secureAggregation ? 'sum' : 'in the clear';
  const siteRows: Record<SitePhase, [string, Stat]> = {
    statistics: [
      `    of which statistics ${how}, first round only (ms)`,
      { median: report.statisticsMs, min: report.statisticsMs },
    ],
    evaluation: [`    of which evaluation ${how} (ms)`, s.evaluationMs],
  };
  const lines = [
    `round benchmark: ${p.sites} sites x ${p.parameters.toLocaleString('en-US')} parameters, ` +
      `${p.reps} measured round(s) after ${p.warmup} warm-up` +
      `${p.interleaved ? ', interleaved with the other mode' : ''}, ${p.database}`,
    `node ${e.node} on ${e.platform}, ${e.cpus} CPU(s) (${e.cpuModel})`,
    `bufferutil, aggregator process: ${e.bufferutil.aggregator}`,
    `bufferutil, site process: ${e.bufferutil.sites}`,
    '',
  ];
  const rows: Array<[string, Stat]> = [
    ['wall time, run start to committed (ms)', s.wallMs],
    ['aggregator round duration (ms)', s.aggregatorMs],
    ...Object.entries(s.phasesMs).flatMap(([name, st]): Array<[string, Stat]> => {
      const inside = SITE_PHASE_IN[name];
      return [[`  phase ${name} (ms)`, st], ...(inside ? [siteRows[inside]] : [])];
    }),
    ['received by aggregator, round (MB)', s.mbReceived],
    ['received by aggregator, socket counter (MB)', s.mbReceivedCounter],
    ['sent to sites (MB)', s.mbSent],
    ['received / wall time (MB/s)', s.mbPerS],
    ['CPU, aggregator process, all threads (ms)', s.aggregatorCpuMs],
    ['CPU, all site processes (ms)', s.sitesCpuMs],
  ];
  const w = Math.max(...rows.map(([n]) => n.length));
  lines.push(`${'figure'.padEnd(w)}  ${'median'.padStart(9)}  ${'min'.padStart(9)}`);
  for (const [name, st] of rows) {
    lines.push(`${name.padEnd(w)}  ${fmt(st.median).padStart(9)}  ${fmt(st.min).padStart(9)}`);
  }
  lines.push(
    '',
    "MB = 10^6 bytes. Phases: time between the round's recorded transitions (transaction starts).",
    'Statistics, evaluation: from the first site receiving the request to the last site sending its last',
    "  answer (stats.report, round.metrics; a secure sum: secagg.unmasked), by the sites' clocks. The",
    '  statistics run once per federation, in its first round (a warm-up round unless --warmup 0).',
    `CPU: user + system time per round; the sites share this machine's ${os.availableParallelism()} cores with the aggregator.`,
  );
  process.stdout.write(`${lines.join('\n')}\n`);
}
