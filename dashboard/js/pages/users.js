// Admin users and API tokens (admins only): create, change role, disable, unlock, reset a
// password, delete; tokens shown once, revoked.
import { getAll, api, fresh } from '../api.js';
import { h, when, badge } from '../dom.js';
import { page, field, input, table, isAdmin, showError, clearErrors, confirmDialog, formDialog, secretBox, toast, banner } from '../ui.js';
import { localToRfc3339 } from './ns_keys.js';

const ROLES = [['viewer', 'viewer (read only)'], ['editor', 'editor (configuration)'], ['admin', 'admin (also users and tokens)']];

export async function render() {
  if (!isAdmin()) {
    page('Users and tokens', banner('warn', h('span', {}, 'Only admins manage users and tokens.')));
    return;
  }
  const [users, tokens] = await Promise.all([getAll('/users'), getAll('/tokens')]);
  const msg = h('div', { 'aria-live': 'polite' });
  const again = () => render();
  const act = async (fn) => {
    try {
      await fn();
      await again();
    } catch (err) {
      showError(msg, err);
    }
  };
  // users have no ETag: the user is read again and compared with the row acted on
  const patch = (u, body, what) => act(async () => {
    await fresh(`/users/${encodeURIComponent(u.name)}`, u);
    await api('PATCH', `/users/${encodeURIComponent(u.name)}`, { body });
    toast(`${u.name}: ${what}`);
  });
  page('Users and tokens', msg,
    h('h2', {}, 'Users'),
    table([
      { title: 'Name', get: (u) => u.name },
      { title: 'Role', get: (u) => {
        const f = field(`Role of ${u.name}`, { options: ROLES, value: u.role });
        input(f).addEventListener('change', () => patch(u, { role: input(f).value }, `role ${input(f).value}`));
        return f;
      } },
      { title: 'State', get: (u) => (u.locked_until && Date.parse(u.locked_until) > Date.now() ? badge(`locked until ${when(u.locked_until)}`, 'bad') : u.enabled ? badge('enabled', 'good') : badge('disabled', 'bad')) },
      { title: 'Failed logins', get: (u) => String(u.failed_logins), num: true },
      { title: 'Actions', get: (u) => h('div', { class: 'actions' },
        h('button', { type: 'button', onclick: () => patch(u, { enabled: !u.enabled }, u.enabled ? 'disabled' : 'enabled') }, u.enabled ? 'Disable' : 'Enable'),
        u.locked_until || u.failed_logins ? h('button', { type: 'button', onclick: () => patch(u, { unlock: true }, 'unlocked') }, 'Unlock') : null,
        h('button', { type: 'button', onclick: () => passwordDialog(u, (pw) => patch(u, { password: pw }, 'password changed')) }, 'Set password'),
        h('button', { type: 'button', class: 'danger', onclick: async () => {
          if (await confirmDialog(`Delete user ${u.name}?`, 'Its sessions and tokens end with it.', 'Delete', true)) {
            act(async () => {
              await fresh(`/users/${encodeURIComponent(u.name)}`, u);
              await api('DELETE', `/users/${encodeURIComponent(u.name)}`);
              toast(`${u.name} deleted`);
            });
          }
        } }, 'Delete')) },
    ], users, { label: 'Users' }),
    userForm(msg, again),
    h('h2', {}, 'API tokens'),
    table([
      { title: 'Id', get: (t) => h('code', {}, t.id) },
      { title: 'Name', get: (t) => t.name },
      { title: 'User', get: (t) => t.user },
      { title: 'Role', get: (t) => t.role },
      { title: 'Prefix', get: (t) => h('code', {}, `${t.prefix}...`) },
      { title: 'Expires', get: (t) => (t.expires_at ? when(t.expires_at) : 'never') },
      { title: 'Last used', get: (t) => (t.last_used_at ? when(t.last_used_at) : 'never') },
      { title: 'Actions', get: (t) => h('button', { type: 'button', class: 'danger', onclick: async () => {
        if (await confirmDialog(`Revoke token ${t.prefix}...?`, 'Automation using it gets 401 from now on.', 'Revoke', true)) {
          act(async () => { await api('DELETE', `/tokens/${t.id}`); toast('Token revoked'); });
        }
      } }, 'Revoke') },
    ], tokens, { label: 'API tokens', empty: 'No API token.' }),
    tokenForm(users, msg));
}

function userForm(msg, again) {
  const name = field('User name', { path: 'name', autocomplete: 'off' });
  const role = field('Role', { path: 'role', options: ROLES, value: 'viewer' });
  const pw = field('Password', { path: 'password', type: 'password', autocomplete: 'new-password', hint: 'at least 12 characters' });
  const form = h('form', { class: 'inline', 'aria-label': 'New user' }, name, role, pw, h('button', { type: 'submit', class: 'primary' }, 'Create user'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(form);
    try {
      await api('POST', '/users', { body: { name: input(name).value.trim(), role: input(role).value, password: input(pw).value } });
      toast(`User ${input(name).value.trim()} created`);
      await again();
    } catch (err) {
      showError(form, err);
    }
  });
  return h('section', {}, h('h3', {}, 'New user'), form);
}

function tokenForm(users, msg) {
  const name = field('Token name', { path: 'name' });
  const user = field('For user', { path: 'user', options: users.map((u) => [u.name, u.name]) });
  const role = field('Role', { path: 'role', options: [['', 'the user\'s role'], ...ROLES] });
  const expires = field('Expires at (optional, local time)', { path: 'expires_at', type: 'datetime-local' });
  const out = h('div', { 'aria-live': 'polite' });
  const form = h('form', { class: 'inline', 'aria-label': 'New API token' }, name, user, role, expires, h('button', { type: 'submit', class: 'primary' }, 'Create token'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(form);
    const body = { name: input(name).value.trim(), user: input(user).value };
    if (input(role).value) body.role = input(role).value;
    const exp = localToRfc3339(input(expires).value);
    if (exp) body.expires_at = exp;
    try {
      const r = await api('POST', '/tokens', { body });
      const t = (r.json && r.json.data) || r.json || {};
      out.replaceChildren(secretBox(`API token ${t.name} (${t.role})`, t.token));
      msg.replaceChildren();
    } catch (err) {
      showError(form, err);
    }
  });
  return h('section', {}, h('h3', {}, 'New API token'), out, form);
}

function passwordDialog(u, go) {
  const pw = field(`New password for ${u.name}`, { type: 'password', autocomplete: 'new-password', hint: 'at least 12 characters; the user\'s sessions end' });
  formDialog(`Set the password of ${u.name}`, pw, () => go(input(pw).value), 'Set password');
}
