// The dashboard's shell: session, navigation and the hash router. Every page is a module
// under pages/ exporting render(params); all data comes from the public /api/v1.
import { api, session, ApiError } from './api.js';
import { h } from './dom.js';
import { page, errorBanner, setReloader } from './ui.js';
import { stopAll } from './timers.js';

const routes = [
  [/^#\/overview$/, () => import('./pages/overview.js')],
  [/^#\/namespaces$/, () => import('./pages/namespaces.js')],
  [/^#\/namespaces\/([^/]+)$/, () => import('./pages/namespace.js')],
  [/^#\/routing$/, () => import('./pages/routing.js')],
  [/^#\/monitoring$/, () => import('./pages/monitoring.js')],
  [/^#\/logs$/, () => import('./pages/logs.js')],
  [/^#\/audit$/, () => import('./pages/audit.js')],
  [/^#\/history$/, () => import('./pages/history.js')],
  [/^#\/users$/, () => import('./pages/users.js')],
];

function showChrome(on) {
  document.querySelector('header.top').hidden = !on;
  document.querySelector('nav.side').hidden = !on;
}

function markNav(hash) {
  for (const a of document.querySelectorAll('nav.side a')) {
    const target = a.getAttribute('href');
    if (hash === target || hash.startsWith(`${target}/`)) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

// One page is drawn at a time: a navigation during a draw waits for it, then the newest hash
// is drawn (so a slow page finishing late never covers the page asked for after it).
let drawing = null;
let again = false;

/** Draws the page the hash names; `moveFocus` (a navigation) puts the focus on it. */
async function route(moveFocus = false) {
  if (drawing) {
    again = true;
    return drawing;
  }
  drawing = draw(moveFocus);
  try {
    await drawing;
  } finally {
    drawing = null;
  }
  if (again) {
    again = false;
    await route(true);
  }
  return undefined;
}

async function draw(moveFocus) {
  stopAll();
  if (!session.user) {
    showChrome(false);
    const m = await import('./pages/login.js');
    return m.render({ onLogin: loggedIn });
  }
  showChrome(true);
  let [hash, qs] = (window.location.hash || '#/overview').split('?');
  if (hash === '#' || hash === '#/' || hash === '#/login') hash = '#/overview';
  markNav(hash);
  for (const [re, load] of routes) {
    const m = re.exec(hash);
    if (!m) continue;
    try {
      const mod = await load();
      await mod.render(m.slice(1).map(decodeURIComponent), new URLSearchParams(qs || ''));
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) return undefined;
      page('Something went wrong', errorBanner(e));
      if (!(e instanceof ApiError)) console.warn(e);
    }
    const main = document.getElementById('main');
    if (moveFocus && !main.contains(document.activeElement)) main.focus({ preventScroll: true });
    return undefined;
  }
  page('Not found', h('p', {}, 'No such page. '), h('a', { href: '#/overview' }, 'Go to the overview'));
  return undefined;
}

function loggedIn(me) {
  session.user = me.user;
  session.role = me.role;
  session.csrf = me.csrf_token || session.csrf;
  document.querySelector('[data-testid=whoami]').textContent = `${me.user} (${me.role})`;
  for (const li of document.querySelectorAll('nav.side [data-role=admin]')) li.hidden = me.role !== 'admin';
  if (!window.location.hash || window.location.hash === '#/login') window.location.hash = '#/overview';
  else route();
}

function lost() {
  session.user = null;
  session.role = null;
  session.csrf = null;
  route();
}

async function start() {
  session.onLost = lost;
  setReloader(() => route());
  document.getElementById('logout').addEventListener('click', async () => {
    try {
      await api('POST', '/auth/logout', { noRedirect: true });
    } catch (_) { /* the session is gone either way */ }
    lost();
  });
  window.addEventListener('hashchange', () => route(true));
  // the link of the page on screen draws it again (fresh data), as a reload would
  document.querySelector('nav.side').addEventListener('click', (e) => {
    const a = e.target.closest('a');
    if (a && a.getAttribute('href') === window.location.hash) route(true);
  });
  try {
    const me = await api('GET', '/auth/me', { noRedirect: true });
    loggedIn(me.json);
  } catch (_) {
    route();
  }
}

start();
