/**
 * One aggregation round, end to end over loopback WebSockets, with synthetic sites and no training.
 *
 *   node bin/run-ts.js bench/round/round.bench.ts [--sites 10] [--params 1000000] [--reps 9] [--json]
 *
 * The aggregator (NestJS, in-memory PGlite) runs in this process. The sites run in child processes
 * (raw `ws` clients, so their masking and copying does not share the aggregator's event loop; one
 * per core by default, as real sites mask on machines of their own, in parallel): they
 * log in, check the aggregator's signature on every message, answer `stats.request` with unit
 * statistics, answer `round.train` at once with a pre-generated random update and `round.evaluate`
 * with fixed metrics. Under secure aggregation a site masks as the client node does (masks expanded
 * on one worker thread per site process as soon as the site has shared its keys, the update
 * quantized into them when the shares come back, the frame header written in front of them), and
 * its statistics and evaluation counts join secure sums as the client node's SiteSum runs them.
 * Each repetition is a run of one round; the first `--warmup` runs of each mode (which include the
 * one-off statistics phase, and in which V8 compiles the round's hot paths: the first rounds of a
 * fresh process run up to 1.5x slower) are not counted.
 *
 * With `--secure both` (the default) the two modes run on one aggregator, their rounds interleaved
 * (without, with, with, without, ...), each mode with its own federation and site processes: both
 * see the same process, heap, database and machine state. (Measured one mode after the other, the
 * mode that ran second found a warm process and came out 20-30% faster.)
 *
 * Besides wall time and phases it prints the CPU time per round of this process (aggregator, PGlite,
 * driver) and of all site processes together: on a machine with fewer cores than sites the sites'
 * masking competes with the aggregator for the same cores, which real sites, on machines of their
 * own, do not; the two CPU figures show how much of the ratio that is.
 */
import os from 'node:os';
import { intOption, parseFlags, runBenchmark, UsageError } from '../support/cli';
import { bufferUtilState } from './sites';
import { fmt, printTable, summarise, type RoundFigures } from './report';
import { progress, specFor, startMode, type Mode } from './federation';

// ------------------------------------------------------------------------------------------------
// Options

interface Options {
  sites: number;
  params: number;
  reps: number;
  warmup: number;
  json: boolean;
  verbose: boolean;
  /** Rounds with secure aggregation, without, or both side by side (the ratio). */
  secure: 'on' | 'off' | 'both';
  /** Processes the synthetic sites are spread over (real sites run on machines of their own). */
  siteProcesses: number;
}

const USAGE = `Usage: node bin/run-ts.js bench/round/round.bench.ts [options]

Measures one FedAvg round (train, aggregate, evaluate, commit) with synthetic sites over loopback
WebSockets against an aggregator with in-memory PGlite. No training: sites answer at once. Under
secure aggregation the one-off feature statistics and every evaluation are secure sums too.

Options:
  --sites N    synthetic sites, all selected every round (1-200, default 10)
  --params M   model parameters, approximately: an MLP (or a logistic model under 1002)
               is sized to about M (2-50000000, default 1000000)
  --reps R     measured rounds of each mode (1-1000, default 9)
  --warmup W   rounds of each mode run first and not counted (0-100, default 5)
  --secure S   on | off | both (default both: rounds with and without secure aggregation
               interleaved on one aggregator, and the ratio of their medians,
               roundRatio = with / without)
  --site-processes P
               spread the synthetic sites over P processes (1-sites; default: the number of
               cores, at most --sites), as real sites mask on machines of their own
  --json       print one JSON object on stdout instead of the table
  --verbose    aggregator log lines on stderr
  --help       this text
`;

function parseOptions(argv: string[]): Options | 'help' {
  const values = parseFlags(argv, {
    sites: { type: 'string' },
    params: { type: 'string' },
    reps: { type: 'string' },
    warmup: { type: 'string' },
    json: { type: 'boolean', default: false },
    secure: { type: 'string', default: 'both' },
    'site-processes': { type: 'string' },
    verbose: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  });
  if (values.help) return 'help';
  const sites = intOption('sites', values.sites, 10, 1, 200);
  return {
    sites,
    siteProcesses: intOption(
      'site-processes',
      values['site-processes'],
      Math.min(sites, os.availableParallelism()),
      1,
      sites,
    ),
    params: intOption('params', values.params, 1_000_000, 2, 50_000_000),
    reps: intOption('reps', values.reps, 9, 1, 1000),
    warmup: intOption('warmup', values.warmup, 5, 0, 100),
    json: values.json,
    verbose: values.verbose,
    secure: ((): Options['secure'] => {
      if (values.secure === 'on' || values.secure === 'off' || values.secure === 'both')
        return values.secure;
      throw new UsageError(`--secure must be on, off or both, got "${String(values.secure)}"`);
    })(),
  };
}

// ------------------------------------------------------------------------------------------------
// The driver (this process): aggregator, REST set-up, runs, figures

async function runDriver(opts: Options): Promise<void> {
  const modes = opts.secure === 'both' ? [false, true] : [opts.secure === 'on'];
  const reports = await measure(opts, modes);
  const median = (r: (typeof reports)[number]): number => r.summary.wallMs.median;
  const roundRatio = reports.length === 2 ? median(reports[1]!) / median(reports[0]!) : null;
  if (opts.json) {
    process.stdout.write(
      `${JSON.stringify({ benchmark: 'round', modes: reports, roundRatio, roundRatioTarget: 1.5 })}\n`,
    );
    return;
  }
  for (const r of reports) {
    process.stdout.write(
      `\n=== ${r.secureAggregation ? 'WITH' : 'WITHOUT'} secure aggregation ===\n`,
    );
    printTable(r);
  }
  if (roundRatio !== null) {
    process.stdout.write(
      `\nroundRatio (median wall time with / without secure aggregation): ${roundRatio.toFixed(2)} (target <= 1.5)\n`,
    );
  }
}

/**
 * Both modes on one aggregator, their rounds interleaved (without, with, with, without, ...): the two
 * see the same process, heap, database and machine state, so neither is measured colder or on a
 * quieter machine than the other. Each mode has its own federation and site processes (idle while
 * the other mode runs).
 */
async function measure(opts: Options, modes: boolean[]) {
  // Imported here, not at the top, so the site process does not load tfjs and NestJS.
  const { parameterCount } = await import('@confide/ml/spec');
  const { startAggregator } = await import('@confide/aggregator');
  const spec = specFor(opts.params);
  const parameters = parameterCount(spec);
  const { ApiClient } = await import('../../apps/cli/src/api-client');

  const agg = await startAggregator({ log: opts.verbose ? progress : undefined });
  const started: Mode[] = [];
  try {
    const api = new ApiClient(agg.url, agg.initialAdminToken!);
    for (const secure of modes) {
      started.push(
        await startMode(
          { sites: opts.sites, siteProcesses: opts.siteProcesses, name: 'round-bench' },
          agg,
          api,
          spec,
          parameters,
          secure,
        ),
      );
    }
    const measured = new Map<Mode, RoundFigures[]>(started.map((m) => [m, []]));
    // The federation's first round, warm-up or not: the only one with the statistics.
    const firstRound = new Map<Mode, RoundFigures>();
    for (let rep = 0; rep < opts.warmup + opts.reps; rep++) {
      // Alternate which mode goes first, so neither always follows the other.
      const order = rep % 2 === 0 ? started : [...started].reverse();
      for (const mode of order) {
        const figures = await mode.runRound();
        const warm = rep < opts.warmup;
        if (!warm) measured.get(mode)!.push(figures);
        if (rep === 0) firstRound.set(mode, figures);
        progress(
          `${warm ? 'warm-up' : `rep ${rep - opts.warmup + 1}/${opts.reps}`} ` +
            `${mode.secureAggregation ? 'with' : 'without'} secure aggregation: round ` +
            `${figures.round} ${fmt(figures.wallMs)} ms wall, ${fmt(figures.aggregatorMs)} ms ` +
            `aggregator, ${fmt(figures.mbReceived)} MB in`,
        );
      }
    }
    return started.map((mode) => {
      const rounds = measured.get(mode)!;
      return {
        secureAggregation: mode.secureAggregation,
        benchmark: 'round',
        parameters: {
          sites: opts.sites,
          siteProcesses: opts.siteProcesses,
          parameters,
          modelSpec: spec,
          reps: opts.reps,
          warmup: opts.warmup,
          interleaved: started.length > 1,
          database: agg.db.description,
        },
        environment: {
          node: process.version,
          platform: `${process.platform} ${process.arch}`,
          cpus: os.cpus().length,
          cpuModel: os.cpus()[0]?.model ?? 'unknown',
          bufferutil: { aggregator: bufferUtilState(), sites: mode.siteBufferUtil },
        },
        rounds,
        summary: summarise(rounds),
        statisticsMs: firstRound.get(mode)?.statisticsMs ?? NaN,
      };
    });
  } finally {
    for (const mode of started) await mode.close();
    await agg.close();
  }
}

// ------------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  await runBenchmark(USAGE, parseOptions, runDriver);
}

try {
  await main();
} catch (e) {
  process.stderr.write(`round benchmark failed: ${(e as Error).stack ?? String(e)}\n`);
  process.exitCode = 1;
}
