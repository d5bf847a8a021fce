/**
 * How the runtime sends to the aggregator (a port: a ws socket in the Node site, a browser's
 * WebSocket in a tab): control messages as objects, to which the host adds `v` and `id`; vectors as
 * ready binary frames (encodeFrame of @confide/protocol).
 */
export interface SiteTransport {
  /** Sends one control message (the host adds the protocol version and a message id). */
  sendJson(msg: Record<string, unknown>): void;
  /** Sends one binary frame. */
  sendBinary(frame: Uint8Array): void;
}
