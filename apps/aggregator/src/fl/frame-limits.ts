import type { WebSocket } from 'ws';
import { MAX_CONTROL_BYTES } from '@confide/protocol';
import { WIDE_FIXED_POINT_LIMBS } from '@confide/secure-aggregation';
import {
  evaluationLayoutFor,
  evaluationVectorLength,
  parameterCount,
  type ModelSpec,
} from '@confide/ml/spec';

/** Hard cap on one websocket message from a logged-in site, whatever its federation's model. */
export const MAX_WS_PAYLOAD = 512 * 1024 * 1024;

/**
 * Largest message a connection may send before it logs in: a login is under 2 KiB, and nobody
 * without an enrolled key gets to make the aggregator buffer more.
 */
export const PRE_LOGIN_MAX_FRAME = 64 * 1024;

/** A binary frame's prefix (magic, header length) and the padding of its header to 8 bytes. */
const FRAME_OVERHEAD = 16;

/**
 * The most elements a site of a federation with `spec` sends in one frame: its update (the
 * parameters, plus the weight coordinate under secure aggregation), or a secure sum of its feature
 * statistics (count, Σx, Σx² per input feature) or of its evaluation counts, whose values travel as
 * fixed-point limbs (at most WIDE_FIXED_POINT_LIMBS a value), whichever is longest. Every vector a
 * site may send must fit here: a new kind of site vector, or a wider encoding, belongs here too.
 */
export function largestSiteVector(spec: ModelSpec): number {
  return Math.max(
    parameterCount(spec) + 1,
    WIDE_FIXED_POINT_LIMBS * (1 + 2 * spec.inputDim),
    WIDE_FIXED_POINT_LIMBS * evaluationVectorLength(evaluationLayoutFor(spec)),
  );
}

/**
 * The largest message a logged-in site of a federation with `spec` may send, in bytes: its largest
 * vector plus a frame header of up to MAX_CONTROL_BYTES (so never less than a control message), at
 * most MAX_WS_PAYLOAD.
 */
export function siteMessageLimit(spec: ModelSpec): { bytes: number; elements: number } {
  const elements = Math.min(largestSiteVector(spec), (MAX_WS_PAYLOAD - MAX_CONTROL_BYTES) / 4 - 16);
  return { bytes: FRAME_OVERHEAD + MAX_CONTROL_BYTES + 4 * elements, elements };
}

/** What `ws` keeps of a connection's frame parser: the limit it checks each frame's declared length against. */
interface ReceiverLimit {
  _receiver?: { _maxPayload?: unknown };
}

/**
 * Sets the largest message `ws` accepts on one connection from now on. `ws` takes the limit per
 * server; its frame parser checks each frame's declared length against its own copy before it
 * buffers a byte of the payload (closing with 1009 above it), so raising that copy after a login
 * keeps the pre-login limit for everyone else. Throws when the `ws` version no longer has it, so an
 * upgrade fails the tests instead of silently refusing every large frame.
 */
export function setMessageLimit(ws: WebSocket, bytes: number): void {
  const receiver = (ws as unknown as ReceiverLimit)._receiver;
  if (!receiver || typeof receiver._maxPayload !== 'number') {
    throw new Error(
      'this version of ws has no per-connection payload limit (Receiver._maxPayload); update setMessageLimit',
    );
  }
  receiver._maxPayload = bytes;
}
