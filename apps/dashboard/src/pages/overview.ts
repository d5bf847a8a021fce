import { liveRoundPanel } from '../components/live-round';
import type { Ctx } from '../context';
import { fill, h } from '../dom';
import { duration, metric } from '../format';
import { federationHref } from '../router';
import type { FederationStore } from '../store';
import type { TabView } from './federation';
import { dpOf, modelSummary, secAggOf, strategyText } from './summary';

export function overviewTab(_ctx: Ctx, store: FederationStore): TabView {
  const live = h('div');
  const stats = h('div', { class: 'stat-grid' });
  const fed = store.fed;
  const dp = dpOf(fed);
  const secAgg = secAggOf(fed);
  const settings = h(
    'section',
    { class: 'card' },
    h('h2', null, 'Settings'),
    h(
      'dl',
      { class: 'settings' },
      ...pair(
        'Model',
        `${modelSummary(fed)} (${fed.parameters.toLocaleString('en-US')} parameters)`,
      ),
      ...pair('Strategy', strategyText(fed)),
      ...pair(
        'Local training',
        `${fed.config.train.optimizer}, learning rate ${fed.config.train.learningRate}, ${fed.config.train.epochs} epoch(s), batch ${fed.config.train.batchSize}`,
      ),
      ...pair('Minimum sites', String(fed.config.minSites)),
      ...pair('Round timeout', duration(fed.config.roundTimeoutMs)),
      ...pair('Evaluation timeout', duration(fed.config.evaluationTimeoutMs)),
      ...pair(
        'Differential privacy',
        dp && dp.level !== 'none'
          ? `${dp.level}-level, z=${dp.noiseMultiplier}, C=${dp.clipNorm}, δ=${dp.delta}, ε limit ${dp.epsilonLimit}`
          : 'none',
      ),
      ...pair(
        'Secure aggregation',
        secAgg?.enabled
          ? `on, ${secAgg.graph ?? 'complete'} graph${secAgg.k ? ` (k=${secAgg.k})` : ''}${secAgg.threshold ? `, t=${secAgg.threshold}` : ''}, ${secAgg.threatModel ?? 'semi-honest'}`
          : 'off',
      ),
      ...pair('Seed', String(fed.config.seed)),
    ),
  );
  const draw = (): void => {
    fill(live, liveRoundPanel(store));
    const sites = store.sites.state === 'ok' ? store.sites.data : null;
    const rounds = store.rounds.state === 'ok' ? store.rounds.data : null;
    const committed = rounds?.filter((r) => r.state === 'committed') ?? [];
    const last = committed[committed.length - 1]?.metrics?.evaluation ?? null;
    fill(
      stats,
      stat(
        'Sites',
        sites ? String(sites.filter((s) => s.status === 'approved').length) : '…',
        sites
          ? `${sites.filter((s) => s.status === 'approved' && store.isConnected(s)).length} connected, ${sites.filter((s) => s.status === 'pending').length} pending`
          : '',
        federationHref(fed.id, 'sites'),
      ),
      stat(
        'Rounds committed',
        rounds ? String(committed.length) : '…',
        rounds ? `${rounds.filter((r) => r.state === 'aborted').length} aborted` : '',
        federationHref(fed.id, 'rounds'),
      ),
      stat('Accuracy', metric(last?.accuracy), 'latest round', federationHref(fed.id, 'metrics')),
      stat('AUC', metric(last?.auc), 'latest round', federationHref(fed.id, 'metrics')),
      stat('Loss', metric(last?.loss), 'latest round', federationHref(fed.id, 'metrics')),
    );
  };
  draw();
  const dispose = store.subscribe(draw);
  return { el: h('div', { class: 'stack' }, stats, live, settings), dispose };
}

function pair(k: string, v: string): HTMLElement[] {
  return [h('dt', null, k), h('dd', null, v)];
}

function stat(label: string, value: string, sub: string, href: string): HTMLElement {
  return h(
    'a',
    { class: 'stat card', href },
    h('span', { class: 'stat-label' }, label),
    h('span', { class: 'stat-value' }, value),
    h('span', { class: 'stat-sub' }, sub),
  );
}
