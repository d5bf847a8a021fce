import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { SimulationError } from './errors';
import type {
  PoolReply,
  PoolRequest,
  RunData,
  TestMetrics,
  TrainOutcome,
  TrainTask,
} from './pool-messages';

const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
const WORKER_ENTRY = pathToFileURL(fileURLToPath(new URL('./training-worker.ts', import.meta.url)));

/**
 * The worker's bootstrap, plain CommonJS run with `eval`: it registers tsx's loader with the
 * repository's tsconfig (path aliases), then imports the TypeScript worker. So the workers start the
 * same way under `confide`, the benchmarks and vitest, whatever loader the parent thread runs.
 */
function bootstrapSource(): string {
  const cjs = createRequire(import.meta.url).resolve('tsx/esm/api');
  const esm = cjs.replace(/\.cjs$/, '.mjs');
  if (!existsSync(esm)) throw new Error(`tsx's ESM loader API is not at ${esm}`);
  return `
import(${JSON.stringify(pathToFileURL(esm).href)})
  .then(({ register }) => {
    register({ tsconfig: ${JSON.stringify(`${ROOT}tsconfig.json`)} });
    return import(${JSON.stringify(WORKER_ENTRY.href)});
  })
  .catch((e) => {
    require('node:worker_threads').parentPort.postMessage({
      type: 'failed', id: -1, error: 'the training worker did not start: ' + (e && e.message || e),
    });
  });
`;
}

interface Pending {
  readonly request: PoolRequest & { id: number };
  readonly data: RunData;
  resolve(reply: PoolReply): void;
  reject(error: Error): void;
}

interface Slot {
  readonly worker: Worker;
  /** The run whose data this worker holds. */
  runId: number;
  task: Pending | null;
}

/** One simulation's data, loaded into the pool; tasks name it. */
export interface PoolRun {
  readonly data: RunData;
}

let nextRunId = 1;
let shared: TrainingPool | null = null;

/**
 * A pool of worker threads that train the virtual sites, no more than the machine's cores: each
 * worker loads tfjs once and holds the current run's partitions; a task is one site's local
 * training from the global weights (site, weights, instructions, epochs, batch size, learning rate,
 * shuffle seed) or the evaluation of a model on the test set. Workers start on demand; they keep
 * the process alive only while they have work, so a pool can outlive a run.
 *
 * @example
 * const pool = TrainingPool.shared();
 * const run = pool.load({ spec, sites, test });
 * const { delta, loss, numExamples } = await pool.train(run, { site: 0, weights, ... });
 */
export class TrainingPool {
  private readonly slots: Slot[] = [];
  private readonly queue: Pending[] = [];
  private nextTask = 1;
  private broken: Error | null = null;
  private closed = false;
  /** The tfjs backend the workers run (once one has started). */
  backend: string | null = null;

  constructor(readonly maxWorkers = os.availableParallelism()) {
    if (!Number.isInteger(maxWorkers) || maxWorkers < 1) {
      throw new RangeError(`a pool needs at least one worker, not ${maxWorkers}`);
    }
  }

  /** The process's pool, sized to its cores, created on first use. */
  static shared(): TrainingPool {
    if (!shared || shared.closed || shared.broken) shared = new TrainingPool();
    return shared;
  }

  /** Registers a run's data; workers receive it with their first task of the run. */
  load(data: Omit<RunData, 'runId'>): PoolRun {
    return { data: { ...data, runId: nextRunId++ } };
  }

  /** One site's local training. */
  async train(run: PoolRun, task: TrainTask): Promise<TrainOutcome> {
    const reply = await this.submit(run, (id) => ({
      type: 'train',
      id,
      runId: run.data.runId,
      ...task,
    }));
    if (reply.type !== 'trained') throw new Error(`unexpected ${reply.type} reply to a train task`);
    return reply;
  }

  /** The model's metrics on the run's test set. */
  async evaluate(run: PoolRun, weights: Float32Array): Promise<TestMetrics> {
    const reply = await this.submit(run, (id) => ({
      type: 'evaluate',
      id,
      runId: run.data.runId,
      weights,
    }));
    if (reply.type !== 'evaluated') {
      throw new Error(`unexpected ${reply.type} reply to an evaluate task`);
    }
    return reply.metrics;
  }

  /** Stops every worker; tasks still queued fail. */
  async close(): Promise<void> {
    this.closed = true;
    this.fail(new SimulationError('run', 'the training pool was closed'));
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
    this.slots.length = 0;
  }

  private submit(
    run: PoolRun,
    request: (id: number) => PoolRequest & { id: number },
  ): Promise<PoolReply> {
    if (this.broken) return Promise.reject(this.broken);
    if (this.closed) return Promise.reject(new SimulationError('run', 'the pool is closed'));
    return new Promise((resolve, reject) => {
      this.queue.push({ request: request(this.nextTask++), data: run.data, resolve, reject });
      this.dispatch();
    });
  }

  private dispatch(): void {
    while (this.queue.length > 0) {
      let slot = this.slots.find((s) => s.task === null);
      if (!slot && this.slots.length < this.maxWorkers) slot = this.start();
      if (!slot) return;
      const task = this.queue.shift()!;
      slot.task = task;
      slot.worker.ref();
      if (slot.runId !== task.data.runId) {
        slot.worker.postMessage({ type: 'data', data: task.data } satisfies PoolRequest);
        slot.runId = task.data.runId;
      }
      slot.worker.postMessage(task.request);
    }
  }

  private start(): Slot {
    const worker = new Worker(bootstrapSource(), { eval: true, stdout: true, stderr: true });
    const slot: Slot = { worker, runId: 0, task: null };
    // tfjs writes advice to the console; a simulation's stdout is its report.
    worker.stdout.resume();
    let stderr = '';
    worker.stderr.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString('utf8')).slice(-2000);
    });
    worker.unref();
    worker.on('message', (reply: PoolReply) => {
      if (reply.type === 'ready') {
        this.backend ??= reply.backend;
        return;
      }
      if (reply.type === 'failed' && reply.id === -1) {
        this.fail(new SimulationError('run', reply.error));
        return;
      }
      const task = slot.task;
      if (!task || task.request.id !== reply.id) return;
      slot.task = null;
      worker.unref();
      if (reply.type === 'failed') task.reject(new SimulationError('run', reply.error));
      else task.resolve(reply);
      this.dispatch();
    });
    worker.on('error', (e) =>
      this.fail(new SimulationError('run', `a training worker failed: ${e.message}`)),
    );
    worker.on('exit', (code) => {
      if (this.closed) return;
      const tail = stderr.trim() ? `: ${stderr.trim().split('\n').slice(-3).join(' | ')}` : '';
      this.fail(new SimulationError('run', `a training worker exited (code ${code})${tail}`));
    });
    this.slots.push(slot);
    return slot;
  }

  /** A worker is gone: every task in flight or queued fails, and the pool takes no more. */
  private fail(error: Error): void {
    if (!this.closed) this.broken ??= error;
    for (const slot of this.slots) {
      slot.task?.reject(error);
      slot.task = null;
    }
    for (const task of this.queue.splice(0)) task.reject(error);
    if (!this.closed) {
      this.closed = true;
      for (const s of this.slots) void s.worker.terminate();
    }
  }
}
