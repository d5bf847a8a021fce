/**
 * The per-site primitives of secure aggregation that the code's comments quote figures for, on one
 * thread (best of --reps runs after one warm-up):
 *
 *   node bin/run-ts.js bench/secagg/kernels.bench.ts [--length 1000000] [--reps 7] [--json]
 *
 * - quantize: a float32 update with the WebAssembly SIMD kernel and with the JavaScript loop
 *   (CONFIDE_SECAGG_NO_SIMD), bit-identical, into a reused vector with given random values; and
 *   quantizeWeighted as a whole (a new vector, the CSPRNG);
 * - NaN/Infinity check of the update: float32 (from the exponent bits) and float64 (x - x);
 * - quantize into precomputed masks: a site's maskWeightedUpdateOn once its masks are expanded
 *   (check + quantize + add into the masks, on the site's thread), and the mask expansion itself
 *   (self mask + 9 pairwise masks on one worker thread, precomputeMasksOn), 10 sites;
 * - X25519 round keys: importing a random secret into OpenSSL as PKCS#8 DER against the raw (JWK)
 *   import x25519 uses, and x25519Generate with and without exporting the secret's bytes.
 */
import { createPrivateKey, createPublicKey } from 'node:crypto';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import nacl from 'tweetnacl';
import {
  MaskWorkerPool,
  nodeBackend,
  quantizeWeighted,
  SecAggClient,
  SecAggServer,
  type SecAggParams,
} from '@confide/secure-aggregation';
import type { MaskStream } from '../../libs/secure-aggregation/src/prg';
// Internals the package does not export: the chunk quantizer, the input check, and the switch to
// the JavaScript loop.
import { assertFiniteValues, weightedQuantizer } from '../../libs/secure-aggregation/src/quantize';
import { resetSimdForTests } from '../../libs/secure-aggregation/src/simd';
import { intOption, parseFlags, runBenchmark } from '../support/cli';

const USAGE = `Usage: node bin/run-ts.js bench/secagg/kernels.bench.ts [options]

Per-site primitives of secure aggregation on one thread: quantization (SIMD and JavaScript), the
update's NaN/Infinity check, quantizing into precomputed masks, mask expansion on a worker, and
X25519 round keys (imported against generated).

Options:
  --length N   update length (1000-50000000, default 1000000)
  --reps R     measured runs per row, best reported (1-100, default 7)
  --json       print one JSON object on stdout instead of the table
  --help       this text
`;

interface Options {
  length: number;
  reps: number;
  json: boolean;
}

function parseOptions(argv: string[]): Options | 'help' {
  const values = parseFlags(argv, {
    length: { type: 'string' },
    reps: { type: 'string' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  });
  if (values.help) return 'help';
  return {
    length: intOption('length', values.length, 1_000_000, 1000, 50_000_000),
    reps: intOption('reps', values.reps, 7, 1, 100),
    json: values.json,
  };
}

interface Row {
  name: string;
  /** Best time of one run, ms. */
  bestMs: number;
  /** What one run does. */
  per: string;
}

/**
 * Best time of `reps` runs after a warm-up; a run that returns a number has timed its own part
 * (in ms), which is taken instead of its whole duration.
 */
async function best(reps: number, run: () => unknown): Promise<number> {
  await run(); // warm-up: JIT, kernels, buffers
  let ms = Infinity;
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    const own = await run();
    ms = Math.min(ms, typeof own === 'number' ? own : performance.now() - t0);
  }
  return ms;
}

/** Runs f with the JavaScript loop instead of the SIMD kernels. */
async function withoutSimd<T>(f: () => Promise<T>): Promise<T> {
  process.env['CONFIDE_SECAGG_NO_SIMD'] = '1';
  resetSimdForTests();
  try {
    return await f();
  } finally {
    delete process.env['CONFIDE_SECAGG_NO_SIMD'];
    resetSimdForTests();
  }
}

const SITES = 10;

/** Ten sites of one round with their keys shared and their masks precomputed on `pool`. */
function sharedRound(length: number, round: number, pool: MaskWorkerPool): SecAggClient[] {
  const ids = Array.from({ length: SITES }, (_, i) => `site-${i}`);
  const keys = ids.map(() => nacl.sign.keyPair());
  const roster = new Map(ids.map((id, i) => [id, keys[i]!.publicKey]));
  const params: SecAggParams = {
    threshold: 6,
    graph: 'complete',
    threatModel: 'semi-honest',
    clip: 1,
    scale: 2 ** 16,
    maxSites: SITES,
  };
  const ctx = { roster, runId: 'bench', round, modelHash: 'm', params, vectorLength: length + 1 };
  const server = new SecAggServer(ctx);
  const clients = ids.map(
    (siteId, i) => new SecAggClient({ ...ctx, siteId, identitySecretKey: keys[i]!.secretKey }),
  );
  for (const c of clients) server.addAdvertisement(c.advertise());
  const ads = server.closeAdvertising();
  clients.forEach((c, i) => server.addShares(ids[i]!, c.shareKeys(ads)));
  for (const c of clients) c.precomputeMasksOn(pool);
  server.closeSharing();
  clients.forEach((c, i) => c.receiveShares(server.sharesFor(ids[i]!)));
  server.destroy();
  return clients;
}

async function main(opts: Options): Promise<void> {
  const { length, reps } = opts;
  const update = Float32Array.from({ length }, (_, i) => Math.sin(i) * 1e-3);
  const update64 = Float64Array.from(update);
  const params = { clip: 1, scale: 2 ** 16 };
  const rows: Row[] = [];
  const add = async (name: string, per: string, run: () => unknown): Promise<void> => {
    rows.push({ name, per, bestMs: await best(reps, run) });
  };
  const values = `${length.toLocaleString('en-US')} values`;

  // The kernel against the loop, into one reused vector with fixed random values (what the
  // kernel's comment quotes), then the whole of quantizeWeighted (a fresh vector, the CSPRNG).
  const into = new Uint32Array(length + 1);
  const fixed = (out: Uint32Array): void => void out.fill(0x9e3779b9);
  const kernelRun = (): void => {
    const q = weightedQuantizer(update, 0.5, params, fixed);
    q.quantizeAll(into);
    q.destroy();
  };
  await add('quantize, SIMD kernel (random values given)', values, kernelRun);
  await withoutSimd(() =>
    add('quantize, JavaScript loop (random values given)', values, kernelRun),
  );
  await add('quantizeWeighted (new vector, CSPRNG)', values, () =>
    quantizeWeighted(update, 0.5, params),
  );
  await add('NaN/Infinity check, float32 (exponent bits)', values, () =>
    assertFiniteValues(update),
  );
  await add('NaN/Infinity check, float64 (x - x)', values, () => assertFiniteValues(update64));

  // A site's part once its masks are expanded (the ten sites of a round precompute theirs on one
  // worker; a job with no streams queued behind them returns when they are done), and the expansion
  // of one site's masks: its self mask and its nine pairwise masks, on the worker.
  const pool = new MaskWorkerPool(1);
  try {
    let round = 0;
    await add(
      'quantize into precomputed masks (check, quantize, add)',
      `a site, ${values}`,
      async () => {
        const clients = sharedRound(length, ++round, pool);
        await pool.applyStreams(new Uint32Array(new SharedArrayBuffer(4)), []);
        let quickest = Infinity;
        for (const c of clients) {
          const t = performance.now();
          await c.maskWeightedUpdateOn(pool, update, 0.5);
          quickest = Math.min(quickest, performance.now() - t);
          c.destroy();
        }
        return quickest;
      },
    );
    const streams = Array.from({ length: SITES }, (_, i): MaskStream => ({
      key: nacl.randomBytes(32),
      sign: i % 2 ? 1 : -1,
    }));
    await add(
      `mask expansion on a worker (self + ${SITES - 1} pairwise)`,
      `a site, ${values}`,
      () => pool.applyStreams(new Uint32Array(new SharedArrayBuffer(4 * (length + 1))), streams),
    );
  } finally {
    await pool.close();
  }

  const keys = 200;
  // The DER route the backend no longer takes, for comparison with its JWK (raw key) import.
  const PKCS8_X25519 = Buffer.from('302e020100300506032b656e04220420', 'hex');
  await add('X25519 key: import a random secret as PKCS#8 DER', `${keys} keys`, () => {
    for (let i = 0; i < keys; i++) {
      const key = createPrivateKey({
        key: Buffer.concat([PKCS8_X25519, nacl.randomBytes(32)]),
        format: 'der',
        type: 'pkcs8',
      });
      createPublicKey(key);
    }
  });
  await add('X25519 key: import a random secret (x25519, JWK)', `${keys} keys`, () => {
    for (let i = 0; i < keys; i++) nodeBackend.x25519(nacl.randomBytes(32)).destroy();
  });
  await add('X25519 key: generate in OpenSSL', `${keys} keys`, () => {
    for (let i = 0; i < keys; i++) nodeBackend.x25519Generate(false).secret.destroy();
  });
  await add('X25519 key: generate, export the secret', `${keys} keys`, () => {
    for (let i = 0; i < keys; i++) {
      const g = nodeBackend.x25519Generate(true);
      g.secret.destroy();
      g.secretKey!.fill(0);
    }
  });

  const environment = {
    node: process.version,
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cpus: os.cpus().length,
    loadAverage1m: Number(os.loadavg()[0]!.toFixed(2)),
  };
  if (opts.json) {
    process.stdout.write(
      `${JSON.stringify({ benchmark: 'secagg-kernels', parameters: { length, reps }, environment, rows })}\n`,
    );
    return;
  }
  const w = Math.max(...rows.map((r) => r.name.length));
  const lines = [
    `secure-aggregation kernels, one thread, best of ${reps} runs`,
    `node ${environment.node}, ${environment.cpus} x ${environment.cpu}, load ${environment.loadAverage1m}`,
    '',
    `${'what'.padEnd(w)}  ${'per run'.padEnd(24)}${'best ms'.padStart(10)}`,
    ...rows.map(
      (r) => `${r.name.padEnd(w)}  ${r.per.padEnd(24)}${r.bestMs.toFixed(2).padStart(10)}`,
    ),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

await runBenchmark(USAGE, parseOptions, main);
