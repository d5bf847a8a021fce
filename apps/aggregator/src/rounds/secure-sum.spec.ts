import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { toBase64 } from '@confide/secure-aggregation';
import { Signal, waitFor } from '../common/signal';
import { SecureSum, type SumPort } from './secure-sum';

/** A 3-site evaluation sum; its sites never answer, so only the port decides how waits end. */
function silentSum(): SecureSum {
  return new SecureSum(
    'evaluation',
    'run-1',
    1,
    {
      params: {
        threshold: 2,
        graph: 'complete',
        threatModel: 'semi-honest',
        clip: 1,
        scale: 2 ** 16,
        maxSites: 3,
      },
      roster: ['a', 'b', 'c'].map((siteId) => ({
        siteId,
        publicKey: toBase64(new Uint8Array(randomBytes(32))),
      })),
      weightNormalizer: 1,
      vectorLength: 4,
    },
    'model-hash',
  );
}

/** A port over a real Signal and clock; `stopped` plays a run stopped by an administrator. */
function port(opts: { stopped?: boolean; now?: () => number } = {}): SumPort & { waits: number } {
  const signal = new Signal();
  const now = opts.now ?? Date.now;
  const p = {
    waits: 0,
    send: () => undefined,
    sendEach: () => undefined,
    until: (ready: () => boolean, deadline: number) => {
      // A wait loop that never yields to timers would wedge the process: fail loudly instead.
      if (++p.waits > 100) throw new Error('the sum keeps waiting on a stopped run');
      return waitFor(signal, ready, deadline, now, () => opts.stopped === true);
    },
    reachable: () => true,
    unmask: () => Promise.reject(new Error('nothing to unmask')),
    changed: () => signal.notify(),
  };
  return p;
}

describe('SecureSum waits', () => {
  it('gives up at once, without spinning, when the run it belongs to is stopped', async () => {
    // The clock stands still: only the stop can end the waits.
    const p = port({ stopped: true, now: () => 0 });
    const result = await silentSum().run(p, 60_000);
    expect(result).toMatchObject({ abort: expect.stringMatching(/evaluation sum/) });
    expect(p.waits).toBeLessThan(10);
  });

  it('ends its waits with the reason when cancelled, long before its deadline', async () => {
    const sum = silentSum();
    const started = Date.now();
    const running = sum.run(port(), started + 60_000);
    setTimeout(() => sum.cancel('the round ended before its evaluation'), 50);
    const result = await running;
    expect(result).toEqual({
      abort: 'the evaluation sum failed: the round ended before its evaluation',
    });
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('follows a deadline moved while it waits', async () => {
    const sum = silentSum();
    const started = Date.now();
    const running = sum.run(port(), started + 60_000);
    sum.deadline = started + 100;
    const result = await running;
    // No site answered by the moved deadline: all are dropped and the sum cannot be formed.
    expect(result).toMatchObject({ abort: expect.stringMatching(/evaluation sum/) });
    expect(sum.states().every((s) => s.state === 'dropped')).toBe(true);
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});
