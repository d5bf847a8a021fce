/**
 * How the aggregator carries many sites: connect time, round time, aggregator CPU per round and
 * aggregator memory per idle connected site, for 100, 300 and 1,000 synthetic sites, with and without
 * secure aggregation.
 *
 *   node bin/run-ts.js bench/scale/scale.bench.ts [--sites 100,300,1000] [--params 100000]
 *                                                 [--secure on|off|both] [--json]
 *
 * Each row (a number of sites and a mode) gets a fresh aggregator in this process (NestJS, in-memory
 * PGlite, plain ws on loopback, node:crypto backends) with its pending-login caps (numbers, timeout) raised
 * for the run, since every site logs in from one address at once, and its heartbeat slowed. The sites are the round benchmark's
 * (bench/round/sites.ts), spread over a few child processes. A secure round runs on the graph, degree
 * and threshold the aggregator picks for its size (chooseGraphParameters above 64 sites).
 *
 * Memory per idle site: this process's heap and external memory after a full GC with every site
 * enrolled but none connected, then again once all have logged in and are idle, the difference over
 * the number of sites. Round time: the aggregator's own record of the round, from its start to its
 * commit; CPU: this process (aggregator, PGlite, driver, all threads) during one round.
 */
import { mkdir } from 'node:fs/promises';
import os from 'node:os';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { intOption, parseFlags, runBenchmark, UsageError } from '../support/cli';
import { progress, specFor, startMode, type Mode } from '../round/federation';
import { fmt, stat, type RoundFigures } from '../round/report';
import { startProfile, summariseProfile, writeProfile } from './profile';

interface Options {
  sites: number[];
  params: number;
  secure: 'on' | 'off' | 'both';
  reps: number;
  warmup: number;
  siteProcesses: number | null;
  json: boolean;
  verbose: boolean;
  profile: string | null;
}

const DEFAULT_SITES = [100, 300, 1000];
const MAX_SITES = 5000;

const USAGE = `Usage: node bin/run-ts.js bench/scale/scale.bench.ts [options]

Connect time, round time, aggregator CPU per round and aggregator memory per idle connected site,
for synthetic sites over loopback WebSockets against an aggregator with in-memory PGlite (a fresh
one per row). Sites answer at once (no training).

Options:
  --sites LIST   comma-separated numbers of sites, each 2-${MAX_SITES} (default ${DEFAULT_SITES.join(',')})
  --params M     model parameters, approximately (2-10000000, default 100000)
  --secure S     on | off | both (default both: every size with and without secure aggregation)
  --reps R       measured rounds per row, their median reported (1-100, default 3)
  --warmup W     rounds per row run first and not counted (0-100, default 2; the first one
                 includes the feature statistics)
  --site-processes P
                 processes the sites are spread over (default: 4, at most the sites)
  --json         print one JSON object on stdout instead of the table
  --verbose      aggregator log lines on stderr
  --profile DIR  write a V8 CPU profile of the aggregator's process for each measured round into
                 DIR (<sites>-<plain|secure>-<rep>.cpuprofile) and print on stderr where its main
                 thread spent the time in each phase
  --help         this text
`;

function parseOptions(argv: string[]): Options | 'help' {
  const values = parseFlags(argv, {
    sites: { type: 'string' },
    params: { type: 'string' },
    secure: { type: 'string', default: 'both' },
    reps: { type: 'string' },
    warmup: { type: 'string' },
    'site-processes': { type: 'string' },
    json: { type: 'boolean', default: false },
    verbose: { type: 'boolean', default: false },
    profile: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  });
  if (values.help) return 'help';
  const sites =
    values.sites === undefined
      ? DEFAULT_SITES
      : values.sites.split(',').map((s) => intOption('sites', s.trim(), 0, 2, MAX_SITES));
  const secure = values.secure;
  if (secure !== 'on' && secure !== 'off' && secure !== 'both')
    throw new UsageError(`--secure must be on, off or both, got "${String(secure)}"`);
  return {
    sites,
    params: intOption('params', values.params, 100_000, 2, 10_000_000),
    secure,
    reps: intOption('reps', values.reps, 3, 1, 100),
    warmup: intOption('warmup', values.warmup, 2, 0, 100),
    siteProcesses:
      values['site-processes'] === undefined
        ? null
        : intOption('site-processes', values['site-processes'], 4, 1, MAX_SITES),
    json: values.json,
    verbose: values.verbose,
    profile: values.profile ?? null,
  };
}

/** One row of the result: a number of sites in one mode. */
interface Row {
  sites: number;
  params: number;
  secure: boolean;
  /** From telling the site processes to connect to every site having logged in. */
  connectMs: number;
  /** The aggregator's round duration, from the round's start to its commit (median). */
  roundMs: number;
  /** From the driver starting the run to the sites hearing the round end (median). */
  wallMs: number;
  /** CPU of the aggregator's process, all threads, during one round (median). */
  aggregatorCpuMs: number;
  /** CPU of all site processes during one round (median); they share this machine's cores. */
  sitesCpuMs: number;
  /** Heap and external memory of the aggregator per idle connected site, after a full GC. */
  bytesPerIdleSite: number;
  siteProcesses: number;
  /** The round's phases (medians, ms). */
  phasesMs: Record<string, number>;
}

/** A full garbage collection, exposed at run time (no --expose-gc on the launcher needed). */
function collector(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

async function idleBytes(gc: () => void): Promise<number> {
  // Settle what logins left behind (timers, promises), then collect until nothing more is freed.
  await new Promise((r) => setTimeout(r, 200));
  let last = Infinity;
  for (let i = 0; i < 5; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
    const m = process.memoryUsage();
    const bytes = m.heapUsed + m.external;
    if (bytes >= last - 64 * 1024) return Math.min(bytes, last);
    last = bytes;
  }
  return last;
}

async function measureRow(opts: Options, sites: number, secure: boolean): Promise<Row> {
  const { parameterCount } = await import('@confide/ml/spec');
  const { startAggregator } = await import('@confide/aggregator');
  const { ApiClient } = await import('../../apps/cli/src/api-client');
  const gc = collector();
  const spec = specFor(opts.params);
  const parameters = parameterCount(spec);
  const siteProcesses = Math.min(sites, opts.siteProcesses ?? 4);
  const agg = await startAggregator({
    log: opts.verbose ? progress : undefined,
    // Every site logs in from loopback at once, on cores the site processes share.
    maxPendingLogins: Math.max(1024, sites),
    maxPendingLoginsPerAddress: Math.max(64, sites),
    loginTimeoutMs: 120_000,
    // A site process answers the pings of hundreds of sites while it computes their rounds on
    // cores it shares with the aggregator: a missed pong here is contention, not a dead site.
    heartbeatMs: 120_000,
  });
  let mode: Mode | undefined;
  try {
    const api = new ApiClient(agg.url, agg.initialAdminToken!);
    let before = NaN;
    mode = await startMode(
      {
        sites,
        siteProcesses,
        name: 'scale-bench',
        beforeConnect: async () => {
          before = await idleBytes(gc);
        },
      },
      agg,
      api,
      spec,
      parameters,
      secure,
    );
    const after = await idleBytes(gc);
    const bytesPerIdleSite = (after - before) / sites;
    const label = `${sites} sites ${secure ? 'with' : 'without'} secure aggregation`;
    progress(
      `${label}: connected in ${fmt(mode.connectMs)} ms, ${fmt(bytesPerIdleSite / 1000)} KB per idle site`,
    );
    const rounds: RoundFigures[] = [];
    for (let rep = 0; rep < opts.warmup + opts.reps; rep++) {
      const warm = rep < opts.warmup;
      const recording = opts.profile !== null && !warm ? await startProfile() : null;
      const r = await mode.runRound();
      if (recording) {
        const { profile, startedAt } = await recording.stop();
        const name = `${sites}-${secure ? 'secure' : 'plain'}-${rep - opts.warmup + 1}`;
        const path = await writeProfile(opts.profile!, name, profile, startedAt, r.phaseSpans);
        progress(`profile of ${label}, rep ${rep - opts.warmup + 1}: ${path}`);
        for (const line of summariseProfile(profile, startedAt, r.phaseSpans)) progress(line);
      }
      if (!warm) rounds.push(r);
      progress(
        `${label}, ${warm ? 'warm-up' : `rep ${rep - opts.warmup + 1}/${opts.reps}`}: round ` +
          `${fmt(r.aggregatorMs)} ms, wall ${fmt(r.wallMs)} ms, aggregator CPU ` +
          `${fmt(r.aggregatorCpuMs)} ms, sites CPU ${fmt(r.sitesCpuMs)} ms`,
      );
    }
    const median = (f: (r: RoundFigures) => number): number => stat(rounds.map(f)).median;
    return {
      sites,
      params: parameters,
      secure,
      connectMs: Math.round(mode.connectMs),
      roundMs: Math.round(median((r) => r.aggregatorMs)),
      wallMs: Math.round(median((r) => r.wallMs)),
      aggregatorCpuMs: Math.round(median((r) => r.aggregatorCpuMs)),
      sitesCpuMs: Math.round(median((r) => r.sitesCpuMs)),
      bytesPerIdleSite: Math.round(bytesPerIdleSite),
      siteProcesses,
      phasesMs: Object.fromEntries(
        Object.keys(rounds[0]?.phasesMs ?? {}).map((name) => [
          name,
          Math.round(median((r) => r.phasesMs[name] ?? NaN)),
        ]),
      ),
    };
  } finally {
    await mode?.close();
    await agg.close();
  }
}

function printRows(opts: Options, rows: Row[]): void {
  const head = [
    'sites',
    'secure',
    'connect ms',
    'round ms',
    'wall ms',
    'agg CPU ms',
    'sites CPU ms',
    'KB/idle site',
  ];
  const cells = rows.map((r) => [
    String(r.sites),
    r.secure ? 'yes' : 'no',
    fmt(r.connectMs),
    fmt(r.roundMs),
    fmt(r.wallMs),
    fmt(r.aggregatorCpuMs),
    fmt(r.sitesCpuMs),
    fmt(r.bytesPerIdleSite / 1000),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]): string => c.map((x, i) => x.padStart(widths[i]!)).join('  ');
  const out = [
    `scale benchmark: ${rows[0]?.params.toLocaleString('en-US') ?? opts.params} parameters, ` +
      `median of ${opts.reps} round(s) after ${opts.warmup} warm-up, a fresh aggregator per row`,
    `node ${process.version} on ${process.platform} ${process.arch}, ${os.availableParallelism()} ` +
      `core(s) (${os.cpus()[0]?.model ?? 'unknown'}), shared by the aggregator and the site processes`,
    '',
    line(head),
    ...cells.map(line),
    '',
    "round: the aggregator's record, from the round's start to its commit; wall: from starting the run",
    '  to the sites hearing its end. CPU: user + system time during one round. KB = 1000 bytes of heap',
    '  and external memory of the aggregator per idle connected site, after a full GC.',
  ];
  for (const r of rows.filter((x) => x.secure)) {
    const phases = Object.entries(r.phasesMs)
      .map(([name, ms]) => `${name} ${fmt(ms)}`)
      .join(', ');
    out.push(`phases (ms), ${r.sites} sites with secure aggregation: ${phases}`);
  }
  process.stdout.write(`${out.join('\n')}\n`);
}

async function runDriver(opts: Options): Promise<void> {
  if (opts.profile !== null) await mkdir(opts.profile, { recursive: true });
  const modes = opts.secure === 'both' ? [false, true] : [opts.secure === 'on'];
  const rows: Row[] = [];
  for (const sites of opts.sites) {
    for (const secure of modes) rows.push(await measureRow(opts, sites, secure));
  }
  if (opts.json) {
    process.stdout.write(`${JSON.stringify({ benchmark: 'scale', rows })}\n`);
    return;
  }
  printRows(opts, rows);
}

try {
  await runBenchmark(USAGE, parseOptions, runDriver);
} catch (e) {
  process.stderr.write(`scale benchmark failed: ${(e as Error).stack ?? String(e)}\n`);
  process.exitCode = 1;
}
