// Charts as plain SVG: a time-series line chart and a bar list. Series differ by colour
// and by dash pattern and marker shape, so no meaning rests on colour alone.
import { h, s, compact, when } from './dom.js';

const STYLES = [
  { color: '#0b5cad', dash: '', marker: 'circle' },
  { color: '#b42318', dash: '6 3', marker: 'square' },
  { color: '#1a7f37', dash: '2 3', marker: 'triangle' },
  { color: '#8250df', dash: '10 3 2 3', marker: 'diamond' },
  { color: '#8a5300', dash: '1 2', marker: 'circle' },
  { color: '#0a7c86', dash: '8 2', marker: 'square' },
];

const W = 520;
const H = 210;
const PAD = { l: 52, r: 12, t: 10, b: 26 };

function marker(kind, x, y, color) {
  const a = { fill: color, stroke: '#fff', 'stroke-width': 1 };
  switch (kind) {
    case 'square': return s('rect', { x: x - 3, y: y - 3, width: 6, height: 6, ...a });
    case 'triangle': return s('path', { d: `M${x} ${y - 4}L${x + 4} ${y + 3}L${x - 4} ${y + 3}Z`, ...a });
    case 'diamond': return s('path', { d: `M${x} ${y - 4}L${x + 4} ${y}L${x} ${y + 4}L${x - 4} ${y}Z`, ...a });
    default: return s('circle', { cx: x, cy: y, r: 3, ...a });
  }
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function timeLabel(t, span) {
  const d = new Date(t);
  const p = (v) => String(v).padStart(2, '0');
  if (span <= 2 * 86400000) return `${p(d.getHours())}:${p(d.getMinutes())}`;
  return `${p(d.getMonth() + 1)}-${p(d.getDate())}`;
}

/**
 * lineChart({title, series: [{name, points: [[ms, value]]}], from, to, format}) -> element.
 * `from`/`to` (unix ms) fix the x range; `format` renders y values.
 */
export function lineChart({ title, series, from, to, format = compact }) {
  const fmt = format;
  const all = series.flatMap((x) => x.points);
  const count = all.length;
  const box = h('figure', { class: 'chart card', 'data-chart': title, 'data-points': count });
  box.append(h('figcaption', {}, h('h3', {}, title)));
  if (!count) {
    box.append(h('p', { class: 'empty' }, 'No data in this range.'));
    return box;
  }
  const x0 = from ?? Math.min(...all.map((p) => p[0]));
  const x1 = Math.max(to ?? Math.max(...all.map((p) => p[0])), x0 + 1);
  const yMax = niceMax(Math.max(...all.map((p) => p[1])));
  const X = (t) => PAD.l + ((t - x0) / (x1 - x0)) * (W - PAD.l - PAD.r);
  const Y = (v) => H - PAD.b - (v / yMax) * (H - PAD.t - PAD.b);
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `${title}: ${series.map((x) => x.name).join(', ')}` });
  const grid = s('g', { class: 'grid' });
  const axis = s('g', { class: 'axis' });
  for (let i = 0; i <= 4; i += 1) {
    const v = (yMax * i) / 4;
    grid.append(s('line', { x1: PAD.l, x2: W - PAD.r, y1: Y(v), y2: Y(v) }));
    axis.append(s('text', { x: PAD.l - 6, y: Y(v) + 4, 'text-anchor': 'end' }, fmt(v)));
  }
  for (let i = 0; i <= 4; i += 1) {
    const t = x0 + ((x1 - x0) * i) / 4;
    axis.append(s('text', { x: X(t), y: H - 8, 'text-anchor': i === 0 ? 'start' : i === 4 ? 'end' : 'middle' }, timeLabel(t, x1 - x0)));
  }
  axis.append(s('line', { x1: PAD.l, x2: W - PAD.r, y1: Y(0), y2: Y(0), stroke: '#8c959f' }));
  svg.append(grid, axis);
  const legend = h('div', { class: 'legend' });
  series.forEach((ser, i) => {
    const st = STYLES[i % STYLES.length];
    const pts = [...ser.points].sort((a, b) => a[0] - b[0]);
    const g = s('g', { 'data-series': ser.name });
    if (pts.length > 1) {
      g.append(s('polyline', { points: pts.map((p) => `${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join(' '), fill: 'none', stroke: st.color, 'stroke-width': 2, 'stroke-dasharray': st.dash || null }));
    }
    for (const p of pts) {
      const m = marker(st.marker, X(p[0]), Y(p[1]), st.color);
      m.append(s('title', {}, `${ser.name} ${when(p[0])}: ${fmt(p[1])}`));
      g.append(m);
    }
    svg.append(g);
    const sample = s('svg', { viewBox: '0 0 28 10', 'aria-hidden': 'true' },
      s('line', { x1: 0, x2: 28, y1: 5, y2: 5, stroke: st.color, 'stroke-width': 2, 'stroke-dasharray': st.dash || null }),
      marker(st.marker, 14, 5, st.color));
    legend.append(h('span', {}, sample, ' ', ser.name));
  });
  box.append(svg, legend);
  return box;
}

/** A horizontal bar list: items [{label, value}] with value text. */
export function barList(title, items, format = compact) {
  const max = Math.max(1, ...items.map((i) => i.value));
  const box = h('figure', { class: 'card', 'data-chart': title, 'data-points': items.length }, h('figcaption', {}, h('h3', {}, title)));
  if (!items.length) {
    box.append(h('p', { class: 'empty muted' }, 'No data in this range.'));
    return box;
  }
  box.append(h('div', { class: 'bars' }, items.flatMap((i) => [
    h('span', {}, i.label || '(none)'),
    h('div', { class: 'bar', style: `width:${((i.value / max) * 100).toFixed(1)}%`, role: 'presentation' }),
    h('span', { class: 'mono' }, format(i.value)),
  ])));
  return box;
}
