// Widgets the pages share: page frame, banners and toasts, form fields bound to the API's
// error paths, tables, confirmation dialogs, and what a write's answer says about nodes.
import { h, clear, uid, when } from './dom.js';
import { session } from './api.js';

export function canWrite() {
  return session.role === 'editor' || session.role === 'admin';
}

export function isAdmin() {
  return session.role === 'admin';
}

/** Replaces the main area with a page: a heading and its content. */
export function page(title, ...content) {
  const main = document.getElementById('main');
  clear(main);
  document.title = `${title} - AI gateway`;
  main.append(h('h1', {}, title), ...content.flat().filter(Boolean));
  return main;
}

export function toast(message, kind) {
  const box = document.getElementById('toasts');
  const t = h('div', { class: `toast ${kind || ''}` }, message);
  box.append(t);
  while (box.children.length > 3) box.firstChild.remove();
  setTimeout(() => t.remove(), kind === 'bad' ? 8000 : 3000);
}

export function banner(kind, ...content) {
  return h('div', { class: `banner ${kind}`, role: kind === 'bad' ? 'alert' : 'status' }, ...content);
}

let reloader = () => window.location.reload();
export function setReloader(fn) {
  reloader = fn;
}

/** A banner for an API error; a 412 offers to reload what someone else changed. */
export function errorBanner(err) {
  if (err && err.status === 412) {
    return banner('warn', h('span', {}, 'Changed by someone else since you loaded it. Reload to see the current version, then make your change again.'),
      h('button', { type: 'button', onclick: () => reloader() }, 'Reload'));
  }
  if (err && err.status === 403 && err.code !== 'account_locked') {
    return banner('bad', h('span', {}, `Not allowed: ${err.message}`));
  }
  const extra = err && err.details && err.details.length
    ? h('ul', {}, err.details.map((d) => h('li', {}, d.path ? `${d.path}: ${d.message}` : d.message)))
    : null;
  return banner('bad', h('span', {}, (err && err.message) || String(err)), extra);
}

/** Shows `err` at the top of `where` (a form or a section), replacing an earlier one. */
export function showError(where, err) {
  clearErrors(where);
  const b = errorBanner(err);
  b.dataset.formError = '1';
  where.prepend(b);
  if (err && err.details) markFields(where, err.details);
  b.scrollIntoView({ block: 'nearest' });
}

export function clearErrors(where) {
  where.querySelectorAll('[data-form-error]').forEach((e) => e.remove());
  where.querySelectorAll('.field-error').forEach((e) => e.remove());
  where.querySelectorAll('[aria-invalid]').forEach((e) => {
    const err = e.getAttribute('aria-errormessage');
    const rest = (e.getAttribute('aria-describedby') || '').split(' ').filter((x) => x && x !== err).join(' ');
    if (rest) e.setAttribute('aria-describedby', rest);
    else e.removeAttribute('aria-describedby');
    e.removeAttribute('aria-invalid');
    e.removeAttribute('aria-errormessage');
  });
}

/** Puts each detail's message next to the input whose data-path is the detail's path. */
function markFields(form, details) {
  for (const d of details) {
    if (!d.path) continue;
    const input = findField(form, d.path);
    if (!input) continue;
    const id = uid('err');
    input.setAttribute('aria-invalid', 'true');
    input.setAttribute('aria-errormessage', id);
    input.setAttribute('aria-describedby', [id, input.getAttribute('aria-describedby')].filter(Boolean).join(' '));
    (input.closest('.field') || input.closest('fieldset')).append(h('span', { class: 'field-error', id, role: 'alert' }, d.message));
  }
}

function findField(form, path) {
  // the longest data-path that the error's path starts with (targets[0].weight -> targets)
  let best = null;
  for (const el of form.querySelectorAll('[data-path]')) {
    const p = el.dataset.path;
    if ((path === p || path.startsWith(`${p}.`) || path.startsWith(`${p}[`)) && (!best || p.length > best.dataset.path.length)) best = el;
  }
  return best;
}

/**
 * A labelled input in a `.field` box: the label holds only its text (the input's name), a
 * hint is its description. opts: {path, type, value, options:[[value,label]], hint, ...attrs}.
 */
export function field(label, opts = {}) {
  const id = uid('f');
  const { path, options, hint, type, value, ...rest } = opts;
  const hintId = hint ? `${id}-hint` : null;
  const common = { id, name: path, 'aria-describedby': hintId, ...rest };
  let control;
  if (options) {
    control = h('select', common, options.map(([v, l]) => h('option', { value: v }, l)));
    if (value !== undefined && value !== null) control.value = String(value);
  } else if (type === 'textarea') {
    control = h('textarea', common);
    control.value = value === undefined || value === null ? '' : String(value);
  } else if (type === 'checkbox') {
    control = h('input', { ...common, type: 'checkbox', checked: !!value });
  } else {
    control = h('input', { ...common, type: type || 'text', value: value === undefined || value === null ? '' : String(value) });
  }
  if (path) control.dataset.path = path;
  const lab = h('label', { for: id }, label);
  const help = hint ? h('span', { class: 'muted hint', id: hintId }, hint) : null;
  if (type === 'checkbox') return h('div', { class: 'field check' }, control, lab, help);
  return h('div', { class: 'field' }, lab, control, help);
}

/** The input inside a field() box. */
export function input(fieldEl) {
  return fieldEl.querySelector('input, select, textarea');
}

/**
 * A table: columns [{title, get: row => text|Node, num: bool}], rows; opts.onSelect(row, tr)
 * makes rows selectable with the keyboard (a button in the first cell).
 */
export function table(columns, rows, opts = {}) {
  const head = h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : null }, c.title)));
  const body = h('tbody');
  for (const r of rows) {
    const tr = h('tr');
    columns.forEach((c, i) => {
      let v = c.get(r);
      if (i === 0 && opts.onSelect) {
        v = h('button', { type: 'button', class: 'link', onclick: () => {
          body.querySelectorAll('tr.selected').forEach((x) => x.classList.remove('selected'));
          tr.classList.add('selected');
          opts.onSelect(r, tr);
        } }, v);
      }
      tr.append(h('td', { class: c.num ? 'num' : null }, v === undefined || v === null || v === '' ? '-' : v));
    });
    body.append(tr);
  }
  if (!rows.length) body.append(h('tr', {}, h('td', { colspan: columns.length, class: 'muted' }, opts.empty || 'Nothing yet.')));
  return h('div', { class: 'table-wrap' }, h('table', { 'aria-label': opts.label || null }, h('thead', {}, head), body));
}

/** A modal confirmation: resolves true when confirmed. */
export function confirmDialog(title, text, confirmLabel = 'Confirm', danger = false) {
  return new Promise((resolve) => {
    const titleId = uid('dlg');
    const d = h('dialog', { 'aria-labelledby': titleId },
      h('h2', { id: titleId }, title),
      h('p', {}, text),
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: danger ? 'danger' : 'primary', 'data-confirm': '1', onclick: () => { d.close('yes'); } }, confirmLabel),
        h('button', { type: 'button', onclick: () => d.close('no') }, 'Cancel')));
    d.addEventListener('close', () => { d.remove(); resolve(d.returnValue === 'yes'); });
    document.body.append(d);
    d.showModal();
  });
}

/** A modal form: `body` (fields), then onOk() when submitted. */
export function formDialog(title, body, onOk, okLabel) {
  const d = h('dialog', { 'aria-label': title }, h('h2', {}, title));
  const form = h('form', { method: 'dialog', class: 'stack' }, body,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', value: 'ok' }, okLabel), h('button', { type: 'button', onclick: () => d.close() }, 'Cancel')));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    d.close();
    onOk();
  });
  d.append(form);
  d.addEventListener('close', () => d.remove());
  document.body.append(d);
  d.showModal();
}

/** What a write's envelope says: the version and the workers that applied it. */
export function appliedNote(r) {
  if (!r || r.dry_run) return null;
  if (r.changed === false) return banner('good', h('span', {}, 'Nothing changed.'));
  const a = r.applied || {};
  const applied = a.applied || [];
  const pending = a.pending || [];
  const v = r.config_version;
  if (!r.published) {
    return banner('warn', h('span', {}, `Saved as version ${v}, not yet published to Redis (the config center retries).`));
  }
  if (pending.length) {
    return banner('warn', h('span', { 'data-testid': 'applied' }, `Version ${v} saved; applied on ${applied.length ? applied.join(', ') : 'no worker yet'}; still pending on ${pending.map((p) => p.name || p.node || JSON.stringify(p)).join(', ')}.`));
  }
  return banner('good', h('span', { 'data-testid': 'applied' }, applied.length
    ? `Version ${v} applied on ${applied.join(', ')}${a.waited_ms !== undefined ? ` in ${a.waited_ms} ms` : ''}.`
    : `Version ${v} saved (no live gateway worker to apply it).`));
}

/** A one-time secret with a copy button and a warning. */
export function secretBox(label, value) {
  const code = h('code', { 'data-testid': 'secret' }, value);
  const copy = h('button', { type: 'button', onclick: async () => {
    try {
      await navigator.clipboard.writeText(value);
      copy.textContent = 'Copied';
    } catch (_) {
      const r = document.createRange();
      r.selectNodeContents(code);
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(r);
      copy.textContent = 'Selected: press Ctrl+C';
    }
  } }, 'Copy');
  return banner('warn', h('div', {},
    h('strong', {}, label),
    h('p', {}, 'Shown once: it is not stored anywhere. Copy it now; after you leave this page it cannot be shown again.'),
    h('div', { class: 'secret' }, code, copy)));
}

/**
 * Newer/older buttons for keyset pages: `cursors` is the stack of cursors of the pages
 * before the shown one; load(cursor) draws a page.
 */
export function pager(box, cursors, next, load) {
  box.replaceChildren(
    h('button', { type: 'button', disabled: !cursors.length, onclick: () => { cursors.pop(); load(cursors[cursors.length - 1]); } }, 'Newer'),
    h('span', { class: 'muted' }, `page ${cursors.length + 1}`),
    h('button', { type: 'button', disabled: !next, onclick: () => { cursors.push(next); load(next); } }, 'Older'));
}

/** A definition list for a detail panel. */
export function details(pairs) {
  return h('dl', {}, pairs.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v === undefined || v === null || v === '' ? '-' : v)]));
}

export function loading() {
  return h('p', { class: 'muted', 'aria-busy': 'true' }, 'Loading...');
}

export { when };
