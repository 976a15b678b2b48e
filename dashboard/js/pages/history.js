// Config history: every revision, the diff between two, and rollback (a new revision with
// an old one's content) after a confirmation.
import { get, write } from '../api.js';
import { h, when } from '../dom.js';
import { page, field, input, table, canWrite, confirmDialog, appliedNote, showError, toast, banner } from '../ui.js';

export async function render(_, params) {
  const r = await get('/config/revisions', { limit: 200 });
  const revs = r.items || [];
  const current = revs.length ? revs[0].version : 0;
  const note = h('div', { 'aria-live': 'polite' });
  const diffBox = h('section', { 'aria-label': 'Diff', 'data-testid': 'diff' });
  const versions = revs.map((v) => [String(v.version), `v${v.version} - ${when(v.created_at)} - ${v.action}`]);
  const from = field('From', { options: versions, value: String(revs[1] ? revs[1].version : current) });
  const to = field('To', { options: versions, value: String(params.get('v') || current) });
  const form = h('form', { class: 'inline', 'aria-label': 'Compare revisions' }, from, to, h('button', { type: 'submit', class: 'primary' }, 'Show diff'));
  form.addEventListener('submit', (e) => { e.preventDefault(); showDiff(input(from).value, input(to).value); });

  async function showDiff(a, b) {
    try {
      const d = await get('/config/diff', { from: a, to: b });
      diffBox.replaceChildren(h('h2', {}, `Changes from v${a} to v${b}`), renderDiff(d.changes || []));
    } catch (err) {
      showError(diffBox, err);
    }
  }

  async function rollback(v) {
    if (!(await confirmDialog(`Roll back to version ${v.version}?`, `A new version (${current + 1}) is made with the content of version ${v.version} (${when(v.created_at)}, ${v.action} by ${v.actor}); every node applies it.`, 'Roll back', true))) return;
    try {
      const w = await write('POST', '/config/rollback', { version: v.version, message: `rollback to ${v.version} from the dashboard` }, `"v${current}"`);
      toast(`Rolled back to version ${v.version}`);
      await render(_, new URLSearchParams());
      document.querySelector('[data-testid=history-note]').replaceChildren(appliedNote(w) || '');
    } catch (err) {
      showError(note, err);
    }
  }

  note.dataset.testid = 'history-note';
  page('Config history', note,
    table([
      { title: 'Version', get: (v) => String(v.version), num: true },
      { title: 'Time', get: (v) => when(v.created_at) },
      { title: 'Who', get: (v) => v.actor },
      { title: 'Action', get: (v) => h('code', {}, v.action) },
      { title: 'Message', get: (v) => v.message || '' },
      { title: 'Published', get: (v) => (v.published_at ? when(v.published_at) : 'not yet') },
      { title: 'Actions', get: (v) => h('div', { class: 'actions' },
        h('button', { type: 'button', onclick: () => { input(from).value = String(Math.max(v.version - 1, 1)); input(to).value = String(v.version); showDiff(v.version - 1 || 1, v.version); } }, 'Diff'),
        canWrite() && v.version !== current ? h('button', { type: 'button', class: 'danger', onclick: () => rollback(v) }, 'Roll back to this') : null) },
    ], revs, { label: 'Revisions' }),
    r.next_cursor ? banner('warn', h('span', {}, 'Only the newest 200 revisions are listed.')) : null,
    h('h2', {}, 'Compare'), form, diffBox);
  if (revs.length) await showDiff(input(from).value, input(to).value);
}

/** Each change: its path and operation, and a line diff of the JSON before and after. */
export function renderDiff(changes) {
  if (!changes.length) return h('p', { class: 'muted' }, 'No difference.');
  return h('div', {}, changes.map((c) => h('div', { class: 'card', style: 'margin-bottom:8px' },
    h('h3', {}, h('code', {}, c.path), ` ${c.op}`),
    h('div', { class: 'diff' }, lineDiff(pretty(c.from), pretty(c.to))))));
}

function pretty(v) {
  return v === null || v === undefined ? [] : JSON.stringify(v, null, 2).split('\n');
}

/** A longest-common-subsequence line diff (documents are small). */
function lineDiff(a, b) {
  const n = a.length;
  const m = b.length;
  const L = Array.from({ length: n + 1 }, () => new Array(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i -= 1) for (let j = m - 1; j >= 0; j -= 1) L[i][j] = a[i] === b[j] ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
  const out = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) { out.push(h('div', {}, `  ${a[i]}`)); i += 1; j += 1; }
    else if (i < n && (j >= m || L[i + 1][j] >= L[i][j + 1])) { out.push(h('div', { class: 'del' }, `- ${a[i]}`)); i += 1; }
    else { out.push(h('div', { class: 'add' }, `+ ${b[j]}`)); j += 1; }
  }
  return out;
}
