/**
 * Hand-written SVG line charts: axes with nice ticks, one line per series, dashed limit lines, a
 * legend, and the same numbers as a table for keyboard and screen-reader users. The geometry is a
 * pure function (`layoutChart`) so it can be tested without a DOM.
 */
import { h, s } from './dom';

export interface Point {
  x: number;
  y: number;
}

export interface Series {
  name: string;
  points: Point[];
  dashed?: boolean;
}

export interface Limit {
  y: number;
  label: string;
}

export interface ChartSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  limits?: Limit[];
  /** Fixed ends of the y axis (e.g. 0 and 1 for accuracy); otherwise from the data. */
  yMin?: number;
  yMax?: number;
  /** Ticks on whole numbers only (round numbers). */
  integerX?: boolean;
  format?: (y: number) => string;
  width?: number;
  height?: number;
}

export const PALETTE = [
  '#2563eb',
  '#059669',
  '#d97706',
  '#9333ea',
  '#dc2626',
  '#0891b2',
  '#65a30d',
  '#db2777',
];

/** Round tick values covering [min, max]: steps of 1, 2 or 5 times a power of ten. */
export function niceTicks(min: number, max: number, count = 6): number[] {
  if (!Number.isFinite(min) || !Number.isFinite(max)) return [];
  if (min === max) {
    const pad = min === 0 ? 1 : Math.abs(min) * 0.1;
    min -= pad;
    max += pad;
  }
  const raw = (max - min) / Math.max(1, count - 1);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  const step = (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag;
  const start = Math.floor(min / step + 1e-9) * step;
  const end = Math.ceil(max / step - 1e-9) * step;
  const ticks: number[] = [];
  for (let v = start; v <= end + step / 2; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

export interface ChartLayout {
  width: number;
  height: number;
  plot: { left: number; top: number; right: number; bottom: number };
  xTicks: Array<{ value: number; pos: number }>;
  yTicks: Array<{ value: number; pos: number }>;
  lines: Array<{
    name: string;
    color: string;
    dashed: boolean;
    d: string;
    points: Array<Point & { cx: number; cy: number }>;
  }>;
  limits: Array<{ y: number; label: string; pos: number }>;
}

/** Where everything goes, in SVG user units. */
export function layoutChart(spec: ChartSpec): ChartLayout {
  const width = spec.width ?? 640;
  const height = spec.height ?? 260;
  const plot = { left: 56, top: 16, right: width - 16, bottom: height - 44 };
  const all = spec.series.flatMap((x) => x.points);
  const xs = all.map((p) => p.x);
  const ys = [...all.map((p) => p.y), ...(spec.limits ?? []).map((l) => l.y)];
  let xMin = xs.length ? Math.min(...xs) : 0;
  let xMax = xs.length ? Math.max(...xs) : 1;
  if (spec.integerX) {
    xMin = Math.min(xMin, 1);
    xMax = Math.max(xMax, xMin + 1);
  } else if (xMin === xMax) {
    xMin -= 1;
    xMax += 1;
  }
  let yTickValues = niceTicks(
    spec.yMin ?? (ys.length ? Math.min(...ys) : 0),
    spec.yMax ?? (ys.length ? Math.max(...ys) : 1),
  );
  if (spec.yMin !== undefined) yTickValues = yTickValues.filter((t) => t >= spec.yMin! - 1e-9);
  if (spec.yMax !== undefined) yTickValues = yTickValues.filter((t) => t <= spec.yMax! + 1e-9);
  const yLo = Math.min(spec.yMin ?? Infinity, yTickValues[0] ?? 0);
  const yHi = Math.max(spec.yMax ?? -Infinity, yTickValues[yTickValues.length - 1] ?? 1);
  const sx = (x: number): number =>
    plot.left + ((x - xMin) / (xMax - xMin || 1)) * (plot.right - plot.left);
  const sy = (y: number): number =>
    plot.bottom - ((y - yLo) / (yHi - yLo || 1)) * (plot.bottom - plot.top);
  let xTickValues = niceTicks(xMin, xMax, Math.min(8, Math.max(2, xMax - xMin + 1)));
  if (spec.integerX) xTickValues = [...new Set(xTickValues.map(Math.round))];
  xTickValues = xTickValues.filter((t) => t >= xMin - 1e-9 && t <= xMax + 1e-9);
  const round = (n: number): number => Math.round(n * 10) / 10;
  return {
    width,
    height,
    plot,
    xTicks: xTickValues.map((value) => ({ value, pos: round(sx(value)) })),
    yTicks: yTickValues.map((value) => ({ value, pos: round(sy(value)) })),
    lines: spec.series.map((series, i) => {
      const points = [...series.points]
        .filter((p) => Number.isFinite(p.y))
        .sort((a, b) => a.x - b.x)
        .map((p) => ({ ...p, cx: round(sx(p.x)), cy: round(sy(p.y)) }));
      return {
        name: series.name,
        color: PALETTE[i % PALETTE.length]!,
        dashed: Boolean(series.dashed),
        d: points.map((p, j) => `${j ? 'L' : 'M'}${p.cx},${p.cy}`).join(' '),
        points,
      };
    }),
    limits: (spec.limits ?? []).map((l) => ({ ...l, pos: round(sy(l.y)) })),
  };
}

const defaultFormat = (y: number): string =>
  Math.abs(y) >= 100
    ? y.toFixed(0)
    : Math.abs(y) >= 10
      ? y.toFixed(1)
      : Number(y.toPrecision(3)).toString();

/** A chart as a <figure>: the SVG, its legend, and a collapsible data table. */
export function lineChart(spec: ChartSpec): HTMLElement {
  const L = layoutChart(spec);
  const fmt = spec.format ?? defaultFormat;
  const { plot } = L;
  const svg = s(
    'svg',
    {
      viewBox: `0 0 ${L.width} ${L.height}`,
      class: 'chart',
      role: 'img',
      'aria-label': `${spec.title}: ${spec.series.map((x) => `${x.name}, ${x.points.length} points`).join('; ')}`,
    },
    s('title', null, spec.title),
    // grid and y ticks
    L.yTicks.map((t) =>
      s(
        'g',
        { class: 'tick' },
        s('line', { x1: plot.left, x2: plot.right, y1: t.pos, y2: t.pos, class: 'grid' }),
        s('text', { x: plot.left - 8, y: t.pos + 4, 'text-anchor': 'end' }, defaultFormat(t.value)),
      ),
    ),
    L.xTicks.map((t) =>
      s(
        'g',
        { class: 'tick' },
        s('line', { x1: t.pos, x2: t.pos, y1: plot.bottom, y2: plot.bottom + 5, class: 'axis' }),
        s('text', { x: t.pos, y: plot.bottom + 18, 'text-anchor': 'middle' }, String(t.value)),
      ),
    ),
    s('line', { x1: plot.left, x2: plot.right, y1: plot.bottom, y2: plot.bottom, class: 'axis' }),
    s('line', { x1: plot.left, x2: plot.left, y1: plot.top, y2: plot.bottom, class: 'axis' }),
    s(
      'text',
      {
        x: (plot.left + plot.right) / 2,
        y: L.height - 6,
        'text-anchor': 'middle',
        class: 'axis-label',
      },
      spec.xLabel,
    ),
    s(
      'text',
      {
        x: 14,
        y: (plot.top + plot.bottom) / 2,
        'text-anchor': 'middle',
        class: 'axis-label',
        transform: `rotate(-90 14 ${(plot.top + plot.bottom) / 2})`,
      },
      spec.yLabel,
    ),
    L.limits.map((l) =>
      s(
        'g',
        { class: 'limit' },
        s('line', { x1: plot.left, x2: plot.right, y1: l.pos, y2: l.pos }),
        s('text', { x: plot.right - 4, y: l.pos - 5, 'text-anchor': 'end' }, l.label),
      ),
    ),
    L.lines.map((line) =>
      s(
        'g',
        { class: 'series', 'data-series': line.name },
        s('path', {
          d: line.d,
          fill: 'none',
          stroke: line.color,
          'stroke-width': 2,
          'stroke-dasharray': line.dashed ? '6 4' : undefined,
        }),
        line.points.map((p) =>
          s(
            'circle',
            { cx: p.cx, cy: p.cy, r: 3.5, fill: line.color },
            s('title', null, `${line.name}, ${spec.xLabel.toLowerCase()} ${p.x}: ${fmt(p.y)}`),
          ),
        ),
      ),
    ),
  );
  const legend = h(
    'ul',
    { class: 'legend' },
    L.lines.map((line) =>
      h(
        'li',
        null,
        s(
          'svg',
          { width: 18, height: 10, 'aria-hidden': 'true' },
          s('line', {
            x1: 0,
            x2: 18,
            y1: 5,
            y2: 5,
            stroke: line.color,
            'stroke-width': 3,
            'stroke-dasharray': line.dashed ? '4 3' : undefined,
          }),
        ),
        line.name,
      ),
    ),
    L.limits.length
      ? h(
          'li',
          { class: 'legend-limit' },
          h('span', { class: 'dash', 'aria-hidden': 'true' }),
          'limit',
        )
      : null,
  );
  const xs = [...new Set(spec.series.flatMap((x) => x.points.map((p) => p.x)))].sort(
    (a, b) => a - b,
  );
  const table = h(
    'details',
    { class: 'chart-data' },
    h('summary', null, 'Show data'),
    h(
      'table',
      { class: 'table compact' },
      h(
        'thead',
        null,
        h(
          'tr',
          null,
          h('th', { scope: 'col' }, spec.xLabel),
          spec.series.map((x) => h('th', { scope: 'col' }, x.name)),
        ),
      ),
      h(
        'tbody',
        null,
        xs.map((x) =>
          h(
            'tr',
            null,
            h('th', { scope: 'row' }, String(x)),
            spec.series.map((ser) => {
              const p = ser.points.find((q) => q.x === x);
              return h('td', null, p ? fmt(p.y) : '—');
            }),
          ),
        ),
      ),
    ),
  );
  return h(
    'figure',
    { class: 'chart-figure', 'data-chart': spec.title },
    h('figcaption', null, spec.title),
    svg,
    legend,
    table,
  );
}
