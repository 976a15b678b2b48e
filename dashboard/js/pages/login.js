// Login: a session cookie from POST /auth/login; a locked account says until when.
import { api } from '../api.js';
import { h } from '../dom.js';
import { page, field, input, banner } from '../ui.js';

export function render({ onLogin }) {
  const user = field('User', { path: 'username', autocomplete: 'username', required: true });
  const pass = field('Password', { path: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const msg = h('div', { 'aria-live': 'assertive' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Log in');
  const form = h('form', { id: 'login', class: 'stack', novalidate: true }, msg, user, pass, h('div', { class: 'actions' }, submit));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    msg.replaceChildren();
    submit.disabled = true;
    try {
      const r = await api('POST', '/auth/login', {
        body: { username: input(user).value, password: input(pass).value },
        noRedirect: true,
      });
      onLogin(r.json);
    } catch (e) {
      input(pass).value = '';
      let text = e.message;
      if (e.code === 'account_locked') {
        const s = Number(e.retryAfter);
        text = `This account is locked after too many failed logins${s ? `; try again in ${Math.ceil(s / 60)} min` : ''}, or ask an admin to unlock it.`;
      } else if (e.status === 429) {
        text = `Too many failed logins from this address; wait ${e.retryAfter || 'a few'} s.`;
      } else if (e.code === 'invalid_credentials') {
        text = 'Wrong user name or password.';
      }
      msg.replaceChildren(banner('bad', h('span', { 'data-testid': 'login-error' }, text)));
      input(pass).focus();
    } finally {
      submit.disabled = false;
    }
  });
  const main = page('Log in to the AI gateway');
  main.replaceChildren(h('div', { class: 'login-box card' }, h('h1', {}, 'AI gateway'), h('p', { class: 'muted' }, 'Config center and traffic'), form));
  input(user).focus();
}
