import fc from 'fast-check';
import nacl from 'tweetnacl';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { MaskWorkerPool } from './parallel';
import { MaskAccumulator, type MaskSign } from './prg';
import { resetSimdForTests } from './simd';
import { simulateUntilFinish } from './simulate';

const pools: MaskWorkerPool[] = [];
const pool = (n: number): MaskWorkerPool => {
  const p = new MaskWorkerPool(n);
  pools.push(p);
  return p;
};

describe('MaskWorkerPool', () => {
  afterEach(() => {
    delete process.env['CONFIDE_SECAGG_NO_SIMD'];
    resetSimdForTests();
  });
  afterAll(async () => {
    await Promise.all(pools.map((p) => p.close()));
  });

  it('applies mask streams exactly as MaskAccumulator does, for any number of workers', async () => {
    const pools3 = [pool(1), pool(2), pool(3)];
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 9000 }),
        fc.array(fc.constantFrom<MaskSign>(1, -1), { minLength: 1, maxLength: 5 }),
        fc.integer({ min: 0, max: 2 }),
        fc.option(fc.integer({ min: 0, max: 5 })),
        async (length, signs, w, sharedAt) => {
          const jobs = signs.map((sign) => ({ key: nacl.randomBytes(32), sign }));
          const x = new Uint32Array(nacl.randomBytes(4 * length).buffer);
          const acc = new MaskAccumulator(length);
          acc.addVector(x);
          for (const j of jobs) acc.addStream(j.key, j.sign);
          // Ordinary memory (copied to shared memory and back), or a view into a SharedArrayBuffer
          // at an offset (masked where it is; the elements around it are left alone).
          const memory =
            sharedAt === null
              ? new Uint32Array(length)
              : new Uint32Array(new SharedArrayBuffer(4 * (length + 10))).fill(7);
          const parallel = memory.subarray(sharedAt ?? 0, (sharedAt ?? 0) + length);
          parallel.set(x);
          await (pools3[w] as MaskWorkerPool).applyStreams(parallel, jobs);
          expect(Array.from(parallel)).toEqual(Array.from(acc.read()));
          if (sharedAt !== null) {
            expect(memory.subarray(0, sharedAt).every((v) => v === 7)).toBe(true);
            expect(memory.subarray(sharedAt + length).every((v) => v === 7)).toBe(true);
          }
        },
      ),
      { numRuns: 10 },
    );
  });

  it('runs jobs submitted at once one after another, each right, on reused worker memory', async () => {
    const p = pool(2);
    const cases = [40000, 7, 20000, 40001, 3].map((length) => {
      const jobs = [1, -1, 1].map((sign) => ({
        key: nacl.randomBytes(32),
        sign: sign as MaskSign,
      }));
      const x = new Uint32Array(nacl.randomBytes(4 * length).buffer);
      const acc = new MaskAccumulator(length);
      acc.addVector(x);
      for (const j of jobs) acc.addStream(j.key, j.sign);
      return { jobs, x, want: acc.read() };
    });
    const outs = cases.map((c) => Uint32Array.from(c.x));
    await Promise.all(cases.map((c, i) => p.applyStreams(outs[i] as Uint32Array, c.jobs)));
    cases.forEach((c, i) => expect(outs[i]).toEqual(c.want));
  });

  it('gives the same result without SIMD', async () => {
    process.env['CONFIDE_SECAGG_NO_SIMD'] = '1';
    resetSimdForTests();
    const jobs = [1, -1, 1].map((sign) => ({ key: nacl.randomBytes(32), sign: sign as MaskSign }));
    const acc = new MaskAccumulator(1001, { simd: false });
    for (const j of jobs) acc.addStream(j.key, j.sign);
    const out = new Uint32Array(1001);
    await pool(2).applyStreams(out, jobs);
    expect(out).toEqual(acc.read());
  });

  it('lets the aggregator finish a round in parallel with the same sum', async () => {
    const inputs = Array.from(
      { length: 6 },
      () => new Uint32Array(nacl.randomBytes(4 * 50).buffer),
    );
    const params = {
      threshold: 3,
      graph: 'complete' as const,
      threatModel: 'semi-honest' as const,
      clip: 1,
      scale: 1024,
      maxSites: 16,
    };
    const { server, expected } = simulateUntilFinish({ params, inputs, dropBeforeMasking: [1, 4] });
    expect(server.state).toBe('unmasking');
    // 4 survivors' self masks + 2 dropped sites x 4 surviving neighbours' pairwise masks.
    expect(server.maskStreamCount()).toBe(4 + 2 * 4);
    expect(await server.finishParallel(pool(2))).toEqual(expected);
    expect(server.state).toBe('finished');
  });

  it('refuses bad arguments and a closed pool', async () => {
    expect(() => new MaskWorkerPool(0)).toThrow(/worker count/);
    const p = new MaskWorkerPool(1);
    await expect(
      p.applyStreams(new Uint32Array(4), [{ key: new Uint8Array(31), sign: 1 }]),
    ).rejects.toThrow(/32 bytes/);
    await p.close();
    await expect(p.applyStreams(new Uint32Array(4), [])).rejects.toThrow(/closed/);
  });
});
