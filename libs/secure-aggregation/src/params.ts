import { utf8 } from './bytes';
import { SecAggError } from './errors';
import type { GraphKind, ThreatModel } from './graph';
import { checkHeadroom } from './quantize';
import { MAX_SHARE_X } from './shamir';

/** The secure-aggregation settings of a federation, agreed by all parties of a round. */
export interface SecAggParams {
  /** Shamir threshold t: shares needed to rebuild a site's secret (>= 2). */
  threshold: number;
  /** 'complete' (every site neighbours every other) or 'harary' (degree k, for large federations). */
  graph: GraphKind;
  /** Harary degree (even, >= threshold - 1); absent for the complete graph. */
  k?: number;
  /** 'semi-malicious' adds the signed consistency round before unmasking. */
  threatModel: ThreatModel;
  /** Quantization clip: each coordinate is clipped to [-clip, clip]. */
  clip: number;
  /** Quantization scale: q = round(x * scale). */
  scale: number;
  /** Most sites a round may have; sets the quantization headroom. */
  maxSites: number;
}

/**
 * Checks parameters and returns a normalised frozen copy. Throws BAD_PARAMS when a value is out of
 * range, the Harary degree cannot hold threshold shares, or quantized sums could wrap.
 *
 * @example
 * validateParams({ threshold: 3, graph: 'complete', threatModel: 'semi-honest',
 *                  clip: 1, scale: 2 ** 16, maxSites: 10 });
 */
export function validateParams(params: SecAggParams): Readonly<SecAggParams> {
  if (typeof params !== 'object' || params === null) {
    throw new SecAggError('BAD_PARAMS', 'params must be an object');
  }
  const { threshold, graph, k, threatModel, clip, scale, maxSites } = params;
  if (!Number.isSafeInteger(maxSites) || maxSites < 2 || maxSites > MAX_SHARE_X) {
    throw new SecAggError('BAD_PARAMS', `maxSites must be an integer in [2, ${MAX_SHARE_X}]`);
  }
  if (!Number.isSafeInteger(threshold) || threshold < 2 || threshold > maxSites) {
    throw new SecAggError('BAD_PARAMS', 'threshold must be an integer in [2, maxSites]');
  }
  if (threatModel !== 'semi-honest' && threatModel !== 'semi-malicious') {
    throw new SecAggError('BAD_PARAMS', "threatModel must be 'semi-honest' or 'semi-malicious'");
  }
  if (graph === 'complete') {
    if (k !== undefined) throw new SecAggError('BAD_PARAMS', 'the complete graph takes no k');
  } else if (graph === 'harary') {
    if (k === undefined || !Number.isSafeInteger(k) || k < 2 || k % 2 !== 0) {
      throw new SecAggError('BAD_PARAMS', 'a Harary graph needs an even degree k >= 2');
    }
    if (threshold > k + 1) {
      throw new SecAggError(
        'BAD_PARAMS',
        `threshold ${threshold} exceeds the k + 1 = ${k + 1} holders of each secret`,
      );
    }
  } else {
    throw new SecAggError('BAD_PARAMS', "graph must be 'complete' or 'harary'");
  }
  checkHeadroom({ clip, scale }, maxSites);
  const out: SecAggParams = { threshold, graph, threatModel, clip, scale, maxSites };
  if (k !== undefined) out.k = k;
  return Object.freeze(out);
}

/**
 * The canonical bytes of parameters (JSON with sorted keys), bound into every advertisement and the
 * session id so all parties provably run with the same settings.
 *
 * @example
 * encodeParams(params); // utf8('{"clip":1,"graph":"complete",...}')
 */
export function encodeParams(params: Readonly<SecAggParams>): Uint8Array {
  const p = validateParams(params);
  const entries: [string, unknown][] = [
    ['clip', p.clip],
    ['graph', p.graph],
    ['k', p.k ?? null],
    ['maxSites', p.maxSites],
    ['scale', p.scale],
    ['threatModel', p.threatModel],
    ['threshold', p.threshold],
  ];
  return utf8(JSON.stringify(Object.fromEntries(entries)));
}
