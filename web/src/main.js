// main.js -- the duckgrid web grid: sign-in, the tables list, a table as a
// live tree grid (grid.js), the views. Routes live in the URL's fragment
// (#/, #/t/{table}, #/views, #/v/{view}); the API key never does.

import { h } from './dom.js';
import { api, enc, getKey, setKey, clearKey, ApiError } from './api.js';
import { TableView } from './grid.js';

const $ = (sel) => document.querySelector(sel);
const main = $('#main');
let current = null; // the open TableView


// ---------------------------------------------------------------- chrome
let toastTimer = 0;
function toast(msg, kind) {
  const t = $('#toast');
  t.textContent = msg;
  t.dataset.kind = kind || 'info';
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.hidden = true; }, kind === 'info' ? 4000 : 9000);
}

function setConn(state) {
  const c = $('#conn');
  c.dataset.state = state;
  c.querySelector('b').textContent = { live: 'live', connecting: 'connecting…', reconnecting: 'reconnecting…', closed: 'offline', idle: 'offline' }[state] || state;
}

function setCrumb(text) { $('#crumb').textContent = text || ''; }

function nav(which) {
  for (const a of document.querySelectorAll('[data-nav]')) a.classList.toggle('on', a.dataset.nav === which);
}

const ctx = {
  toast, setConn, setCrumb,
  status: (s) => { const el = $('#grid-status'); if (el) el.textContent = s; },
};

function failed(e) {
  if (e instanceof ApiError && e.status === 401) {
    clearKey();
    signIn('Your key was not accepted (401). Sign in again.');
    return;
  }
  main.replaceChildren(h('div', { class: 'panel error' }, h('h2', { text: 'Something went wrong' }), h('p', { text: e.message })));
}

// ---------------------------------------------------------------- pages
function signIn(message) {
  closeTable();
  nav('');
  setCrumb('');
  $('#signout').hidden = true;
  const input = h('input', { type: 'password', id: 'key', name: 'key', autocomplete: 'off', placeholder: 'dg_…', required: '' });
  const err = h('p', { class: 'err', id: 'signin-error', text: message || '' });
  const form = h('form', { class: 'signin panel', id: 'signin' },
    h('h1', { text: 'Sign in to duckgrid' }),
    h('p', { class: 'muted', text: 'Paste your API key. It is kept in this tab only (sessionStorage) and sent in the Authorization header, never in a URL.' }),
    h('label', {}, h('span', { text: 'API key' }), input),
    err,
    h('button', { class: 'btn primary', type: 'submit' }, 'Sign in'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    setKey(input.value.trim());
    try {
      await api('GET', '/tables');
      route();
    } catch (ex) {
      clearKey();
      err.textContent = ex.status === 401 ? 'Unknown key.' : ex.message;
    }
  });
  main.replaceChildren(form);
  input.focus();
}

async function tablesPage() {
  nav('tables');
  setCrumb('');
  main.replaceChildren(h('p', { class: 'muted pad', text: 'loading…' }));
  const r = await api('GET', '/tables');
  const rows = r.tables.map((t) => h('tr', {},
    h('td', {}, h('a', { href: `#/t/${enc(t.name)}`, class: 'tlink', 'data-table': t.name, text: t.name })),
    h('td', { class: 'muted', text: t.columns.map((c) => (c.type === 'number' ? `${c.name} (${c.scale})` : c.name)).join(', ') }),
    h('td', { class: 'num', text: Number(t.row_count).toLocaleString('en-US') })));
  main.replaceChildren(h('section', { class: 'panel' },
    h('h1', { text: 'Tables' }),
    r.tables.length ? h('table', { class: 'list', id: 'tables' },
      h('thead', {}, h('tr', {}, h('th', { text: 'table' }), h('th', { text: 'columns' }), h('th', { class: 'num', text: 'rows' }))),
      h('tbody', {}, ...rows)) : h('p', { class: 'muted', text: 'No tables yet: an admin creates them with POST /tables.' })));
}

async function tablePage(name) {
  nav('tables');
  setCrumb(name);
  const mount = h('section', { class: 'tableview', id: 'tableview' });
  main.replaceChildren(mount);
  current = new TableView(mount, name, ctx);
  await current.open();
}

async function viewsPage() {
  nav('views');
  setCrumb('');
  const r = await api('GET', '/views');
  main.replaceChildren(h('section', { class: 'panel' },
    h('h1', { text: 'Views' }),
    r.views.length ? h('table', { class: 'list', id: 'views' },
      h('thead', {}, h('tr', {}, h('th', { text: 'view' }), h('th', { text: 'SQL' }))),
      h('tbody', {}, ...r.views.map((v) => h('tr', {},
        h('td', {}, h('a', { href: `#/v/${enc(v.name)}`, 'data-view': v.name, text: v.name })),
        h('td', {}, h('code', { text: v.sql })))))) : h('p', { class: 'muted', text: 'No views yet.' })));
}

async function viewPage(name) {
  nav('views');
  setCrumb(name);
  const r = await api('GET', `/views/${enc(name)}?limit=1000`);
  const isNum = r.columns.map((_, j) => r.rows.length > 0 && r.rows.every((row) => row[j] == null || typeof row[j] === 'number'));
  const fmt = (v, j) => {
    if (v == null) return '';
    if (!isNum[j]) return String(v);
    return Number(v).toLocaleString('en-US', { maximumFractionDigits: 6 });
  };
  main.replaceChildren(h('section', { class: 'panel wide' },
    h('h1', { text: name }),
    h('p', { class: 'muted', text: `${r.rows.length} rows${r.rows.length === 1000 ? ' (first 1,000)' : ''}` }),
    h('div', { class: 'scrollx' }, h('table', { class: 'list view', id: 'view-table' },
      h('thead', {}, h('tr', {}, ...r.columns.map((c, j) => h('th', { class: isNum[j] ? 'num' : '', text: c })))),
      h('tbody', {}, ...r.rows.map((row) => h('tr', {}, ...row.map((v, j) => h('td', { class: isNum[j] ? 'num' : '', text: fmt(v, j) })))))))));
}

// ---------------------------------------------------------------- routing
function closeTable() {
  if (current) current.destroy();
  current = null;
  setConn('idle');
}

async function route() {
  closeTable();
  if (!getKey()) { signIn(); return; }
  $('#signout').hidden = false;
  const hash = location.hash.replace(/^#/, '') || '/';
  const parts = hash.split('/').filter(Boolean).map(decodeURIComponent);
  try {
    if (parts[0] === 't' && parts[1]) await tablePage(parts[1]);
    else if (parts[0] === 'views') await viewsPage();
    else if (parts[0] === 'v' && parts[1]) await viewPage(parts[1]);
    else await tablesPage();
  } catch (e) {
    failed(e);
  }
}

$('#signout').addEventListener('click', () => { clearKey(); location.hash = '#/'; signIn('Signed out.'); });
window.addEventListener('hashchange', route);
route();
