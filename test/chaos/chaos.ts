/**
 * The chaos suite: a federation of real `confide node` processes with DP and secure aggregation runs
 * rounds while a seeded scheduler kills the aggregator (kill -9, restarted on its data), kills and
 * restarts nodes, and cuts connections at every protocol stage; then it checks that nothing was lost,
 * stuck or released without a charge, and that the ledger verifies.
 *
 *   npm run chaos -- --seed 7 --rounds 20 [--sites 6] [--json] [--keep]
 */
import { intOption, parseFlags, runBenchmark, UsageError } from '../../bench/support/cli';
import { failedChecks, summaryLines } from './report';
import { runChaos, type ChaosOptions } from './run';

const USAGE = `Usage: npm run chaos -- --seed S --rounds N [options]

Runs N rounds of a federation of real processes (one \`confide server\`, PGlite in a data directory
or DATABASE_URL's Postgres, and --sites \`confide node join\`s behind a TCP proxy) with site-level DP
and secure aggregation, while a plan drawn from the seed kills the aggregator and nodes with SIGKILL
and restarts them, and cuts connections at each protocol stage. Then it checks: every committed
model version loads and matches its hash; \`confide audit verify\` passes, also with every site's
local ledger; every masked update that left a site carries a signed receipt charging at least the
epsilon recomputed from its round's announcement; no round or run is stuck; at least half the
rounds commit. Exit code 1 when a check fails, 2 on a bad command line.

Options:
  --seed S                   seed of every scheduling decision (default: random, printed)
  --rounds N                 rounds to run (required; 1 to 10000)
  --sites N                  client nodes (default 6; at least 5)
  --round-timeout SECONDS    the round deadline (default 30; at most 60)
  --keep                     keep the data directories, logs and ledgers
  --json                     print one JSON object (the report) on stdout; progress on stderr
  -h, --help                 show this help
`;

type Options = ChaosOptions & { json: boolean };

function parse(argv: string[]): Options | 'help' {
  const v = parseFlags(argv, {
    seed: { type: 'string' },
    rounds: { type: 'string' },
    sites: { type: 'string' },
    'round-timeout': { type: 'string' },
    keep: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  });
  if (v.help) return 'help';
  if (v.rounds === undefined) throw new UsageError('--rounds is required');
  const json = Boolean(v.json);
  const roundTimeoutSeconds = intOption('round-timeout', v['round-timeout'], 30, 5, 60);
  return {
    seed: intOption('seed', v.seed, Math.floor(Math.random() * 1_000_000), 0, 2 ** 32 - 1),
    rounds: intOption('rounds', v.rounds, 0, 1, 10_000),
    sites: intOption('sites', v.sites, 6, 5, 50),
    roundTimeoutSeconds,
    evaluationTimeoutSeconds: Math.max(5, Math.round(roundTimeoutSeconds / 2)),
    keep: Boolean(v.keep),
    json,
    log: (line) => (json ? process.stderr : process.stdout).write(`${line}\n`),
  };
}

await runBenchmark(USAGE, parse, async (o) => {
  o.log(`chaos seed ${o.seed}`);
  const report = await runChaos(o);
  const failed = failedChecks(report, o.rounds);
  if (o.json) {
    process.stdout.write(`${JSON.stringify(report)}\n`);
    for (const line of summaryLines(report, failed)) process.stderr.write(`${line}\n`);
  } else {
    for (const line of summaryLines(report, failed)) process.stdout.write(`${line}\n`);
  }
  process.exitCode = failed.length ? 1 : 0;
});
