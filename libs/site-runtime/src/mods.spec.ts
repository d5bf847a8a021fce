import { describe, expect, it } from 'vitest';
import { distributedNoiseShare } from '@confide/differential-privacy';
import { generateIdentity } from '@confide/protocol';
import {
  confideAccountant,
  createReceipt,
  GENESIS_HASH,
  siteLevelRelease,
  signReceipt,
  verifyReceipt,
  type MechanismParams,
} from '@confide/privacy-ledger';
import {
  dequantize,
  quantizeWeighted,
  simulateRound,
  type SecAggParams,
} from '@confide/secure-aggregation';
import {
  clip,
  discreteGaussianNoise,
  gaussianNoise,
  quantize,
  receipt,
  runMods,
  selfSample,
  transforms,
  updatePipeline,
  type MaskExecutor,
  type Mod,
  type ReceiptSigner,
  type SiteUpdateDraft,
} from './index';

const norm = (v: ArrayLike<number>): number => {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i]! * v[i]!;
  return Math.sqrt(s);
};

/** Mean and standard deviation of `v` (as signed 32-bit integers when it is a Uint32Array). */
function moments(v: ArrayLike<number>, n = v.length): { mean: number; sd: number } {
  let sum = 0;
  let sq = 0;
  for (let i = 0; i < n; i++) {
    const x = v instanceof Uint32Array ? v[i]! | 0 : v[i]!;
    sum += x;
    sq += x * x;
  }
  const mean = sum / n;
  return { mean, sd: Math.sqrt(sq / n - mean * mean) };
}

const params: SecAggParams = {
  threshold: 2,
  graph: 'complete',
  threatModel: 'semi-honest',
  clip: 1,
  scale: 2 ** 12,
  maxSites: 3,
};

function draft(update: Float32Array, over: Partial<SiteUpdateDraft> = {}): SiteUpdateDraft {
  return {
    federationId: 'fed-1',
    runId: 'run-1',
    round: 1,
    update,
    numExamples: 100,
    weight: 1,
    privacy: null,
    secure: null,
    mechanism: null,
    ...over,
  };
}

/** A receipt signer over a real Ed25519 key and the real accountant (the site's ledger, in memory). */
function signer(): ReceiptSigner & { identity: ReturnType<typeof generateIdentity> } {
  const identity = generateIdentity();
  let seq = 0;
  let prevHash = GENESIS_HASH;
  return {
    identity,
    sign(ref, mechanism: MechanismParams) {
      const body = createReceipt(
        {
          seq: ++seq,
          federationId: 'fed-1',
          siteId: 'site-a',
          siteName: 'Site A',
          round: ref.round,
          mechanism,
          delta: 1e-5,
          epsilonLimit: 100,
          createdAt: new Date(0).toISOString(),
          sitePublicKey: identity.publicKey,
          siteHistory: [],
        },
        confideAccountant,
      );
      const entry = signReceipt(body, prevHash, identity.secretKey);
      prevHash = entry.hash;
      return Promise.resolve(entry);
    },
  };
}

/** A mask executor that quantizes like the real one but leaves the masking to simulateRound. */
function unmaskedExecutor(p: SecAggParams, seen: Uint32Array[]): MaskExecutor {
  return {
    maskInput: (input) => {
      seen.push(input.slice());
      return Promise.resolve(input.slice());
    },
    maskWeightedUpdate: (u, w) => {
      const q = quantizeWeighted(u, w, p);
      seen.push(q);
      return Promise.resolve(q.slice());
    },
  };
}

function randomVector(n: number, scale: number): Float32Array {
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = (Math.random() - 0.5) * scale;
  return v;
}

describe('site mods', () => {
  it('clip bounds the L2 norm of a large update and keeps its direction', async () => {
    const v = randomVector(10_000, 4);
    expect(norm(v)).toBeGreaterThan(50);
    const { draft: out } = await runMods([clip(1.5)], draft(v));
    expect(norm(out.update)).toBeLessThanOrEqual(1.5);
    expect(norm(out.update)).toBeGreaterThan(1.5 * (1 - 1e-5));
    const ratio = out.update[7]! / v[7]!;
    for (const i of [0, 123, 9_999]) expect(out.update[i]! / v[i]!).toBeCloseTo(ratio, 5);
  });

  it('clip leaves an update already inside the norm unchanged', async () => {
    const v = Float32Array.of(0.3, -0.4);
    const { draft: out } = await runMods([clip(1)], draft(v));
    expect([...out.update]).toEqual([...v]);
  });

  it('gaussian noise has the standard deviation asked for', async () => {
    const n = 200_000;
    const sigma = 0.7;
    const { draft: out } = await runMods([gaussianNoise(sigma)], draft(new Float32Array(n)));
    const m = moments(out.update);
    // The sample sd has a standard error of sigma/sqrt(2n) (0.0011 here): 1% is about 6 of them.
    expect(Math.abs(m.sd - sigma)).toBeLessThan(0.01 * sigma);
    expect(Math.abs(m.mean)).toBeLessThan((5 * sigma) / Math.sqrt(n));
  });

  it('the distributed discrete gaussian share has the variance sigma^2 / t, weight untouched', async () => {
    const n = 100_000;
    const sigma = 40;
    const threshold = 4;
    const d = draft(new Float32Array(n), { secure: params, weight: 1 });
    const { draft: out } = await runMods(
      [quantize, discreteGaussianNoise({ sigma, threshold })],
      d,
    );
    const q = out.quantized!;
    expect(q.length).toBe(n + 1);
    expect(q[n]).toBe(params.scale); // the weight coordinate, 1 * scale, carries no noise
    const target = Math.sqrt(distributedNoiseShare({ sigma, t: threshold }).discreteGaussianSigma2);
    expect(target).toBeCloseTo(sigma / Math.sqrt(threshold), 0);
    const m = moments(q, n);
    expect(Math.abs(m.sd - target)).toBeLessThan(0.02 * target);
    expect(Math.abs(m.mean)).toBeLessThan((5 * target) / Math.sqrt(n));
  });

  it('self-sampling keeps an update with the announced probability', async () => {
    let kept = 0;
    const trials = 4_000;
    for (let i = 0; i < trials; i++) {
      const { draft: out } = await runMods([selfSample(0.25)], draft(Float32Array.of(1)));
      if (out.update[0] === 1) kept++;
    }
    // Binomial(4000, 0.25): standard error 0.0068; 0.04 is about 6 of them.
    expect(Math.abs(kept / trials - 0.25)).toBeLessThan(0.04);
    const { draft: always } = await runMods([selfSample(1)], draft(Float32Array.of(1)));
    expect(always.update[0]).toBe(1);
  });

  it('the receipt mod signs a receipt that verifies under the site key', async () => {
    const s = signer();
    const mechanism = siteLevelRelease({
      siteSamplingRate: 1,
      noiseMultiplier: 1.1,
      clipNorm: 1,
      survivorsAssumed: null,
      integerNoise: null,
    });
    const { draft: out } = await runMods([receipt], draft(Float32Array.of(1), { mechanism }), {
      receipts: s,
    });
    expect(out.receipt).toBeDefined();
    expect(verifyReceipt(out.receipt!, s.identity.publicKey)).toBe(true);
    expect(verifyReceipt({ ...out.receipt!, round: 2 }, s.identity.publicKey)).toBe(false);
    // Without DP there is nothing to charge: no receipt.
    const plain = await runMods([receipt], draft(Float32Array.of(1)), { receipts: s });
    expect(plain.draft.receipt).toBeUndefined();
  });

  it('a pipeline stops after the mod that finds the site no longer live', async () => {
    let live = true;
    const ran: string[] = [];
    const step =
      (name: string): Mod =>
      (d) => {
        ran.push(name);
        if (name === 'b') live = false;
        return d;
      };
    const run = await runMods([step('a'), step('b'), step('c')], draft(Float32Array.of(1)), {
      live: () => live,
    });
    expect(ran).toEqual(['a', 'b']);
    expect(run.completed).toBe(false);
  });

  it('refuses an update that a transform made non-finite', async () => {
    const { prepare } = updatePipeline({
      privacy: null,
      secure: null,
      transforms: [{ name: 'broken', apply: (u) => u.map(() => NaN) }],
    });
    await expect(runMods(prepare, draft(Float32Array.of(1, 2)))).rejects.toThrow(/finite|NaN/i);
  });

  it('a custom pipeline composed in a test runs in order', async () => {
    const halve: Mod = (d) => ({ ...d, update: d.update.map((x) => x / 2) });
    const s = signer();
    const mechanism = siteLevelRelease({
      siteSamplingRate: 1,
      noiseMultiplier: 2,
      clipNorm: 1,
      survivorsAssumed: null,
      integerNoise: null,
    });
    const { draft: out, completed } = await runMods(
      [clip(1), halve, transforms([{ name: 'plus1', apply: (u) => u.map((x) => x + 1) }]), receipt],
      draft(Float32Array.of(30, 40), { mechanism }),
      { receipts: s },
    );
    expect(completed).toBe(true);
    // clipped to (0.6, 0.8), halved, plus one
    expect(out.update[0]).toBeCloseTo(1.3, 6);
    expect(out.update[1]).toBeCloseTo(1.4, 6);
    expect(verifyReceipt(out.receipt!)).toBe(true);
  });

  it("secure site-level pipelines' masked inputs sum to the clipped updates plus noise", async () => {
    const sites = 3;
    const n = 20_000;
    const privacy = { level: 'site' as const, noiseMultiplier: 0.5, clipNorm: 1 };
    const seen: Uint32Array[] = [];
    const updates: Float32Array[] = [];
    const s = signer();
    for (let i = 0; i < sites; i++) {
      const { prepare, release } = updatePipeline({ privacy, secure: params, contribution: null });
      const raw = randomVector(n, 0.05);
      const mechanism = siteLevelRelease({
        siteSamplingRate: 1,
        noiseMultiplier: privacy.noiseMultiplier,
        clipNorm: privacy.clipNorm,
        survivorsAssumed: params.threshold,
        integerNoise: { scale: params.scale, dimension: n },
      });
      const d0 = draft(raw, { privacy, secure: params, mechanism });
      const prepared = await runMods(prepare, d0);
      expect(norm(prepared.draft.update)).toBeLessThanOrEqual(1);
      updates.push(prepared.draft.update);
      const released = await runMods(release, prepared.draft, {
        receipts: s,
        masker: unmaskedExecutor(params, seen),
      });
      expect(released.draft.masked!.length).toBe(n + 1);
      expect(verifyReceipt(released.draft.receipt!)).toBe(true);
      // The input holding this site's noise share is wiped once masked.
      expect(released.draft.quantized).toBeUndefined();
    }
    const { sum, expected } = simulateRound({ params, inputs: seen });
    expect([...sum]).toEqual([...expected]);
    const total = dequantize(sum, params);
    expect(total[n]).toBe(sites); // each site's weight, 1
    const residual = new Float64Array(n);
    for (let j = 0; j < n; j++) {
      let clean = 0;
      for (const u of updates) clean += u[j]!;
      residual[j] = total[j]! - clean;
    }
    // Each site adds a share of variance sigma^2 / t: three sites, 3/2 of the noise on the sum.
    const sigma = privacy.noiseMultiplier * privacy.clipNorm;
    const target = sigma * Math.sqrt(sites / params.threshold);
    expect(Math.abs(moments(residual).sd - target)).toBeLessThan(0.03 * target);
  });

  it('secure pipelines without DP mask the weighted update in one pass, after the contribution', async () => {
    const order: string[] = [];
    const { release } = updatePipeline({
      privacy: null,
      secure: params,
      contribution: 'update/r/1',
    });
    const seen: Uint32Array[] = [];
    const inner = unmaskedExecutor(params, seen);
    await runMods(release, draft(Float32Array.of(0.5, -0.25), { secure: params, weight: 0.5 }), {
      contributions: {
        record: (key) => {
          order.push(`record ${key}`);
          return Promise.resolve();
        },
      },
      masker: {
        maskInput: inner.maskInput,
        maskWeightedUpdate: (u, w) => {
          order.push('mask');
          return inner.maskWeightedUpdate(u, w);
        },
      },
    });
    expect(order).toEqual(['record update/r/1', 'mask']);
    expect([...dequantize(seen[0]!, params)]).toEqual([0.25, -0.125, 0.5]);
  });
});
