// Drives the dashboard in headless Chromium (Playwright, playwright-core):
// loads the page, enters the API key, waits for the zone map (over 100
// zones) with at least one move arrow, the Pareto chart and the metric
// sparklines, checks that the page stayed within its Content-Security-Policy
// and was updated live (events, and polling with the stream blocked), and
// saves a screenshot. Run by
// scripts/dashboard-e2e.sh, which starts the service; exits non-zero on
// any failure.
//
//   BASE_URL=http://127.0.0.1:8080 API_KEY=... SCREENSHOT=docs/dashboard.png \
//   CHROMIUM=/usr/bin/chromium NODE_PATH=<dir with playwright-core> node scripts/dashboard-e2e.cjs
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');

const BASE_URL = process.env.BASE_URL;
const API_KEY = process.env.API_KEY;
const SCREENSHOT = process.env.SCREENSHOT || 'docs/dashboard.png';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const TIMEOUT_MS = Number(process.env.E2E_TIMEOUT_MS || 90000);

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
  console.log(`ok: ${message}`);
}

async function main() {
  if (!BASE_URL || !API_KEY) throw new Error('set BASE_URL and API_KEY');
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'dashboard-e2e-chromium-'));
  // Flags known to work on this machine kind: no sandbox (root), and no
  // background connections to Google's hosts, which the closed network
  // refuses; a fresh profile (Playwright passes it as --user-data-dir).
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1400, height: 900 },
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  const problems = [];
  const page = await browser.newPage();
  try {
    page.on('console', (msg) => {
      // Failed loads are reported below, with their URL.
      if (msg.type() === 'error' && !msg.text().startsWith('Failed to load resource')) {
        problems.push(`console: ${msg.text()}`);
      }
    });
    page.on('response', (res) => {
      // The browser asks for /favicon.ico on its own; the page has none.
      if (res.status() >= 400 && !res.url().endsWith('/favicon.ico')) {
        problems.push(`${res.status()} for ${res.url()}`);
      }
    });
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    page.on('requestfailed', (req) => {
      // The event stream is aborted on purpose when the page closes.
      if (!req.url().includes('/dashboard/events')) problems.push(`request failed: ${req.url()}`);
    });

    const response = await page.goto(`${BASE_URL}/`);
    check(response.status() === 200, 'the page loads (200)');
    const csp = response.headers()['content-security-policy'] || '';
    check(csp.includes("script-src 'self'") && csp.includes("default-src 'none'"),
      `the page is served with a strict Content-Security-Policy (${csp})`);

    // Without a key the page asks for one.
    await page.waitForSelector('#api-key', { state: 'visible', timeout: TIMEOUT_MS });
    await page.fill('#api-key', API_KEY);
    await page.click('#connect');

    await page.waitForFunction(() => document.querySelectorAll('#map .zone[data-zone]').length > 100,
      null, { timeout: TIMEOUT_MS });
    const zones = await page.locator('#map .zone[data-zone]').count();
    check(zones > 100, `the map shows ${zones} zones`);
    // The replay starts with an empty city: colours appear as vehicles do.
    // (Functions, not strings: the page's CSP forbids eval, for tests too.)
    const colours = () => new Set(Array.from(document.querySelectorAll('#map .zone[data-zone]'),
      (n) => n.getAttribute('fill'))).size;
    await page.waitForFunction(() => new Set(Array.from(document.querySelectorAll('#map .zone[data-zone]'),
      (n) => n.getAttribute('fill'))).size >= 3, null, { timeout: TIMEOUT_MS });
    const coloured = await page.evaluate(colours);
    check(coloured >= 3, `zones are coloured by balance (${coloured} distinct colours)`);

    await page.waitForFunction(() => document.querySelectorAll('#map line.move').length >= 1,
      null, { timeout: TIMEOUT_MS });
    const arrows = await page.locator('#map line.move').count();
    check(arrows >= 1, `the map shows ${arrows} move arrow(s)`);
    check(await page.locator('#legend rect').count() >= 3, 'the colour legend is drawn');

    await page.waitForFunction(() => document.querySelectorAll('#pareto .pareto-point').length >= 2,
      null, { timeout: TIMEOUT_MS });
    const paretoPoints = await page.locator('#pareto .pareto-point').count();
    check(paretoPoints >= 2, `the Pareto chart shows ${paretoPoints} points`);

    await page.waitForFunction(() => document.querySelectorAll('#metrics .sparkline circle').length >= 3,
      null, { timeout: TIMEOUT_MS });
    const sparklines = await page.locator('#metrics .sparkline circle').count();
    check(sparklines >= 3, `${sparklines} metric sparklines have data`);

    // Live: the event stream is connected and a newer window replaces the shown one.
    await page.waitForFunction(() => document.getElementById('status').textContent.startsWith('live'),
      null, { timeout: TIMEOUT_MS });
    check(true, 'live updates over server-sent events');
    const shown = await page.textContent('#window-time');
    await page.waitForFunction((before) => document.getElementById('window-time').textContent !== before,
      shown, { timeout: TIMEOUT_MS });
    check(true, `the map follows new windows (was "${shown}")`);

    // Let the slower panels catch up with the runs created meanwhile.
    await page.waitForTimeout(Number(process.env.SETTLE_MS || 11000));
    // Windows without moves are common in the sparse sample: shoot one with.
    await page.waitForFunction(() => document.querySelectorAll('#map line.move').length >= 1,
      null, { timeout: TIMEOUT_MS, polling: 50 });
    fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    check(fs.statSync(SCREENSHOT).size > 10000, `screenshot saved to ${SCREENSHOT}`);

    // The fallback: with the event stream blocked, a second tab polls and
    // still follows new windows.
    const polling = await browser.newPage();
    await polling.route('**/dashboard/events**', (route) => route.abort());
    await polling.goto(`${BASE_URL}/`);
    await polling.fill('#api-key', API_KEY);
    await polling.click('#connect');
    await polling.waitForFunction(() => document.getElementById('status').textContent.startsWith('polling'),
      null, { timeout: TIMEOUT_MS });
    await polling.waitForFunction(() => document.querySelectorAll('#map .zone[data-zone]').length > 100,
      null, { timeout: TIMEOUT_MS });
    const polled = await polling.textContent('#window-time');
    await polling.waitForFunction((before) => document.getElementById('window-time').textContent !== before,
      polled, { timeout: TIMEOUT_MS });
    check(true, 'without the event stream the page polls and follows new windows');
    await polling.close();

    check(problems.length === 0, `no console errors, CSP violations or failed requests${problems.length ? `: ${problems.join('; ')}` : ''}`);
  } catch (err) {
    // What the page showed when it failed, next to where the screenshot goes.
    const failed = SCREENSHOT.replace(/\.png$/, '') + '-failed.png';
    await page.screenshot({ path: failed, fullPage: true }).catch(() => {});
    console.error(`the page at the failure: ${failed}`);
    throw err;
  } finally {
    await browser.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

main().then(
  () => { console.log('dashboard e2e: passed'); },
  (err) => { console.error(`dashboard e2e: FAILED: ${err.message}`); process.exit(1); },
);
