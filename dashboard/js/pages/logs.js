// Access logs: filters, keyset pages, one request's detail, CSV export.
import { get, api } from '../api.js';
import { h, when, ms, num } from '../dom.js';
import { page, field, input, table, details, showError, pager } from '../ui.js';
import { localToRfc3339 } from './ns_keys.js';

const FILTERS = [
  ['namespace', 'Namespace'], ['key_id', 'Key id'], ['model', 'Model'], ['target', 'Target'],
  ['status', 'Status', 'e.g. 429 or 5xx'], ['error', 'Error code'],
];

export async function render() {
  const inputs = FILTERS.map(([k, label, hint]) => field(label, { path: `?${k}`, hint }));
  const since = field('Since (local time)', { path: '?since', type: 'datetime-local' });
  const until = field('Until (local time)', { path: '?until', type: 'datetime-local' });
  const limit = field('Per page', { options: [['50', '50'], ['100', '100'], ['500', '500']], value: '50' });
  const list = h('div');
  const detail = h('div', { 'aria-live': 'polite' });
  const pagerBox = h('div', { class: 'pager' });
  const form = h('form', { class: 'inline', role: 'search', 'aria-label': 'Filter access logs' }, ...inputs, since, until, limit,
    h('button', { type: 'submit', class: 'primary' }, 'Filter'),
    h('button', { type: 'button', onclick: () => exportCsv() }, 'Export CSV'));
  let cursors = [];

  const query = () => {
    const q = {};
    FILTERS.forEach(([k], i) => { q[k] = input(inputs[i]).value.trim(); });
    q.since = localToRfc3339(input(since).value) || '';
    q.until = localToRfc3339(input(until).value) || '';
    q.limit = input(limit).value;
    return q;
  };

  async function load(cursor) {
    try {
      const r = await get('/access-logs', { ...query(), cursor });
      detail.replaceChildren();
      list.replaceChildren(table([
        { title: 'Time', get: (l) => when(l.time) },
        { title: 'Status', get: (l) => String(l.status), num: true },
        { title: 'Namespace', get: (l) => l.namespace },
        { title: 'Key', get: (l) => (l.key_id ? h('code', {}, l.key_id) : '') },
        { title: 'Model', get: (l) => l.model },
        { title: 'Target', get: (l) => l.target },
        { title: 'Error', get: (l) => l.error },
        { title: 'Latency', get: (l) => ms(l.latency_ms), num: true },
        { title: 'Tokens', get: (l) => (l.prompt_tokens === null ? '' : `${num(l.prompt_tokens)} + ${num(l.completion_tokens)}`), num: true },
        { title: 'Request id', get: (l) => h('code', {}, l.request_id) },
      ], r.items || [], { label: 'Access logs', empty: 'No request matches.', onSelect: (l) => show(l.request_id) }));
      pager(pagerBox, cursors, r.next_cursor, load);
    } catch (err) {
      showError(form, err);
    }
  }

  async function show(id) {
    try {
      const l = await get(`/access-logs/${encodeURIComponent(id)}`);
      detail.replaceChildren(h('section', { class: 'detail', 'aria-label': 'Request detail', 'data-testid': 'log-detail' }, h('h2', {}, `Request ${l.request_id}`),
        details(Object.entries(l).map(([k, v]) => [k, v === null ? '' : String(v)]))));
      detail.scrollIntoView({ block: 'nearest' });
    } catch (err) {
      showError(detail, err);
    }
  }

  async function exportCsv() {
    try {
      const q = query();
      delete q.limit;
      const r = await api('GET', '/access-logs', { query: { ...q, format: 'csv', limit: 50000 }, accept: 'text/csv' });
      const a = h('a', { href: URL.createObjectURL(new Blob([r.text], { type: 'text/csv' })), download: 'access-logs.csv' });
      document.body.append(a);
      a.click();
      a.remove();
    } catch (err) {
      showError(form, err);
    }
  }

  form.addEventListener('submit', (e) => { e.preventDefault(); cursors = []; load(); });
  page('Access logs', form, list, pagerBox, detail);
  await load();
}
