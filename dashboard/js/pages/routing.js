// Model routing: targets (credentials write-only: set or not, never shown) and routes in
// order, with their weights, fallback and rewrite.
import { get, getAll, write, fresh } from '../api.js';
import { h, badge, when } from '../dom.js';
import { every } from '../timers.js';
import { page, field, input, table, canWrite, showError, clearErrors, confirmDialog, appliedNote, toast } from '../ui.js';

const PROVIDERS = ['openai', 'azure', 'anthropic', 'openai-compatible'].map((p) => [p, p]);

export async function render() {
  const [targets, routes] = await Promise.all([getAll('/targets'), getAll('/routes')]);
  const note = h('div', { 'aria-live': 'polite' });
  const targetEditor = h('div');
  const routeEditor = h('div');
  const done = async (r) => {
    await render();
    document.querySelector('[data-testid=routing-note]').replaceChildren(appliedNote(r) || '');
  };
  note.dataset.testid = 'routing-note';
  const edit = (kind, it, box, form) => async () => {
    try {
      const cur = await fresh(`/${kind}/${encodeURIComponent(it.name)}`, it);
      box.replaceChildren(form(cur, cur.etag, done, targets));
      box.querySelector('input, select')?.focus();
    } catch (err) {
      showError(note, err);
    }
  };
  const del = (kind, it) => async () => {
    if (!(await confirmDialog(`Delete ${kind === 'targets' ? 'target' : 'route'} ${it.name}?`, kind === 'targets' ? 'A target a route uses cannot be deleted.' : 'Requests it served go to the next route that matches.', 'Delete', true))) return;
    try {
      const cur = await fresh(`/${kind}/${encodeURIComponent(it.name)}`, it);
      await done(await write('DELETE', `/${kind}/${encodeURIComponent(it.name)}`, undefined, cur.etag));
    } catch (err) {
      showError(note, err);
    }
  };
  const actions = (kind, box, form) => (canWrite() ? [{ title: 'Actions', get: (it) => h('div', { class: 'actions' },
    h('button', { type: 'button', onclick: edit(kind, it, box, form) }, 'Edit'),
    h('button', { type: 'button', class: 'danger', onclick: del(kind, it) }, 'Delete')) }] : []);

  page('Model routing', note,
    h('h2', {}, 'Routes (tried in order)'),
    table([
      { title: '#', get: (r) => String(r.position + 1), num: true },
      { title: 'Name', get: (r) => r.name },
      { title: 'Path prefix', get: (r) => h('code', {}, r.path_prefix || '/') },
      { title: 'Models', get: (r) => (r.models || []).join(', ') || 'any' },
      { title: 'Namespaces', get: (r) => (r.namespaces || []).join(', ') || 'all' },
      { title: 'Targets (weight)', get: (r) => weighted(r.targets).map((t) => `${t.target} (${t.weight})`).join(', ') },
      { title: 'Fallback', get: (r) => (r.fallback || []).join(', ') },
      { title: 'Rewrite', get: (r) => (r.rewrite ? `${r.rewrite.from} -> ${r.rewrite.to}` : '') },
      ...actions('routes', routeEditor, routeForm),
    ], routes, { label: 'Routes', empty: 'No route: the gateway does not choose providers (see nginx.conf).' }),
    routeEditor,
    h('h2', {}, 'Targets'),
    table([
      { title: 'Name', get: (t) => t.name },
      { title: 'Provider', get: (t) => t.provider },
      { title: 'Base URL', get: (t) => h('code', {}, t.base_url) },
      { title: 'Credential', get: (t) => credential(t.credential) },
      { title: 'Health (per node)', get: (t) => h('div', { 'data-health': t.name }, '-') },
      { title: 'Limits', get: (t) => [t.max_connections ? `max ${t.max_connections} in flight` : '', t.cooldown !== undefined ? `cool-down ${t.cooldown}` : '', t.max_failures ? `after ${t.max_failures} failures` : ''].filter(Boolean).join(', ') },
      ...actions('targets', targetEditor, targetForm),
    ], targets, { label: 'Targets', empty: 'No target.' }),
    targetEditor);
  await showHealth();
  every(5000, () => showHealth().catch(() => {}));
  if (canWrite()) {
    routeEditor.append(routeForm(null, routes.etag, done, targets));
    targetEditor.append(targetForm(null, targets.etag, done));
  }
}

/** Each target's passive health as every live node reports it (GET /nodes). */
async function showHealth() {
  const nodes = await get('/nodes');
  const by = new Map();
  for (const n of nodes.items || []) {
    for (const t of n.targets || []) {
      if (!by.has(t.target)) by.set(t.target, []);
      by.get(t.target).push({ node: n.node, ...t });
    }
  }
  for (const cell of document.querySelectorAll('[data-health]')) {
    const states = by.get(cell.dataset.health) || [];
    cell.replaceChildren(...(states.length ? states.map((x) => h('div', {}, `${x.node}: `, health(x))) : [h('span', { class: 'muted' }, 'no report')]));
  }
}

function health(x) {
  if (x.state === 'cooling') return badge(`cooling down until ${when(x.cooling_until)}`, 'bad');
  if (x.state === 'failing') return badge(`failing (${x.failures} in a row)`, 'warn');
  return badge('healthy', 'good');
}

function weighted(list) {
  return (list || []).map((t) => (typeof t === 'string' ? { target: t, weight: 1 } : { target: t.target, weight: t.weight || 1 }));
}

function credential(c) {
  if (!c || !c.set) return badge('not set', 'neutral');
  return badge(`set (${c.kind}${c.last4 ? `, ...${c.last4}` : ''}${c.name ? `: ${c.name}` : ''})`, 'good');
}

const list = (v) => v.split(',').map((x) => x.trim()).filter(Boolean);

function routeForm(route, etag, done, targets) {
  const name = field('Name', { path: 'name', value: route ? route.name : '', readonly: !!route });
  const prefix = field('Path prefix', { path: 'path_prefix', value: route ? route.path_prefix : '/v1/' });
  const models = field('Models (globs, comma-separated; empty: any)', { path: 'models', value: route ? (route.models || []).join(', ') : '' });
  const namespaces = field('Namespaces (comma-separated; empty: all)', { path: 'namespaces', value: route ? (route.namespaces || []).join(', ') : '' });
  const current = new Map(weighted(route ? route.targets : []).map((t) => [t.target, t.weight]));
  const weights = h('fieldset', { 'data-path': 'targets' }, h('legend', {}, 'Targets and weights (0: not used)'),
    h('div', { class: 'row' }, targets.map((t) => field(`Weight of ${t.name}`, { type: 'number', min: 0, max: 1000, step: 1, value: current.get(t.name) ?? 0, 'data-target': t.name }))));
  const fallback = field('Fallback targets (in order, comma-separated)', { path: 'fallback', value: route ? (route.fallback || []).join(', ') : '' });
  const retry = field('Retry on statuses (comma-separated; empty: 429, 500, 502, 503, 504)', { path: 'retry_on', value: route && route.retry_on ? route.retry_on.join(', ') : '' });
  const attempts = field('Max attempts (1-10; empty: every target once)', { path: 'max_attempts', type: 'number', min: 1, max: 10, value: route && route.max_attempts ? route.max_attempts : '' });
  const rwFrom = field('Rewrite from', { path: 'rewrite.from', value: route && route.rewrite ? route.rewrite.from : '' });
  const rwTo = field('Rewrite to', { path: 'rewrite.to', value: route && route.rewrite ? route.rewrite.to : '' });
  const position = field('Position', { path: 'position', type: 'number', min: 1, value: route ? route.position + 1 : '', hint: 'empty: last' });
  const title = route ? `Edit route ${route.name}` : 'New route';
  const form = h('form', { class: 'stack', style: 'max-width:none', 'aria-label': title }, h('h3', {}, title),
    h('div', { class: 'row' }, name, prefix, position), h('div', { class: 'row' }, models, namespaces), weights,
    h('div', { class: 'row' }, fallback, retry, attempts), h('div', { class: 'row' }, rwFrom, rwTo),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, route ? 'Save route' : 'Add route'),
      route ? h('button', { type: 'button', onclick: () => done(null) }, 'Cancel') : null));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(form);
    const body = { name: input(name).value.trim(), path_prefix: input(prefix).value.trim() || '/' };
    const m = list(input(models).value);
    if (m.length) body.models = m;
    const n = list(input(namespaces).value);
    if (n.length) body.namespaces = n;
    body.targets = [...weights.querySelectorAll('input[data-target]')]
      .map((i) => ({ target: i.dataset.target, weight: Number(i.value) }))
      .filter((t) => t.weight !== 0);
    const f = list(input(fallback).value);
    if (f.length) body.fallback = f;
    const r = list(input(retry).value);
    if (r.length) body.retry_on = r.map((x) => (/^\d+$/.test(x) ? Number(x) : x));
    if (input(attempts).value) body.max_attempts = Number(input(attempts).value);
    if (input(rwFrom).value || input(rwTo).value) body.rewrite = { from: input(rwFrom).value, to: input(rwTo).value };
    if (input(position).value) body.position = Number(input(position).value) - 1;
    try {
      const res = route
        ? await write('PUT', `/routes/${encodeURIComponent(route.name)}`, body, etag)
        : await write('POST', '/routes', body, etag);
      toast(route ? `Route ${body.name} saved` : `Route ${body.name} added`);
      await done(res);
    } catch (err) {
      showError(form, err);
    }
  });
  return form;
}

function targetForm(t, etag, done) {
  const name = field('Name', { path: 'name', value: t ? t.name : '', readonly: !!t });
  const provider = field('Provider', { path: 'provider', options: PROVIDERS, value: t ? t.provider : 'openai' });
  const url = field('Base URL', { path: 'base_url', value: t ? t.base_url : 'https://', hint: 'http[s]://host[:port][/path]' });
  const apiVersion = field('API version (azure; anthropic-version)', { path: 'api_version', value: t ? t.api_version : '' });
  const credKind = field('Credential', { path: 'credential', options: [['keep', t && t.credential && t.credential.set ? 'keep the current one' : 'none'], ['value', 'a key (sealed before it is stored)'], ['env', 'an environment variable on each node'], ['file', 'a file on each node'], ['remove', 'remove it']], value: 'keep' });
  const credValue = field('Key, variable name or file path', { path: 'credential.value', type: 'password', autocomplete: 'off', hint: 'write-only: never shown again' });
  const maxConn = field('Max requests in flight per worker', { path: 'max_connections', type: 'number', min: 1, value: t && t.max_connections ? t.max_connections : '' });
  const title = t ? `Edit target ${t.name}` : 'New target';
  const form = h('form', { class: 'stack', style: 'max-width:none', 'aria-label': title }, h('h3', {}, title),
    h('div', { class: 'row' }, name, provider, url, apiVersion), h('div', { class: 'row' }, credKind, credValue, maxConn),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, t ? 'Save target' : 'Add target'),
      t ? h('button', { type: 'button', onclick: () => done(null) }, 'Cancel') : null));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(form);
    const body = { name: input(name).value.trim(), provider: input(provider).value, base_url: input(url).value.trim() };
    if (input(apiVersion).value.trim()) body.api_version = input(apiVersion).value.trim();
    if (input(maxConn).value) body.max_connections = Number(input(maxConn).value);
    // keep the other fields the form does not show
    for (const k of ['timeouts', 'cooldown', 'max_failures', 'description']) if (t && t[k] !== undefined && t[k] !== null) body[k] = t[k];
    const kind = input(credKind).value;
    const v = input(credValue).value;
    if (kind === 'remove') body.credential = null;
    else if (kind !== 'keep') body.credential = { [kind]: v };
    try {
      const res = t ? await write('PUT', `/targets/${encodeURIComponent(t.name)}`, body, etag) : await write('POST', '/targets', body, etag);
      toast(t ? `Target ${body.name} saved` : `Target ${body.name} added`);
      await done(res);
    } catch (err) {
      showError(form, err);
    }
  });
  return form;
}
