// Monitoring: a metric per namespace, model, target or status class over a chosen range,
// from the usage aggregates (one API call per chart), refreshed live.
import { h, compact, ms, pct } from '../dom.js';
import { page, field, input, showError } from '../ui.js';
import { lineChart } from '../chart.js';
import { usage, seriesBy, bucketSeconds } from '../usage.js';
import { every } from '../timers.js';

const RANGES = {
  '1h': { label: 'last hour (by minute)', span: 3600000, interval: 'minute', fallback: 'hour' },
  '6h': { label: 'last 6 hours (by minute)', span: 6 * 3600000, interval: 'minute', fallback: 'hour' },
  '24h': { label: 'last 24 hours (by hour)', span: 86400000, interval: 'hour' },
  '7d': { label: 'last 7 days (by hour)', span: 7 * 86400000, interval: 'hour' },
  '30d': { label: 'last 30 days (by day)', span: 30 * 86400000, interval: 'day' },
  '90d': { label: 'last 90 days (by day)', span: 90 * 86400000, interval: 'day' },
};
const DIMS = [['namespace', 'namespace'], ['model', 'model'], ['target', 'target'], ['key_id', 'key'], ['status_class', 'status class']];

export async function render() {
  const range = field('Range', { options: Object.entries(RANGES).map(([k, r]) => [k, r.label]), value: '24h' });
  const dim = field('By', { options: DIMS, value: 'namespace' });
  const ns = field('Namespace filter', { path: '?namespace' });
  const model = field('Model filter', { path: '?model' });
  const live = field('Live refresh (15 s)', { type: 'checkbox', value: true });
  const charts = h('div', { class: 'grid', 'aria-live': 'polite' });
  const form = h('form', { class: 'inline', 'aria-label': 'Chart settings' }, range, dim, ns, model, live, h('button', { type: 'submit', class: 'primary' }, 'Show'));
  let busy = false;

  async function load() {
    if (busy) return;
    busy = true;
    const r = RANGES[input(range).value];
    const by = input(dim).value;
    const now = Date.now();
    const filters = { namespace: input(ns).value.trim(), model: input(model).value.trim() };
    // the minute grain covers only namespace and model; other groupings read hours
    const minuteOk = r.interval === 'minute' && (by === 'namespace' || by === 'model');
    let interval = minuteOk ? r.interval : (r.fallback || r.interval);
    try {
      let u;
      try {
        u = await usage({ interval, since: now - r.span, until: now, groupBy: [by], filters });
      } catch (e) {
        if (e.status !== 400 || interval !== 'minute') throw e;
        interval = 'hour';
        u = await usage({ interval, since: now - r.span, until: now, groupBy: [by], filters });
      }
      const from = now - r.span;
      const rate = (f) => (i) => f(i) / bucketSeconds(Date.parse(i.time), interval, now);
      const avg = (i) => (i.requests ? i.latency_ms_avg : null);
      charts.replaceChildren(
        lineChart({ title: `Requests/s by ${by} (${interval})`, from, to: now, format: (v) => v.toFixed(v < 10 ? 2 : 0), series: seriesBy(u.items, [by], rate((i) => i.requests)) }),
        lineChart({ title: `Errors/s by ${by} (${interval})`, from, to: now, format: (v) => v.toFixed(v < 10 ? 2 : 0), series: seriesBy(u.items, [by], rate((i) => i.errors)) }),
        lineChart({ title: `Tokens/s by ${by} (${interval})`, from, to: now, format: compact, series: seriesBy(u.items, [by], rate((i) => i.prompt_tokens + i.completion_tokens)) }),
        lineChart({ title: `Average latency by ${by} (${interval})`, from, to: now, format: ms, series: averageSeries(u.items, by, avg) }),
        ...(u.items.some((i) => i.latency_p95_ms !== undefined) ? [lineChart({ title: `p95 latency by ${by} (${interval})`, from, to: now, format: ms, series: averageSeries(u.items, by, (i) => i.latency_p95_ms) })] : []),
        lineChart({ title: `Error ratio by ${by} (${interval})`, from, to: now, format: pct, series: ratioSeries(u.items, by) }));
      if (u.truncated) charts.prepend(h('p', { class: 'muted' }, 'The answer was cut at the API\'s row limit: narrow the range or filter.'));
    } catch (err) {
      showError(charts, err);
    } finally {
      busy = false;
    }
  }

  form.addEventListener('submit', (e) => { e.preventDefault(); load(); });
  page('Monitoring', form, charts);
  await load();
  every(15000, () => { if (input(live).checked && document.visibilityState === 'visible') load(); });
}

/** A per-group value that is not additive: taken from the group's one item per bucket. */
function averageSeries(items, by, value) {
  return seriesBy(items, [by], (i) => value(i));
}

function ratioSeries(items, by) {
  const err = seriesBy(items, [by], (i) => i.errors, 100);
  const req = new Map(seriesBy(items, [by], (i) => i.requests, 100).map((s) => [s.name, new Map(s.points)]));
  return err.map((s) => ({ name: s.name, points: s.points.map(([t, e]) => [t, e / (req.get(s.name).get(t) || 1)]) })).slice(0, 6);
}
