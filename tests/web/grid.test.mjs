// grid.test.mjs -- the web grid in a real browser: Debian's chromium driven
// by the pinned puppeteer-core, against a real duckgrid (started by
// tests/web/test_web_grid.py, which passes DG_BASE and DG_ADMIN_KEY).
//
// Two users (alice, bob: write keys) each in their own browser context:
// a parent written by one spreads over children the other sees; a held cell
// keeps its value; a stale edit shows the conflict and the fresh value; the
// live stream resumes after a drop without missing an update; keyboard
// editing; a 3x2 paste is one atomic update_cells; undo and redo; the views page. Then two
// measurements, printed (never asserted): the first rows of a 100,100-row
// table after navigation, and frame times while 500 updates/s arrive.
//
// Run: node --test tests/web/grid.test.mjs   (with the environment above)

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(path.join(ROOT, 'third_party', 'node', 'package.json'));
const puppeteer = require('puppeteer-core');

const BASE = process.env.DG_BASE;
const ADMIN = process.env.DG_ADMIN_KEY;
const CHROMIUM = process.env.DG_CHROMIUM || '/usr/bin/chromium';
const SHOT = process.env.DG_WEB_SCREENSHOT || '';
assert.ok(BASE && ADMIN, 'DG_BASE and DG_ADMIN_KEY must be set (tests/web/test_web_grid.py does)');

const figures = [];
const figure = (name, value) => { figures.push(`${name}: ${value}`); console.log(`# figure ${name}: ${value}`); };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- the API
async function call(method, p, body, key = ADMIN) {
  const res = await fetch(BASE + p, {
    method,
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  const data = text ? JSON.parse(text) : null;
  return { status: res.status, data };
}
async function ok(method, p, body, key) {
  const r = await call(method, p, body, key);
  assert.ok(r.status >= 200 && r.status < 300, `${method} ${p}: ${r.status} ${JSON.stringify(r.data)}`);
  return r.data;
}
// A lean POST for the load generator: keep-alive sockets, no body kept.
const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
function postFast(p, body, key) {
  const data = JSON.stringify(body);
  return new Promise((resolve) => {
    const req = http.request(BASE + p, {
      method: 'POST', agent,
      headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) },
    }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode)); });
    req.on('error', () => resolve(0));
    req.end(data);
  });
}
const cellValue = async (id, col, table = 'plan') => (await ok('GET', `/tables/${table}/rows/${id}`))[col];

// ---------------------------------------------------------------- the browser
let browser, profile, alice, bob, A, B;

async function signedInPage(key) {
  const ctx = await browser.createBrowserContext();
  const page = await ctx.newPage();
  await page.setViewport({ width: 1280, height: 760 });
  page.on('pageerror', (e) => console.log(`# page error: ${e.message}`));
  await page.goto(BASE + '/');
  await page.waitForSelector('#key');
  await page.type('#key', key);
  await page.click('#signin button[type=submit]');
  await page.waitForSelector('#tables');
  return page;
}

async function openTable(page, name) {
  await page.evaluate((n) => { location.hash = `#/t/${n}`; }, name);
  await page.waitForSelector('.r[data-id]');
  await page.waitForFunction(() => document.querySelector('#conn').dataset.state === 'live');
}

const cellSel = (id, col) => `.r[data-id="${id}"] .c[data-col="${col}"]`;
const text = (page, id, col) => page.$eval(`${cellSel(id, col)} .txt`, (e) => e.textContent);

async function expand(page, id, childId) {
  await page.click(`.r[data-id="${id}"] .tog`);
  await page.waitForSelector(`.r[data-id="${childId}"]`);
}

async function waitText(page, id, col, want, timeout = 5000) {
  await page.waitForFunction((sel, w) => {
    const e = document.querySelector(sel);
    return e && e.textContent === w;
  }, { timeout }, `${cellSel(id, col)} .txt`, want);
}

async function clickCell(page, id, col) {
  await page.click(`${cellSel(id, col)} .txt`);
  await page.waitForSelector(`${cellSel(id, col)}.active`);
}

// Types into the active cell and presses a key (Enter/Tab) to commit.
async function typeInto(page, id, col, value, commit = 'Enter') {
  await clickCell(page, id, col);
  await page.keyboard.type(value);
  await page.waitForSelector('#cell-editor');
  await page.keyboard.press(commit);
}

// Runs a wait; when it times out, prints what both pages and the server
// show about holds (a failure in CI then says why) and fails as it would.
async function explainOnTimeout(wait) {
  try {
    return await wait();
  } catch (e) {
    for (const [name, page] of [['A', A], ['B', B]]) {
      const seen = await page.evaluate(() => ({
        held: [...document.querySelectorAll('.c.held')].map((c) => `${c.closest('.r').dataset.id}:${c.dataset.col}`),
        toast: document.querySelector('#toast')?.textContent || '',
        status: document.querySelector('#grid-status')?.textContent || '',
        conn: document.querySelector('#conn')?.dataset.state || '',
        updates: window.duckgridStats?.updates, last: window.duckgridStats?.lastUpdateId,
      })).catch((err) => ({ error: String(err) }));
      console.log(`# page ${name}: ${JSON.stringify(seen)}`);
    }
    const r = await call('GET', '/tables/plan/holds');
    const u = await call('GET', '/get_updates?since=0&limit=1000&table=plan');
    const ops = (u.data?.updates || []).filter((x) => x.op === 'hold' || x.op === 'release');
    console.log(`# server holds: ${r.status} ${JSON.stringify(r.data)}; hold/release updates: ${JSON.stringify(ops)}`);
    throw e;
  }
}

async function toast(page, kind) {
  await page.waitForSelector(`#toast:not([hidden])[data-kind="${kind}"]`, { timeout: 5000 });
  return page.$eval('#toast', (e) => e.textContent);
}

async function paste(page, tsv) {
  await page.evaluate((t) => {
    const dt = new DataTransfer();
    dt.setData('text/plain', t);
    document.querySelector('.gbody').dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
  }, tsv);
}

// ---------------------------------------------------------------- setup
// 100 parents x 1,000 leaves = 100,100 rows, in one insert (leaves carry
// one number cell only: the insert's cost is mostly its audit rows).
async function makeBigTable() {
  await ok('POST', '/tables', {
    name: 'big',
    columns: [{ name: 'name', type: 'text' }, { name: 'amount', type: 'number', scale: 2 },
      { name: 'qty', type: 'number', scale: 0 }],
  });
  const rows = [];
  for (let p = 0; p < 100; p++) {
    const pid = 1_000_000 + p;
    rows.push({ id: pid, name: `Region ${p}` });
    for (let k = 0; k < 1000; k++) rows.push({ id: p * 1000 + k + 1, parent_id: pid, amount: ((k % 97) + 1) * 1.25 });
  }
  const t0 = performance.now();
  await ok('POST', '/tables/big/rows', { rows });
  figure('insert of the 100,100-row table (setup, one POST)', `${Math.round(performance.now() - t0)} ms`);
}

before(async () => {
  alice = (await ok('POST', '/admin/keys', { name: 'alice', role: 'write' })).key;
  bob = (await ok('POST', '/admin/keys', { name: 'bob', role: 'write' })).key;
  await ok('POST', '/tables', {
    name: 'plan',
    columns: [{ name: 'name', type: 'text' }, { name: 'sales', type: 'number', scale: 2 },
      { name: 'units', type: 'number', scale: 0 }],
  });
  await ok('POST', '/tables/plan/rows', { rows: [
    { id: 1, name: 'Brand' },
    { id: 10, parent_id: 1, name: 'Snacks' }, { id: 20, parent_id: 1, name: 'Drinks' },
    { id: 101, parent_id: 10, name: 'Crisps', sales: 100, units: 1 },
    { id: 102, parent_id: 10, name: 'Nuts', sales: 200, units: 2 },
    { id: 103, parent_id: 10, name: 'Popcorn', sales: 300, units: 3 },
    { id: 201, parent_id: 20, name: 'Cola', sales: 50, units: 5 },
    { id: 202, parent_id: 20, name: 'Water', sales: 50, units: 5 },
  ] });
  profile = fs.mkdtempSync(path.join(os.tmpdir(), 'dg-chromium-'));
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    userDataDir: profile,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--disable-dev-shm-usage'],
  });
  A = await signedInPage(alice);
  B = await signedInPage(bob);
});

after(async () => {
  agent.destroy();
  if (browser) await browser.close();
  if (profile) fs.rmSync(profile, { recursive: true, force: true });
  console.log(`# figures\n${figures.map((f) => `#   ${f}`).join('\n')}`);
});

// ---------------------------------------------------------------- tests
test('the page is served without a key, with a strict CSP, and the key stays out of URLs', async () => {
  const res = await fetch(BASE + '/');
  assert.equal(res.status, 200);
  const csp = res.headers.get('content-security-policy');
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /script-src 'self'/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
  const urls = [];
  A.on('request', (r) => urls.push(r.url()));
  await openTable(A, 'plan');
  assert.ok(urls.length > 0);
  for (const u of urls) assert.ok(!u.includes(alice), `the key is in a URL: ${u}`);
  const stored = await A.evaluate(() => ({ s: sessionStorage.getItem('duckgrid.key'), l: JSON.stringify(localStorage) }));
  assert.equal(stored.s, alice);
  assert.ok(!stored.l.includes(alice), 'the key is in localStorage');
});

test('two users: a parent written by one changes the children the other sees', async () => {
  await openTable(B, 'plan');
  for (const page of [A, B]) {
    await expand(page, 1, 10);
    await expand(page, 10, 101);
    await expand(page, 20, 201);
  }
  assert.equal(await text(B, 101, 'sales'), '100.00');
  assert.equal(await text(B, 10, 'sales'), '600.00');
  await typeInto(A, 10, 'sales', '1200');
  const t0 = performance.now();
  // Proportional spread: 100/200/300 of 600 -> 200/400/600 of 1200.
  await waitText(B, 101, 'sales', '200.00');
  await waitText(B, 102, 'sales', '400.00');
  await waitText(B, 103, 'sales', '600.00');
  figure('a parent written in page A: its children changed in page B after', `${Math.round(performance.now() - t0)} ms`);
  await waitText(B, 1, 'sales', '1,300.00');
  // Who changed them is shown on the flashed cell.
  const who = await B.$eval(cellSel(101, 'sales'), (e) => e.dataset.who || '');
  assert.equal(who, 'alice');
  assert.equal(await cellValue(101, 'sales'), 200);
  if (SHOT) {
    await B.mouse.move(900, 700);
    await clickCell(B, 102, 'units');
    await B.click(`${cellSel(202, 'sales')} .lock`);
    await B.waitForSelector(`${cellSel(202, 'sales')}.held`);
    await typeInto(A, 20, 'sales', '150');
    await waitText(B, 201, 'sales', '100.00');
    await B.mouse.move(900, 700);
    await B.screenshot({ path: SHOT });
    await B.click(`${cellSel(202, 'sales')} .lock`);
    await B.waitForSelector(`${cellSel(202, 'sales')}:not(.held)`);
    console.log(`# screenshot saved to ${SHOT}`);
  }
});

test('a held cell keeps its value when its parent is written', async () => {
  await B.click(`${cellSel(102, 'sales')} .lock`);
  await B.waitForSelector(`${cellSel(102, 'sales')}.held`);
  // The other user's page learns of the hold from the live stream.
  await A.waitForSelector(`${cellSel(102, 'sales')}.held`);
  const held = await cellValue(102, 'sales');
  await typeInto(A, 10, 'sales', '2000');
  await waitText(A, 10, 'sales', '2,000.00');
  await waitText(B, 10, 'sales', '2,000.00');
  assert.equal(await text(B, 102, 'sales'), '400.00');
  assert.equal(await cellValue(102, 'sales'), held);
  const a = await cellValue(101, 'sales');
  const c = await cellValue(103, 'sales');
  assert.equal(Math.round((a + held + c) * 100), 200000);
  assert.equal(Number(await text(B, 101, 'sales')), a);
  // Released: the lock goes away on both pages.
  await B.click(`${cellSel(102, 'sales')} .lock`);
  await explainOnTimeout(() => B.waitForSelector(`${cellSel(102, 'sales')}:not(.held)`, { timeout: 10000 }));
  await explainOnTimeout(() => A.waitForSelector(`${cellSel(102, 'sales')}:not(.held)`, { timeout: 10000 }));
});

test('a stale edit shows the conflict and the fresh value; the stream resumes without a gap', async () => {
  // Cut B's live stream, and keep it cut: every other request goes through.
  await B.setRequestInterception(true);
  const block = (req) => (req.url().includes('/events') ? req.abort('internetdisconnected') : req.continue());
  B.on('request', block);
  await B.evaluate(() => window.duckgridStats.dropLive());
  await B.waitForFunction(() => document.querySelector('#conn').dataset.state === 'reconnecting');
  const before103 = await text(B, 103, 'sales');
  // Meanwhile alice changes two cells B shows.
  await ok('POST', '/update_cell', { table: 'plan', row_id: 103, column: 'sales', value: 777 }, alice);
  await ok('POST', '/update_cell', { table: 'plan', row_id: 201, column: 'units', value: 9 }, alice);
  await sleep(300);
  assert.equal(await text(B, 103, 'sales'), before103, 'B got the update although its stream is cut');
  // B edits the stale cell: the write is compared with what B saw.
  await typeInto(B, 103, 'sales', '5');
  const msg = await toast(B, 'conflict');
  assert.match(msg, /Conflict/);
  assert.match(msg, /777\.00/);
  await waitText(B, 103, 'sales', '777.00');
  assert.equal(await cellValue(103, 'sales'), 777);
  // The stream comes back and replays what it missed (Last-Event-ID).
  B.off('request', block);
  await B.setRequestInterception(false);
  await B.waitForFunction(() => document.querySelector('#conn').dataset.state === 'live', { timeout: 10000 });
  await waitText(B, 201, 'units', '9');
  await waitText(B, 20, 'units', '14');
});

test('keyboard editing: arrows, Enter, F2, Esc, Tab', async () => {
  await clickCell(A, 101, 'units');
  await A.keyboard.press('ArrowDown');
  await A.waitForSelector(`${cellSel(102, 'units')}.active`);
  await A.keyboard.type('7');
  await A.keyboard.press('Enter');
  await A.waitForSelector(`${cellSel(103, 'units')}.active`);
  await waitText(A, 102, 'units', '7');
  assert.equal(await cellValue(102, 'units'), 7);
  // F2 edits the value shown; Esc leaves it as it was.
  await A.keyboard.press('ArrowUp');
  await A.keyboard.press('F2');
  await A.waitForSelector('#cell-editor');
  assert.equal(await A.$eval('#cell-editor', (e) => e.value), '7');
  await A.keyboard.type('99');
  await A.keyboard.press('Escape');
  await A.waitForSelector('#cell-editor', { hidden: true });
  assert.equal(await text(A, 102, 'units'), '7');
  assert.equal(await cellValue(102, 'units'), 7);
  // Enter edits too; Tab commits and moves right; Shift+Tab moves back.
  await A.keyboard.press('ArrowLeft');
  await A.waitForSelector(`${cellSel(102, 'sales')}.active`);
  await A.keyboard.press('Enter');
  await A.waitForSelector('#cell-editor');
  await A.keyboard.down('Control');
  await A.keyboard.press('a');
  await A.keyboard.up('Control');
  await A.keyboard.type('450.555');
  await A.keyboard.press('Tab');
  await A.waitForSelector(`${cellSel(102, 'units')}.active`);
  await waitText(A, 102, 'sales', '450.56'); // rounded to the column's scale
  await A.keyboard.down('Shift');
  await A.keyboard.press('Tab');
  await A.keyboard.up('Shift');
  await A.waitForSelector(`${cellSel(102, 'sales')}.active`);
  // A text cell, and a bad number that is refused in the page.
  await typeInto(A, 201, 'name', 'Cola Zero');
  await waitText(A, 201, 'name', 'Cola Zero');
  assert.equal(await cellValue(201, 'name'), 'Cola Zero');
  await typeInto(A, 202, 'units', 'abc');
  assert.match(await toast(A, 'error'), /not a number/);
  assert.equal(await cellValue(202, 'units'), 5);
});

test('a pasted 3x2 range is one atomic update_cells', async () => {
  const { next } = await ok('GET', '/get_updates?since=$&limit=1');
  await clickCell(A, 101, 'sales');
  await paste(A, '10\t11\n20\t12\n30\t13\n'); // every cell differs from what it was
  await waitText(A, 103, 'units', '13');
  await waitText(B, 103, 'units', '13');
  assert.equal(await text(A, 10, 'sales'), '60.00');
  const ups = (await ok('GET', `/get_updates?since=${next}&limit=100`)).updates.filter((u) => u.user === 'alice');
  assert.equal(ups.length, 1, JSON.stringify(ups));
  assert.equal(ups[0].op, 'update_cells');
  const set = new Set(ups[0].changes.map((c) => `${c.row_id}:${c.column}`));
  for (const id of [101, 102, 103]) for (const col of ['sales', 'units']) assert.ok(set.has(`${id}:${col}`));
  // A range the server rejects changes nothing, and the page says why.
  await clickCell(A, 101, 'sales');
  await paste(A, '11\t14\n21\t15\n99999999999999999999\t16\n');
  const msg = await toast(A, 'error');
  assert.match(msg, /Paste not applied/);
  assert.ok(msg.length > 'Paste not applied (nothing changed): '.length + 5, msg);
  assert.equal(await cellValue(101, 'sales'), 10);
  assert.equal(await cellValue(102, 'units'), 12);
  assert.equal(await text(A, 101, 'sales'), '10.00');
});

test('undo and redo revert the writes of this page, for everyone; a conflicting undo is refused', async () => {
  // After the paste: 101..103 sales 10/20/30 (parent 10: 60.00).
  await typeInto(A, 101, 'sales', '15');
  await waitText(A, 10, 'sales', '65.00');
  await waitText(B, 101, 'sales', '15.00');
  await A.waitForSelector('#btn-undo:not([disabled])');
  await A.focus('.gbody');
  await A.keyboard.down('Control');
  await A.keyboard.press('z');
  await A.keyboard.up('Control');
  await waitText(A, 101, 'sales', '10.00');
  await waitText(B, 101, 'sales', '10.00');
  await waitText(B, 10, 'sales', '60.00');
  assert.equal(await cellValue(101, 'sales'), 10);
  const { updates } = await ok('GET', '/get_updates?since=0&limit=1000&table=plan');
  const last = updates.filter((u) => u.user === 'alice').pop();
  assert.equal(last.op, 'revert');
  // Redo (Ctrl+Y): the revert of the revert.
  await A.keyboard.down('Control');
  await A.keyboard.press('y');
  await A.keyboard.up('Control');
  await waitText(B, 101, 'sales', '15.00');
  assert.equal(await cellValue(101, 'sales'), 15);
  // The toolbar button undoes too.
  await A.click('#btn-undo');
  await waitText(B, 101, 'sales', '10.00');
  // Bob changes the cell alice wrote: her undo is refused, nothing changes.
  await typeInto(A, 102, 'sales', '25');
  await waitText(B, 102, 'sales', '25.00');
  await typeInto(B, 102, 'sales', '26');
  await waitText(A, 102, 'sales', '26.00');
  await A.click('#btn-undo');
  assert.match(await toast(A, 'conflict'), /Undo not possible: .*sales of row 102/);
  assert.equal(await cellValue(102, 'sales'), 26);
});

test('the views page renders a view as a table', async () => {
  await ok('POST', '/views', { name: 'snacks', sql: 'SELECT name, sales, units FROM plan WHERE parent_id = 10 ORDER BY id' });
  await A.evaluate(() => { location.hash = '#/views'; });
  await A.waitForSelector('a[data-view="snacks"]');
  await A.click('a[data-view="snacks"]');
  await A.waitForSelector('#view-table');
  const cells = await A.$$eval('#view-table tbody tr', (trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent)));
  assert.deepEqual(cells.map((r) => r[0]), ['Crisps', 'Nuts', 'Popcorn']);
  assert.equal(cells[0][1], '10');
  const heads = await A.$$eval('#view-table th', (ths) => ths.map((t) => t.textContent));
  assert.deepEqual(heads, ['name', 'sales', 'units']);
});

test('measure: a 100,100-row table opens, expands and scrolls (figures printed)', async () => {
  await makeBigTable();
  await A.goto('about:blank');
  const t0 = performance.now();
  await A.goto(`${BASE}/#/t/big`); // a new document: the page clock starts here
  await A.waitForSelector('.r[data-id="1000000"]');
  const wall = performance.now() - t0;
  const mark = await A.evaluate(() => performance.getEntriesByName('dg-first-rows')[0].startTime);
  figure('100,100-row table: first rows visible after navigation (page clock)', `${Math.round(mark)} ms`);
  figure('100,100-row table: first rows visible after navigation (test clock, incl. goto)', `${Math.round(wall)} ms`);
  const t1 = performance.now();
  await A.click('.r[data-id="1000000"] .tog');
  await A.waitForSelector('.r[data-id="1"]');
  figure('expanding a parent of 1,000 rows: first children visible', `${Math.round(performance.now() - t1)} ms`);
  // Every parent open: 100,100 rows in the tree, a few dozen in the DOM.
  const t2 = performance.now();
  await A.click('#btn-expand');
  await A.waitForFunction(() => document.querySelector('.gspacer').offsetHeight > 28 * 20000, { timeout: 60000 });
  figure('expanding the 99 other parents (first page of each)', `${Math.round(performance.now() - t2)} ms`);
  const domRows = await A.$$eval('.r', (rs) => rs.length);
  assert.ok(domRows < 120, `virtual scrolling keeps the DOM small: ${domRows} rows`);
  const t3 = performance.now();
  await A.evaluate(() => { const b = document.querySelector('.gbody'); b.scrollTop = b.scrollHeight / 2; });
  await A.waitForFunction(() => [...document.querySelectorAll('.r[data-id]')].some((r) => r.getBoundingClientRect().top > 150 && r.getBoundingClientRect().top < 600));
  figure('jump to the middle of the expanded tree: rows drawn', `${Math.round(performance.now() - t3)} ms`);
  await A.evaluate(() => { const b = document.querySelector('.gbody'); b.scrollTop = 0; });
});

test('measure: frame times while 500 live updates/s arrive (figures printed)', async () => {
  await A.waitForSelector('.r[data-id="1"]');
  const ids = await A.$$eval('.r[data-id]', (rs) => rs.map((r) => Number(r.dataset.id)).filter((id) => id < 1000000));
  assert.ok(ids.length > 10, `leaves on screen: ${ids.length}`);
  const before = await A.evaluate(() => window.duckgridStats.updates);
  await A.evaluate(() => {
    window.__frames = [];
    let last = performance.now();
    const tick = (t) => { window.__frames.push(t - last); last = t; if (!window.__stop) requestAnimationFrame(tick); };
    window.__stop = false;
    requestAnimationFrame(tick);
  });
  // 500 asynchronous update_cell per second for 3 s, each on a leaf on
  // screen (and so also a roll-up of its parent and the root).
  const RATE = 500, SECONDS = 3;
  const start = performance.now();
  let sent = 0, failed = 0;
  const inflight = [];
  for (let tick = 0; tick < RATE * SECONDS / 10; tick++) {
    const due = start + tick * 20;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    for (let k = 0; k < 10; k++) {
      const id = ids[(sent + k) % ids.length];
      inflight.push(postFast('/update_cell?async=true', { table: 'big', row_id: id, column: 'qty', value: (sent + k) % 1000 }, alice)
        .then((status) => { if (status !== 202) failed++; }));
    }
    sent += 10;
  }
  await Promise.all(inflight);
  const sendS = (performance.now() - start) / 1000;
  await A.waitForFunction((n) => window.duckgridStats.updates >= n, { timeout: 30000 }, before + sent - failed);
  const frames = await A.evaluate(() => { window.__stop = true; return window.__frames; });
  const got = (await A.evaluate(() => window.duckgridStats.updates)) - before;
  frames.sort((x, y) => x - y);
  const q = (p) => frames[Math.min(frames.length - 1, Math.floor(p * frames.length))].toFixed(1);
  figure('live load sent', `${sent} update_cell in ${sendS.toFixed(2)} s (${Math.round(sent / sendS)}/s), ${failed} failed`);
  figure('live load received by the page', `${got} updates`);
  figure('frame times during the live load', `${frames.length} frames, p50 ${q(0.5)} ms, p95 ${q(0.95)} ms, p99 ${q(0.99)} ms, max ${frames[frames.length - 1].toFixed(1)} ms, ${frames.filter((f) => f > 50).length} over 50 ms`);
  assert.equal(failed, 0);
  assert.ok(got >= sent, `the page received ${got} of ${sent} updates`);
  // The cells on screen show the values written last.
  const id = ids[(sent - 1) % ids.length];
  await waitText(A, id, 'qty', String(await cellValue(id, 'qty', 'big')));
});
