// Namespaces: the list with search and status filter, and a form to create one.
import { get, write } from '../api.js';
import { h, num, badge } from '../dom.js';
import { page, table, field, input, canWrite, showError, clearErrors, toast } from '../ui.js';

export async function render() {
  const q = field('Search', { type: 'search', placeholder: 'code or name' });
  const status = field('Status', { options: [['', 'any'], ['enabled', 'enabled'], ['disabled', 'disabled']] });
  const list = h('div');
  const filters = h('form', { class: 'inline', role: 'search', onsubmit: (e) => { e.preventDefault(); load(); } },
    q, status, h('button', { type: 'submit' }, 'Search'));

  async function load() {
    const r = await get('/namespaces', { q: input(q).value.trim(), status: input(status).value, limit: 1000 });
    list.replaceChildren(table([
      { title: 'Code', get: (n) => h('a', { href: `#/namespaces/${encodeURIComponent(n.code)}` }, n.code) },
      { title: 'Name', get: (n) => n.name },
      { title: 'Status', get: (n) => badge(n.status, n.status === 'enabled' ? 'good' : 'bad') },
      { title: 'Keys', get: (n) => num(n.key_count), num: true },
      { title: 'Matchers', get: (n) => num(n.matcher_count), num: true },
      { title: 'Policies', get: (n) => num(n.policy_count), num: true },
      { title: 'Description', get: (n) => n.description },
    ], r.items || [], { label: 'Namespaces', empty: 'No namespace matches.' }),
    r.next_cursor ? h('p', { class: 'muted' }, 'More than 1000 namespaces: refine the search.') : null);
    list.dataset.etag = r.etag || '';
  }

  page('Namespaces', filters, list, canWrite() ? createForm(() => list.dataset.etag) : null);
  await load();
}

function createForm(etag) {
  const code = field('Code', { path: 'code', required: true, hint: 'letters, digits, -, _ and . (1-64); never changes' });
  const name = field('Name', { path: 'name' });
  const description = field('Description', { path: 'description' });
  const status = field('Status', { path: 'status', options: [['enabled', 'enabled'], ['disabled', 'disabled']] });
  const form = h('form', { class: 'stack', 'aria-label': 'New namespace' }, code, name, description, status,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Create namespace')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(form);
    const body = { code: input(code).value.trim(), status: input(status).value };
    if (input(name).value.trim()) body.name = input(name).value.trim();
    if (input(description).value.trim()) body.description = input(description).value.trim();
    try {
      await write('POST', '/namespaces', body, etag());
      toast(`Namespace ${body.code} created`);
      window.location.hash = `#/namespaces/${encodeURIComponent(body.code)}`;
    } catch (err) {
      showError(form, err);
    }
  });
  return h('section', {}, h('h2', {}, 'New namespace'), form);
}
