/**
 * Creating a federation with a large model on the embedded database, while other requests go on.
 *
 *   node bin/run-ts.js bench/database/federation-create.bench.ts [--params 50000000] [--in-memory] [--json]
 *
 * An aggregator (NestJS, PGlite in a temporary data directory, or in memory) runs in this process.
 * One federation with a small model exists; a federation whose MLP has about --params parameters is
 * then created over REST while a probe reads the small one (GET /api/v1/federations/:id) again and
 * again, one request at a time, from a child process. It prints how long the creation took, how many probes were answered
 * meanwhile and how long they waited, and the peak resident memory of the process.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { startAggregator } from '@confide/aggregator';
import { parameterCount, parseModelSpec, type ModelSpec } from '@confide/ml/spec';
import { ApiClient } from '../../apps/cli/src/api-client';
import { intOption, parseFlags, runBenchmark } from '../support/cli';

interface Options {
  params: number;
  inMemory: boolean;
  json: boolean;
}

const USAGE = `Usage: node bin/run-ts.js bench/database/federation-create.bench.ts [options]

Creates a federation with a large model on the embedded database (PGlite) while a probe keeps
reading another federation, and prints the creation time and the probe's waits.

Options:
  --params M    model parameters, approximately (an MLP 1000 -> h -> 1; 1002-50000000,
                default 50000000, the largest the aggregator accepts)
  --in-memory   PGlite in memory instead of a temporary data directory
  --json        one JSON object on stdout instead of the table
  -h, --help    this text
`;

function parseOptions(argv: string[]): Options | 'help' {
  const values = parseFlags(argv, {
    params: { type: 'string' },
    'in-memory': { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  });
  if (values.help) return 'help';
  return {
    params: intOption('params', values.params, 50_000_000, 1002, 50_000_000),
    inMemory: Boolean(values['in-memory']),
    json: Boolean(values.json),
  };
}

/** An MLP 1000 -> h -> 1 with about `params` parameters. */
function specFor(params: number): ModelSpec {
  const inputDim = 1000;
  const hidden = Math.max(1, Math.floor((params - 1) / (inputDim + 2)));
  return { kind: 'mlp', inputDim, hidden: [hidden], output: 'binary' };
}

const TRAINING = {
  minSites: 2,
  localEpochs: 1,
  batchSize: 32,
  learningRate: 0.05,
  optimizer: 'sgd',
  roundTimeoutSeconds: 60,
  evaluationTimeoutSeconds: 20,
  seed: 7,
};

async function measure(opts: Options): Promise<void> {
  const dataDir = opts.inMemory ? undefined : await mkdtemp(join(tmpdir(), 'confide-bench-db-'));
  const agg = await startAggregator({ dataDir, maskWorkers: 0 });
  try {
    const api = new ApiClient(agg.url, agg.initialAdminToken!);
    const small = await api.post<{ id: string }>('/api/v1/federations', {
      ...TRAINING,
      name: 'probe-target',
      modelSpec: { kind: 'logistic', inputDim: 30 },
    });
    const spec = specFor(opts.params);
    const params = parameterCount(parseModelSpec(spec));

    let peakRss = process.memoryUsage().rss;
    const rssTimer = setInterval(() => {
      peakRss = Math.max(peakRss, process.memoryUsage().rss);
    }, 50);
    const probe = startProbe(`${agg.url}/api/v1/federations/${small.id}`, agg.initialAdminToken!);
    await probe.ready;
    const started = performance.now();
    await api.post('/api/v1/federations', { ...TRAINING, name: 'large', modelSpec: spec });
    const createMs = performance.now() - started;
    clearInterval(rssTimer);
    const waits = await probe.stop();
    waits.sort((a, b) => a - b);
    const at = (q: number): number =>
      waits[Math.min(waits.length - 1, Math.floor(q * waits.length))]!;
    const figures = {
      database: agg.db.description,
      params,
      weightsMB: (4 * params) / 1e6,
      createSeconds: createMs / 1000,
      probesAnswered: waits.length,
      probeWaitMedianMs: at(0.5),
      probeWaitP99Ms: at(0.99),
      probeWaitMaxMs: waits[waits.length - 1]!,
      peakRssMB: peakRss / 1e6,
    };
    if (opts.json) {
      process.stdout.write(`${JSON.stringify(figures)}\n`);
      return;
    }
    const rows: Array<[string, string]> = [
      ['database', figures.database],
      ['parameters', `${params} (${figures.weightsMB.toFixed(0)} MB of float32)`],
      ['federation created in', `${figures.createSeconds.toFixed(2)} s`],
      ['probes answered meanwhile', String(figures.probesAnswered)],
      [
        'probe wait median / p99 / max',
        `${at(0.5).toFixed(0)} / ${at(0.99).toFixed(0)} / ${figures.probeWaitMaxMs.toFixed(0)} ms`,
      ],
      ['peak RSS', `${figures.peakRssMB.toFixed(0)} MB`],
    ];
    const w = Math.max(...rows.map((r) => r[0].length)) + 2;
    for (const [k, v] of rows) process.stdout.write(`${k.padEnd(w)}${v}\n`);
  } finally {
    await agg.close();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  }
}

/**
 * Reads `url` again and again, one request at a time, from a child process (so that its clock is
 * not stopped when this process's event loop is busy); `stop` gives the wait of every request.
 */
function startProbe(
  url: string,
  token: string,
): { ready: Promise<void>; stop: () => Promise<number[]> } {
  const child = spawn(process.execPath, ['-e', PROBE, url, token], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.setEncoding('utf8');
  const ready = new Promise<void>((resolve) => {
    child.stdout.on('data', (d: string) => {
      out += d;
      if (out.startsWith('ready\n')) resolve();
    });
  });
  const done = new Promise<number[]>((resolve, reject) => {
    child.once('exit', (code) => {
      if (code !== 0) return reject(new Error(`the probe exited with ${code}`));
      resolve(JSON.parse(out.slice('ready\n'.length)) as number[]);
    });
  });
  return {
    ready,
    stop: () => {
      child.stdin.end('stop\n');
      return done;
    },
  };
}

const PROBE = `
const [url, token] = process.argv.slice(1);
const waits = [];
let stopping = false;
process.stdin.on('data', () => { stopping = true; });
(async () => {
  process.stdout.write('ready\\n');
  while (!stopping) {
    const t = performance.now();
    const res = await fetch(url, { headers: { authorization: 'Bearer ' + token } });
    await res.arrayBuffer();
    if (!res.ok) throw new Error('probe got HTTP ' + res.status);
    waits.push(performance.now() - t);
    await new Promise((r) => setTimeout(r, 10));
  }
  process.stdout.write(JSON.stringify(waits));
})();
`;

try {
  await runBenchmark(USAGE, parseOptions, measure);
} catch (e) {
  process.stderr.write(`federation-create benchmark failed: ${(e as Error).stack ?? String(e)}\n`);
  process.exitCode = 1;
}
