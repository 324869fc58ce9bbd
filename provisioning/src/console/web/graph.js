// Time-series graphs drawn as inline SVG (no library, no canvas): CPU and
// memory, and the bandwidth of each access line, from a point array
//
//   { resolution_s, points: [{ at_unix_ms, cpu_pct, mem_pct,
//                              lines: [{ name, rx_bps, tx_bps }] }] }
//
// (the shape of GET /api/v1/devices/{id}/series). Each series is one or
// more <polyline>s with one vertex per point: a silence longer than three
// usual steps (the resolution, or the device's heartbeat interval when that
// is longer) breaks the line instead of drawing a slope across it.

import { h, svg } from './dom.js';
import { t, clock, bps, pct } from './i18n.js';

const WIDTH = 720;
const HEIGHT = 180;
const LEFT = 64;
const RIGHT = 12;
const TOP = 10;
const BOTTOM = 24;

/** 1, 2 or 5 × 10^k at or above `v` (the top of a bandwidth axis). */
export function niceCeiling(v) {
  if (!(v > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(v));
  for (const step of [1, 2, 5, 10]) {
    if (step * power >= v) return step * power;
  }
  return 10 * power;
}

/**
 * One chart: `series` is [{ key, label, values: [[at_ms, value|null]] }];
 * the y axis runs from 0 to `top`, labelled by `format`.
 */
function chart({ kind, title, series, from, to, top, format, gapMs }) {
  const plotW = WIDTH - LEFT - RIGHT;
  const plotH = HEIGHT - TOP - BOTTOM;
  const x = (at) => LEFT + ((at - from) / (to - from)) * plotW;
  const y = (v) => TOP + plotH - (Math.min(v, top) / top) * plotH;
  const grid = [0, 0.2, 0.4, 0.6, 0.8, 1].map((f) => [
    svg('line', { class: 'grid', x1: LEFT, x2: WIDTH - RIGHT, y1: y(top * f), y2: y(top * f) }),
    svg('text', { class: 'axis', x: LEFT - 6, y: y(top * f) + 4, 'text-anchor': 'end' }, format(top * f)),
  ]);
  const ticks = [0, 1, 2, 3, 4].map((i) => {
    const at = from + ((to - from) * i) / 4;
    const anchor = i === 0 ? 'start' : i === 4 ? 'end' : 'middle';
    return svg('text', { class: 'axis', x: x(at), y: HEIGHT - 6, 'text-anchor': anchor }, clock(at));
  });
  const lines = series.map((s, index) =>
    runs(s.values, gapMs).map((run) =>
      run.length === 1
        ? svg('circle', {
            class: `dot s${index}`,
            'data-series': s.key,
            cx: x(run[0][0]).toFixed(1),
            cy: y(run[0][1]).toFixed(1),
            r: 2.5,
          })
        : svg('polyline', {
            class: `line s${index}`,
            'data-series': s.key,
            points: run.map(([at, v]) => `${x(at).toFixed(1)},${y(v).toFixed(1)}`).join(' '),
          }),
    ),
  );
  const legend = series.map((s, index) => {
    const last = s.values.filter(([, v]) => v !== null).at(-1);
    return h('span', { class: `key s${index}` }, `${s.label} ${last ? format(last[1]) : '—'}`);
  });
  const count = series.reduce((n, s) => n + s.values.filter(([, v]) => v !== null).length, 0);
  return h(
    'figure',
    { class: 'chart', 'data-kind': kind },
    h('figcaption', null, h('strong', null, title), ' ', legend),
    svg(
      'svg',
      { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: 'img', 'aria-label': title, 'data-points': count },
      svg('title', null, title),
      grid,
      ticks,
      lines,
    ),
    count === 0 ? h('p', { class: 'muted' }, t('graph.empty')) : null,
  );
}

/** Splits [[at, v]] into runs without nulls and without gaps over `gapMs`. */
function runs(values, gapMs) {
  const out = [];
  let run = [];
  let previous = null;
  for (const [at, v] of values) {
    if (v === null || v === undefined || !Number.isFinite(v)) {
      if (run.length) out.push(run);
      run = [];
      previous = null;
      continue;
    }
    if (previous !== null && at - previous > gapMs) {
      out.push(run);
      run = [];
    }
    run.push([at, v]);
    previous = at;
  }
  if (run.length) out.push(run);
  return out;
}

/**
 * The graphs of a device over [from, to] (widened to its first and last
 * point: a bucket may start before the window): CPU and memory, then one
 * chart per line. Every point the server sent is drawn.
 */
export function deviceGraphs(series, windowFrom, windowTo) {
  const points = [...(series.points ?? [])].sort((a, b) => a.at_unix_ms - b.at_unix_ms);
  const from = Math.min(windowFrom, points[0]?.at_unix_ms ?? windowFrom);
  const to = Math.max(windowTo, points.at(-1)?.at_unix_ms ?? windowTo);
  const steps = points.slice(1).map((p, i) => p.at_unix_ms - points[i].at_unix_ms).sort((a, b) => a - b);
  const usualStep = Math.max((series.resolution_s ?? 60) * 1000, steps[Math.floor(steps.length / 2)] ?? 0);
  const gapMs = 3 * usualStep;
  const value = (field) => points.map((p) => [p.at_unix_ms, p[field] ?? null]);
  const resources = chart({
    kind: 'resources',
    title: t('graph.resources'),
    series: [
      { key: 'cpu_pct', label: t('graph.cpu'), values: value('cpu_pct') },
      { key: 'mem_pct', label: t('graph.mem'), values: value('mem_pct') },
    ],
    from,
    to,
    top: 100,
    format: pct,
    gapMs,
  });
  const names = [...new Set(points.flatMap((p) => (p.lines ?? []).map((l) => l.name)))].sort();
  const lineCharts = names.map((name) => {
    const rate = (field) =>
      points.map((p) => [p.at_unix_ms, (p.lines ?? []).find((l) => l.name === name)?.[field] ?? null]);
    const rx = rate('rx_bps');
    const tx = rate('tx_bps');
    const peak = Math.max(0, ...rx.map(([, v]) => v ?? 0), ...tx.map(([, v]) => v ?? 0));
    return chart({
      kind: 'line',
      title: t('graph.line', { name }),
      series: [
        { key: 'rx_bps', label: t('graph.rx'), values: rx },
        { key: 'tx_bps', label: t('graph.tx'), values: tx },
      ],
      from,
      to,
      top: niceCeiling(peak),
      format: bps,
      gapMs,
    });
  });
  return [resources, ...lineCharts];
}
