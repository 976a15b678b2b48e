// A namespace's usage: requests and tokens by model over the last 24 hours and 30 days.
import { h } from '../dom.js';
import { lineChart } from '../chart.js';
import { usage, seriesBy } from '../usage.js';

const HOUR = 3600000;
const DAY = 86400000;

export async function usageTab(ctx) {
  const now = Date.now();
  const filters = { namespace: ctx.code };
  const [day, month] = await Promise.all([
    usage({ interval: 'hour', since: now - DAY, until: now, groupBy: ['model'], filters }),
    usage({ interval: 'day', since: now - 30 * DAY, until: now, groupBy: ['model'], filters }),
  ]);
  const tokens = (i) => i.prompt_tokens + i.completion_tokens;
  return h('div', {},
    h('h3', {}, 'Last 24 hours, by hour and model'),
    h('div', { class: 'grid' },
      lineChart({ title: 'Requests', from: now - DAY, to: now, series: seriesBy(day.items, ['model'], (i) => i.requests) }),
      lineChart({ title: 'Tokens (prompt + completion)', from: now - DAY, to: now, series: seriesBy(day.items, ['model'], tokens) })),
    h('h3', {}, 'Last 30 days, by day and model'),
    h('div', { class: 'grid' },
      lineChart({ title: 'Requests per day', from: now - 30 * DAY, to: now, series: seriesBy(month.items, ['model'], (i) => i.requests) }),
      lineChart({ title: 'Tokens per day', from: now - 30 * DAY, to: now, series: seriesBy(month.items, ['model'], tokens) })),
    h('p', { class: 'muted' }, `Buckets of ${HOUR / 60000} min and 1 day from the usage aggregates; `, h('a', { href: '#/logs' }, 'access logs'), ' for single requests.'));
}
