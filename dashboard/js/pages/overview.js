// Overview: traffic, errors, latency and tokens over the last hour and day; top namespaces
// and models; nodes with the configuration version they serve.
import { get } from '../api.js';
import { h, num, pct, ms, compact, when, ago, badge } from '../dom.js';
import { page, table, loading, banner } from '../ui.js';
import { lineChart, barList } from '../chart.js';
import { usage, totalsByTime, bucketSeconds, sum } from '../usage.js';
import { every } from '../timers.js';

const HOUR = 3600000;
const DAY = 86400000;

export async function render() {
  const body = h('div', {}, loading());
  page('Overview', body);
  await fill(body);
  every(15000, () => fill(body).catch(() => {}));
}

/** The last hour by minute when the API has a minute grain, else by hour. */
async function lastHour(now) {
  try {
    return { ...(await usage({ interval: 'minute', since: now - HOUR, until: now })), interval: 'minute' };
  } catch (e) {
    if (e.status !== 400) throw e;
    return { ...(await usage({ interval: 'hour', since: now - HOUR, until: now })), interval: 'hour' };
  }
}

async function fill(body) {
  const now = Date.now();
  const [hour, day, byNs, byModel, nodes, revs] = await Promise.all([
    lastHour(now),
    usage({ interval: 'hour', since: now - DAY, until: now }),
    usage({ interval: 'day', since: now - DAY, until: now, groupBy: ['namespace'] }),
    usage({ interval: 'day', since: now - DAY, until: now, groupBy: ['model'] }),
    get('/nodes'),
    get('/config/revisions', { limit: 1 }),
  ]);
  const content = [];
  content.push(statsRow('Last hour', totalsByTime(hour.items), HOUR));
  content.push(statsRow('Last 24 hours', totalsByTime(day.items), DAY));
  content.push(h('h2', {}, 'Last hour'), charts(totalsByTime(hour.items), hour.interval ?? 'minute', now - HOUR, now));
  content.push(h('h2', {}, 'Last 24 hours'), charts(totalsByTime(day.items), 'hour', now - DAY, now));
  content.push(h('h2', {}, 'Top in the last 24 hours'), h('div', { class: 'grid' },
    barList('Namespaces by requests', top(byNs.items, 'namespace')),
    barList('Models by requests', top(byModel.items, 'model'))));
  content.push(h('h2', {}, 'Configuration and nodes'), nodesSection(nodes, (revs.items || [])[0]));
  body.replaceChildren(...content);
}

function statsRow(title, buckets, span) {
  const req = sum(buckets, 'requests');
  const err = sum(buckets, 'errors');
  const lat = req ? sum(buckets, 'latency_sum') / req : null;
  const tokens = sum(buckets, (b) => b.prompt_tokens + b.completion_tokens);
  const stat = (label, value) => h('div', { class: 'card' }, h('div', { class: 'muted' }, label), h('div', { class: 'stat' }, value));
  return h('section', { 'aria-label': title }, h('h2', {}, title), h('div', { class: 'stats' },
    stat('Requests', num(req)),
    stat('Requests/s', (req / (span / 1000)).toFixed(2)),
    stat('Error ratio', req ? pct(err / req) : '-'),
    stat('Average latency', lat === null ? '-' : ms(lat)),
    stat('Tokens', compact(tokens))));
}

function charts(buckets, interval, from, to) {
  const per = (f) => buckets.map((b) => [b.time, f(b) / bucketSeconds(b.time, interval, to)]);
  const hasPct = buckets.some((b) => b.p50 !== null);
  const latency = [
    { name: 'average', points: buckets.filter((b) => b.requests).map((b) => [b.time, b.latency_sum / b.requests]) },
    ...(hasPct ? [
      { name: 'p50', points: buckets.filter((b) => b.p50 !== null).map((b) => [b.time, b.p50]) },
      { name: 'p95', points: buckets.filter((b) => b.p95 !== null).map((b) => [b.time, b.p95]) },
    ] : []),
    { name: 'max', points: buckets.filter((b) => b.requests).map((b) => [b.time, b.latency_ms_max]) },
  ];
  return h('div', { class: 'grid' },
    lineChart({ title: `Requests/s (by ${interval})`, from, to, format: (v) => v.toFixed(v < 10 ? 2 : 0), series: [{ name: 'requests/s', points: per((b) => b.requests) }] }),
    lineChart({ title: `Error ratio (by ${interval})`, from, to, format: (v) => pct(v), series: [{ name: 'errors / requests', points: buckets.filter((b) => b.requests).map((b) => [b.time, b.errors / b.requests]) }] }),
    lineChart({ title: `Latency (by ${interval})`, from, to, format: (v) => ms(v), series: latency }),
    lineChart({ title: `Tokens/s by type (by ${interval})`, from, to, format: (v) => compact(v), series: [
      { name: 'prompt', points: per((b) => b.prompt_tokens) },
      { name: 'completion', points: per((b) => b.completion_tokens) },
      { name: 'cached', points: per((b) => b.cached_tokens) },
      { name: 'reasoning', points: per((b) => b.reasoning_tokens) },
    ] }));
}

function top(items, key) {
  const m = new Map();
  for (const it of items) m.set(it[key], (m.get(it[key]) || 0) + it.requests);
  return [...m.entries()].map(([label, value]) => ({ label: label || '(none)', value })).sort((a, b) => b.value - a.value).slice(0, 8);
}

function nodesSection(nodes, last) {
  const cfg = nodes.config || {};
  const staleMs = 30000;
  const workers = (nodes.items || []).flatMap((n) => (n.workers || []).map((w) => ({ ...w, nodeCurrent: n.current })));
  const rows = workers.map((w) => {
    const stale = !w.last_success_ms || Date.now() - w.last_success_ms > staleMs;
    const behind = !w.applied || w.applied.version !== cfg.version;
    return { w, stale, behind };
  });
  const problems = rows.filter((r) => r.stale || r.behind).length;
  return h('div', {},
    h('p', {}, 'Configuration of record: ', h('strong', { 'data-testid': 'config-version' }, `version ${cfg.version ?? '-'}`),
      last ? ` - last change ${when(last.created_at)} by ${last.actor} (${last.action})${last.message ? `: ${last.message}` : ''}` : ''),
    problems ? banner('warn', h('span', {}, `${problems} worker(s) stale or behind the configuration of record.`)) : null,
    table([
      { title: 'Node', get: (r) => r.w.node },
      { title: 'Worker', get: (r) => String(r.w.worker), num: true },
      { title: 'Applied version', get: (r) => (r.w.applied ? String(r.w.applied.version) : 'none'), num: true },
      { title: 'State', get: (r) => (r.stale ? badge('stale', 'bad') : r.behind ? badge('behind', 'warn') : badge('current', 'good')) },
      { title: 'Last heartbeat', get: (r) => (r.w.last_success_ms ? `${ago(r.w.last_success_ms)} (${when(r.w.last_success_ms)})` : '-') },
      { title: 'Last error', get: (r) => (r.w.last_error ? `${r.w.last_error.reason}: ${r.w.last_error.message}` : '') },
    ], rows, { label: 'Nodes', empty: 'No live gateway worker reports to Redis.' }));
}
