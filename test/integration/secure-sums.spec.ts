import { describe, expect, it } from 'vitest';
import { decodeFrame, generateIdentity } from '@confide/protocol';
import {
  FIXED_POINT_CLIP,
  FIXED_POINT_LIMBS,
  FIXED_POINT_SCALE,
} from '@confide/secure-aggregation';
import { SecureSum, type SumPort } from '../../apps/aggregator/src/rounds/secure-sum';
import { Signal, waitFor } from '../../apps/aggregator/src/common/signal';
import { SiteSum } from '@confide/site-runtime';

/**
 * The aggregator's and the sites' halves of an evaluation sum, wired together in memory (the
 * transport is not what these cases are about): real keys, real masks, real Shamir shares.
 */
function federation(sites: Array<{ name: string; minSurvivors: number; silent?: boolean }>) {
  const ids = sites.map((s) => ({ ...s, identity: generateIdentity() }));
  const values = 2;
  const info = {
    params: {
      threshold: 2,
      graph: 'complete',
      threatModel: 'semi-honest',
      clip: FIXED_POINT_CLIP,
      scale: FIXED_POINT_SCALE,
      maxSites: sites.length,
    },
    roster: ids.map((s) => ({ siteId: s.name, publicKey: s.identity.publicKey })),
    weightNormalizer: 1,
    vectorLength: values * FIXED_POINT_LIMBS,
  };
  const sum = new SecureSum('evaluation', 'run-1', 1, info, 'evaluation/run-1/1');
  const signal = new Signal();
  const refusals: string[] = [];
  /** Sites that left (their connection and reconnect grace are gone). */
  const gone = new Set<string>();
  const deliver = (task: () => Promise<void>): void => {
    setImmediate(() => void task().finally(() => signal.notify()));
  };
  const parts = new Map<string, SiteSum>();
  for (const s of ids) {
    parts.set(
      s.name,
      new SiteSum(
        {
          kind: 'evaluation',
          siteId: s.name,
          identitySecretKey: s.identity.secretKey,
          info,
          runId: 'run-1',
          round: 1,
          modelHash: 'evaluation/run-1/1',
          minSurvivors: s.minSurvivors,
          sendJson: (m) => deliver(() => sum.handle(s.name, m as never, null)),
          sendBinary: (frame) => {
            // A silent site agrees keys, then leaves instead of sending its masked input.
            if (s.silent) {
              gone.add(s.name);
              signal.notify();
              return;
            }
            const { header, vector } = decodeFrame(frame, info.vectorLength);
            deliver(() => sum.handle(s.name, header as never, vector));
          },
          release: () => Promise.resolve(undefined),
          refuse: (step, e) => {
            refusals.push(`${s.name} at ${step}: ${(e as Error).message}`);
            // What the site's round.decline does at the aggregator.
            try {
              sum.decline(s.name, (e as Error).message);
            } catch (d) {
              refusals.push(`the aggregator refused the decline: ${(d as Error).message}`);
            }
            signal.notify();
          },
          log: () => undefined,
        },
        Float64Array.from([1, 0.5]),
      ),
    );
  }
  const port: SumPort = {
    send: (siteId, message) => deliver(() => parts.get(siteId)!.step(message as never)),
    sendEach: (entries) => {
      for (const [siteId, message] of entries)
        deliver(() => parts.get(siteId)!.step(message as never));
    },
    until: (ready, deadline) => waitFor(signal, ready, deadline),
    reachable: (siteId) => !gone.has(siteId),
    unmask: (server) => Promise.resolve(server.finish()),
    changed: () => signal.notify(),
  };
  return { sum, port, parts, refusals };
}

describe('a statistics or evaluation secure sum, site and aggregator halves together', () => {
  it('sums the inputs of the sites that sent one', async () => {
    const { sum, port, parts } = federation([
      { name: 'a', minSurvivors: 2 },
      { name: 'b', minSurvivors: 2 },
      { name: 'c', minSurvivors: 2 },
    ]);
    for (const p of parts.values()) p.start();
    const result = await sum.run(port, Date.now() + 20_000);
    expect(result).toMatchObject({ contributors: ['a', 'b', 'c'] });
    if (!('values' in result)) throw new Error(result.abort);
    expect([...result.values].map((v) => Math.round(v * 1e4) / 1e4)).toEqual([3, 1.5]);
  });

  it('stops waiting for a site that refuses to unmask once its input is in, instead of waiting out the deadline', async () => {
    // d drops out before its masked input: three inputs remain, fewer than a's policy allows.
    const { sum, port, parts, refusals } = federation([
      { name: 'a', minSurvivors: 4 },
      { name: 'b', minSurvivors: 2 },
      { name: 'c', minSurvivors: 2 },
      { name: 'd', minSurvivors: 2, silent: true },
    ]);
    for (const p of parts.values()) p.start();
    const started = Date.now();
    const result = await sum.run(port, started + 20_000);
    expect(refusals).toEqual([expect.stringMatching(/^a at secagg\.unmask: /)]);
    // a's input is in the sum (the others' shares rebuild its mask); nobody waited for a.
    expect(result).toMatchObject({ contributors: ['a', 'b', 'c'] });
    expect(Date.now() - started).toBeLessThan(10_000);
  }, 30_000);
});
