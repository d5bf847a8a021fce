import {
  addGaussianNoise,
  clipL2,
  cryptoRandomSource,
  distributedNoiseShare,
  sampleDiscreteGaussian,
} from '@confide/differential-privacy';
import { applyTransforms, type UpdateTransform } from '@confide/federated';
import { assertFinite } from '@confide/protocol';
import { quantizeWeighted, type SecAggParams } from '@confide/secure-aggregation';
import type { Mod, ModContext, SiteUpdateDraft, UpdatePrivacy } from './mod';

/** Clips the update to L2 norm `clipNorm` (DP-FedAvg's sensitivity bound). */
export function clip(clipNorm: number): Mod {
  return (d) => ({ ...d, update: clipL2(d.update, clipNorm).clipped });
}

/**
 * Poisson self-sampling: the site's own CSPRNG coin keeps the update with probability `rate`; when
 * it says no the update becomes zeros (its noise is still added), indistinguishable from taking part,
 * so the amplification the receipt accounts is earned.
 */
export function selfSample(rate: number): Mod {
  return (d, ctx) => {
    if (!(rate < 1)) return d;
    const word = new Uint32Array(1);
    (ctx.random ?? cryptoRandomSource).fill(word);
    if (word[0]! / 2 ** 32 >= rate) d.update.fill(0);
    return d;
  };
}

/** Adds continuous Gaussian noise of standard deviation `sigma` from the CSPRNG. */
export function gaussianNoise(sigma: number): Mod {
  return (d, ctx) => ({ ...d, update: addGaussianNoise(d.update, sigma, ctx.random) });
}

/** The site's own update transforms (libs/federated), in order. */
export function transforms(list: readonly UpdateTransform[]): Mod {
  return async (d) => ({
    ...d,
    update: await applyTransforms(d.update, list, {
      federationId: d.federationId,
      runId: d.runId,
      round: d.round,
      numExamples: d.numExamples,
    }),
  });
}

/** Refuses an update with NaN or Infinity: nothing non-finite leaves the site. */
export const assertFiniteUpdate: Mod = (d) => {
  assertFinite(d.update, 'update');
  return d;
};

/**
 * Refuses an update whose length is not the dimension the receipt accounts noise over (the receipt
 * would charge noise on other coordinates than the ones it is added to).
 */
export const checkNoisedDimension: Mod = (d) => {
  const dim = d.mechanism?.dimension;
  if (dim !== undefined && dim !== d.update.length) {
    throw new Error(
      `the round accounts ${dim} noised coordinates, the update has ${d.update.length}`,
    );
  }
  return d;
};

/** Records durably that the update goes into a secure sum without DP (never into a second one). */
export function recordContribution(key: string): Mod {
  return async (d, ctx) => {
    await port(ctx, 'contributions').record(key);
    return d;
  };
}

/** Signs the release's receipt and records it in the site's ledger before the update leaves. */
export const receipt: Mod = async (d, ctx) => {
  if (!d.mechanism) return d;
  const entry = await port(ctx, 'receipts').sign({ runId: d.runId, round: d.round }, d.mechanism);
  return { ...d, receipt: entry };
};

/** Quantizes the update times its weight into the integer domain (weight appended). */
export const quantize: Mod = (d) => ({
  ...d,
  quantized: quantizeWeighted(d.update, d.weight, secureParams(d)),
});

/**
 * Distributed discrete Gaussian (Kairouz et al. 2021): this site's share of noise of standard
 * deviation `sigma` (in quantized units) on the sum, added to the quantized update mod 2^32, sized
 * for `threshold` survivors (what the receipt accounts), not for a survivor count the aggregator
 * could inflate.
 */
export function discreteGaussianNoise(a: { sigma: number; threshold: number }): Mod {
  return (d, ctx) => {
    const q = d.quantized;
    if (!q) throw new Error('discrete noise needs the quantized update (run quantize first)');
    const { discreteGaussianSigma2 } = distributedNoiseShare({ sigma: a.sigma, t: a.threshold });
    const noise = sampleDiscreteGaussian(discreteGaussianSigma2, d.update.length, ctx.random);
    for (let i = 0; i < noise.length; i++) q[i] = (q[i]! + noise[i]!) >>> 0;
    return d;
  };
}

/**
 * Masks the update with the round's pairwise and self masks: the quantized input when an earlier mod
 * made one (then wiped: it holds this site's input and noise share), else the float update,
 * quantized and masked in one pass.
 */
export const mask: Mod = async (d, ctx) => {
  const masker = port(ctx, 'masker');
  if (d.quantized) {
    const masked = await masker.maskInput(d.quantized);
    d.quantized.fill(0);
    return { ...d, quantized: undefined, masked };
  }
  return { ...d, masked: await masker.maskWeightedUpdate(d.update, d.weight) };
};

/** What decides a round's update pipeline. */
export interface UpdatePlan {
  privacy: UpdatePrivacy | null;
  /**
   * The round's secure sum (its Shamir threshold: the survivors the noise is sized for; its
   * quantization scale), or null when the update leaves in the clear.
   */
  secure: Pick<SecAggParams, 'threshold' | 'scale'> | null;
  /** The site's own transforms, applied after DP's clip and noise. */
  transforms?: readonly UpdateTransform[];
  /** The key recorded before a secure sum without DP takes the update (see ContributionRecorder). */
  contribution?: string | null;
}

/**
 * A round's standard pipeline, in two parts: `prepare` runs as soon as training ends (clip, coin,
 * continuous noise when no secure sum shares it, transforms, finite check); `release` runs when the
 * update may leave (plain: at once; secure: once the neighbours' key shares are in): contribution
 * record, receipt, then quantize, discrete noise and mask under secure aggregation.
 *
 * Record-level DP adds its noise during training (DP-SGD), so its pipeline only signs the receipt.
 */
export function updatePipeline(plan: UpdatePlan): { prepare: Mod[]; release: Mod[] } {
  const p = plan.privacy;
  const prepare: Mod[] = [];
  if (p?.level === 'site') {
    prepare.push(clip(p.clipNorm), selfSample(p.siteSamplingRate ?? 1));
    // Without a secure sum the aggregator sees this update alone: all of the noise, z*C, goes here.
    if (!plan.secure) prepare.push(gaussianNoise(p.noiseMultiplier * p.clipNorm));
  }
  prepare.push(transforms(plan.transforms ?? []), assertFiniteUpdate);
  if (!plan.secure) return { prepare, release: [receipt] };
  const release: Mod[] = [checkNoisedDimension];
  if (plan.contribution) release.push(recordContribution(plan.contribution));
  release.push(receipt);
  if (p?.level === 'site') {
    const sigma = p.noiseMultiplier * p.clipNorm * plan.secure.scale;
    release.push(quantize, discreteGaussianNoise({ sigma, threshold: plan.secure.threshold }));
  }
  release.push(mask);
  return { prepare, release };
}

function secureParams(d: SiteUpdateDraft): NonNullable<SiteUpdateDraft['secure']> {
  if (!d.secure) throw new Error('quantizing needs the round secure-aggregation parameters');
  return d.secure;
}

function port<K extends 'receipts' | 'masker' | 'contributions'>(
  ctx: ModContext,
  name: K,
): NonNullable<ModContext[K]> {
  const p = ctx[name];
  if (!p) throw new Error(`this pipeline needs the ${name} port in its context`);
  return p;
}
