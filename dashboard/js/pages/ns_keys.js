// A namespace's keys: generate (the plaintext shown once), rotate with a grace period,
// disable/enable, set an expiry, revoke.
import { getAll, write, fresh } from '../api.js';
import { h, when, badge } from '../dom.js';
import { field, input, canWrite, showError, clearErrors, confirmDialog, formDialog, appliedNote, secretBox, table, toast } from '../ui.js';

/** "2026-12-31T10:00" (a datetime-local value, local time) -> RFC 3339 UTC, '' -> null. */
export function localToRfc3339(v) {
  if (!v) return null;
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? v : d.toISOString();
}

function rfcToLocal(v) {
  if (!v) return '';
  const d = new Date(v);
  const p = (x) => String(x).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

function keyState(k) {
  if (!k.enabled) return badge('disabled', 'bad');
  if (k.status && k.status !== 'active') return badge(k.status, k.status === 'expired' ? 'bad' : 'warn');
  if (k.rotated_to) return badge(`rotated: ends ${when(k.expires_at)}`, 'warn');
  return badge('active', 'good');
}

export async function keysTab(ctx) {
  const base = `/namespaces/${encodeURIComponent(ctx.code)}/keys`;
  const keys = await getAll(base);
  const out = h('div');
  const secret = h('div', { 'aria-live': 'polite' });
  const done = (r, shown) => {
    ctx.note.replaceChildren(appliedNote(r) || '');
    ctx.show('keys').then(() => {
      if (shown) ctx.panel.prepend(secretBox(shown.label, shown.key));
    });
  };
  const act = (k) => {
    if (!canWrite()) return '';
    const path = `${base}/${k.id}`;
    const run = async (fn) => {
      try {
        const cur = await fresh(path, k);
        await fn(cur);
      } catch (err) {
        showError(out, err);
      }
    };
    return h('div', { class: 'actions' },
      h('button', { type: 'button', onclick: () => run(async (cur) => done(await write('PATCH', path, { enabled: !k.enabled }, cur.etag))) }, k.enabled ? 'Disable' : 'Enable'),
      h('button', { type: 'button', onclick: () => rotateDialog(k, (grace) => run(async (cur) => {
        const r = await write('POST', `${path}/rotate`, { grace }, cur.etag);
        done(r, { label: `New key for ${k.name || k.id} (the old one works until ${when((r.data.old || {}).expires_at) || 'now'})`, key: r.data.key });
      })) }, 'Rotate'),
      h('button', { type: 'button', onclick: () => expiryDialog(k, (expires) => run(async (cur) => done(await write('PATCH', path, { expires_at: expires }, cur.etag)))) }, 'Expiry'),
      h('button', { type: 'button', class: 'danger', onclick: async () => {
        if (await confirmDialog(`Revoke key ${k.prefix || k.id}?`, 'Every node stops accepting it (401) as soon as it applies the new version.', 'Revoke', true)) {
          run(async (cur) => done(await write('DELETE', path, undefined, cur.etag)));
        }
      } }, 'Revoke'));
  };
  out.append(secret, table([
    { title: 'Id', get: (k) => h('code', {}, k.id) },
    { title: 'Name', get: (k) => k.name },
    { title: 'Prefix', get: (k) => (k.prefix ? h('code', {}, `${k.prefix}...`) : '') },
    { title: 'State', get: keyState },
    { title: 'Expires', get: (k) => (k.expires_at ? when(k.expires_at) : 'never') },
    { title: 'Created', get: (k) => when(k.created_at) },
    { title: 'Actions', get: act },
  ], keys, { label: 'Keys', empty: 'No key: requests are identified by matchers only.' }));
  if (canWrite()) out.append(createForm(base, keys.etag, done));
  return out;
}

function createForm(base, etag, done) {
  const name = field('Name', { path: 'name', hint: 'who or what uses it' });
  const expires = field('Expires at (optional, your local time)', { path: 'expires_at', type: 'datetime-local' });
  const form = h('form', { class: 'inline', 'aria-label': 'New key' }, name, expires, h('button', { type: 'submit', class: 'primary' }, 'Create key'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(form);
    const body = {};
    if (input(name).value.trim()) body.name = input(name).value.trim();
    const exp = localToRfc3339(input(expires).value);
    if (exp) body.expires_at = exp;
    try {
      const r = await write('POST', base, body, etag);
      toast('Key created');
      done(r, { label: `New key ${r.data.prefix}... for this namespace`, key: r.data.key });
    } catch (err) {
      showError(form, err);
    }
  });
  return h('section', {}, h('h3', {}, 'New key'), form);
}

function rotateDialog(k, go) {
  const grace = field('Grace period for the old key', { options: [['0s', 'none: it stops now'], ['1h', '1 hour'], ['24h', '24 hours'], ['7d', '7 days'], ['30d', '30 days']] });
  formDialog(`Rotate key ${k.prefix || k.id}`, h('div', {}, h('p', {}, 'A new key replaces this one; the old one keeps working for the grace period, then stops on every node.'), grace), () => go(input(grace).value), 'Rotate');
}

function expiryDialog(k, go) {
  const at = field('Expires at (your local time; empty: never)', { type: 'datetime-local', value: rfcToLocal(k.expires_at) });
  formDialog(`Expiry of key ${k.prefix || k.id}`, at, () => go(localToRfc3339(input(at).value)), 'Save');
}
