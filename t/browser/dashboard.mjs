// The dashboard in a browser, step by step (run by t/160-dashboard.t; output: see harness.mjs).
//
// Environment: DASHBOARD_URL (the dashboard's origin, its API under /api/), GATEWAY_URL (the
// gateway: POST $GATEWAY_URL/v1/chat/completions), GATEWAY_KEY (a key of the one namespace
// of the node's gw.json), ADMIN_USER and ADMIN_PASSWORD (the bootstrap admin), and the
// harness's AI_GATEWAY_CHROMIUM and AI_GATEWAY_ARTIFACTS.
//
// Each step is an async function of the shared state `s`; they run in order. A step reports
// with check() (and goes on) or must() (later steps need it: the run stops there). An
// exception in a step is a "not ok" too, and stops the run.

import { launch, newPage, check, must, shown, shot, noConsoleErrors, run, Stop, appliedAfter } from './harness.mjs';

function env(name) {
    const v = process.env[name];
    if (!v) throw new Error(`${name} is not set`);
    return v;
}

const steps = [
    async function loginForm(s) {
        await s.page.goto(`${s.url}/`);
        const form = s.page.locator('form#login');
        must('the dashboard shows a login form (form#login)', await shown(form),
            `no form#login at ${s.url}/; the page says: ${(await s.page.locator('body').innerText()).slice(0, 300)}`);
        s.user = form.getByLabel('User', { exact: true });
        s.pw = form.getByLabel('Password', { exact: true });
        must('... with inputs labelled "User" and "Password"',
            (await s.user.count()) === 1 && (await s.pw.count()) === 1,
            `inputs labelled User: ${await s.user.count()}, Password: ${await s.pw.count()}`);
        await shot(s.page, 'login');
    },

    async function signIn(s) {
        await s.user.fill(s.adminUser);
        await s.pw.fill(s.adminPassword);
        await s.pw.press('Enter');
        const who = s.page.locator('[data-testid=whoami]');
        const signedIn = await shown(who.filter({ hasText: s.adminUser }), 10_000);
        must(`after logging in, the page shows the signed-in user ("${s.adminUser}" in [data-testid=whoami])`, signedIn,
            (await who.count()) ? `[data-testid=whoami] says: ${await who.first().innerText()}` : 'no [data-testid=whoami] on the page');
        await shot(s.page, 'signed-in');
        noConsoleErrors(s.page, 'login and sign-in');
    },

    async function overviewHasData(s) {
        // traffic first, so that the usage aggregates have something to chart
        const sent = [];
        for (let i = 0; i < 5; i++) sent.push(await chat(s, s.gatewayKey));
        must('five requests through the gateway answered 200', sent.join(',') === '200,200,200,200,200', sent.join(','));
        let logged = 0;
        await waitFor(async () => (logged = (await apiGet(s, '/access-logs', { namespace: 'team-a' })).items.length) >= 6, 15_000);
        must('... and are in the access logs with the set-up request (6)', logged === 6, `${logged} logged`);
        // signing in drew the overview before these requests: its own link draws it again
        must('signing in shows the overview', /#\/overview$/.test(s.page.url()), s.page.url());
        await s.page.getByRole('link', { name: 'Overview' }).click();
        await s.page.locator('section[aria-label="Last hour"] .stat').filter({ hasText: /^6$/ }).first().waitFor({ timeout: 10_000 }).catch(() => {});
        const chart = s.page.locator('figure[data-chart^="Requests/s"]').first();
        await chart.waitFor({ state: 'visible' });
        const points = Number(await chart.getAttribute('data-points'));
        const requests = await s.page.locator('section[aria-label="Last hour"] .stat').first().innerText();
        check('the overview counts the 6 requests of the last hour', requests === '6', requests);
        check('the overview charts have data points (Requests/s)', points > 0, `data-points=${points}`);
        check('... the last hour by minute', await s.page.locator('figure[data-chart="Requests/s (by minute)"]').count() === 1,
            await s.page.locator('figure[data-chart]').evaluateAll((f) => f.map((x) => x.dataset.chart).join(', ')));
        const lat = s.page.locator('figure[data-chart="Latency (by minute)"]');
        check('... and latency with p50 and p95 series', (await lat.locator('g[data-series="p50"]').count()) === 1
            && (await lat.locator('g[data-series="p95"]').count()) === 1, await lat.innerText().catch(() => 'no latency chart'));
        const nodes = s.page.getByRole('table', { name: 'Nodes' });
        check('... and list the node\'s workers with the configuration version they apply',
            (await nodes.getByText('current').count()) === 2, await nodes.innerText());
        await shot(s.page, 'overview');
        await pageChecks(s, 'overview');
    },

    async function createNamespaceAndKey(s) {
        s.ns = `ui-${Date.now().toString(36)}`;
        await s.page.goto(`${s.url}/#/namespaces`);
        await shot(s.page, 'namespaces');
        const form = s.page.getByRole('form', { name: 'New namespace' });
        await form.getByLabel('Code').fill(s.ns);
        await form.getByLabel('Name', { exact: true }).fill('Made in the browser');
        await form.getByRole('button', { name: 'Create namespace' }).click();
        must(`a namespace made in the form opens its page (${s.ns})`,
            await shown(s.page.getByRole('heading', { name: `Namespace ${s.ns}` }), 10_000), await mainText(s.page));
        await s.page.getByRole('tab', { name: 'Keys' }).click();
        const kf = s.page.getByRole('form', { name: 'New key' });
        await kf.getByLabel('Name').fill('browser');
        await kf.getByRole('button', { name: 'Create key' }).click();
        const secret = s.page.locator('[data-testid=secret]');
        must('a new key is shown once, with a warning', await shown(secret, 10_000)
            && /Shown once/.test(await s.page.locator('.banner').filter({ has: secret }).innerText()), await mainText(s.page));
        await s.context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: s.url });
        await s.page.getByRole('button', { name: 'Copy' }).click();
        s.key = await s.page.evaluate(() => navigator.clipboard.readText());
        check('the copy button puts the key on the clipboard', /^sk-gw-/.test(s.key) && s.key === await secret.innerText(), `clipboard: ${s.key.slice(0, 8)}...`);
        await shot(s.page, 'namespace-keys');
        s.nsKeys = new Set([s.key]);
        const st = await chat(s, s.key);
        check('the gateway answers the copied key with 200', st === 200, `status ${st}`);
        await pageChecks(s, 'namespace keys');
    },

    async function rotateKey(s) {
        const row = s.page.getByRole('row').filter({ hasText: s.key.slice(0, 10) });
        await row.getByRole('button', { name: 'Rotate' }).click();
        await s.page.locator('dialog').getByLabel('Grace period for the old key').selectOption('1h');
        await s.page.locator('dialog').getByRole('button', { name: 'Rotate' }).click();
        const secret = s.page.locator('[data-testid=secret]');
        const fresh = await waitFor(async () => (await secret.count()) === 1 && (await secret.innerText()) !== s.key, 10_000);
        must('rotating shows the new key once', fresh, await mainText(s.page));
        const old = s.key;
        s.key = await secret.innerText();
        s.nsKeys.add(s.key);
        const got = [await chat(s, s.key), await chat(s, old)];
        check('the new key works, and the old one during its grace period', got.join(',') === '200,200', got.join(','));
        check('the old key is shown as rotated, ending in an hour',
            await shown(s.page.getByRole('row').filter({ hasText: old.slice(0, 10) }).getByText('rotated')), await mainText(s.page));
        await pageChecks(s, 'rotate');
    },

    async function matcher(s) {
        await s.page.getByRole('tab', { name: 'Matchers' }).click();
        const f = s.page.getByRole('form', { name: 'New matcher' });
        await f.getByLabel('Type', { exact: true }).selectOption('header');
        await f.getByLabel('Field', { exact: true }).fill('X-UI-Team');
        await f.getByLabel('Operator', { exact: true }).selectOption('equals');
        await f.getByLabel('Value', { exact: true }).fill(s.ns);
        must('a matcher is added and applied',
            await appliedAfter(s.page, () => f.getByRole('button', { name: 'Add matcher' }).click()), await mainText(s.page));
        const r = await fetch(`${s.gatewayUrl}/v1/chat/completions`, {
            method: 'POST',
            headers: { 'X-UI-Team': s.ns, 'Content-Type': 'application/json' },
            body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] }),
        });
        await r.arrayBuffer();
        if (r.status !== 401) s.nsCalls += 1;
        check('a request without a key, with the matcher\'s header, is the namespace\'s (200)',
            r.status === 200 && r.headers.get('content-type').startsWith('application/json'), `status ${r.status}`);
        await shot(s.page, 'namespace-matchers');
        await pageChecks(s, 'namespace matchers');
    },

    async function policyGives429(s) {
        await s.page.getByRole('tab', { name: 'Policies' }).click();
        const f = s.page.getByRole('form', { name: 'New policy' });
        await f.getByLabel('Policy type').selectOption('requests');
        // the API's own message lands next to the field
        await f.getByLabel('Requests', { exact: true }).fill('0');
        await f.getByLabel('Window', { exact: true }).fill('1m');
        await f.getByRole('button', { name: 'Add policy' }).click();
        const err = f.locator('.field-error');
        check('a policy the API refuses shows its message next to the field',
            await shown(err) && (await f.getByLabel('Requests', { exact: true }).getAttribute('aria-invalid')) === 'true', await f.innerText());
        await f.getByLabel('Requests', { exact: true }).fill('2');
        await f.getByLabel('Name (optional)').fill('ui-burst');
        must('the policy is added and applied',
            await appliedAfter(s.page, () => f.getByRole('button', { name: 'Add policy' }).click()), await mainText(s.page));
        await shot(s.page, 'namespace-policies');
        const got = [];
        for (let i = 0; i < 3; i++) got.push(await chat(s, s.key));
        check('with requests limit 2 per minute: 200, 200, then 429', got.join(',') === '200,200,429', got.join(','));
        await pageChecks(s, 'namespace policies');
    },

    async function revokeKey(s) {
        await s.page.getByRole('tab', { name: 'Keys' }).click();
        const row = s.page.getByRole('row').filter({ hasText: s.key.slice(0, 10) });
        await row.getByRole('button', { name: 'Revoke' }).click();
        const t0 = Date.now();
        await s.page.locator('dialog [data-confirm]').click();
        let st = 0;
        while (Date.now() - t0 < 5000) {
            st = await chat(s, s.key);
            if (st === 401) break;
            await sleep(50);
        }
        const took = Date.now() - t0;
        check(`a revoked key gets 401 from the gateway within 1 s (${took} ms)`, st === 401 && took <= 1000, `status ${st} after ${took} ms`);
        await pageChecks(s, 'revoke');
    },

    async function usageTab(s) {
        await s.page.getByRole('tab', { name: 'Usage' }).click();
        await s.page.locator('figure[data-chart]').first().waitFor();
        await shot(s.page, 'namespace-usage');
        await pageChecks(s, 'namespace usage');
    },

    async function editRouteWeights(s) {
        // two targets and a route, through the API (the UI's forms are the same calls)
        const base = `http://127.0.0.1:${new URL(s.gatewayUrl).port}/v1`;
        for (const name of ['ui-t1', 'ui-t2']) await apiWrite(s, 'POST', '/targets', { name, provider: 'openai-compatible', base_url: base });
        await apiWrite(s, 'POST', '/routes', { name: 'ui-route', path_prefix: '/v1/', models: ['ui-*'], targets: [{ target: 'ui-t1', weight: 1 }] });
        await s.page.goto(`${s.url}/#/routing`);
        // a target with a key: the key is sealed and never shown again
        const tf = s.page.getByRole('form', { name: 'New target' });
        await tf.getByLabel('Name', { exact: true }).fill('ui-secret');
        await tf.getByLabel('Provider', { exact: true }).selectOption('openai');
        await tf.getByLabel('Base URL', { exact: true }).fill('http://127.0.0.1:9/v1');
        await tf.getByLabel('Credential', { exact: true }).selectOption('value');
        await tf.getByLabel('Key, variable name or file path').fill('sk-ui-secret-0123456789wxyz');
        await tf.getByRole('button', { name: 'Add target' }).click();
        const srow = s.page.getByRole('row').filter({ hasText: 'ui-secret' });
        must('a target with a key is added', await shown(srow, 10_000), await mainText(s.page));
        check('... its credential shows as set with its last 4 characters, never the key',
            /set \(value, \.\.\.wxyz\)/.test(await srow.innerText()) && !(await s.page.content()).includes('sk-ui-secret'), await srow.innerText());
        const row = s.page.getByRole('row').filter({ hasText: 'ui-route' });
        await row.getByRole('button', { name: 'Edit' }).click();
        const f = s.page.getByRole('form', { name: 'Edit route ui-route' });
        await f.getByLabel('Weight of ui-t1').fill('3');
        await f.getByLabel('Weight of ui-t2').fill('1');
        must('the route is saved and applied',
            await appliedAfter(s.page, () => f.getByRole('button', { name: 'Save route' }).click()), await mainText(s.page));
        const r = await apiGet(s, '/routes/ui-route');
        check('the route now has weights ui-t1=3, ui-t2=1', JSON.stringify(r.targets) === JSON.stringify([{ target: 'ui-t1', weight: 3 }, { target: 'ui-t2', weight: 1 }]), JSON.stringify(r.targets));
        s.versionBeforeConflict = (await apiGet(s, '/config/revisions', { limit: 1 })).items[0].version;
        const health = s.page.locator('[data-health="ui-t1"]');
        check('the routing page shows each target\'s health per node (n1: healthy)',
            await waitFor(async () => /n1: healthy/.test(await health.innerText()), 10_000), await health.innerText());
        // gw.json's route "v2" tries "down" (503, max_failures 1) first, then "mock"
        const st = await chat(s, s.gatewayKey, '/v2/chat/completions');
        check('a request routed to a failing target fails over (200)', st === 200, `status ${st}`);
        const down = s.page.locator('[data-health="down"]');
        check('... and the routing page shows that target cooling down',
            await waitFor(async () => /n1: cooling down until/.test(await down.innerText()), 15_000), await down.innerText());
        await shot(s.page, 'routing');
        await pageChecks(s, 'routing');
    },

    async function conflict412(s) {
        const row = s.page.getByRole('row').filter({ hasText: 'ui-route' });
        await row.getByRole('button', { name: 'Edit' }).click();
        const f = s.page.getByRole('form', { name: 'Edit route ui-route' });
        await f.getByLabel('Weight of ui-t1').fill('5');
        // meanwhile a second session changes the route
        const other = await s.browser.newContext();
        const csrf = await login(other, s.url, s.adminUser, s.adminPassword);
        const cur = await other.request.get(`${s.url}/api/v1/routes/ui-route`);
        const res = await other.request.patch(`${s.url}/api/v1/routes/ui-route`, {
            headers: { 'X-CSRF-Token': csrf, 'If-Match': cur.headers().etag },
            data: { targets: [{ target: 'ui-t1', weight: 7 }, { target: 'ui-t2', weight: 1 }] },
        });
        must('a second session changes the route', res.status() === 200, `${res.status()} ${await res.text()}`);
        await other.close();
        await f.getByRole('button', { name: 'Save route' }).click();
        const b = s.page.locator('.banner').filter({ hasText: 'Changed by someone else' });
        check('saving over it shows "changed by someone else" (412)', await shown(b), await mainText(s.page));
        await shot(s.page, 'routing-conflict');
        const r = await apiGet(s, '/routes/ui-route');
        check('... and did not overwrite the other session\'s change', r.targets[0].weight === 7, JSON.stringify(r.targets));
        await b.getByRole('button', { name: 'Reload' }).click();
        check('Reload shows the current weights', await shown(s.page.getByRole('row').filter({ hasText: 'ui-t1 (7)' })), await mainText(s.page));
        await pageChecks(s, 'conflict');
    },

    async function rollback(s) {
        await s.page.goto(`${s.url}/#/history`);
        const v = s.versionBeforeConflict;
        const row = s.page.getByRole('row').filter({ has: s.page.getByRole('cell', { name: String(v), exact: true }) }).first();
        await row.getByRole('button', { name: 'Diff' }).click();
        check('the diff view shows what a revision changed', await shown(s.page.locator('[data-testid=diff] .diff .add')), await mainText(s.page));
        await shot(s.page, 'history-diff');
        await row.getByRole('button', { name: 'Roll back to this' }).click();
        check('a rollback is confirmed and applied',
            await appliedAfter(s.page, () => s.page.locator('dialog [data-confirm]').click()), await mainText(s.page));
        const r = await apiGet(s, '/routes/ui-route');
        check(`after rolling back to version ${v} the route has its weights again (3, 1)`, r.targets[0].weight === 3, JSON.stringify(r.targets));
        const top = (await apiGet(s, '/config/revisions', { limit: 1 })).items[0];
        check('... as a new revision', top.action === 'config.rollback' && top.version > v + 1, JSON.stringify(top));
        await shot(s.page, 'history');
        await pageChecks(s, 'history');
    },

    async function accessLogs(s) {
        await s.page.goto(`${s.url}/#/logs`);
        const f = s.page.getByRole('search', { name: 'Filter access logs' });
        await f.getByLabel('Namespace').fill(s.ns);
        let rows = 0;
        await waitFor(async () => {
            await f.getByRole('button', { name: 'Filter' }).click();
            await sleep(300);
            rows = await s.page.getByRole('table', { name: 'Access logs' }).locator('tbody tr').filter({ hasText: s.ns }).count();
            return rows >= s.nsCalls;
        }, 15_000);
        check(`the access log shows the test's ${s.nsCalls} requests of ${s.ns}`, rows === s.nsCalls, `${rows} rows`);
        await s.page.getByRole('table', { name: 'Access logs' }).locator('tbody tr').filter({ hasText: '429' }).first().getByRole('button').click();
        const d = s.page.locator('[data-testid=log-detail]');
        check('a row opens its detail panel', await shown(d) && /rate_limit_exceeded|requests_limit/.test(await d.innerText()), await mainText(s.page));
        await shot(s.page, 'access-logs');
        const [download] = await Promise.all([
            s.page.waitForEvent('download'),
            s.page.getByRole('button', { name: 'Export CSV' }).click(),
        ]);
        const csv = await streamText(await download.createReadStream());
        const lines = csv.trim().split('\n');
        check(`Export CSV downloads the filtered logs (a header and ${s.nsCalls} rows)`,
            /^request_id,time,/.test(lines[0]) && lines.length === s.nsCalls + 1 && download.suggestedFilename().endsWith('.csv'),
            `${download.suggestedFilename()}: ${lines.length} lines, ${lines[0]}`);
        await pageChecks(s, 'access logs');
    },

    async function otherPages(s) {
        for (const [hash, name] of [['#/monitoring', 'monitoring'], ['#/audit', 'audit']]) {
            await s.page.goto(`${s.url}/${hash}`);
            await s.page.locator('main table, main figure').first().waitFor();
            await sleep(300);
            await shot(s.page, name);
            await pageChecks(s, name);
        }
        check('the audit log lists the rollback', (await s.page.getByText('config.rollback').count()) > 0, await mainText(s.page));
    },

    async function hostileText(s) {
        // what the API holds is shown as text: markup in a name never runs or renders
        const evil = '<img src=x onerror="window.__pwned=1"><b>bold</b>';
        await apiWrite(s, 'POST', '/namespaces', { code: 'ui-evil', name: evil, description: evil });
        await s.page.goto(`${s.url}/#/namespaces`);
        const row = s.page.getByRole('row').filter({ hasText: 'ui-evil' });
        await row.waitFor();
        const pwned = await s.page.evaluate(() => window.__pwned === 1 || !!document.querySelector('main img, main b'));
        check('markup in a namespace\'s name and description is shown as text, never run', !pwned && (await row.innerText()).includes(evil),
            await row.innerText());
        await s.page.goto(`${s.url}/#/namespaces/ui-evil`);
        await s.page.getByRole('tab', { name: 'Settings' }).waitFor();
        check('... on its own page too', !(await s.page.evaluate(() => window.__pwned === 1 || !!document.querySelector('main img, main b'))));
        await pageChecks(s, 'hostile text');
    },

    async function viewerCannotWrite(s) {
        await s.page.goto(`${s.url}/#/users`);
        const f = s.page.getByRole('form', { name: 'New user' });
        await f.getByLabel('User name').fill('ui-viewer');
        await f.getByLabel('Role').selectOption('viewer');
        await f.getByLabel('Password').fill('viewer password 123');
        await f.getByRole('button', { name: 'Create user' }).click();
        must('an admin creates a viewer', await shown(s.page.getByRole('row').filter({ hasText: 'ui-viewer' })), await mainText(s.page));
        // an API token: shown once, works as a Bearer token with its role
        const tf = s.page.getByRole('form', { name: 'New API token' });
        await tf.getByLabel('Token name').fill('ui-ci');
        await tf.getByLabel('For user').selectOption('ui-viewer');
        await tf.getByRole('button', { name: 'Create token' }).click();
        const secret = s.page.locator('[data-testid=secret]');
        must('a new API token is shown once', await shown(secret), await mainText(s.page));
        const token = await secret.innerText();
        const byToken = await fetch(`${s.url}/api/v1/auth/me`, { headers: { Authorization: `Bearer ${token}` } });
        const who = await byToken.json();
        check('the token authenticates as its user and role', byToken.status === 200 && who.user === 'ui-viewer' && who.role === 'viewer', JSON.stringify(who));
        await shot(s.page, 'users');
        await pageChecks(s, 'users');
        const ctx = await s.browser.newContext({ viewport: { width: 1280, height: 800 } });
        const p = await newPage(ctx, 'viewer');
        await p.goto(`${s.url}/`);
        await p.getByLabel('User', { exact: true }).fill('ui-viewer');
        await p.getByLabel('Password', { exact: true }).fill('viewer password 123');
        await p.getByLabel('Password', { exact: true }).press('Enter');
        must('the viewer logs in', await shown(p.locator('[data-testid=whoami]').filter({ hasText: 'viewer' }), 10_000), await mainText(p));
        await p.goto(`${s.url}/#/namespaces`);
        await p.getByRole('table', { name: 'Namespaces' }).waitFor();
        check('a viewer sees no form to create a namespace', (await p.getByRole('form', { name: 'New namespace' }).count()) === 0);
        await p.goto(`${s.url}/#/namespaces/${s.ns}`);
        await p.getByRole('tab', { name: 'Policies' }).click();
        await p.getByRole('table', { name: 'Policies' }).waitFor();
        check('... nor buttons to change policies', (await p.getByRole('button', { name: /Add policy|Edit|Delete/ }).count()) === 0, await mainText(p));
        await p.goto(`${s.url}/#/routing`);
        await p.getByRole('table', { name: 'Routes' }).waitFor();
        check('... nor to edit routes', (await p.getByRole('button', { name: /Edit|Delete|Add/ }).count()) === 0);
        check('... and no users page in the navigation', !(await p.getByRole('link', { name: 'Users and tokens' }).isVisible()));
        const me = await (await ctx.request.get(`${s.url}/api/v1/auth/me`)).json();
        const res = await ctx.request.post(`${s.url}/api/v1/namespaces`, { headers: { 'X-CSRF-Token': me.csrf_token }, data: { code: 'viewer-made' } });
        check('the API refuses a viewer\'s write (403)', res.status() === 403, `${res.status()}`);
        await shot(p, 'viewer-routing');
        noConsoleErrors(p, 'viewer');
        await ctx.close();
    },

    async function narrowAndKeyboard(s) {
        await s.page.setViewportSize({ width: 420, height: 860 });
        await s.page.goto(`${s.url}/#/overview`);
        await s.page.locator('figure[data-chart]').first().waitFor();
        const overflow = await s.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        check('on a narrow window (420 px) the overview has no sideways scroll', overflow <= 1, `${overflow} px too wide`);
        await shot(s.page, 'overview-narrow');
        await s.page.setViewportSize({ width: 1280, height: 800 });
        await s.page.goto(`${s.url}/#/namespaces`);
        await s.page.reload();
        await s.page.getByRole('table', { name: 'Namespaces' }).waitFor();
        await s.page.keyboard.press('Tab');
        const first = await s.page.evaluate(() => document.activeElement.textContent);
        check('the first Tab reaches the "Skip to content" link', first === 'Skip to content', first);
        let reached = false;
        for (let i = 0; i < 20 && !reached; i++) {
            await s.page.keyboard.press('Tab');
            reached = await s.page.evaluate(() => document.activeElement.getAttribute('href') === '#/routing');
        }
        check('the navigation is reachable with the keyboard', reached);
        if (reached) {
            const outline = await s.page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
            check('... with a visible focus ring', outline !== 'none', outline);
            await s.page.keyboard.press('Enter');
            check('... and Enter follows the link', await shown(s.page.getByRole('heading', { name: 'Model routing' })));
        }
        await pageChecks(s, 'keyboard');
    },

    async function lockout(s) {
        // five wrong passwords lock the account; the login form says so
        const ctx = await s.browser.newContext();
        const p = await newPage(ctx, 'lockout');
        await p.goto(`${s.url}/`);
        for (let i = 0; i < 6; i++) {
            await p.getByLabel('User', { exact: true }).fill('ui-viewer');
            await p.getByLabel('Password', { exact: true }).fill(`wrong password ${i}`);
            await p.getByRole('button', { name: 'Log in' }).click();
            await p.locator('[data-testid=login-error]').waitFor();
            await sleep(100);
        }
        const msg = await p.locator('[data-testid=login-error]').innerText();
        check('after five wrong passwords the login form says the account is locked', /locked/.test(msg), msg);
        await shot(p, 'login-locked');
        noConsoleErrors(p, 'lockout');
        await ctx.close();
        await s.page.goto(`${s.url}/#/users`);
        const row = s.page.getByRole('row').filter({ hasText: 'ui-viewer' });
        check('the users page shows the lock', await shown(row.getByText('locked until')), await mainText(s.page));
        await row.getByRole('button', { name: 'Unlock' }).click();
        check('... and an admin unlocks it', await shown(s.page.getByRole('row').filter({ hasText: 'ui-viewer' }).getByText('enabled')), await mainText(s.page));
        await pageChecks(s, 'unlock');
    },

    async function logout(s) {
        await s.page.getByRole('button', { name: 'Log out' }).click();
        check('logging out shows the login form again', await shown(s.page.locator('form#login')));
        const me = await s.context.request.get(`${s.url}/api/v1/auth/me`);
        check('... and the session is over (401)', me.status() === 401, `${me.status()}`);
    },
];

async function streamText(stream) {
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    return Buffer.concat(chunks).toString('utf8');
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(cond, ms) {
    const t0 = Date.now();
    while (Date.now() - t0 < ms) {
        if (await cond()) return true;
        await sleep(200);
    }
    return false;
}

async function mainText(page) {
    return (await page.locator('main').innerText().catch(() => '')).slice(0, 600);
}

// One chat completion through the gateway with `key`; the status.
async function chat(s, key, path = '/v1/chat/completions') {
    const r = await fetch(`${s.gatewayUrl}${path}`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] }),
    });
    await r.arrayBuffer();
    // the namespace's requests (a revoked key's 401 is nobody's)
    if (s.nsKeys && s.nsKeys.has(key) && r.status !== 401) s.nsCalls = (s.nsCalls || 0) + 1;
    return r.status;
}

// Logs a browser context in through the API; its CSRF token.
async function login(ctx, url, user, password) {
    const r = await ctx.request.post(`${url}/api/v1/auth/login`, { data: { username: user, password } });
    return (await r.json()).csrf_token;
}

// The admin page's own session (the browser's cookie) used for API reads and set-up writes.
async function apiGet(s, path, query) {
    const u = new URL(`${s.url}/api/v1${path}`);
    for (const [k, v] of Object.entries(query || {})) u.searchParams.set(k, v);
    const r = await s.context.request.get(u.toString());
    if (!r.ok()) throw new Error(`GET ${path}: ${r.status()} ${await r.text()}`);
    return r.json();
}

async function apiWrite(s, method, path, data) {
    s.csrf = s.csrf || (await apiGet(s, '/auth/me')).csrf_token;
    const r = await s.context.request.fetch(`${s.url}/api/v1${path}?wait_applied=5s`, { method, headers: { 'X-CSRF-Token': s.csrf }, data });
    if (!r.ok()) throw new Error(`${method} ${path}: ${r.status()} ${await r.text()}`);
    return r.json();
}

// Every page: no console errors, and every visible form control has a label.
async function pageChecks(s, label) {
    const unlabelled = await s.page.evaluate(() => [...document.querySelectorAll('input, select, textarea')]
        .filter((e) => e.offsetParent !== null && !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
        .map((e) => e.outerHTML.slice(0, 80)));
    check(`${label}: every input has a label`, unlabelled.length === 0, unlabelled);
    noConsoleErrors(s.page, label);
}

run(async () => {
    const s = {
        url: env('DASHBOARD_URL').replace(/\/$/, ''),
        gatewayUrl: process.env.GATEWAY_URL,
        gatewayKey: process.env.GATEWAY_KEY,
        adminUser: env('ADMIN_USER'),
        adminPassword: env('ADMIN_PASSWORD'),
    };
    ({ browser: s.browser, context: s.context } = await launch());
    s.page = await newPage(s.context, 'dashboard');
    for (const step of steps) {
        try {
            await step(s);
        } catch (err) {
            if (err instanceof Error && !(err instanceof Stop)) err.message = `${step.name}: ${err.message}`;
            throw err;
        }
    }
});
