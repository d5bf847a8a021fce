/**
 * Committing and loading a model version's weights on the embedded database and on Postgres.
 *
 *   node bin/run-ts.js bench/model-store/model-store.bench.ts [--params 1000000,10000000]
 *     [--databases pglite,postgres] [--postgres-url URL] [--json]
 *
 * An aggregator runs in this process on each database in turn (PGlite in a temporary data
 * directory; a fresh database created on the Postgres server and dropped afterwards) with one small
 * federation. For each size, random float32 weights are committed the way a round commits its new
 * model (ModelVersionRepository.store, then insert in a transaction) and read back (weights, which
 * checks the SHA-256).
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { startAggregator, type RunningAggregator } from '@confide/aggregator';
import { ModelVersionRepository } from '../../apps/aggregator/src/models/model-version.repository';
import { ApiClient } from '../../apps/cli/src/api-client';
import { parseFlags, runBenchmark, UsageError } from '../support/cli';

const DATABASES = ['pglite', 'postgres'] as const;
type DatabaseKind = (typeof DATABASES)[number];

interface Options {
  params: number[];
  databases: DatabaseKind[];
  postgresUrl: string;
  json: boolean;
}

interface Row {
  database: DatabaseKind;
  params: number;
  commitMs?: number;
  loadMs?: number;
  /** Why this size was not measured on this database. */
  error?: string;
}

const DEFAULT_POSTGRES_URL = 'postgres://postgres@127.0.0.1:5432/postgres';
const MAX_PARAMS = 200_000_000;

const USAGE = `Usage: node bin/run-ts.js bench/model-store/model-store.bench.ts [options]

Commits model versions of several sizes (store + insert in a transaction, as a round does) and
loads them back (with the SHA-256 check), on the embedded database and on Postgres, and prints
the times.

Options:
  --params N,N,...     parameter counts (float32 each; 1-${MAX_PARAMS}),
                       default 1000000,10000000,100000000
  --databases D,D      pglite and/or postgres, default pglite,postgres. PGlite runs in a
                       temporary data directory; on Postgres a fresh database is created and
                       dropped. An unreachable server gives rows with an "error" field.
  --postgres-url URL   the server (a database on it to connect to first), default
                       ${DEFAULT_POSTGRES_URL}
  --json               {"rows":[{"database","params","commitMs","loadMs"}]} on stdout
                       instead of the table (a row that could not be measured has "error")
  -h, --help           this text
`;

function parseOptions(argv: string[]): Options | 'help' {
  const values = parseFlags(argv, {
    params: { type: 'string' },
    databases: { type: 'string' },
    'postgres-url': { type: 'string' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  });
  if (values.help) return 'help';
  const params = (values.params ?? '1000000,10000000,100000000').split(',').map((raw) => {
    const digits = raw.trim().replace(/_/g, '');
    const n = Number(digits);
    if (!/^\d+$/.test(digits) || n < 1 || n > MAX_PARAMS) {
      throw new UsageError(`--params takes whole numbers from 1 to ${MAX_PARAMS}, got "${raw}"`);
    }
    return n;
  });
  const databases = (values.databases ?? DATABASES.join(',')).split(',').map((raw) => {
    const d = raw.trim();
    if (!(DATABASES as readonly string[]).includes(d)) {
      throw new UsageError(`--databases takes ${DATABASES.join(' and/or ')}, got "${raw}"`);
    }
    return d as DatabaseKind;
  });
  const postgresUrl = values['postgres-url'] ?? DEFAULT_POSTGRES_URL;
  try {
    new URL(postgresUrl);
  } catch {
    throw new UsageError(`--postgres-url is not a URL: "${postgresUrl}"`);
  }
  return { params, databases, postgresUrl, json: Boolean(values.json) };
}

/** A running aggregator on `kind`, and how to stop it and remove what it wrote. */
async function openOn(
  kind: DatabaseKind,
  postgresUrl: string,
): Promise<{ agg: RunningAggregator; close: () => Promise<void> }> {
  if (kind === 'pglite') {
    const dataDir = await mkdtemp(join(tmpdir(), 'confide-bench-store-'));
    try {
      const agg = await startAggregator({ dataDir, maskWorkers: 0 });
      return {
        agg,
        close: async () => {
          await agg.close();
          await rm(dataDir, { recursive: true, force: true });
        },
      };
    } catch (e) {
      await rm(dataDir, { recursive: true, force: true });
      throw e;
    }
  }
  const name = `confide_bench_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
  const admin = async (sql: string): Promise<void> => {
    const c = new pg.Client({ connectionString: postgresUrl, connectionTimeoutMillis: 5000 });
    try {
      await c.connect();
      await c.query(sql);
    } finally {
      await c.end().catch(() => undefined);
    }
  };
  try {
    await admin(`CREATE DATABASE ${name}`);
  } catch (e) {
    throw new Error(
      `the Postgres server at ${redact(postgresUrl)} cannot be used: ${(e as Error).message}`,
    );
  }
  const drop = (): Promise<void> => admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  const u = new URL(postgresUrl);
  u.pathname = `/${name}`;
  try {
    const agg = await startAggregator({ databaseUrl: u.toString(), maskWorkers: 0 });
    return {
      agg,
      close: async () => {
        await agg.close();
        await drop();
      },
    };
  } catch (e) {
    await drop();
    throw e;
  }
}

function redact(url: string): string {
  const u = new URL(url);
  if (u.password) u.password = '***';
  return u.toString();
}

async function measureOn(kind: DatabaseKind, opts: Options): Promise<Row[]> {
  let opened: Awaited<ReturnType<typeof openOn>>;
  try {
    opened = await openOn(kind, opts.postgresUrl);
  } catch (e) {
    return opts.params.map((params) => ({ database: kind, params, error: (e as Error).message }));
  }
  const { agg } = opened;
  const rows: Row[] = [];
  try {
    const api = new ApiClient(agg.url, agg.initialAdminToken!);
    const fed = await api.post<{ id: string }>('/api/v1/federations', {
      name: 'model-store-bench',
      modelSpec: { kind: 'logistic', inputDim: 30 },
      minSites: 2,
      localEpochs: 1,
      batchSize: 32,
      learningRate: 0.05,
      optimizer: 'sgd',
      roundTimeoutSeconds: 60,
      evaluationTimeoutSeconds: 20,
      seed: 7,
    });
    const models = agg.app.get(ModelVersionRepository);
    for (const params of opts.params) {
      try {
        rows.push({
          database: kind,
          params,
          ...(await commitAndLoad(agg, models, fed.id, params)),
        });
      } catch (e) {
        rows.push({ database: kind, params, error: (e as Error).message });
      }
    }
  } finally {
    await opened.close();
  }
  return rows;
}

async function commitAndLoad(
  agg: RunningAggregator,
  models: ModelVersionRepository,
  federationId: string,
  params: number,
): Promise<{ commitMs: number; loadMs: number }> {
  let weights: Float32Array | null = new Float32Array(params);
  for (let i = 0; i < params; i++) weights[i] = Math.random() - 0.5;
  const t0 = performance.now();
  const stored = await models.store(weights);
  const version = await agg.db.transaction((em) =>
    models.insert(em, { federationId, roundNumber: null, parentId: null, weights: stored }),
  );
  const commitMs = performance.now() - t0;
  const expected = weights;
  weights = null;
  const t1 = performance.now();
  const loaded = await models.weights(version.id);
  const loadMs = performance.now() - t1;
  if (loaded.length !== params || Buffer.compare(toBytes(loaded), toBytes(expected)) !== 0) {
    throw new Error(`the loaded weights differ from the committed ones`);
  }
  return { commitMs: Math.round(commitMs), loadMs: Math.round(loadMs) };
}

function toBytes(a: Float32Array): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

async function measure(opts: Options): Promise<void> {
  const rows: Row[] = [];
  for (const kind of opts.databases) rows.push(...(await measureOn(kind, opts)));
  if (opts.json) {
    process.stdout.write(`${JSON.stringify({ rows })}\n`);
    return;
  }
  const table = [
    ['database', 'parameters', 'MB', 'commit ms', 'load ms'],
    ...rows.map((r) => [
      r.database,
      String(r.params),
      ((4 * r.params) / 1e6).toFixed(0),
      r.commitMs === undefined ? '-' : String(r.commitMs),
      r.loadMs === undefined ? '-' : String(r.loadMs),
    ]),
  ];
  const widths = table[0]!.map((_, i) => Math.max(...table.map((t) => t[i]!.length)) + 2);
  for (const t of table) {
    process.stdout.write(
      `${t.map((c, i) => (i < 1 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('')}\n`,
    );
  }
  for (const r of rows) {
    if (r.error) process.stdout.write(`${r.database} ${r.params}: ${r.error}\n`);
  }
}

try {
  await runBenchmark(USAGE, parseOptions, measure);
} catch (e) {
  process.stderr.write(`model-store benchmark failed: ${(e as Error).stack ?? String(e)}\n`);
  process.exitCode = 1;
}
