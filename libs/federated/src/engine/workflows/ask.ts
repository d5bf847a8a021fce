import {
  jsonMessage,
  type CollectResult,
  type Grid,
  type Inbound,
  type Verdict,
} from '../../grid/grid';
import type { EngineReply, EngineRequest } from '../messages';

export interface AskOptions {
  readonly sites: readonly string[];
  /** The request, the same for every site or each site's own. */
  readonly request: EngineRequest | ((siteId: string) => EngineRequest);
  readonly accept: (reply: Inbound<EngineReply>) => Verdict;
  readonly deadline: number;
  /**
   * How long a site may be away and still answer: one that reconnects within it gets the request
   * again and continues the stage; 0 (the default) counts a disconnect as no answer at once.
   */
  readonly reconnectGraceMs?: number;
  readonly signal?: AbortSignal;
}

/**
 * One stage's exchange: sends `request` to the sites and collects one answer from each by the
 * deadline. A site that reconnects within its grace while still owing an answer is sent the
 * request again, so it continues the stage rather than dropping out of the round.
 */
export async function ask(
  grid: Grid<EngineReply>,
  options: AskOptions,
): Promise<CollectResult<EngineReply>> {
  const grace = options.reconnectGraceMs ?? 0;
  const answered = new Set<string>();
  const requestFor = (siteId: string): EngineRequest =>
    typeof options.request === 'function' ? options.request(siteId) : options.request;
  const awaited = new Set(options.sites);
  const stop =
    grace > 0
      ? grid.onChange((change) => {
          if (change.connected && awaited.has(change.siteId) && !answered.has(change.siteId)) {
            grid.send(change.siteId, jsonMessage(requestFor(change.siteId)));
          }
        })
      : () => undefined;
  try {
    const answers = grid.collect({
      from: awaited,
      accept: (reply) => {
        const verdict = options.accept(reply);
        if (verdict !== false) answered.add(reply.siteId);
        return verdict;
      },
      until: options.deadline,
      ...(grace > 0 ? { onDisconnect: 'wait' as const, reconnectGraceMs: grace } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    if (typeof options.request === 'function') {
      for (const siteId of options.sites) grid.send(siteId, jsonMessage(requestFor(siteId)));
    } else {
      grid.broadcast(options.sites, jsonMessage(options.request));
    }
    return await answers;
  } finally {
    stop();
  }
}
