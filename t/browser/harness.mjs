// The browser tests' harness (t/160-dashboard.t runs a script that uses it).
//
// Output protocol, on stdout, one check per line (the Perl side counts them):
//   ok - <name>
//   not ok - <name>
//   # <diagnostic>        (after a failed check: why)
// Anything else on stdout is passed through as a note. A script always exits 0 through run();
// an exception is one more "not ok" line.
//
// Environment: AI_GATEWAY_CHROMIUM (the browser, default /usr/bin/chromium),
// AI_GATEWAY_ARTIFACTS (where shot() writes PNGs, default ./artifacts).

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';

const browsers = [];
const pages = new Map();    // page -> {label, problems: [text]}

// A check failed that later steps need: run() stops without another "not ok".
export class Stop extends Error {}

// Chromium, headless, and a context with a 1280x800 viewport. Returns {browser, context}.
export async function launch() {
    const root = process.getuid?.() === 0;
    const browser = await chromium.launch({
        executablePath: process.env.AI_GATEWAY_CHROMIUM || '/usr/bin/chromium',
        headless: true,
        args: root ? ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] : [],
    });
    browsers.push(browser);
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    context.setDefaultTimeout(10_000);
    return { browser, context };
}

// A new page whose console errors, uncaught exceptions and failed requests are recorded (see
// noConsoleErrors). Not recorded: the console's "Failed to load resource: ... status of 4xx"
// for /api/ calls (a 401 before logging in, a 404 or 409 the page shows: the API's answers,
// which the steps check themselves) and requests aborted on purpose (net::ERR_ABORTED: a
// navigation or an AbortController).
export async function newPage(context, label) {
    const page = await context.newPage();
    const entry = { label, problems: [] };
    pages.set(page, entry);
    page.on('console', (msg) => {
        if (msg.type() !== 'error') return;
        const url = msg.location()?.url ?? '';
        if (/^Failed to load resource: .*status of 4\d\d/.test(msg.text()) && apiPath(url)) return;
        entry.problems.push(`console error: ${msg.text()}${url ? ` (${url})` : ''}`);
    });
    page.on('pageerror', (err) => entry.problems.push(`page error: ${err.stack || err.message || err}`));
    page.on('requestfailed', (req) => {
        const why = req.failure()?.errorText ?? 'failed';
        if (why === 'net::ERR_ABORTED') return;
        entry.problems.push(`request failed: ${req.method()} ${req.url()}: ${why}`);
    });
    return page;
}

function apiPath(url) {
    try { return new URL(url).pathname.startsWith('/api/'); } catch { return false; }
}

// Writes lines to stdout (synchronous on a pipe), without terminal colours (Playwright's
// call logs have them).
function say(lines) {
    if (lines.length === 0) return;
    process.stdout.write(lines.map((l) => l.replace(/\x1b\[[0-9;]*m/g, '')).join('\n') + '\n');
}

function oneLine(text) {
    return String(text).replace(/\s*\n\s*/g, ' ').trim();
}

function diagLines(diag) {
    if (diag === undefined || diag === null || diag === '') return [];
    const list = Array.isArray(diag) ? diag : [diag];
    return list.flatMap((d) => (typeof d === 'string' ? d : JSON.stringify(d)).split('\n'));
}

// Prints "ok - name" or "not ok - name" and, when it failed, diag (a string, an array of
// them, or anything JSON can show) as "# " lines. Returns whether cond held.
export function check(name, cond, diag) {
    const lines = [`${cond ? 'ok' : 'not ok'} - ${oneLine(name)}`];
    if (!cond) lines.push(...diagLines(diag).map((l) => `# ${l}`));
    say(lines);
    return !!cond;
}

// check(), and when it failed, stop here: the steps after it need it.
export function must(name, cond, diag) {
    if (!check(name, cond, diag)) throw new Stop(name);
    return true;
}

// Whether the locator is visible within timeout ms (no exception either way).
export async function shown(locator, timeout = 5_000) {
    try {
        await locator.first().waitFor({ state: 'visible', timeout });
        return true;
    } catch {
        return false;
    }
}

// Runs `act` (a write made in the page) and waits until the page shows an "applied" banner
// other than the one it showed before: a banner left from an earlier write (it stays above the
// tabs of a namespace) must not be taken for this write's.
export async function appliedAfter(page, act, timeout = 10_000) {
    const banner = page.locator('[data-testid=applied]').first();
    const text = async () => ((await page.locator('[data-testid=applied]').count())
        ? await banner.innerText().catch(() => '') : '');
    const before = await text();
    await act();
    const end = Date.now() + timeout;
    while (Date.now() < end) {
        const now = await text();
        if (now && now !== before) return true;
        await new Promise((done) => setTimeout(done, 50));
    }
    return false;
}

// A full-page PNG in $AI_GATEWAY_ARTIFACTS/<name>.png; returns its path.
export async function shot(page, name) {
    const dir = resolve(process.env.AI_GATEWAY_ARTIFACTS || 'artifacts');
    mkdirSync(dir, { recursive: true });
    const file = `${dir}/${name.replace(/[^\w.-]+/g, '_')}.png`;
    await page.screenshot({ path: file, fullPage: true });
    return file;
}

// A check that the page had no console error, uncaught exception or failed request since
// it was made (or since the last noConsoleErrors of it).
export function noConsoleErrors(page, label) {
    const entry = pages.get(page);
    const problems = entry ? entry.problems.splice(0) : ['not a page of newPage()'];
    return check(`${label ?? entry?.label}: no console errors, page errors or failed requests`,
        problems.length === 0, problems);
}

// Runs main(); an exception is a "not ok" (then what every page recorded, and a screenshot of
// every open page in failure-<label>.png). The browsers are closed and the process exits 0
// whatever happened: the Perl side counts the checks.
export async function run(main) {
    try {
        await main();
    } catch (err) {
        if (err instanceof Stop) {
            say([`# stopped: the steps after "${oneLine(err.message)}" need it`]);
        } else {
            const [first, ...rest] = String(err instanceof Error ? err.message : err).split('\n');
            const frames = String(err?.stack ?? '').split('\n').filter((l) => /^\s+at /.test(l));
            say([`not ok - ${oneLine(first)}`, ...rest.concat(frames).map((l) => `# ${l}`)]);
        }
        for (const [page, { label, problems }] of pages) {
            say(problems.map((p) => `# ${label}: ${oneLine(p)}`));
            if (page.isClosed()) continue;
            try {
                say([`# screenshot: ${await shot(page, `failure-${label}`)}`]);
            } catch { /* the browser is gone */ }
        }
    } finally {
        for (const b of browsers) await b.close().catch(() => {});
    }
    process.exit(0);
}
