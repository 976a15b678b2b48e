// One namespace: its settings, keys, matchers, policies and usage, as tabs.
import { get, write, fresh } from '../api.js';
import { h, badge } from '../dom.js';
import { page, field, input, canWrite, showError, clearErrors, confirmDialog, appliedNote, toast, details } from '../ui.js';
import { keysTab } from './ns_keys.js';
import { rulesTab } from './ns_rules.js';
import { usageTab } from './ns_usage.js';

const TABS = [
  ['settings', 'Settings'],
  ['keys', 'Keys'],
  ['matchers', 'Matchers'],
  ['policies', 'Policies'],
  ['usage', 'Usage'],
];

// the tab shown last, kept when the page is drawn again (a reload after a conflict)
let lastTab = { code: null, key: 'settings' };

export async function render([code]) {
  const ns = await get(`/namespaces/${encodeURIComponent(code)}`);
  const panel = h('div', { role: 'tabpanel', id: 'ns-panel', tabindex: '-1' });
  const note = h('div', { 'aria-live': 'polite' });
  const ctx = { code, ns, note, panel, reload: () => render([code]) };
  const tablist = h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'Namespace sections' });
  let current = lastTab.code === code ? lastTab.key : 'settings';

  async function show(key) {
    current = key;
    lastTab = { code, key };
    for (const b of tablist.children) b.setAttribute('aria-selected', String(b.dataset.tab === key));
    for (const b of tablist.children) b.tabIndex = b.dataset.tab === key ? 0 : -1;
    panel.setAttribute('aria-labelledby', `tab-${key}`);
    panel.replaceChildren(h('p', { class: 'muted' }, 'Loading...'));
    const content = await ({ settings: settingsTab, keys: keysTab, matchers: (c) => rulesTab(c, 'matchers'), policies: (c) => rulesTab(c, 'policies'), usage: usageTab })[key](ctx);
    panel.replaceChildren(content);
  }
  ctx.show = (key) => show(key).catch((e) => showError(panel, e));
  for (const [key, label] of TABS) {
    tablist.append(h('button', { type: 'button', role: 'tab', id: `tab-${key}`, 'aria-controls': 'ns-panel', 'data-tab': key, onclick: () => ctx.show(key),
      onkeydown: (e) => {
        const i = TABS.findIndex(([k]) => k === key);
        const j = e.key === 'ArrowRight' ? i + 1 : e.key === 'ArrowLeft' ? i - 1 : null;
        if (j === null) return;
        const next = TABS[(j + TABS.length) % TABS.length][0];
        ctx.show(next);
        tablist.querySelector(`[data-tab=${next}]`).focus();
      } }, label));
  }
  page(`Namespace ${ns.code}`,
    h('p', {}, h('a', { href: '#/namespaces' }, 'All namespaces'), ' ', badge(ns.status, ns.status === 'enabled' ? 'good' : 'bad'), ' ', ns.name || ''),
    note, tablist, panel);
  await show(current);
}

function settingsTab(ctx) {
  const { ns } = ctx;
  const info = h('div', { class: 'detail' }, details([
    ['Code', ns.code], ['Keys', String(ns.key_count)], ['Matchers', String(ns.matcher_count)], ['Policies', String(ns.policy_count)],
    ['Created', ns.created_at], ['Updated', ns.updated_at],
  ]));
  if (!canWrite()) {
    return h('div', {}, info, h('div', { class: 'detail' }, details([['Name', ns.name], ['Description', ns.description], ['Status', ns.status]])));
  }
  const name = field('Name', { path: 'name', value: ns.name });
  const description = field('Description', { path: 'description', value: ns.description });
  const status = field('Status', { path: 'status', value: ns.status, options: [['enabled', 'enabled'], ['disabled', 'disabled (its requests get 403)']] });
  const form = h('form', { class: 'stack', 'aria-label': 'Namespace settings' }, name, description, status,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Save'),
      h('button', { type: 'button', class: 'danger', onclick: () => remove(ctx, form) }, 'Delete namespace')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(form);
    const path = `/namespaces/${encodeURIComponent(ns.code)}`;
    try {
      const cur = await fresh(path, ns);
      const r = await write('PATCH', path, {
        name: input(name).value.trim() || null,
        description: input(description).value.trim() || null,
        status: input(status).value,
      }, cur.etag);
      Object.assign(ns, r.data || {});
      ctx.note.replaceChildren(appliedNote(r) || '');
      toast('Namespace saved');
    } catch (err) {
      showError(form, err);
    }
  });
  return h('div', {}, info, form);
}

async function remove(ctx, form) {
  const { ns } = ctx;
  if (!(await confirmDialog(`Delete namespace ${ns.code}?`, 'Its keys, matchers and policies go with it; its clients get 401 on every node.', 'Delete', true))) return;
  const path = `/namespaces/${encodeURIComponent(ns.code)}`;
  try {
    const cur = await fresh(path, ns);
    await write('DELETE', path, undefined, cur.etag);
    toast(`Namespace ${ns.code} deleted`);
    window.location.hash = '#/namespaces';
  } catch (err) {
    showError(form, err);
  }
}
