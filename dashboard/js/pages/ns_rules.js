// A namespace's matchers and policies: ordered lists, and a form per policy type whose
// inputs carry the API's JSON paths, so its validation messages land next to the field.
import { getAll, write, fresh } from '../api.js';
import { h } from '../dom.js';
import { field, input, canWrite, showError, clearErrors, confirmDialog, appliedNote, table, toast } from '../ui.js';

const OPERATORS = ['equals', 'not_equals', 'contains', 'starts_with', 'ends_with', 'regex'].map((o) => [o, o]);
const WINDOW_HINT = 'seconds, or 30s, 1m, 1h, 1d';

// The fields of each policy type (README "Policies"): [path, label, kind, extra]
const COUNTING = ['requests', 'tokens', 'quota', 'concurrency'];
export const POLICY_TYPES = {
  requests: [['limit', 'Requests', 'int'], ['window', 'Window', 'text', { hint: WINDOW_HINT }]],
  tokens: [['limit', 'Tokens', 'int'], ['window', 'Window', 'text', { hint: WINDOW_HINT }], ['reserve_output', 'Reserve output tokens', 'int', { hint: 'when the request names no max_tokens' }]],
  quota: [['limit', 'Limit', 'int'], ['period', 'Period', 'select', { options: [['day', 'day (UTC)'], ['month', 'month (UTC)']] }], ['unit', 'Unit', 'select', { options: [['tokens', 'tokens'], ['requests', 'requests']] }]],
  concurrency: [['limit', 'Requests in flight', 'int']],
  input_tokens: [['max', 'Max prompt tokens', 'int']],
  output_tokens: [['max', 'Max output tokens', 'int'], ['action', 'Action', 'select', { options: [['clamp', 'clamp (lower the client\'s limit)'], ['reject', 'reject (400)']] }]],
  models: [['allow', 'Allowed models', 'globs', { hint: 'globs, comma-separated: gpt-4o*, claude-*' }]],
  message: [['source', 'Source', 'select', { options: [['body', 'body (dot path)'], ['header', 'header'], ['query', 'query']] }], ['field', 'Field', 'text'],
    ['operator', 'Operator', 'select', { options: OPERATORS }], ['value', 'Value', 'text'], ['action', 'Action', 'select', { options: [['allow', 'allow (must match)'], ['deny', 'deny (must not match)']] }]],
};
const COMMON = [['name', 'Name (optional)', 'text', { hint: 'in logs and $ai_gateway_policy' }], ['models', 'Only for models (optional)', 'globs', { hint: 'globs, comma-separated' }]];
const COUNTING_EXTRA = [['per_model', 'One counter per model', 'bool'], ['mode', 'Cluster mode', 'select', { options: [['', 'the node\'s default'], ['exact', 'exact (across nodes)'], ['local', 'local (per node)']] }],
  ['on_failure', 'When Redis is unreachable', 'select', { options: [['', 'the node\'s default'], ['fail_open', 'fail open'], ['fail_closed', 'fail closed']] }]];
const MATCHER = [['type', 'Type', 'select', { options: [['header', 'header'], ['query', 'query'], ['body', 'body (dot path)']] }], ['field', 'Field', 'text'],
  ['operator', 'Operator', 'select', { options: OPERATORS }], ['value', 'Value', 'text'], ['priority', 'Priority', 'int', { hint: 'lower first (default 100)' }]];

function specFor(kind, type) {
  if (kind === 'matchers') return MATCHER;
  const own = POLICY_TYPES[type] || [];
  return [...own, ...COMMON, ...(COUNTING.includes(type) ? COUNTING_EXTRA : []), ['dry_run', 'Dry run (log, never reject)', 'bool']];
}

function makeInput([path, label, kind, extra = {}], value) {
  if (kind === 'bool') return field(label, { path, type: 'checkbox', value: !!value });
  if (kind === 'select') return field(label, { path, options: extra.options, value: value ?? extra.options[0][0], hint: extra.hint });
  if (kind === 'int') return field(label, { path, type: 'number', step: 1, min: 0, value: value ?? '', hint: extra.hint });
  if (kind === 'globs') return field(label, { path, value: Array.isArray(value) ? value.join(', ') : value ?? '', hint: extra.hint });
  return field(label, { path, value: value ?? '', hint: extra.hint });
}

function readInput([path, , kind], el) {
  const i = input(el);
  if (kind === 'bool') return i.checked || undefined;
  const v = i.value.trim();
  if (v === '') return undefined;
  if (kind === 'int') return /^-?\d+$/.test(v) ? Number(v) : v;
  if (kind === 'globs') return v.split(',').map((x) => x.trim()).filter(Boolean);
  return v;
}

/** A one-line summary of a policy or matcher. */
export function summary(kind, it) {
  if (kind === 'matchers') return `${it.type} ${it.field} ${it.operator} "${it.value}"`;
  const skip = new Set(['id', 'type', 'namespace', 'position', 'created_at', 'updated_at', 'name']);
  return Object.entries(it).filter(([k]) => !skip.has(k)).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join(',') : v}`).join(' ');
}

export async function rulesTab(ctx, kind) {
  const base = `/namespaces/${encodeURIComponent(ctx.code)}/${kind}`;
  const items = await getAll(base);
  const out = h('div');
  const editor = h('div');
  const done = (r) => {
    ctx.note.replaceChildren(appliedNote(r) || '');
    ctx.show(kind);
  };
  const cols = [
    { title: '#', get: (it) => String(it.position + 1), num: true },
    ...(kind === 'policies' ? [{ title: 'Type', get: (it) => it.type }, { title: 'Name', get: (it) => it.name || '' }] : []),
    { title: 'Rule', get: (it) => h('code', {}, summary(kind, it)) },
  ];
  if (canWrite()) {
    cols.push({ title: 'Actions', get: (it) => h('div', { class: 'actions' },
      h('button', { type: 'button', onclick: async () => {
        try {
          const cur = await fresh(`${base}/${it.id}`, it);
          editor.replaceChildren(ruleForm(kind, base, cur, cur.etag, done));
          editor.querySelector('input, select')?.focus();
        } catch (err) {
          showError(out, err);
        }
      } }, 'Edit'),
      h('button', { type: 'button', class: 'danger', onclick: async () => {
        if (!(await confirmDialog(`Delete this ${kind === 'policies' ? 'policy' : 'matcher'}?`, summary(kind, it), 'Delete', true))) return;
        try {
          const cur = await fresh(`${base}/${it.id}`, it);
          done(await write('DELETE', `${base}/${it.id}`, undefined, cur.etag));
        } catch (err) {
          showError(out, err);
        }
      } }, 'Delete')) });
  }
  out.append(table(cols, items, { label: kind === 'policies' ? 'Policies' : 'Matchers', empty: kind === 'policies' ? 'No policy: requests are not limited.' : 'No matcher.' }));
  if (canWrite()) {
    out.append(editor);
    editor.append(ruleForm(kind, base, null, items.etag, done));
  }
  return out;
}

/** The form to add (item null) or edit an item; a policy's inputs follow its type. */
function ruleForm(kind, base, item, etag, done) {
  const isPolicy = kind === 'policies';
  const type = isPolicy ? field('Policy type', { path: 'type', value: item ? item.type : 'requests', options: Object.keys(POLICY_TYPES).map((t) => [t, t]), disabled: !!item }) : null;
  const fields = h('div', { class: 'row' });
  let spec = [];
  const draw = () => {
    spec = specFor(kind, isPolicy ? input(type).value : null);
    fields.replaceChildren(...spec.map((s) => makeInput(s, item ? item[s[0]] : undefined)));
  };
  if (type) input(type).addEventListener('change', draw);
  draw();
  const position = field('Position', { path: 'position', type: 'number', min: 1, step: 1, value: item ? item.position + 1 : '', hint: 'empty: last' });
  const title = item ? `Edit ${isPolicy ? 'policy' : 'matcher'} #${item.position + 1}` : `New ${isPolicy ? 'policy' : 'matcher'}`;
  const form = h('form', { class: 'stack', 'aria-label': title, style: 'max-width:none' },
    h('h3', {}, title), type, fields, position,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, item ? 'Save' : `Add ${isPolicy ? 'policy' : 'matcher'}`),
      item ? h('button', { type: 'button', onclick: () => done(null) }, 'Cancel') : null));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(form);
    const body = {};
    if (isPolicy) body.type = input(type).value;
    spec.forEach((s, i) => {
      const v = readInput(s, fields.children[i]);
      if (v !== undefined) body[s[0]] = v;
    });
    const pos = input(position).value.trim();
    if (pos !== '') body.position = /^\d+$/.test(pos) ? Number(pos) - 1 : pos;
    try {
      const r = item ? await write('PUT', `${base}/${item.id}`, body, etag) : await write('POST', base, body, etag);
      toast(item ? 'Saved' : 'Added');
      done(r);
    } catch (err) {
      showError(form, err);
    }
  });
  return form;
}
