// Usage aggregates (GET /api/v1/usage) turned into chart series: one API call gives every
// series of a chart (grouped by the chart's dimension).
import { get } from './api.js';

export const BUCKET_MS = { minute: 60000, hour: 3600000, day: 86400000 };

/** GET /usage; since/until in unix ms. */
export async function usage({ interval, since, until, groupBy = [], filters = {} }) {
  const r = await get('/usage', {
    interval,
    group_by: groupBy.join(','),
    since: since ? Math.floor(since / 1000) : undefined,
    until: until ? Math.floor(until / 1000) : undefined,
    ...filters,
  });
  return { items: r.items || [], truncated: !!r.truncated, interval: r.interval };
}

/** Seconds a bucket starting at `t` covers up to `now` (the current bucket is partial). */
export function bucketSeconds(t, interval, now = Date.now()) {
  const len = BUCKET_MS[interval];
  return Math.max(1, (Math.min(t + len, now) - t) / 1000);
}

/** The label of an item's group (its group_by values joined). */
export function groupLabel(item, groupBy) {
  if (!groupBy.length) return 'all';
  return groupBy.map((g) => {
    const v = item[g];
    if (g === 'status_class') return v ? `${v}xx` : 'any';
    return v === '' || v === null || v === undefined ? '(none)' : String(v);
  }).join(' / ');
}

/**
 * Series from items: one per group; value(item) -> number (null skips the point). Buckets
 * with the same time and group are summed (value must then be additive).
 */
export function seriesBy(items, groupBy, value, limit = 6) {
  const groups = new Map();
  for (const it of items) {
    const name = groupLabel(it, groupBy);
    const v = value(it);
    if (v === null || v === undefined || Number.isNaN(v)) continue;
    if (!groups.has(name)) groups.set(name, new Map());
    const t = Date.parse(it.time);
    const m = groups.get(name);
    m.set(t, (m.get(t) || 0) + v);
  }
  const totals = [...groups.entries()].map(([name, m]) => ({ name, points: [...m.entries()], total: [...m.values()].reduce((a, b) => a + b, 0) }));
  totals.sort((a, b) => b.total - a.total);
  return totals.slice(0, limit);
}

/** Items summed per time bucket (every group together). */
export function totalsByTime(items) {
  const m = new Map();
  for (const it of items) {
    const t = Date.parse(it.time);
    const a = m.get(t) || { time: t, requests: 0, errors: 0, prompt_tokens: 0, completion_tokens: 0, cached_tokens: 0, reasoning_tokens: 0, latency_sum: 0, latency_ms_max: 0, p50: null, p95: null };
    a.requests += it.requests;
    a.errors += it.errors;
    a.prompt_tokens += it.prompt_tokens;
    a.completion_tokens += it.completion_tokens;
    a.cached_tokens += it.cached_tokens;
    a.reasoning_tokens += it.reasoning_tokens;
    a.latency_sum += (it.latency_ms_avg || 0) * it.requests;
    a.latency_ms_max = Math.max(a.latency_ms_max, it.latency_ms_max || 0);
    // percentiles do not add up: exact only when the answer has one group (group_by empty),
    // as the overview asks; otherwise the largest group's is shown
    if (it.latency_p50_ms !== undefined && it.latency_p50_ms !== null) a.p50 = Math.max(a.p50 ?? 0, it.latency_p50_ms);
    if (it.latency_p95_ms !== undefined && it.latency_p95_ms !== null) a.p95 = Math.max(a.p95 ?? 0, it.latency_p95_ms);
    m.set(t, a);
  }
  return [...m.values()].sort((a, b) => a.time - b.time);
}

/** Sum of a field over items. */
export function sum(items, f) {
  return items.reduce((a, it) => a + (typeof f === 'function' ? f(it) : it[f] || 0), 0);
}
