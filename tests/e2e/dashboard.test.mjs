// End-to-end test of the StacyVM dashboard in headless Chromium.
//
//   STACYVM_URL=http://127.0.0.1:7599 npm test
//
// Optional: STACYVM_API_KEY (server has auth on: the test answers the key
// prompt), CHROMIUM_PATH (default /usr/bin/chromium), E2E_SCREENSHOT_DIR
// (default <repo>/target/e2e-screenshots).
//
// One browser page walks through the product like a person would: spawn
// from the form, run a command in the terminal and in the one-shot exec box,
// upload a file and read it back, destroy, and find each step in the events
// list. Every page is screenshotted.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const BASE = (process.env.STACYVM_URL || '').replace(/\/+$/, '');
const KEY = process.env.STACYVM_API_KEY || '';
const SHOTS = process.env.E2E_SCREENSHOT_DIR || path.resolve(here, '../../target/e2e-screenshots');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const TIMEOUT = 20_000;

if (!BASE) {
  console.error('STACYVM_URL is not set (e.g. http://127.0.0.1:7599)');
  process.exit(2);
}

let context;
let page;
let userDataDir;
const pageErrors = [];
const state = { id: '', token: `e2e-${Date.now().toString(36)}` };

async function shot(name, p = page) {
  await p.waitForTimeout(300); // let charts and fonts settle
  await p.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

/** A test that leaves a screenshot of the page behind when it fails. */
function step(name, fn) {
  test(name, async () => {
    try {
      await fn();
    } catch (e) {
      const file = `FAILED-${name.replace(/[^a-z0-9]+/gi, '-').slice(0, 60)}.png`;
      await page?.screenshot({ path: path.join(SHOTS, file), fullPage: true }).catch(() => {});
      throw e;
    }
  });
}

/** Navigates inside the app and waits for the page's heading. */
async function go(hash, heading) {
  await page.evaluate((h) => { location.hash = h; }, hash);
  await page.locator('main h1', { hasText: heading }).first().waitFor({ timeout: TIMEOUT });
}

before(async () => {
  fs.mkdirSync(SHOTS, { recursive: true });
  userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'stacyvm-e2e-chromium-'));
  // A persistent context on a fresh directory is Playwright's way of
  // passing --user-data-dir.
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
    viewport: { width: 1366, height: 900 },
    acceptDownloads: true,
  });
  context.setDefaultTimeout(TIMEOUT);
  page = context.pages()[0] || await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') console.log(`[browser] ${m.text()}`); });
});

after(async () => {
  if (context) await context.close();
  if (userDataDir) fs.rmSync(userDataDir, { recursive: true, force: true });
});

step('dashboard loads (answering the API-key prompt when auth is on)', async () => {
  const res = await page.goto(`${BASE}/`);
  assert.equal(res.status(), 200);
  assert.match(res.headers()['content-type'] || '', /text\/html/);
  const dialog = page.locator('#key-dialog');
  if (KEY) {
    await dialog.waitFor({ state: 'visible' });
    await shot('00-api-key-prompt');
    await page.fill('#key-input', KEY);
    await page.click('#key-dialog button[value="ok"]');
    await dialog.waitFor({ state: 'hidden' });
  }
  await page.locator('main h1', { hasText: 'Overview' }).waitFor();
  await page.locator('#s-providers ~ div table, #s-providers ~ div .empty').first().waitFor();
  await page.locator('#conn[data-state="live"]').waitFor();
  await shot('01-overview');
});

step('spawn a sandbox from the form', async () => {
  await go('#/sandboxes', 'Sandboxes');
  await page.click('details.spawn > summary');
  await page.fill('form.spawn-form input[name="ttl"]', '30m');
  await page.fill('form.spawn-form input[name="owner_id"]', 'e2e');
  await page.fill('form.spawn-form input[name="memory_mb"]', '256');
  await shot('02-sandboxes-spawn-form');
  await page.click('form.spawn-form button[type="submit"]');
  await page.waitForURL(/#\/sandboxes\/sb-[0-9a-f]{8,}$/, { timeout: 60_000 });
  state.id = page.url().split('/').pop();
  await page.locator('main h1', { hasText: state.id }).waitFor();
  await page.locator('.kv dt', { hasText: 'Owner' }).waitFor();
  assert.equal(await page.locator('.kv dd').filter({ hasText: /^e2e$/ }).count(), 1);
  await page.locator('pre.console').filter({ hasNotText: 'Loading…' }).waitFor();
  await shot('03-sandbox-detail');

  await go('#/sandboxes', 'Sandboxes');
  const row = page.locator(`tr[data-id="${state.id}"]`);
  await row.waitFor();
  assert.match(await row.innerText(), /running|creating/);
  await page.selectOption('form.filters select[name="state"]', 'running');
  await page.fill('form.filters input[name="owner"]', 'e2e');
  await row.waitFor();
  await shot('04-sandboxes-list');
});

step('interactive terminal runs a command and shows its output', async () => {
  await go(`#/sandboxes/${state.id}/terminal`, state.id);
  await page.locator('.term-status[data-state="live"]').waitFor({ timeout: 30_000 });
  const term = page.locator('[data-testid="terminal"]');
  await term.click();
  // The output "sum=42" appears only if a shell evaluated it; the typed
  // input echoes as "sum=$((40+2))".
  await page.keyboard.type(`echo ${state.token} sum=$((40+2))`);
  await page.keyboard.press('Enter');
  await page.waitForFunction((tok) => {
    const rows = document.querySelector('[data-testid="terminal"] .xterm-rows, [data-testid="terminal"] pre');
    return rows && rows.innerText.split('\n').some((l) => l.trim() === `${tok} sum=42`);
  }, state.token, { timeout: TIMEOUT });

  // One-shot exec box: stdout, stderr and exit code.
  await page.fill('form.exec-form input[name="command"]', `echo ${state.token}-out; echo ${state.token}-err >&2; exit 3`);
  await page.click('form.exec-form button[type="submit"]');
  await page.locator('[data-testid="exit-code"]').waitFor();
  assert.equal(await page.locator('[data-testid="exit-code"]').innerText(), 'exit 3');
  assert.equal((await page.locator('[data-testid="stdout"]').innerText()).trim(), `${state.token}-out`);
  assert.equal((await page.locator('[data-testid="stderr"]').innerText()).trim(), `${state.token}-err`);
  await shot('05-sandbox-terminal');
});

step('upload a file, read it back, download it and delete it', async () => {
  await go(`#/sandboxes/${state.id}/files`, state.id);
  await page.locator('#s-files ~ div table, #s-files ~ div .empty, #s-files ~ div .notice').first().waitFor();
  const content = `hello from ${state.token}\nline two\n`;
  await page.setInputFiles('form.upload-form input[type="file"]', {
    name: 'local-name.txt', mimeType: 'text/plain', buffer: Buffer.from(content),
  });
  await page.fill('form.upload-form input[name="target"]', '/tmp/e2e/hello.txt');
  await page.click('form.upload-form button[type="submit"]');
  await page.locator('.toast', { hasText: 'Uploaded /tmp/e2e/hello.txt' }).waitFor();

  await page.fill('form.path-bar input[name="path"]', '/tmp/e2e');
  await page.click('form.path-bar button[type="submit"]');
  const row = page.locator('tr[data-path="/tmp/e2e/hello.txt"]');
  await row.waitFor();
  await row.locator('button.link').click();
  await page.locator('[data-testid="file-content"]').waitFor();
  assert.equal(await page.locator('[data-testid="file-content"]').textContent(), content);
  await shot('06-sandbox-files');

  const [download] = await Promise.all([
    page.waitForEvent('download'),
    row.getByRole('button', { name: 'Download /tmp/e2e/hello.txt' }).click(),
  ]);
  assert.equal(download.suggestedFilename(), 'hello.txt');
  assert.equal(fs.readFileSync(await download.path(), 'utf8'), content);

  await row.getByRole('button', { name: 'Delete /tmp/e2e/hello.txt' }).click();
  await page.click('#confirm-dialog #confirm-ok');
  await row.waitFor({ state: 'detached' });
});

step('pause and resume the sandbox from its page', async () => {
  await go(`#/sandboxes/${state.id}`, state.id);
  await page.getByRole('button', { name: `Pause ${state.id}` }).click();
  await page.locator('.page-head .badge.state-paused').waitFor();
  await page.getByRole('button', { name: `Resume ${state.id}` }).click();
  await page.locator('.page-head .badge.state-running').waitFor();
});

step('destroy the sandbox with confirmation', async () => {
  await go(`#/sandboxes/${state.id}`, state.id);
  await page.getByRole('button', { name: 'Destroy' }).first().click();
  const dialog = page.locator('#confirm-dialog');
  await dialog.waitFor({ state: 'visible' });
  assert.match(await dialog.innerText(), new RegExp(`Destroy ${state.id}`));
  await shot('07-destroy-confirm');
  await page.click('#confirm-dialog #confirm-ok');
  await page.waitForURL(/#\/sandboxes$/);
  await page.locator(`tr[data-id="${state.id}"]`).waitFor({ state: 'detached' });
});

step('each step appears in the events list', async () => {
  await go('#/events', 'Events');
  await page.fill('form.filters input[name="sandbox"]', state.id);
  const want = ['sandbox.created', 'exec.started', 'file.written', 'sandbox.paused', 'sandbox.resumed', 'sandbox.destroyed'];
  for (const type of want) {
    await page.locator(`ol.event-list li.event[data-type="${type}"]`).first().waitFor({ timeout: TIMEOUT });
  }
  const types = await page.locator('ol.event-list li.event').evaluateAll((els) => els.map((e) => e.dataset.type));
  assert.ok(types.some((t) => t === 'exec.completed' || t === 'exec.failed'), `no exec completion event in ${types}`);
  await shot('08-events');
});

step('overview charts operations after the walk-through', async () => {
  await go('#/overview', 'Overview');
  await page.locator('#s-operations ~ div svg.chart').first().waitFor();
  const label = await page.locator('#s-operations ~ div svg.chart').first().getAttribute('aria-label');
  assert.match(label, /operation latency/);
  await shot('09-overview-with-operations');
});

step('templates: create, spawn from it, delete', async () => {
  await go('#/templates', 'Templates');
  const name = `e2e-${state.token.slice(4)}`;
  await page.getByRole('button', { name: 'New template' }).click();
  await page.fill('form[aria-label="New template"] input[name="name"]', name);
  await page.fill('form[aria-label="New template"] input[name="ttl"]', '10m');
  await page.fill('form[aria-label="New template"] textarea[name="metadata"]', '{"purpose": "e2e"}');
  await page.click('form[aria-label="New template"] button[type="submit"]');
  await page.locator('tbody th', { hasText: name }).waitFor();
  await shot('10-templates');

  await page.getByRole('button', { name: `Spawn from ${name}` }).click();
  await page.click('#prompt-dialog button[value="ok"]');
  await page.waitForURL(/#\/sandboxes\/sb-[0-9a-f]{8,}$/, { timeout: 60_000 });
  const id = page.url().split('/').pop();
  await page.locator('.kv dd', { hasText: 'e2e' }).first().waitFor();
  await page.getByRole('button', { name: 'Destroy' }).first().click();
  await page.click('#confirm-dialog #confirm-ok');
  await page.waitForURL(/#\/sandboxes$/);
  await page.locator(`tr[data-id="${id}"]`).waitFor({ state: 'detached' });

  await go('#/templates', 'Templates');
  await page.getByRole('button', { name: `Delete ${name}` }).click();
  await page.click('#confirm-dialog #confirm-ok');
  await page.locator('tbody th', { hasText: name }).waitFor({ state: 'detached' });
});

step('providers page and provider test', async () => {
  await go('#/providers', 'Providers');
  await page.locator('.provider-grid .card').first().waitFor();
  await page.getByRole('button', { name: 'Test all providers' }).click();
  await page.locator('h2', { hasText: 'Test result' }).waitFor();
  await shot('11-providers');
});

step('diagnostics page shows the redacted document', async () => {
  await go('#/diagnostics', 'Diagnostics');
  await page.locator('pre.json .j-key').first().waitFor();
  const text = await page.locator('pre.json').innerText();
  const doc = JSON.parse(text);
  assert.ok(doc.generated_at, 'diagnostics has generated_at');
  if (KEY) assert.ok(!text.includes(KEY), 'diagnostics must not contain the API key');
  await shot('12-diagnostics');
});

step('phone width: navigation menu and pages stay usable', async () => {
  // One sandbox so the phone list has a row to lay out.
  const headers = KEY ? { 'X-API-Key': KEY } : {};
  const res = await context.request.post(`${BASE}/api/v1/sandboxes`, { data: { ttl: '5m', owner_id: 'phone' }, headers });
  assert.equal(res.status(), 201, await res.text());
  const sbId = (await res.json()).id;
  const phone = await context.newPage();
  phone.on('pageerror', (e) => pageErrors.push(String(e)));
  await phone.setViewportSize({ width: 390, height: 844 });
  await phone.goto(`${BASE}/#/sandboxes`);
  if (KEY) {
    // Session storage is per tab: the new tab asks again.
    await phone.locator('#key-dialog').waitFor({ state: 'visible' });
    await phone.fill('#key-input', KEY);
    await phone.click('#key-dialog button[value="ok"]');
  }
  await phone.locator('main h1', { hasText: 'Sandboxes' }).waitFor();
  await phone.locator(`tr[data-id="${sbId}"]`).waitFor();
  await shot('13-phone-sandboxes', phone);
  const toggle = phone.getByRole('button', { name: 'Menu' });
  assert.ok(await toggle.isVisible(), 'menu button visible on a phone');
  await toggle.click();
  await phone.getByRole('link', { name: 'Overview', exact: true }).click();
  await phone.locator('main h1', { hasText: 'Overview' }).waitFor();
  await phone.locator('#conn[data-state="live"]').waitFor();
  const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `page is ${overflow}px wider than the phone screen`);
  await shot('14-phone-overview', phone);
  await phone.close();
  const gone = await context.request.delete(`${BASE}/api/v1/sandboxes/${sbId}`, { headers });
  assert.equal(gone.status(), 200);
});

step('keyboard: skip link and navigation are reachable with Tab', async () => {
  await page.goto(`${BASE}/#/overview`);
  await page.reload(); // a fresh document, focus on nothing
  await page.locator('main h1', { hasText: 'Overview' }).waitFor();
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.textContent.trim()), 'Skip to content');
  await page.keyboard.press('Enter');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'main');
});

test('no uncaught errors in the page', () => {
  assert.deepEqual(pageErrors, []);
});
