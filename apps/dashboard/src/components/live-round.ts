/** The current round's stage, pushed by the server, with every selected site's state. */
import { badge, empty, h } from '../dom';
import { isEnded, type FederationStore } from '../store';
import type { LiveRound } from '../types';

const LABELS: Record<string, string> = {
  selecting: 'Selecting sites',
  stats: 'Feature statistics',
  advertising: 'Advertising keys',
  sharing: 'Sharing secrets',
  collecting: 'Collecting updates',
  unmasking: 'Unmasking',
  aggregating: 'Aggregating',
  evaluating: 'Evaluating',
  committed: 'Committed',
};

/** The stages a round of this federation goes through, in order. */
export function roundStages(secureAggregation: boolean, phase?: string): string[] {
  const stages = ['selecting'];
  if (phase === 'stats') stages.push('stats');
  if (secureAggregation || phase === 'advertising' || phase === 'sharing') {
    stages.push('advertising', 'sharing');
  }
  stages.push('collecting');
  if (secureAggregation || phase === 'unmasking') stages.push('unmasking');
  stages.push('evaluating', 'committed');
  return stages;
}

/** Index of the stage a live round is in (stages before it are done). */
export function currentStage(stages: string[], live: Pick<LiveRound, 'phase' | 'state'>): number {
  if (live.state === 'committed') return stages.length;
  const byPhase = stages.indexOf(live.phase);
  if (byPhase >= 0) return byPhase;
  if (live.state === 'evaluated') return stages.indexOf('committed');
  if (live.state === 'aggregated') return stages.indexOf('evaluating');
  if (live.state && stages.includes(live.state)) return stages.indexOf(live.state);
  return 0;
}

const PARTICIPANT_TONES: Record<string, string> = {
  selected: 'pending',
  submitted: 'progress',
  evaluated: 'ok',
  dropped: 'bad',
  declined: 'warn',
  rejected: 'bad',
  skipped: 'warn',
};

export function liveRoundPanel(store: FederationStore): HTMLElement {
  const live = store.live;
  const fed = store.fed;
  const secAgg = Boolean((fed.secureAggregation ?? fed.config.secureAggregation)?.enabled);
  const status = h(
    'span',
    { class: `live-status live-${store.liveStatus}`, title: 'Server-sent events' },
    store.liveStatus === 'live'
      ? 'Live'
      : store.liveStatus === 'connecting'
        ? 'Connecting…'
        : 'Reconnecting…',
  );
  if (!live) {
    return h(
      'section',
      { class: 'card live-round', 'aria-labelledby': 'live-title', 'data-testid': 'live-round' },
      h('header', { class: 'card-header' }, h('h2', { id: 'live-title' }, 'Current round'), status),
      empty(
        'No round is running.',
        'When a round runs, its stage and each site’s state appear here as they happen.',
      ),
    );
  }
  const stages = roundStages(secAgg, live.phase);
  const at = currentStage(stages, live);
  const ended = isEnded(live.state);
  const aborted = live.state === 'aborted';
  return h(
    'section',
    {
      class: 'card live-round',
      'aria-labelledby': 'live-title',
      'data-testid': 'live-round',
      'data-phase': live.phase,
      'data-state': live.state ?? '',
    },
    h(
      'header',
      { class: 'card-header' },
      h('h2', { id: 'live-title' }, `Round ${live.number}`),
      aborted
        ? badge('aborted', 'bad')
        : ended
          ? badge('committed', 'ok')
          : badge(LABELS[live.phase] ?? live.phase, 'progress'),
      status,
    ),
    h(
      'ol',
      { class: `stages${aborted ? ' stages-aborted' : ''}`, 'aria-label': 'Round stages' },
      stages.map((stage, i) =>
        h(
          'li',
          {
            class: i < at ? 'done' : i === at && !ended ? 'current' : 'todo',
            'aria-current': i === at && !ended ? 'step' : undefined,
          },
          h('span', { class: 'dot', 'aria-hidden': 'true' }),
          LABELS[stage] ?? stage,
        ),
      ),
    ),
    live.participants.length
      ? h(
          'table',
          { class: 'table compact', 'aria-label': 'Sites in this round' },
          h(
            'thead',
            null,
            h(
              'tr',
              null,
              h('th', null, 'Site'),
              h('th', null, 'State'),
              h('th', null, 'Connection'),
              h('th', null, 'Detail'),
            ),
          ),
          h(
            'tbody',
            null,
            live.participants.map((p) => {
              const connected = store.connected ? store.connected.has(p.siteId) : null;
              return h(
                'tr',
                { 'data-site': p.name },
                h('td', null, p.name),
                h('td', null, badge(p.status, PARTICIPANT_TONES[p.status] ?? 'neutral')),
                h(
                  'td',
                  null,
                  connected === null
                    ? '—'
                    : h(
                        'span',
                        { class: connected ? 'conn on' : 'conn off' },
                        connected ? 'connected' : 'offline',
                      ),
                ),
                h('td', { class: 'muted' }, p.detail ?? ''),
              );
            }),
          ),
        )
      : h('p', { class: 'muted' }, 'Waiting for enough approved sites to connect…'),
  );
}
