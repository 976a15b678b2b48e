// The audit log: who did what, newest first, filtered.
import { get } from '../api.js';
import { h, when } from '../dom.js';
import { page, field, input, table, showError, pager } from '../ui.js';

export async function render() {
  const actor = field('Actor', { path: '?actor', hint: 'prefix' });
  const action = field('Action', { path: '?action', hint: 'prefix, e.g. key. or auth.' });
  const resource = field('Resource', { path: '?resource', hint: 'prefix, e.g. namespaces/team-a' });
  const list = h('div');
  const pagerBox = h('div', { class: 'pager' });
  const form = h('form', { class: 'inline', role: 'search', 'aria-label': 'Filter the audit log' }, actor, action, resource, h('button', { type: 'submit', class: 'primary' }, 'Filter'));
  let cursors = [];
  async function load(cursor) {
    try {
      const r = await get('/audit-logs', { actor: input(actor).value.trim(), action: input(action).value.trim(), resource: input(resource).value.trim(), limit: 50, cursor });
      list.replaceChildren(table([
        { title: 'Time', get: (a) => when(a.at) },
        { title: 'Actor', get: (a) => `${a.actor}${a.role ? ` (${a.role})` : ''}` },
        { title: 'Action', get: (a) => h('code', {}, a.action) },
        { title: 'Resource', get: (a) => a.resource },
        { title: 'Version', get: (a) => (a.config_version === null ? '' : h('a', { href: `#/history?v=${a.config_version}` }, String(a.config_version))), num: true },
        { title: 'Address', get: (a) => a.ip },
        { title: 'Changes', get: (a) => ((a.details && a.details.changes) ? `${a.details.changes.length} change(s)` : '') },
      ], r.items || [], { label: 'Audit log', empty: 'Nothing matches.' }));
      pager(pagerBox, cursors, r.next_cursor, load);
    } catch (err) {
      showError(form, err);
    }
  }
  form.addEventListener('submit', (e) => { e.preventDefault(); cursors = []; load(); });
  page('Audit log', form, list, pagerBox);
  await load();
}
