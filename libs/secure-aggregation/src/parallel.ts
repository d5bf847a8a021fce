import { Worker } from 'node:worker_threads';
import { SecAggError } from './errors';
import { CHUNK_ELEMENTS, type MaskStream } from './prg';
import { simdModule } from './simd';

/**
 * Mask expansion on worker threads, split by vector range: every worker applies every stream to its
 * own slice of the vector (AES-CTR positioned at the slice's first element), so the work and the
 * result are independent of the number of workers. The worker is a small CommonJS script run with
 * `eval`, so it needs no TypeScript loader and survives bundling; it repeats the stream layout of
 * prg.ts (counter block = element / 4, little-endian uint32 elements), and the tests check that the
 * two agree bit for bit.
 */
const WORKER_SOURCE = `
'use strict';
const { parentPort } = require('node:worker_threads');
const { createCipheriv } = require('node:crypto');
const CHUNK = ${CHUNK_ELEMENTS};
const ZERO = Buffer.alloc(CHUNK * 4);
// One kernel instance per worker, made from the module sent with the first task and kept (its memory
// zeroed after each task): fresh memory every task would cost a page fault per 4 KiB.
let instance = null;
parentPort.on('message', (task) => {
  try {
    const { module, simd, acc, base, start, end, keys, signs } = task;
    if (module) instance = new WebAssembly.Instance(module, {});
    const length = end - start;
    const view = new Int32Array(acc, base + start * 4, length);
    let kernels = null;
    let mem = null;
    if (simd && instance) {
      kernels = instance.exports;
      const need = CHUNK * 4 + Math.ceil(length / 4) * 16;
      const have = kernels.mem.buffer.byteLength;
      if (need > have) kernels.mem.grow(Math.ceil((need - have) / 65536));
      mem = kernels.mem;
      new Int32Array(mem.buffer, CHUNK * 4, length).set(view);
    }
    const keyBytes = new Uint8Array(keys);
    const signBytes = new Int8Array(signs);
    const iv = Buffer.alloc(16);
    const block = Math.floor(start / 4);
    iv.writeUInt32BE(Math.floor(block / 2 ** 32), 8);
    iv.writeUInt32BE(block >>> 0, 12);
    const skip = (start % 4) * 4;
    // Chunk-major, as MaskAccumulator.addStreams: each chunk of the slice stays in cache while every
    // stream is applied to it.
    const ciphers = [];
    for (let j = 0; j < signBytes.length; j++) {
      const cipher = createCipheriv('aes-256-ctr', keyBytes.subarray(j * 32, j * 32 + 32), iv);
      if (skip > 0) cipher.update(ZERO.subarray(0, skip)).fill(0);
      ciphers.push(cipher);
    }
    const scratch = kernels ? new Uint8Array(mem.buffer, 0, CHUNK * 4) : null;
    for (let at = 0; at < length; at += CHUNK) {
      const count = Math.min(CHUNK, length - at);
      const zero = count === CHUNK ? ZERO : ZERO.subarray(0, count * 4);
      const whole = count & ~3;
      const dst = CHUNK * 4 + at * 4;
      for (let j = 0; j < ciphers.length; j++) {
        const sign = signBytes[j];
        const ks = ciphers[j].update(zero);
        if (kernels) {
          scratch.set(ks);
          if (whole > 0) (sign === 1 ? kernels.add : kernels.sub)(dst, 0, whole * 4);
          if (whole < count) {
            const a = new Int32Array(mem.buffer, dst, count);
            const k = new Int32Array(mem.buffer, 0, count);
            for (let i = whole; i < count; i++) a[i] = sign === 1 ? (a[i] + k[i]) | 0 : (a[i] - k[i]) | 0;
          }
        } else {
          const k = new Int32Array(ks.buffer, ks.byteOffset, count);
          if (sign === 1) for (let i = 0; i < count; i++) view[at + i] = (view[at + i] + k[i]) | 0;
          else for (let i = 0; i < count; i++) view[at + i] = (view[at + i] - k[i]) | 0;
        }
        ks.fill(0);
      }
    }
    if (kernels) {
      view.set(new Int32Array(mem.buffer, CHUNK * 4, length));
      new Uint8Array(mem.buffer, 0, CHUNK * 4 + length * 4).fill(0);
    }
    parentPort.postMessage({ ok: true });
  } catch (e) {
    parentPort.postMessage({ ok: false, error: String(e && e.stack || e) });
  }
});
`;

interface WorkerReply {
  ok: boolean;
  error?: string;
}

/**
 * A pool of worker threads that apply mask streams to a vector in parallel, split by vector range.
 * Reuse one pool across rounds; close() it when done.
 *
 * @example
 * const pool = new MaskWorkerPool(2);
 * const sum = await server.finishParallel(pool);
 * await pool.close();
 */
export class MaskWorkerPool {
  readonly size: number;
  private workers: Worker[];
  /** Whether worker w has been sent the SIMD module (it keeps one kernel instance from it). */
  private readonly hasModule: boolean[] = [];
  /** The end of the jobs accepted so far (applyStreams runs them one after another). */
  private queue: Promise<void> = Promise.resolve();

  constructor(size: number) {
    if (!Number.isSafeInteger(size) || size < 1 || size > 256) {
      throw new SecAggError('BAD_INPUT', 'worker count must be an integer in [1, 256]');
    }
    this.size = size;
    this.workers = Array.from({ length: size }, () => {
      const w = new Worker(WORKER_SOURCE, { eval: true });
      w.unref();
      return w;
    });
  }

  /**
   * Applies `acc[i] += sign * PRG_key[i]` for every job, in place, with the work split by vector
   * range over the workers. Same result as MaskAccumulator.addStream for each job. An `acc` backed by
   * a SharedArrayBuffer is worked on where it is; any other is copied to shared memory and back.
   */
  async applyStreams(acc: Uint32Array, jobs: readonly MaskStream[]): Promise<void> {
    // One job at a time: each worker answers its tasks in order, and a reply names no task.
    const run = this.queue.then(() => this.applyNow(acc, jobs));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async applyNow(acc: Uint32Array, jobs: readonly MaskStream[]): Promise<void> {
    if (this.workers.length === 0) throw new SecAggError('WRONG_STATE', 'the pool is closed');
    if (!(acc instanceof Uint32Array))
      throw new SecAggError('BAD_INPUT', 'acc must be a Uint32Array');
    const inPlace = acc.buffer instanceof SharedArrayBuffer;
    const shared = inPlace ? acc.buffer : new SharedArrayBuffer(acc.byteLength);
    const base = inPlace ? acc.byteOffset : 0;
    const sharedView = inPlace ? acc : new Uint32Array(shared);
    if (!inPlace) sharedView.set(acc);
    const keys = new SharedArrayBuffer(jobs.length * 32);
    const keyView = new Uint8Array(keys);
    const signs = new SharedArrayBuffer(jobs.length);
    const signView = new Int8Array(signs);
    jobs.forEach((job, j) => {
      if (!(job.key instanceof Uint8Array) || job.key.length !== 32) {
        throw new SecAggError('BAD_INPUT', 'mask stream keys must be 32 bytes');
      }
      if (job.sign !== 1 && job.sign !== -1)
        throw new SecAggError('BAD_INPUT', 'sign must be 1 or -1');
      keyView.set(job.key, j * 32);
      signView[j] = job.sign;
    });
    const module = simdModule();
    // Ranges aligned to AES blocks (4 elements) so no worker starts mid-block.
    const per = Math.ceil(acc.length / this.size / 4) * 4;
    const tasks: Promise<void>[] = [];
    try {
      for (let w = 0; w < this.size; w++) {
        const start = w * per;
        const end = Math.min(acc.length, start + per);
        if (start >= end) break;
        const worker = this.workers[w] as Worker;
        tasks.push(
          new Promise<void>((resolve, reject) => {
            const onMessage = (reply: WorkerReply): void => {
              worker.off('error', onError);
              if (reply.ok) resolve();
              else reject(new Error(`mask worker failed: ${reply.error ?? 'unknown error'}`));
            };
            const onError = (err: Error): void => {
              worker.off('message', onMessage);
              reject(err);
            };
            worker.once('message', onMessage);
            worker.once('error', onError);
            worker.ref();
            // The module goes to each worker once (a structured clone is a new Module every time).
            const first = module !== null && !this.hasModule[w];
            this.hasModule[w] = module !== null;
            worker.postMessage({
              module: first ? module : null,
              simd: module !== null,
              acc: shared,
              base,
              start,
              end,
              keys,
              signs,
            });
          }).finally(() => worker.unref()),
        );
      }
      await Promise.all(tasks);
      if (!inPlace) acc.set(sharedView);
    } finally {
      keyView.fill(0);
      if (!inPlace) sharedView.fill(0);
    }
  }

  /** Stops the workers. */
  async close(): Promise<void> {
    const workers = this.workers;
    this.workers = [];
    await Promise.all(workers.map((w) => w.terminate()));
  }
}
