/**
 * @confide/site-runtime: a site's update pipeline as composable **mods** (Flower's Mods). A mod is a
 * function `(draft, ctx) => draft` applied in order by `runMods`; the draft carries the update from
 * training to the wire (floats, then quantized and masked under secure aggregation) with its
 * receipt. What only a host has comes in as ports in the context: the receipt signer (ledger slot,
 * signature, durable local ledger), the mask executor (a worker thread in Node), the contribution
 * record and the CSPRNG. No Node built-ins, sockets or files here: the Node site (apps/client-node)
 * supplies ports over ws and files, and a browser tab could supply its own.
 *
 * `updatePipeline(plan)` gives a round's standard mods: `prepare` (clip, self-sampling coin,
 * Gaussian noise when no secure sum shares it, the site's transforms, finite check) right after
 * training, and `release` (contribution record, receipt, then quantize, distributed discrete
 * Gaussian share and mask under secure aggregation) when the update may leave. First of all, the
 * site's policy check (`Admission`) gates the round before training touches any data, and its
 * `SiteBudget` (over the `LocalLedgerStore` port) vetoes a release past its own epsilon limit.
 * Statistics and evaluation sums (`SiteSum`) send through the `SiteTransport` port.
 *
 * @example
 * import { clip, gaussianNoise, receipt, runMods, type Mod } from '@confide/site-runtime';
 * const logNorm: Mod = (d) => (console.log(Math.hypot(...d.update)), d);
 * const pipeline = [clip(1.0), logNorm, gaussianNoise(1.1 * 1.0), receipt];
 * const { draft, completed } = await runMods(pipeline, draftFromTraining, { receipts: signer });
 */

/** The pipeline: `runMods(mods, draft, ctx)`; the draft, the context and its ports. */
export {
  runMods,
  type ContributionRecorder,
  type MaskExecutor,
  type Mod,
  type ModContext,
  type ModRun,
  type ReceiptSigner,
  type SiteUpdateDraft,
  type UpdatePrivacy,
} from './mod';
/** The standard mods, and a round's pipeline of them: `updatePipeline({ privacy, secure })`. */
export {
  assertFiniteUpdate,
  checkNoisedDimension,
  clip,
  discreteGaussianNoise,
  gaussianNoise,
  mask,
  quantize,
  receipt,
  recordContribution,
  selfSample,
  transforms,
  updatePipeline,
  type UpdatePlan,
} from './update-mods';
/** The site's policy as the runtime enforces it, and its check of what a round offers. */
export {
  DEFAULT_SITE_DELTA,
  DEFAULT_SITE_STATISTICS_SHARE,
  MODEL_KINDS,
  THREAT_RANK,
  type ModelKind,
  type SitePolicy,
} from './policy';
export { checkRound, type PolicyRule, type PolicyViolation, type RoundOffer } from './policy-check';
/** The gate in front of the data: `new Admission({ federationId, policy, tls, delta }).admit(msg, offer)`. */
export { Admission } from './admission';
/** Refusals: `throw new Refused(ErrorCode.POLICY_DP_REQUIRED, why)` declines the round's stage. */
export { assertModelHash, Refused, type Stage } from './refusal';
/** The site's own accounting: its budget over its local ledger (a port), what each release costs. */
export { roundPrefix, SiteBudget, sumKey, type GrantedSlot } from './site-budget';
export { sumMechanism, updateMechanism, withinStatisticsShare } from './site-accounting';
/** Ports for durable storage: the local ledger and the contribution record (files in Node). */
export type { ContributionStore, LocalLedgerStore } from './stores';
/** A site's part in a statistics or evaluation secure sum, over the transport port. */
export { SiteSum, type SiteSumOptions } from './secure-sum';
export type { SiteTransport } from './transport';
