import type { RandomSource } from '@confide/differential-privacy';
import type { LedgerEntry, MechanismParams } from '@confide/privacy-ledger';
import type { SecAggParams } from '@confide/secure-aggregation';

/** The DP a round asks of a site's update (the round.train message's `privacy`, as mods need it). */
export interface UpdatePrivacy {
  level: 'record' | 'site';
  noiseMultiplier: number;
  clipNorm: number;
  /** The rate of the site's own coin (site level only); absent or 1: the site always takes part. */
  siteSamplingRate?: number | null;
}

/**
 * A site's update on its way out: what training produced, changed by each mod in turn until it is
 * ready to leave (in floats in a plain round, masked in a secure one) with its receipt.
 */
export interface SiteUpdateDraft {
  readonly federationId: string;
  readonly runId: string;
  readonly round: number;
  /** The update in floats (local weights minus global weights), as the mods so far left it. */
  update: Float32Array;
  /** The record count the site declares (its transforms see it). */
  readonly numExamples: number;
  /** The site's weight in a secure sum: declared records over the public normaliser, or 1. */
  readonly weight: number;
  readonly privacy: UpdatePrivacy | null;
  /** The round's secure-aggregation parameters; null in a plain round. */
  readonly secure: SecAggParams | null;
  /** The release as the site accounts it (its receipt's mechanism); null without DP. */
  readonly mechanism: MechanismParams | null;
  /** The signed receipt, once the receipt mod has recorded it. */
  receipt?: LedgerEntry;
  /** The update in the integer domain (quantized, weight appended) when noise goes in there. */
  quantized?: Uint32Array;
  /** The masked update, the only form of it that leaves under secure aggregation. */
  masked?: Uint32Array;
}

/** Signs a release's receipt and records it durably before the release leaves (a port). */
export interface ReceiptSigner {
  sign(ref: { runId: string; round: number }, mechanism: MechanismParams): Promise<LedgerEntry>;
}

/**
 * Adds this round's secure-aggregation masks (a port: a worker thread in the Node site, the
 * calling thread or a Web Worker in a browser).
 */
export interface MaskExecutor {
  /** Masks an input already in the integer domain (mod 2^32), its weight coordinate included. */
  maskInput(input: Uint32Array): Promise<Uint32Array>;
  /** Quantizes the float update times `weight` (weight appended) and masks it, in one pass. */
  maskWeightedUpdate(update: Float32Array, weight: number): Promise<Uint32Array>;
}

/** Records durably that values are about to go into a secure sum without DP (a port). */
export interface ContributionRecorder {
  record(key: string): Promise<void>;
}

/** What a mod may use besides the draft: the site's ports and randomness. */
export interface ModContext {
  receipts?: ReceiptSigner;
  masker?: MaskExecutor;
  contributions?: ContributionRecorder;
  /** The CSPRNG noise and coins are drawn from; Web Crypto when absent. */
  random?: RandomSource;
  /** False once nothing the pipeline makes may leave any more (the site stopped, the link changed). */
  live?(): boolean;
}

/** One step of a site's update pipeline: takes the draft, returns it changed (or throws to refuse). */
export type Mod = (
  draft: SiteUpdateDraft,
  ctx: ModContext,
) => SiteUpdateDraft | Promise<SiteUpdateDraft>;

/** How a pipeline run ended: every mod ran, or it stopped early because `ctx.live()` said so. */
export interface ModRun {
  draft: SiteUpdateDraft;
  completed: boolean;
}

/**
 * Applies `mods` in order. After each one it asks `ctx.live()`: once nothing may leave, the rest are
 * skipped (a receipt already signed is in the returned draft, for the caller to deliver).
 */
export async function runMods(
  mods: readonly Mod[],
  draft: SiteUpdateDraft,
  ctx: ModContext = {},
): Promise<ModRun> {
  let out = draft;
  for (const mod of mods) {
    out = await mod(out, ctx);
    if (ctx.live && !ctx.live()) return { draft: out, completed: false };
  }
  return { draft: out, completed: true };
}
