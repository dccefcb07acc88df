// grid.js -- one table as a live tree grid.
//
//   toolbar    spread mode (remembered), hold, history, status
//   grid       a sticky header and a virtual body: only the rows in view
//              (plus a margin) exist in the DOM, laid on a spacer as tall as
//              every expanded row, so 100,000 rows scroll like 40.
//
// Keys: arrows move, Shift+arrows select a range, Enter/F2 edit, typing
// starts an edit, Enter/Tab commit (and move), Esc cancels, Alt+Right/Left
// expand/collapse, Ctrl+C copies the range as TSV, Ctrl+V pastes a TSV range
// as one atomic POST /update_cells, Ctrl+H toggles a hold, Ctrl+Z undoes this
// page's last write and Ctrl+Y (or Ctrl+Shift+Z) redoes it.
//
// Undo is a revert through the log (POST /updates/{id}/revert): everyone sees
// it, to the cent, and it is refused (409, shown) when someone changed those
// cells since. Redo is the revert of that revert. A new write clears redo.
//
// Writes: POST /update_cell with `expected` = the value on screen, so a cell
// someone else changed meanwhile answers 409: the grid says so and shows the
// fresh value. Live: every update object from the SSE stream (sse.js) is
// applied to the loaded rows; cells on screen flash and carry who changed them.

import { h } from './dom.js';
import { api, enc, ApiError } from './api.js';
import { LiveStream } from './sse.js';
import { Tree, idKey } from './tree.js';

const ROW_H = 28;
const OVERSCAN = 8;
const FLASH_MS = 1500;
const MODES = ['proportional', 'equal', 'add', 'percent', 'repeat_leaves'];
const MODE_KEY = 'duckgrid.spreadMode';
// Operations that change the shape of the tree, not just cell values.
// (update_row is a PATCH, which may move the row; a move changes parent_id.)
const STRUCTURAL = new Set(['insert_rows', 'delete_row', 'delete_table', 'create_table', 'import']);

// What the page has received, for the curious and for the browser tests.
// dropLive() cuts the live connection as a network failure would (the
// stream then resumes from its last event id, as after any drop).
const stats = { updates: 0, lastUpdateId: null, dropLive: () => {} };
window.duckgridStats = stats;

const fmtCache = new Map();
function numberFormat(scale) {
  let f = fmtCache.get(scale);
  if (!f) {
    f = new Intl.NumberFormat('en-US', { minimumFractionDigits: scale, maximumFractionDigits: scale });
    fmtCache.set(scale, f);
  }
  return f;
}


const wireId = (id) => (typeof id === 'number' || Number.isSafeInteger(Number(id)) ? Number(id) : String(id));

export class TableView {
  // ctx: {toast(msg, kind), setConn(state), setCrumb(text)}
  constructor(mount, tableName, ctx) {
    this.mount = mount;
    this.name = tableName;
    this.ctx = ctx;
    this.cols = [];
    this.holds = new Set();          // "id:col"
    this.holdsAsked = 0;             // loadHolds calls made
    this.holdsSeen = 0;              // the newest whose answer is shown
    this.flash = new Map();          // "id:col" -> {until, user}
    this.active = { id: null, col: 0 };
    this.anchor = null;              // {index, col} of a range selection
    this.editing = null;             // {node, col, input}
    this.pending = [];               // live updates seen while lists load
    this.rowEls = [];
    this.frame = 0;
    this.destroyed = false;
    this.lastUser = null;
    this.undoStack = [];             // update ids of this page's writes, newest last
    this.redoStack = [];             // update ids of its undos, newest last
  }

  // ---------------------------------------------------------------- start
  async open() {
    const t0 = performance.now();
    // The cursor first, then the stream, then the rows: every write after
    // the cursor is replayed by the stream, every one before is in the rows.
    // The table's columns and its first rows are read together.
    const cur = await api('GET', '/get_updates?since=$&limit=1');
    if (this.destroyed) return;
    this.tree = new Tree(this.name, () => this.schedule());
    this.tree.onLoaded = () => this.replayPending();
    const first = this.tree.loadMore(this.tree.root);
    const def = await api('GET', `/tables/${enc(this.name)}`);
    if (this.destroyed) return;
    this.cols = def.columns;
    this.build(def);
    this.subscribe(cur.next);
    this.loadHolds();
    await first;
    if (this.tree.flat.length && this.active.id == null) this.active.id = this.tree.flat[0].id;
    this.renderNow();
    performance.mark('dg-first-rows');
    this.ctx.status(`${def.row_count.toLocaleString('en-US')} rows · opened in ${Math.round(performance.now() - t0)} ms`);
    this.body.focus();
  }

  // Follows the table's updates after `since` (an update id).
  subscribe(since) {
    this.live = new LiveStream({
      table: this.name, since,
      handlers: {
        update: (u) => this.onUpdate(u),
        gone: () => this.resubscribe(),
        state: (s) => this.ctx.setConn(s),
      },
    });
    stats.dropLive = () => this.live.interrupt();
  }

  // The resume point was trimmed from response_duck: take a new cursor, then
  // read everything on screen again (every write after the cursor is replayed).
  async resubscribe() {
    if (this.destroyed) return;
    this.ctx.setConn('reconnecting');
    let cur = null;
    for (let wait = 500; !cur && !this.destroyed; wait = Math.min(wait * 2, 5000)) {
      try { cur = await api('GET', '/get_updates?since=$&limit=1'); } catch (e) { await new Promise((r) => setTimeout(r, wait)); }
    }
    if (this.destroyed) return;
    this.subscribe(cur.next);
    this.reloadAll('Missed too many updates: the table was read again.');
  }

  destroy() {
    this.destroyed = true;
    if (this.live) this.live.close();
    cancelAnimationFrame(this.frame);
  }

  async reloadAll(why) {
    this.tree.invalidate();
    this.loadHolds();
    this.schedule();
    if (why) this.ctx.toast(why, 'info');
  }

  // Reads the held cells. `minUpdate` is the hold/release update that asked
  // for it: the read reflects at least that one. Answers can come back out of
  // order; only one newer than every answer applied so far is used. A failed
  // read is tried again a few times (holds are decoration: the grid works
  // without them, but a stale lock icon misleads).
  async loadHolds(minUpdate, attempt = 0) {
    const seq = ++this.holdsAsked;
    try {
      const q = minUpdate ? `?min_update=${encodeURIComponent(minUpdate)}` : '';
      const r = await api('GET', `/tables/${enc(this.name)}/holds${q}`);
      if (seq < this.holdsSeen || this.destroyed) return;
      this.holdsSeen = seq;
      this.holds = new Set(r.holds.map((x) => `${idKey(x.row_id)}:${x.column}`));
      this.schedule();
    } catch (e) {
      if (!(e instanceof ApiError) || attempt >= 4 || this.destroyed) return;
      setTimeout(() => { if (seq >= this.holdsSeen) this.loadHolds(minUpdate, attempt + 1); }, 250 << attempt);
    }
  }

  // ---------------------------------------------------------------- DOM
  build(def) {
    const modeSel = h('select', { id: 'spread-mode', title: 'how a value typed into a parent is spread over its children' },
      ...MODES.map((m) => h('option', { value: m, text: m.replace('_', ' ') })));
    modeSel.value = localStorage.getItem(MODE_KEY) || 'proportional';
    modeSel.addEventListener('change', () => { localStorage.setItem(MODE_KEY, modeSel.value); this.body.focus(); });
    this.modeSel = modeSel;
    this.statusEl = h('span', { class: 'status', id: 'grid-status' });
    const bar = h('div', { class: 'toolbar' },
      h('label', { class: 'field' }, h('span', { text: 'Spread on parents' }), modeSel),
      h('button', { class: 'btn', id: 'btn-hold', title: 'hold / release the active cell (Ctrl+H)', onclick: () => this.toggleHoldActive() }, h('i', { class: 'ico-lock' }), 'Hold'),
      h('button', { class: 'btn', id: 'btn-history', title: 'the active cell\'s audit trail', onclick: () => this.showHistory() }, 'History'),
      h('button', { class: 'btn', id: 'btn-expand', title: 'expand the next level of parents', onclick: () => this.expandLevel() }, 'Expand level'),
      this.undoBtn = h('button', { class: 'btn', id: 'btn-undo', title: 'undo your last change, for everyone (Ctrl+Z)', disabled: '', onclick: () => { this.undo(); this.body.focus(); } }, 'Undo'),
      this.redoBtn = h('button', { class: 'btn', id: 'btn-redo', title: 'redo what you undid (Ctrl+Y)', disabled: '', onclick: () => { this.redo(); this.body.focus(); } }, 'Redo'),
      this.statusEl);

    const tpl = this.cols.map((c, j) => (j === 0 ? 'minmax(260px, 2fr)' : c.type === 'number' ? 'minmax(120px, 1fr)' : 'minmax(140px, 1.2fr)')).join(' ');
    this.gridTemplate = tpl;
    const head = h('div', { class: 'ghead', role: 'row' },
      ...this.cols.map((c, j) => h('div', {
        class: 'hc' + (c.type === 'number' ? ' num' : ''), role: 'columnheader',
        title: c.type === 'number' ? `number, scale ${c.scale}` : 'text',
      }, h('span', { text: c.name }), c.type === 'number' ? h('small', { text: c.scale ? `0.${'0'.repeat(c.scale)}` : '0' }) : null)));
    head.style.gridTemplateColumns = tpl;
    this.spacer = h('div', { class: 'gspacer' });
    this.rowsEl = h('div', { class: 'rows' });
    this.spacer.append(this.rowsEl);
    this.body = h('div', { class: 'gbody', tabindex: '0', role: 'treegrid', 'aria-label': this.name }, head, this.spacer);
    this.history = h('aside', { class: 'history', hidden: '' });
    this.mount.replaceChildren(bar, h('div', { class: 'gridwrap' }, this.body, this.history));

    this.body.addEventListener('scroll', () => this.schedule(), { passive: true });
    this.body.addEventListener('keydown', (e) => this.onKey(e));
    this.body.addEventListener('paste', (e) => this.onPaste(e));
    this.body.addEventListener('copy', (e) => this.onCopy(e));
    this.body.addEventListener('mousedown', (e) => this.onMouse(e));
    this.body.addEventListener('dblclick', (e) => {
      const c = e.target.closest('.c');
      if (c && !e.target.closest('.tog,.lock')) this.startEdit(null);
    });
    this.resizeObs = new ResizeObserver(() => this.schedule());
    this.resizeObs.observe(this.body);
  }

  schedule() {
    if (this.frame || this.destroyed || !this.body) return;
    this.frame = requestAnimationFrame(() => { this.frame = 0; this.renderNow(); });
  }

  renderNow() {
    if (this.destroyed || !this.tree || !this.body) return;
    const flat = this.tree.flat;
    this.spacer.style.height = `${flat.length * ROW_H}px`;
    const headH = ROW_H + 4;
    const top = Math.max(0, this.body.scrollTop - headH);
    const viewH = this.body.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / ROW_H) - OVERSCAN);
    const last = Math.min(flat.length, Math.ceil((top + viewH) / ROW_H) + OVERSCAN);
    const now = performance.now();
    let nextFlash = Infinity;
    const want = last - first;
    while (this.rowEls.length < want) this.rowEls.push(this.makeRow());
    for (let k = 0; k < this.rowEls.length; k++) {
      const el = this.rowEls[k];
      if (k >= want) {
        if (el.parentNode) el.remove();
        continue;
      }
      if (!el.parentNode) this.rowsEl.append(el);
      const i = first + k;
      const entry = flat[i];
      el.style.transform = `translateY(${i * ROW_H}px)`;
      nextFlash = Math.min(nextFlash, this.fillRow(el, entry, i, now));
    }
    // Lists that must be (re)loaded because they are now on screen.
    for (let i = first; i < last; i++) {
      const e = flat[i];
      if (e.more && !e.more.loading) this.tree.loadMore(e.more);
      else if (e.parent && e.parent.stale && !e.parent.loading) this.tree.reload(e.parent);
    }
    if (this.tree.root.stale && !this.tree.root.loading) this.tree.reload(this.tree.root);
    if (nextFlash < Infinity) {
      clearTimeout(this.flashTimer);
      this.flashTimer = setTimeout(() => this.schedule(), Math.max(16, nextFlash - now));
    }
    if (this.editing) this.placeEditor();
  }

  makeRow() {
    const row = h('div', { class: 'r', role: 'row' });
    row.style.gridTemplateColumns = this.gridTemplate;
    this.cols.forEach((c, j) => {
      const cell = h('div', { class: 'c' + (c.type === 'number' ? ' num' : '') + (j === 0 ? ' tree' : ''), role: 'gridcell', 'data-col': c.name, 'data-j': String(j) });
      if (j === 0) cell.append(h('span', { class: 'ind' }), h('span', { class: 'tog' }));
      cell.append(h('span', { class: 'txt' }));
      if (c.type === 'number') cell.append(h('button', { class: 'lock', tabindex: '-1', title: 'hold this cell', 'aria-label': 'hold' }));
      row.append(cell);
    });
    return row;
  }

  // Fills a row element; returns the time the next flash on it ends.
  fillRow(el, entry, i, now) {
    let flashEnd = Infinity;
    const sel = this.selRange();
    if (entry.more) {
      el.className = 'r more';
      el.removeAttribute('data-id');
      el.children[0].querySelector('.ind').style.width = `${(entry.more.depth + 1) * 18}px`;
      el.children[0].querySelector('.tog').textContent = '';
      for (let j = 0; j < el.children.length; j++) {
        const c = el.children[j];
        c.className = 'c' + (j === 0 ? ' tree' : '');
        c.querySelector('.txt').textContent = j === 0 ? 'loading…' : '';
        c.removeAttribute('data-who');
        c.title = '';
      }
      return flashEnd;
    }
    const n = entry;
    const k = idKey(n.id);
    el.className = 'r' + (n.children ? ' parent' : '') + (n.depth === 0 ? ' lvl0' : '');
    el.dataset.id = k;
    el.dataset.depth = String(n.depth);
    for (let j = 0; j < this.cols.length; j++) {
      const col = this.cols[j];
      const c = el.children[j];
      const v = n.row[col.name];
      let cls = 'c' + (col.type === 'number' ? ' num' : '') + (j === 0 ? ' tree' : '');
      const ck = `${k}:${col.name}`;
      if (j === 0) {
        c.querySelector('.ind').style.width = `${n.depth * 18}px`;
        c.querySelector('.tog').textContent = n.children ? (n.expanded ? '▾' : '▸') : '';
        c.setAttribute('aria-expanded', n.children ? String(n.expanded) : '');
      }
      c.querySelector('.txt').textContent = this.display(col, v);
      if (this.holds.has(ck)) cls += ' held';
      if (k === idKey(this.active.id) && j === this.active.col) cls += ' active';
      if (sel && i >= sel.r0 && i <= sel.r1 && j >= sel.c0 && j <= sel.c1) cls += ' insel';
      const f = this.flash.get(ck);
      if (f && f.until > now) {
        cls += ' flash';
        c.dataset.who = f.user || '';
        c.title = `changed by ${f.user || '?'} at ${f.ts || ''}`;
        flashEnd = Math.min(flashEnd, f.until);
      } else {
        if (f) this.flash.delete(ck);
        if (c.dataset.who) delete c.dataset.who;
        c.title = j === 0 ? `row ${k}` : '';
      }
      if (c.className !== cls) c.className = cls;
    }
    return flashEnd;
  }

  display(col, v) {
    if (v == null) return '';
    if (col.type === 'number') return numberFormat(col.scale).format(Number(v));
    return String(v);
  }

  // The value as the API writes it: numbers with exactly `scale` decimals.
  wire(col, v) {
    if (v == null) return null;
    return col.type === 'number' ? Number(v).toFixed(col.scale) : String(v);
  }

  // ---------------------------------------------------------------- live
  onUpdate(u) {
    // Counters anyone may read (the browser tests report them).
    stats.updates++;
    stats.lastUpdateId = u.update_id;
    if (this.tree.loads > 0) this.pending.push(u);
    this.applyUpdate(u, true);
  }

  replayPending() {
    if (this.tree.loads > 0) return;
    const p = this.pending;
    this.pending = [];
    for (const u of p) this.applyUpdate(u, false);
  }

  applyUpdate(u, fresh) {
    if (u.status !== 'applied') return;
    if (u.op === 'hold' || u.op === 'release') {
      if (!u.table || u.table === this.name) this.loadHolds(u.update_id);
      return;
    }
    if (u.changes_truncated) {
      // The outcome lists too many cells: read again what is on screen.
      this.reloadAll(null);
      return;
    }
    // A revert that brought rows back, deleted or moved them is structural too.
    let structural = STRUCTURAL.has(u.op) || !!(u.inserted || u.deleted || u.moved);
    const now = performance.now();
    for (const ch of u.changes || []) {
      if (ch.table && ch.table !== this.name) continue;
      const n = this.tree.get(ch.row_id);
      if (!n) continue;
      if (ch.column === 'parent_id' || !(ch.column in n.row)) { structural = true; continue; }
      n.row[ch.column] = ch.new;
      if (fresh) this.flash.set(`${idKey(ch.row_id)}:${ch.column}`, { until: now + FLASH_MS, user: u.user, ts: u.ts });
    }
    if (structural) {
      clearTimeout(this.structTimer);
      this.structTimer = setTimeout(() => this.reloadAll(null), 100);
    }
    if (fresh && u.user) this.lastUser = u.user;
    this.schedule();
  }

  // ---------------------------------------------------------------- selection
  activeIndex() {
    const n = this.tree.get(this.active.id);
    return n ? this.tree.indexOf(n) : -1;
  }

  selRange() {
    if (!this.anchor) return null;
    const i = this.activeIndex();
    if (i < 0) return null;
    return {
      r0: Math.min(i, this.anchor.index), r1: Math.max(i, this.anchor.index),
      c0: Math.min(this.active.col, this.anchor.col), c1: Math.max(this.active.col, this.anchor.col),
    };
  }

  moveTo(index, col, extend) {
    const flat = this.tree.flat;
    index = Math.max(0, Math.min(flat.length - 1, index));
    while (index > 0 && flat[index].more) index--;
    const e = flat[index];
    if (!e || e.more) return;
    if (extend) {
      if (!this.anchor) this.anchor = { index: this.activeIndex(), col: this.active.col };
    } else {
      this.anchor = null;
    }
    this.active = { id: e.id, col: Math.max(0, Math.min(this.cols.length - 1, col)) };
    this.scrollIntoView(index);
    this.schedule();
  }

  scrollIntoView(index) {
    const headH = ROW_H + 4;
    const y = index * ROW_H;
    const top = this.body.scrollTop;
    const viewH = this.body.clientHeight - headH;
    if (y < top) this.body.scrollTop = y;
    else if (y + ROW_H > top + viewH) this.body.scrollTop = y + ROW_H - viewH;
  }

  onMouse(e) {
    const cell = e.target.closest('.c');
    const row = e.target.closest('.r');
    if (!cell || !row || !row.dataset.id) return;
    const n = this.tree.get(row.dataset.id);
    if (!n) return;
    const j = Number(cell.dataset.j);
    if (this.editing) this.commitEdit(0, 0);
    if (e.target.closest('.tog')) {
      e.preventDefault();
      this.tree.toggle(n);
      return;
    }
    if (e.target.closest('.lock')) {
      e.preventDefault();
      this.active = { id: n.id, col: j };
      this.toggleHold(n, this.cols[j]);
      return;
    }
    if (e.shiftKey) {
      if (!this.anchor) this.anchor = { index: this.activeIndex(), col: this.active.col };
    } else {
      this.anchor = null;
    }
    this.active = { id: n.id, col: j };
    this.schedule();
  }

  onKey(e) {
    if (this.editing) return; // the editor handles its own keys
    const i = this.activeIndex();
    const j = this.active.col;
    const n = this.tree.get(this.active.id);
    const ctrl = e.ctrlKey || e.metaKey;
    switch (e.key) {
      case 'ArrowDown': this.moveTo(i + 1, j, e.shiftKey); break;
      case 'ArrowUp': this.moveTo(i - 1, j, e.shiftKey); break;
      case 'ArrowRight':
        if (e.altKey && n) this.tree.toggle(n, true);
        else this.moveTo(i, j + 1, e.shiftKey);
        break;
      case 'ArrowLeft':
        if (e.altKey && n) {
          if (n.expanded) this.tree.toggle(n, false);
          else if (n.parent && n.parent !== this.tree.root) this.moveTo(this.tree.indexOf(n.parent), j, false);
        } else this.moveTo(i, j - 1, e.shiftKey);
        break;
      case 'PageDown': this.moveTo(i + Math.floor(this.body.clientHeight / ROW_H) - 1, j, e.shiftKey); break;
      case 'PageUp': this.moveTo(i - Math.floor(this.body.clientHeight / ROW_H) + 1, j, e.shiftKey); break;
      case 'Home': this.moveTo(ctrl ? 0 : i, 0, e.shiftKey); break;
      case 'End': this.moveTo(ctrl ? this.tree.flat.length - 1 : i, this.cols.length - 1, e.shiftKey); break;
      case 'Tab': this.moveTo(i, j + (e.shiftKey ? -1 : 1), false); break;
      case 'Enter': case 'F2': this.startEdit(null); break;
      case 'Escape': this.anchor = null; this.schedule(); break;
      case 'Delete': case 'Backspace':
        if (this.cols[j] && this.cols[j].type === 'text') this.startEdit('');
        else return;
        break;
      default:
        if (ctrl && (e.key === 'h' || e.key === 'H')) { this.toggleHoldActive(); break; }
        if (ctrl && (e.key === 'z' || e.key === 'Z')) { if (e.shiftKey) this.redo(); else this.undo(); break; }
        if (ctrl && (e.key === 'y' || e.key === 'Y')) { this.redo(); break; }
        if (ctrl || e.altKey || e.key.length !== 1) return;
        this.startEdit(e.key);
    }
    e.preventDefault();
  }

  // ---------------------------------------------------------------- editing
  startEdit(initial) {
    const n = this.tree.get(this.active.id);
    if (!n) return;
    const col = this.cols[this.active.col];
    const shown = this.wire(col, n.row[col.name]);
    const input = h('input', { class: 'editor', id: 'cell-editor', spellcheck: 'false', autocomplete: 'off' });
    input.value = initial != null ? initial : (shown == null ? '' : shown);
    const hint = n.children && col.type === 'number'
      ? h('div', { class: 'edit-hint', id: 'edit-hint' }, `parent: spread ${this.modeSel.value.replace('_', ' ')} over ${n.children} children — `, this.modeLink())
      : null;
    this.editing = { node: n, col, input, shown, hint };
    input.addEventListener('keydown', (e) => {
      e.stopPropagation(); // the grid's own keys must not see the editor's
      if (e.key === 'Enter') { e.preventDefault(); this.commitEdit(e.shiftKey ? -1 : 1, 0); }
      else if (e.key === 'Tab') { e.preventDefault(); this.commitEdit(0, e.shiftKey ? -1 : 1); }
      else if (e.key === 'Escape') { e.preventDefault(); this.cancelEdit(); }
      else if ((e.key === 'ArrowDown' || e.key === 'ArrowUp') && initial != null) {
        e.preventDefault(); this.commitEdit(e.key === 'ArrowDown' ? 1 : -1, 0);
      }
    });
    input.addEventListener('blur', () => { if (this.editing && this.editing.input === input) this.commitEdit(0, 0); });
    this.spacer.append(input);
    if (hint) this.spacer.append(hint);
    this.placeEditor();
    input.focus();
    if (initial == null) input.select();
    else input.setSelectionRange(input.value.length, input.value.length);
  }

  modeLink() {
    const sel = h('select', { class: 'mini' }, ...MODES.map((m) => h('option', { value: m, text: m.replace('_', ' ') })));
    sel.value = this.modeSel.value;
    sel.addEventListener('mousedown', (e) => e.stopPropagation());
    sel.addEventListener('change', () => {
      this.modeSel.value = sel.value;
      localStorage.setItem(MODE_KEY, sel.value);
      if (this.editing) this.editing.input.focus();
    });
    return sel;
  }

  placeEditor() {
    const ed = this.editing;
    const i = this.tree.indexOf(ed.node);
    const row = [...this.rowsEl.children].find((r) => r.dataset.id === idKey(ed.node.id));
    if (i < 0 || !row) return;
    const cell = row.children[this.active.col];
    const sp = this.spacer.getBoundingClientRect();
    const cr = cell.getBoundingClientRect();
    Object.assign(ed.input.style, { left: `${cr.left - sp.left}px`, top: `${i * ROW_H}px`, width: `${cr.width}px`, height: `${ROW_H}px` });
    if (ed.hint) Object.assign(ed.hint.style, { left: `${cr.left - sp.left}px`, top: `${(i + 1) * ROW_H}px` });
  }

  endEdit() {
    const ed = this.editing;
    this.editing = null;
    if (!ed) return;
    ed.input.remove();
    if (ed.hint) ed.hint.remove();
    this.body.focus({ preventScroll: true });
  }

  cancelEdit() { this.endEdit(); this.schedule(); }

  async commitEdit(dr, dc) {
    const ed = this.editing;
    if (!ed) return;
    const text = ed.input.value;
    this.endEdit();
    const i = this.tree.indexOf(ed.node);
    if (dr || dc) this.moveTo(i + dr, this.active.col + dc, false);
    if (text === (ed.shown == null ? '' : ed.shown)) return;
    const value = this.parseInput(ed.col, text);
    if (value === undefined) return;
    const body = { table: this.name, row_id: wireId(ed.node.id), column: ed.col.name, value };
    if (ed.shown != null) body.expected = ed.shown;
    if (ed.node.children && ed.col.type === 'number') body.mode = this.modeSel.value;
    await this.write(ed.node, ed.col, body);
  }

  parseInput(col, text) {
    if (col.type !== 'number') return text;
    const t = text.replace(/[\s,_]/g, '');
    if (!/^[+-]?(\d+\.?\d*|\.\d+)$/.test(t)) {
      this.ctx.toast(`'${text}' is not a number (column ${col.name}, ${col.scale} decimals)`, 'error');
      return undefined;
    }
    return t;
  }

  async write(node, col, body) {
    this.ctx.status('saving…');
    try {
      const res = await api('POST', '/update_cell', body);
      this.applyUpdate(Object.assign({ status: 'applied', user: 'you' }, res), true);
      this.remember(res.update_id);
      this.ctx.status(`saved: ${col.name} of row ${node.id} (${(res.changes || []).length} cells changed)`);
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      if (e.status === 409 && body.expected !== undefined) {
        await this.refreshRow(node);
        const now = this.display(col, node.row[col.name]);
        this.flash.set(`${idKey(node.id)}:${col.name}`, { until: performance.now() + FLASH_MS, user: 'someone else' });
        this.ctx.toast(`Conflict: ${col.name} of row ${node.id} was changed by someone else — it is now ${now}; your value ${body.value} was not saved. (${e.message})`, 'conflict');
      } else {
        this.ctx.toast(`Not saved: ${e.message}`, 'error');
      }
      this.ctx.status('');
      this.schedule();
    }
  }

  async refreshRow(node) {
    try {
      const row = await api('GET', `/tables/${enc(this.name)}/rows/${enc(String(node.id))}`);
      node.row = row;
      node.children = Number(row.children || 0);
    } catch (e) { /* the row may be gone: the stream will say */ }
  }

  // ---------------------------------------------------------------- clipboard
  onCopy(e) {
    if (this.editing) return;
    const flat = this.tree.flat;
    const i = this.activeIndex();
    const r = this.selRange() || { r0: i, r1: i, c0: this.active.col, c1: this.active.col };
    const lines = [];
    for (let a = r.r0; a <= r.r1; a++) {
      const n = flat[a];
      if (!n || n.more) continue;
      const cells = [];
      for (let b = r.c0; b <= r.c1; b++) cells.push(this.wire(this.cols[b], n.row[this.cols[b].name]) ?? '');
      lines.push(cells.join('\t'));
    }
    e.clipboardData.setData('text/plain', lines.join('\n') + '\n');
    e.preventDefault();
    this.ctx.status(`copied ${lines.length} × ${r.c1 - r.c0 + 1}`);
  }

  async onPaste(e) {
    if (this.editing) return;
    e.preventDefault();
    const text = (e.clipboardData && e.clipboardData.getData('text/plain')) || '';
    const lines = text.replace(/\r\n?/g, '\n').replace(/\n$/, '').split('\n').map((l) => l.split('\t'));
    if (!text || !lines.length) return;
    const flat = this.tree.flat;
    const i0 = this.activeIndex();
    const j0 = this.active.col;
    const updates = [];
    for (let a = 0; a < lines.length; a++) {
      const n = flat[i0 + a];
      if (!n || n.more) { this.ctx.toast(`Paste needs ${lines.length} rows below the active cell`, 'error'); return; }
      for (let b = 0; b < lines[a].length; b++) {
        const col = this.cols[j0 + b];
        if (!col) { this.ctx.toast(`Paste needs ${lines[a].length} columns right of the active cell`, 'error'); return; }
        const value = this.parseInput(col, lines[a][b]);
        if (value === undefined) return;
        const u = { table: this.name, row_id: wireId(n.id), column: col.name, value };
        if (n.children && col.type === 'number') u.mode = this.modeSel.value;
        updates.push(u);
      }
    }
    this.ctx.status(`pasting ${updates.length} cells…`);
    try {
      const res = await api('POST', '/update_cells', { updates });
      this.applyUpdate(Object.assign({ status: 'applied', user: 'you' }, res), true);
      this.remember(res.update_id);
      this.anchor = { index: i0 + lines.length - 1, col: j0 + lines[0].length - 1 };
      this.ctx.status(`pasted ${lines.length} × ${lines[0].length} in one update (${(res.changes || []).length} cells changed)`);
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      this.ctx.toast(`Paste not applied (nothing changed): ${err.message}`, 'error');
      this.ctx.status('');
    }
    this.schedule();
  }

  // ---------------------------------------------------------------- undo
  remember(updateId) {
    if (!updateId) return;
    this.undoStack.push(updateId);
    if (this.undoStack.length > 100) this.undoStack.shift();
    this.redoStack = [];
    this.undoButtons();
  }

  undoButtons() {
    if (this.undoBtn) this.undoBtn.disabled = this.undoStack.length === 0 || this.reverting;
    if (this.redoBtn) this.redoBtn.disabled = this.redoStack.length === 0 || this.reverting;
  }

  undo() { return this.revertTop(this.undoStack, this.redoStack, 'Undo', 'undone'); }
  redo() { return this.revertTop(this.redoStack, this.undoStack, 'Redo', 'redone'); }

  // Reverts the newest update of `from`; its revert goes on `to`.
  async revertTop(from, to, what, done) {
    if (this.reverting) return;
    if (from.length === 0) { this.ctx.status(`nothing to ${what.toLowerCase()}`); return; }
    const id = from.pop();
    this.reverting = true;
    this.undoButtons();
    this.ctx.status(`${what.toLowerCase()}…`);
    try {
      const res = await api('POST', `/updates/${enc(id)}/revert`, {});
      this.applyUpdate(Object.assign({ status: 'applied', user: 'you' }, res), true);
      to.push(res.update_id);
      const n = res.changes_total || (res.changes || []).length;
      this.ctx.status(`${done}: ${n.toLocaleString('en-US')} cell${n === 1 ? '' : 's'} back as they were`);
    } catch (e) {
      if (!(e instanceof ApiError)) { this.reverting = false; this.undoButtons(); throw e; }
      if (e.status === 409) {
        const cs = e.problem.conflicts || [];
        const list = cs.slice(0, 3).map((c) => `${c.column} of row ${c.row_id}`).join(', ');
        this.ctx.toast(`${what} not possible: ${list || 'those cells'}${cs.length > 3 ? ' and more' : ''} changed since. (${e.message})`, 'conflict');
      } else {
        this.ctx.toast(`${what} failed: ${e.message}`, 'error');
      }
      this.ctx.status('');
    }
    this.reverting = false;
    this.undoButtons();
    this.schedule();
  }

  // ---------------------------------------------------------------- holds
  toggleHoldActive() {
    const n = this.tree.get(this.active.id);
    if (n) this.toggleHold(n, this.cols[this.active.col]);
  }

  async toggleHold(n, col) {
    if (!col || col.type !== 'number') { this.ctx.toast('Only number cells can be held', 'error'); return; }
    const k = `${idKey(n.id)}:${col.name}`;
    const held = this.holds.has(k);
    try {
      await api(held ? 'DELETE' : 'PUT', `/tables/${enc(this.name)}/holds`, { holds: [{ row_id: wireId(n.id), column: col.name }] });
      if (held) this.holds.delete(k); else this.holds.add(k);
      this.holdsSeen = ++this.holdsAsked; // reads asked before this answer are older
      this.ctx.status(`${held ? 'released' : 'held'}: ${col.name} of row ${n.id}`);
      this.schedule();
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      this.ctx.toast(`Hold not changed: ${e.message}`, 'error');
    }
  }

  // ---------------------------------------------------------------- misc
  // Expands every collapsed parent on the lowest level shown (loading it).
  expandLevel() {
    const flat = this.tree.flat;
    let depth = Infinity;
    for (const n of flat) if (!n.more && n.children && !n.expanded) depth = Math.min(depth, n.depth);
    const todo = flat.filter((n) => !n.more && n.children && !n.expanded && n.depth === depth);
    return Promise.all(todo.slice(0, 200).map((n) => this.tree.toggle(n, true)));
  }

  // The cell history panel: GET /tables/{t}/rows/{id}/history (API v1.1).
  // A server without that route answers 404 "no such route": the panel says
  // the audit trail is not served yet.
  async showHistory() {
    const n = this.tree.get(this.active.id);
    const col = this.cols[this.active.col];
    if (!n) return;
    const panel = this.history;
    panel.hidden = false;
    panel.replaceChildren(h('header', {}, h('b', { text: `History · ${col.name} of row ${n.id}` }),
      h('button', { class: 'link', onclick: () => { panel.hidden = true; this.body.focus(); } }, '×')),
    h('p', { class: 'muted', text: 'loading…' }));
    try {
      const r = await api('GET', `/tables/${enc(this.name)}/rows/${enc(String(n.id))}/history?column=${enc(col.name)}&limit=50`);
      const list = h('ol', { class: 'hist' }, ...(r.history || []).map((x) => h('li', {},
        h('span', { class: 'who', text: x.user || '?' }), ' ',
        h('span', { text: `${this.display(col, x.old)} → ${this.display(col, x.new)}` }), ' ',
        h('time', { text: x.ts || '' }))));
      panel.replaceChildren(panel.firstChild, (r.history || []).length ? list : h('p', { class: 'muted', text: 'no changes recorded' }));
    } catch (e) {
      const msg = e.status === 404 ? 'The cell history is not served by this duckgrid yet (GET /tables/{t}/rows/{id}/history).' : e.message;
      panel.replaceChildren(panel.firstChild, h('p', { class: 'muted', text: msg }));
    }
  }
}
