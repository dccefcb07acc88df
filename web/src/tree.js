// tree.js -- the lazy row tree behind the grid.
//
// A table is a forest. The grid never loads it whole: each parent's children
// are read a page at a time (GET /tables/{t}/rows?parent_id=&after=&limit=
// &children=true) when the parent is expanded, and the next page when its
// "more" placeholder scrolls into view. `children=true` gives each row its
// child count, so a toggle is drawn only where there is something to open.
//
// The grid draws `flat`: the expanded part of the tree in display order,
// rebuilt (O(visible rows)) whenever the shape changes. Each entry is a node
// or a `more` placeholder {more: parent}.

import { api, enc } from './api.js';

export const PAGE = 200;        // rows per page when scrolling
export const RELOAD_PAGE = 5000; // rows per page when reloading a loaded list

export const idKey = (id) => String(id);

export class Tree {
  constructor(table, onChange) {
    this.table = table;
    this.onChange = onChange;   // called after the shape or the rows change
    this.nodes = new Map();     // id string -> node
    this.root = this.newNode(null, null, -1);
    this.root.expanded = true;
    this.flat = [];
    this.loads = 0;             // list loads in flight
    this.onLoaded = null;       // (node) after a list was (re)loaded
  }

  newNode(id, row, depth) {
    return {
      id, row: row || {}, depth,
      children: row && row.children != null ? Number(row.children) : 0,
      expanded: false,
      kids: null,        // array of child nodes, null until loaded
      next: null,        // cursor of the next page, null when complete
      loading: false,
      stale: false,      // the list must be reloaded when it is on screen
      parent: null,
    };
  }

  // Inserts or refreshes a node from a row object.
  upsert(row, parent) {
    const k = idKey(row.id);
    let n = this.nodes.get(k);
    if (!n) {
      n = this.newNode(row.id, row, parent.depth + 1);
      this.nodes.set(k, n);
    } else {
      n.row = row;
      if (row.children != null) n.children = Number(row.children);
      n.depth = parent.depth + 1;
    }
    n.parent = parent;
    if (n.children === 0) {
      n.expanded = false;
      n.kids = null;
    }
    return n;
  }

  async fetchPage(parent, after, limit) {
    const pid = parent === this.root ? 'null' : enc(String(parent.id));
    let q = `/tables/${enc(this.table)}/rows?children=true&limit=${limit}&parent_id=${pid}`;
    if (after != null) q += `&after=${enc(String(after))}`;
    return api('GET', q);
  }

  // Loads the next page of parent's children.
  async loadMore(parent) {
    if (parent.loading) return;
    parent.loading = true;
    this.loads++;
    try {
      const after = parent.kids && parent.kids.length ? parent.kids[parent.kids.length - 1].id : null;
      if (parent.kids && parent.next == null) return;
      const page = await this.fetchPage(parent, after, PAGE);
      if (!parent.kids) parent.kids = [];
      for (const row of page.rows) parent.kids.push(this.upsert(row, parent));
      parent.next = page.next;
    } finally {
      parent.loading = false;
      this.loads--;
      this.rebuild();
      if (this.onLoaded) this.onLoaded(parent);
    }
  }

  // Reloads a loaded list (as many rows as it had, at least one page): after
  // a structural change or a truncated outcome.
  async reload(parent) {
    if (parent.loading) return;
    parent.loading = true;
    parent.stale = false;
    this.loads++;
    try {
      const want = Math.max(PAGE, parent.kids ? parent.kids.length : 0);
      const kids = [];
      let after = null, next = null;
      do {
        const page = await this.fetchPage(parent, after, Math.min(RELOAD_PAGE, want - kids.length));
        for (const row of page.rows) kids.push(this.upsert(row, parent));
        next = page.next;
        after = next;
      } while (next != null && kids.length < want);
      const keep = new Set(kids.map((n) => idKey(n.id)));
      for (const old of parent.kids || []) if (!keep.has(idKey(old.id))) this.forget(old);
      parent.kids = kids;
      parent.next = next;
      if (parent !== this.root) parent.children = Math.max(parent.children, kids.length);
    } finally {
      parent.loading = false;
      this.loads--;
      this.rebuild();
      if (this.onLoaded) this.onLoaded(parent);
    }
  }

  forget(n) {
    for (const k of n.kids || []) this.forget(k);
    this.nodes.delete(idKey(n.id));
  }

  async toggle(n, open) {
    if (!n.children) return;
    n.expanded = open === undefined ? !n.expanded : open;
    this.rebuild();
    if (n.expanded && (!n.kids || n.stale)) await (n.kids ? this.reload(n) : this.loadMore(n));
  }

  // Marks every loaded list stale: each is reloaded when it is on screen.
  invalidate() {
    this.root.stale = true;
    for (const n of this.nodes.values()) if (n.kids) n.stale = true;
  }

  rebuild() {
    const out = [];
    const walk = (p) => {
      if (!p.kids) {
        if (p.loading) out.push({ more: p, loading: true });
        return;
      }
      for (const n of p.kids) {
        out.push(n);
        if (n.expanded) walk(n);
      }
      if (p.next != null || (p.loading && !p.kids.length)) out.push({ more: p });
    };
    walk(this.root);
    this.flat = out;
    this.onChange();
  }

  get(id) { return this.nodes.get(idKey(id)); }

  indexOf(n) { return this.flat.indexOf(n); }
}
