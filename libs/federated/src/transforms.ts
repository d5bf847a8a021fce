/** What a client-side update transform may know about the round. */
export interface UpdateContext {
  federationId: string;
  runId: string;
  round: number;
  numExamples: number;
}

/**
 * A client-side step applied to a site's update before it leaves the site (Flower's "mods"): clipping,
 * noise and masking are each one transform, applied in order.
 */
export interface UpdateTransform {
  readonly name: string;
  apply(update: Float32Array, ctx: UpdateContext): Float32Array | Promise<Float32Array>;
}

/** Runs the transforms in order; each gets the previous one's output. */
export async function applyTransforms(
  update: Float32Array,
  transforms: readonly UpdateTransform[],
  ctx: UpdateContext,
): Promise<Float32Array> {
  let out = update;
  for (const t of transforms) out = await t.apply(out, ctx);
  return out;
}
