/**
 * What the pages of one federation share: its sites, runs, rounds and schedules, loaded over REST and
 * kept current by the server-sent event stream. Tabs subscribe and redraw their live parts.
 */
import { ApiError, type Api } from './api';
import type { Federation, LiveRound, Round, Run, Schedule, Site } from './types';

export type Loadable<T> =
  | { state: 'loading' }
  | { state: 'ok'; data: T }
  | { state: 'error'; message: string; status: number };

export type LiveStatus = 'connecting' | 'live' | 'reconnecting';

type Key = 'sites' | 'rounds' | 'runs' | 'schedules';

export class FederationStore {
  sites: Loadable<Site[]> = { state: 'loading' };
  rounds: Loadable<Round[]> = { state: 'loading' };
  runs: Loadable<Run[]> = { state: 'loading' };
  schedules: Loadable<Schedule[]> = { state: 'loading' };
  live: LiveRound | null = null;
  liveStatus: LiveStatus = 'connecting';
  /** Connected site ids as the live stream last reported them (null until it has). */
  connected: Set<string> | null = null;
  private readonly listeners = new Set<() => void>();
  private source: EventSource | null = null;
  private pending = new Set<Key>();
  private timer: ReturnType<typeof setTimeout> | null = null;
  private lastRoundKey = '';

  constructor(
    readonly api: Api,
    readonly fed: Federation,
  ) {}

  subscribe(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private changed(): void {
    for (const fn of [...this.listeners]) fn();
  }

  /** Loads everything and opens the live stream. */
  start(): void {
    void this.refresh(['sites', 'rounds', 'runs', 'schedules']);
    this.openStream();
  }

  close(): void {
    this.source?.close();
    this.source = null;
    if (this.timer) clearTimeout(this.timer);
    this.listeners.clear();
  }

  async refresh(keys: Key[]): Promise<void> {
    const base = `/api/v1/federations/${this.fed.id}`;
    await Promise.all(
      keys.map(async (key) => {
        try {
          if (key === 'rounds') {
            const r = await this.api.get<{ rounds: Round[]; live: LiveRound | null }>(
              `${base}/rounds`,
            );
            this.rounds = { state: 'ok', data: r.rounds };
            if (r.live && this.live?.number !== r.live.number) this.live = r.live;
            // The stream may have missed the end of a round; the list is the truth.
            else if (!r.live && this.live && !isEnded(this.live.state)) this.live = null;
          } else {
            const data = await this.api.get<never>(`${base}/${key}`);
            this[key] = { state: 'ok', data } as never;
          }
        } catch (e) {
          this[key] = {
            state: 'error',
            message: (e as Error).message,
            status: e instanceof ApiError ? e.status : 0,
          };
        }
      }),
    );
    this.changed();
  }

  /** Coalesces refreshes that events ask for in quick succession. */
  refreshSoon(...keys: Key[]): void {
    for (const k of keys) this.pending.add(k);
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      const k = [...this.pending];
      this.pending.clear();
      void this.refresh(k);
    }, 150);
  }

  private openStream(): void {
    if (typeof EventSource === 'undefined') return;
    const url = `/api/v1/federations/${this.fed.id}/events?token=${encodeURIComponent(this.api.token)}`;
    const source = new EventSource(url);
    this.source = source;
    source.addEventListener('open', () => {
      this.liveStatus = 'live';
      this.changed();
    });
    source.addEventListener('error', () => {
      this.liveStatus = 'reconnecting';
      this.changed();
    });
    source.addEventListener('round', (ev) => {
      const round = JSON.parse((ev as MessageEvent<string>).data) as LiveRound | null;
      this.live = round;
      const key = round ? `${round.number}:${round.state ?? ''}` : '';
      if (key !== this.lastRoundKey) {
        this.lastRoundKey = key;
        this.refreshSoon('rounds', 'runs');
      }
      this.changed();
    });
    source.addEventListener('sites', (ev) => {
      const e = JSON.parse((ev as MessageEvent<string>).data) as {
        siteId: string;
        connectedSiteIds: string[];
      };
      this.connected = new Set(e.connectedSiteIds);
      const known = this.sites.state === 'ok' ? this.sites.data : [];
      if (e.siteId && !known.some((s) => s.id === e.siteId)) this.refreshSoon('sites');
      this.changed();
    });
    source.addEventListener('run', () => this.refreshSoon('runs', 'rounds', 'schedules'));
  }

  /** Whether a site is connected: the live stream's word when it has spoken, else the site list's. */
  isConnected(site: Site): boolean {
    return this.connected ? this.connected.has(site.id) : site.connected;
  }
}

/** Whether a round state is final. */
export function isEnded(state: string | undefined): boolean {
  return state === 'committed' || state === 'aborted';
}
