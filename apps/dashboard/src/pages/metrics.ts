import { lineChart } from '../charts';
import type { Ctx } from '../context';
import { empty, errorBox, fill, h, loading } from '../dom';
import type { FederationStore } from '../store';
import type { Round } from '../types';
import type { TabView } from './federation';

/** Points of one evaluation metric over the committed rounds. */
export function metricSeries(
  rounds: Round[],
  pick: (r: Round) => number | null | undefined,
): Array<{ x: number; y: number }> {
  return rounds
    .filter((r) => r.state === 'committed')
    .map((r) => ({ x: r.number, y: pick(r) }))
    .filter((p): p is { x: number; y: number } => typeof p.y === 'number' && Number.isFinite(p.y));
}

export function metricsTab(_ctx: Ctx, store: FederationStore): TabView {
  const body = h('div', { class: 'chart-grid' });
  let drawn = '';
  const draw = (): void => {
    const r = store.rounds;
    if (r.state === 'loading') return fill(body, loading('metrics'));
    if (r.state === 'error')
      return fill(
        body,
        errorBox(r.message, () => void store.refresh(['rounds'])),
      );
    const key = r.data.map((x) => `${x.number}:${x.state}`).join(',');
    if (key === drawn) return; // live events that change nothing here do not redraw the charts
    drawn = key;
    const accuracy = metricSeries(r.data, (x) => x.metrics?.evaluation?.accuracy);
    if (!accuracy.length) {
      return fill(
        body,
        empty(
          'No evaluated rounds yet.',
          'Accuracy, AUC and loss appear here after the first round commits.',
        ),
      );
    }
    fill(
      body,
      h(
        'section',
        { class: 'card' },
        lineChart({
          title: 'Accuracy and AUC by round',
          xLabel: 'Round',
          yLabel: 'Score',
          integerX: true,
          yMax: 1,
          format: (y) => y.toFixed(3),
          series: [
            { name: 'Accuracy', points: accuracy },
            { name: 'AUC', points: metricSeries(r.data, (x) => x.metrics?.evaluation?.auc) },
          ],
        }),
      ),
      h(
        'section',
        { class: 'card' },
        lineChart({
          title: 'Loss by round',
          xLabel: 'Round',
          yLabel: 'Loss',
          integerX: true,
          yMin: 0,
          format: (y) => y.toFixed(3),
          series: [
            {
              name: 'Held-out loss',
              points: metricSeries(r.data, (x) => x.metrics?.evaluation?.loss),
            },
            {
              name: 'Training loss',
              points: metricSeries(r.data, (x) => x.metrics?.trainLoss),
              dashed: true,
            },
          ],
        }),
      ),
    );
  };
  draw();
  return { el: body, dispose: store.subscribe(draw) };
}
