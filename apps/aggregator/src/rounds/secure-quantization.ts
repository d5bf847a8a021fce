import { chooseScale } from '@confide/secure-aggregation';

/** Site-level DP settings that shape a secure-aggregation round's quantisation. */
export interface SiteNoise {
  noiseMultiplier: number;
  clipNorm: number;
}

/**
 * The quantisation clip and scale of a secure-aggregation round with `sites` sites, of which
 * `noiseShares` are assumed to add a share of the site-level DP noise (null `siteDp` without it).
 * Site-level noise is added after quantisation, inside the clip's headroom (10 standard deviations of
 * one share). Each site draws its share from a discrete Gaussian of variance (z C scale)^2 /
 * noiseShares, which the sampler supports up to 1e14: the scale is coarsened until the share is
 * drawable (it still resolves far below the noise). The scale only grows as `sites` shrinks, and the
 * distributed discrete Gaussian's bound only shrinks as the scale grows, so a budget projected with
 * the scale for more sites never under-states the round's spend.
 * @example secureQuantization(10, { noiseMultiplier: 1, clipNorm: 1 }, 3, 2) // { clip: 17.07..., scale: 2 ** 25 }
 */
export function secureQuantization(
  quantizationClip: number,
  siteDp: SiteNoise | null,
  sites: number,
  noiseShares: number,
): { clip: number; scale: number } {
  const noiseRoom = siteDp
    ? (10 * siteDp.noiseMultiplier * siteDp.clipNorm) / Math.sqrt(noiseShares)
    : 0;
  const clip = quantizationClip + noiseRoom;
  let scale = chooseScale(clip, sites);
  if (siteDp) {
    while ((siteDp.noiseMultiplier * siteDp.clipNorm * scale) ** 2 / noiseShares > 1e14) {
      scale /= 2;
    }
  }
  return { clip, scale };
}
