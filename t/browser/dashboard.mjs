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

import { launch, newPage, check, must, shown, shot, noConsoleErrors, run, Stop } from './harness.mjs';

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

    // the next steps go here
];

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
