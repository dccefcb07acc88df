/*
 * apply.c -- one request at a time: JSON in, engine operations, outcome out.
 *
 * Each request runs under its own engine savepoint (inside the batch's), so a
 * request that fails halfway -- the third update of an update_cells, the
 * 500th row of an insert -- is undone completely and becomes a "rejected"
 * outcome, while the rest of the batch stands. The outcome is written here,
 * as JSON text, in the exact shape clients read from get_updates; the audit
 * rows and the set of touched rows are collected for persist.c.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dg/common.h"
#include "dg/dgsql.h"
#include "dg/entry_mac.h"
#include "dg/decimal.h"
#include "dg/hash.h"
#include "dg/jsonw.h"
#include "dg/wire.h"
#include "dg/log.h"
#include "dg/catalog.h"
#include "dg/views.h"
#include "internal.h"

/* ---- small helpers ------------------------------------------------------------ */

/* FNV-1a, then a finaliser (MurmurHash3's fmix64 first half). The set of
 * seen request_ids holds these values only in memory: dg__mgr_load_seen
 * rebuilds it from the request_ids stored in dg.outcomes at every start, so
 * no file depends on the hash's value. */
uint64_t dg__mgr_hash(const char *s) {
  uint64_t h = dg_fnv1a64_str(s);
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  return h;
}

mtable_t *dg__mgr_table(dg_manager_t *m, const char *name) {
  if (name == NULL) return NULL;
  for (uint32_t i = 0; i < m->ntables; i++)
    if (m->tables[i] && strcmp(m->tables[i]->def->name, name) == 0) return m->tables[i];
  return NULL;
}

/* Forgets the batch in hand (its outcomes). Its audit rows, DDL and
 * touched rows belong to the unpersisted tail now: persist.c takes them. */
void dg__mgr_batch_clear(dg_manager_t *m) {
  for (size_t i = 0; i < m->nreqs; i++) dg_free(m->reqs[i].res);
  m->nreqs = 0;
}

/* ---- idempotency ----------------------------------------------------------- */

uint64_t dg__mgr_idem_key(const char *caller, const char *request_id) {
  uint64_t h = 1469598103934665603ULL; /* FNV-1a over caller, a separator, the id */
  for (const char *s = caller; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
  h = (h ^ 0x1f) * 1099511628211ULL;
  for (const char *s = request_id; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  return h ? h : 1; /* 0 marks an empty slot */
}

static size_t idem_slot(const midem_t *d, uint64_t key) {
  size_t i = (size_t)key & (d->cap - 1);
  while (d->keys[i] != 0 && d->keys[i] != key) i = (i + 1) & (d->cap - 1);
  return i;
}

int dg__mgr_idem_find(const midem_t *d, uint64_t key, uint64_t now_ms, int64_t window_ms, dg_redis_xid_t *id) {
  if (d->cap == 0) return 0;
  size_t i = idem_slot(d, key);
  if (d->keys[i] == 0) return 0;
  /* Stream time, not the wall clock: a replay decides exactly as the first
   * run did. */
  if (window_ms > 0 && d->ids[i].ms + (uint64_t)window_ms < now_ms) return 0;
  *id = d->ids[i];
  return 1;
}

static void idem_grow(midem_t *d, size_t cap) {
  midem_t n = {dg_calloc(cap, sizeof *n.keys), dg_calloc(cap, sizeof *n.ids), cap, 0};
  for (size_t i = 0; i < d->cap; i++) {
    if (d->keys[i] == 0) continue;
    size_t k = idem_slot(&n, d->keys[i]);
    n.keys[k] = d->keys[i];
    n.ids[k] = d->ids[i];
    n.count++;
  }
  dg_free(d->keys);
  dg_free(d->ids);
  *d = n;
}

void dg__mgr_idem_add(midem_t *d, uint64_t key, dg_redis_xid_t id) {
  if ((d->count + 1) * 2 > d->cap) idem_grow(d, d->cap ? d->cap * 2 : 1024);
  size_t i = idem_slot(d, key);
  if (d->keys[i] == 0) d->count++;
  d->keys[i] = key;
  d->ids[i] = id;
}

void dg__mgr_idem_prune(midem_t *d, uint64_t keep_from_ms) {
  midem_t n = {NULL, NULL, 0, 0};
  for (size_t i = 0; i < d->cap; i++)
    if (d->keys[i] != 0 && d->ids[i].ms >= keep_from_ms) dg__mgr_idem_add(&n, d->keys[i], d->ids[i]);
  dg__mgr_idem_dispose(d);
  *d = n;
}

void dg__mgr_idem_dispose(midem_t *d) {
  dg_free(d->keys);
  dg_free(d->ids);
  memset(d, 0, sizeof *d);
}

void dg__mgr_time_iso(uint64_t ms, char *out, size_t cap) {
  time_t sec = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&sec, &tm);
  snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
           tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

void dg__mgr_table_free(mtable_t *t) {
  if (t == NULL) return;
  dg_etable_destroy(t->et);
  dg_tabledef_unref(t->def);
  dg_idset_dispose(&t->touched);
  dg_idset_dispose(&t->fresh);
  dg_free(t->audit_ids);
  dg_free(t);
}

/* Column of the definition behind an engine number/text slot. */
static const dg_coldef_t *col_of_slot(const mtable_t *t, dg_coltype_t type, uint32_t slot) {
  for (int i = 0; i < t->def->ncols; i++)
    if (t->def->cols[i].type == type && (uint32_t)t->def->cols[i].slot == slot)
      return &t->def->cols[i];
  return NULL;
}

static int col_index(const mtable_t *t, const dg_coldef_t *c) { return (int)(c - t->def->cols); }

/* Opens the batch savepoint on first touch, then a request savepoint. */
static dg_emark_t begin(mtable_t *t) {
  if (t->batch_mark == 0) t->batch_mark = dg_etable_savepoint(t->et);
  return dg_etable_savepoint(t->et);
}

void dg__mgr_batch_end(dg_manager_t *m, int keep) {
  for (uint32_t i = 0; i < m->ntables; i++) {
    mtable_t *t = m->tables[i];
    if (t == NULL || t->batch_mark == 0) continue;
    if (keep) dg_etable_release(t->et, t->batch_mark);
    else dg_etable_rollback(t->et, t->batch_mark);
    t->batch_mark = 0;
  }
}

/* An error while applying: its HTTP status and message. */
typedef struct {
  int status;
  char detail[400];
} failure_t;

static int fail(failure_t *f, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(failure_t *f, int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(f->detail, sizeof f->detail, fmt, ap);
  va_end(ap);
  f->status = status;
  return -1;
}

/* Maps an engine error to an outcome failure. */
static int engine_fail(failure_t *f, int rc, const char *table, int64_t row, const char *col) {
  switch (rc) {
    case DG_ENOTFOUND:
      return fail(f, 404, "table '%s': row %" PRId64 " or its parent does not exist", table, row);
    case DG_ECONFLICT:
      return fail(f, 409,
                  "table '%s' row %" PRId64 "%s%s: conflict (held cells, compare-and-set "
                  "mismatch, children without cascade, or a cycle)",
                  table, row, col ? " column " : "", col ? col : "");
    case DG_EEXIST: return fail(f, 409, "table '%s': row %" PRId64 " exists already", table, row);
    case DG_EOVERFLOW:
      return fail(f, 400, "table '%s' row %" PRId64 ": a resulting value is out of range", table, row);
    default: return fail(f, 400, "table '%s' row %" PRId64 ": %s", table, row, dg_strerror(rc));
  }
}

/* ---- collecting effects ------------------------------------------------------- */

typedef struct {
  dg_manager_t *m;
  uint32_t req;         /* index of the request in the batch */
  dg_jsonw_t *w;        /* positioned inside the "changes" array */
  json_t *inserted;     /* {table: [ids]} */
  json_t *deleted;
  json_t *moved;        /* [{"table","row_id","from","to"}] */
  size_t nchanges;      /* cell changes (written to w while listed()) */
} effects_t;

static void hist_add_kind(dg_manager_t *m, uint8_t kind, uint32_t req, uint32_t tag, int64_t row,
                          int32_t col, char *old_text, char *new_text) {
  if (m->nhist == m->hist_cap) {
    m->hist_cap = m->hist_cap ? m->hist_cap * 2 : 256;
    m->hist = dg_realloc(m->hist, m->hist_cap * sizeof *m->hist);
  }
  m->hist[m->nhist++] = (mhist_t){req, tag, row, col, kind, 0, 0, 0, 0, old_text, new_text, 0};
}

/* A number cell's change: kept as scaled integers and formatted only when
 * the audit row is written (a spread over a million leaves would otherwise
 * cost two allocations a cell). */
static void hist_add_num(dg_manager_t *m, uint32_t req, uint32_t tag, int64_t row, int32_t col,
                         int has_old, int64_t old_num, int64_t new_num) {
  hist_add_kind(m, MHIST_CELL, req, tag, row, col, NULL, NULL);
  mhist_t *h = &m->hist[m->nhist - 1];
  h->numeric = 1;
  h->has_old = (uint8_t)has_old;
  h->old_num = old_num;
  h->new_num = new_num;
}

static void hist_add(dg_manager_t *m, uint32_t req, uint32_t tag, int64_t row, int32_t col,
                     char *old_text, char *new_text) {
  hist_add_kind(m, col < 0 ? MHIST_ROW : MHIST_CELL, req, tag, row, col, old_text, new_text);
}

static void id_list_add(json_t *map, const char *table, int64_t id) {
  json_t *a = json_object_get(map, table);
  if (a == NULL) {
    a = json_array();
    json_object_set_new(map, table, a);
  }
  json_array_append_new(a, json_integer(id));
}

/* Appends a row id as dg_jsonw_id writes it (beyond 2^53 as a string). */
static void put_id(dg_buf_t *b, int64_t id) {
  char tmp[24], *p = tmp + sizeof tmp;
  int quote = id > (INT64_C(1) << 53) || id < -(INT64_C(1) << 53);
  uint64_t u = id < 0 ? (uint64_t)0 - (uint64_t)id : (uint64_t)id;
  do {
    *--p = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  if (id < 0) *--p = '-';
  if (quote) dg_buf_putc(b, '"');
  dg_buf_append(b, p, (size_t)(tmp + sizeof tmp - p));
  if (quote) dg_buf_putc(b, '"');
}

static void put_dec(dg_buf_t *b, int64_t v, int scale) {
  char tmp[DG_DECIMAL_FORMAT_MAX + 8];
  dg_buf_append(b, tmp, dg_decimal_format(v, scale, tmp, sizeof tmp));
}

/* Renders and records the changes an engine call appended from index `from`.
 * `inserted_row` is the row the call inserted (its cells were null before).
 *
 * A number change is written as {"table":…,"row_id":…,"column":…,"old":…,
 * "new":…}. A spread's million changes share their table and column, so the
 * escaped text around the three values is made once per column and reused
 * (key by key through the writer took ~40% of a 1M-leaf spread's apply). */
/* Whether the next cell change goes into the outcome's "changes": not
 * once there are more than DUCKGRID_OUTCOME_CHANGES_MAX, when the outcome
 * lists none of them (a compact outcome, dg__mgr_apply) -- an import of a
 * million rows would write half a gigabyte of changes to throw away. */
static int listed(const effects_t *e) {
  return e->m->outcome_changes_max == 0 || e->nchanges < e->m->outcome_changes_max;
}

static void collect(effects_t *e, mtable_t *t, size_t from, int64_t inserted_row) {
  dg_manager_t *m = e->m;
  size_t n = dg_changes_count(m->changes);
  const dg_change_t *ch = dg_changes_items(m->changes);
  const dg_coldef_t *fmt_cd = NULL;
  dg_buf_t head, mid; /* {"table":"t","row_id":   ,"column":"c","old": */
  dg_buf_init(&head);
  dg_buf_init(&mid);
  int64_t last_touched = 0; /* a row's changes come together: look it up once */
  int have_last = 0;
  if (n - from > 1024) { /* a big write: grow the set once (at most to every row) */
    size_t rows = dg_etable_row_count(t->et);
    dg_idset_reserve(&t->touched, n - from < rows ? n - from : rows);
  }
  for (size_t i = from; i < n; i++) {
    const dg_change_t *c = &ch[i];
    if ((!have_last || c->row_id != last_touched) && dg_idset_add(&t->touched, c->row_id)) {
      if (c->kind == DG_CHANGE_ROW_INSERT) dg_idset_add(&t->fresh, c->row_id);
    }
    last_touched = c->row_id;
    have_last = 1;
    switch (c->kind) {
      case DG_CHANGE_NUMBER: {
        const dg_coldef_t *cd = fmt_cd && fmt_cd->slot == (int)c->col && fmt_cd->type == DG_COL_NUMBER
                                    ? fmt_cd
                                    : col_of_slot(t, DG_COL_NUMBER, c->col);
        int is_new = c->row_id == inserted_row;
        if (!listed(e)) {
          e->nchanges++;
          hist_add_num(m, e->req, t->tag, c->row_id, col_index(t, cd), !is_new, c->old_value, c->new_value);
          break;
        }
        if (cd != fmt_cd) {
          fmt_cd = cd;
          dg_buf_reset(&head);
          dg_buf_puts(&head, "{\"table\":");
          dg_buf_json_str(&head, t->def->name, strlen(t->def->name));
          dg_buf_puts(&head, ",\"row_id\":");
          dg_buf_reset(&mid);
          dg_buf_puts(&mid, ",\"column\":");
          dg_buf_json_str(&mid, cd->name, strlen(cd->name));
          dg_buf_puts(&mid, ",\"old\":");
        }
        dg_buf_t *out = e->w->out;
        dg_jsonw_raw(e->w, head.data, head.len); /* with the comma before it */
        put_id(out, c->row_id);
        dg_buf_append(out, mid.data, mid.len);
        if (is_new) dg_buf_puts(out, "null");
        else put_dec(out, c->old_value, cd->scale);
        dg_buf_puts(out, ",\"new\":");
        put_dec(out, c->new_value, cd->scale);
        dg_buf_putc(out, '}');
        e->nchanges++;
        hist_add_num(m, e->req, t->tag, c->row_id, col_index(t, cd), !is_new, c->old_value, c->new_value);
        break;
      }
      case DG_CHANGE_TEXT: {
        const dg_coldef_t *cd = col_of_slot(t, DG_COL_TEXT, c->col);
        const char *os, *ns;
        size_t ol, nl;
        dg_changes_text(m->changes, c, false, &os, &ol);
        dg_changes_text(m->changes, c, true, &ns, &nl);
        if (!listed(e)) {
          e->nchanges++;
          hist_add(m, e->req, t->tag, c->row_id, col_index(t, cd), os ? dg_strndup(os, ol) : NULL,
                   ns ? dg_strndup(ns, nl) : NULL);
          break;
        }
        dg_jsonw_obj(e->w);
        dg_jsonw_key(e->w, "table");
        dg_jsonw_str(e->w, t->def->name);
        dg_jsonw_key(e->w, "row_id");
        dg_jsonw_id(e->w, c->row_id);
        dg_jsonw_key(e->w, "column");
        dg_jsonw_str(e->w, cd->name);
        dg_jsonw_key(e->w, "old");
        if (os) dg_jsonw_strn(e->w, os, ol);
        else dg_jsonw_null(e->w);
        dg_jsonw_key(e->w, "new");
        if (ns) dg_jsonw_strn(e->w, ns, nl);
        else dg_jsonw_null(e->w);
        dg_jsonw_end(e->w);
        e->nchanges++;
        hist_add(m, e->req, t->tag, c->row_id, col_index(t, cd), os ? dg_strndup(os, ol) : NULL,
                 ns ? dg_strndup(ns, nl) : NULL);
        break;
      }
      case DG_CHANGE_ROW_INSERT:
        id_list_add(e->inserted, t->def->name, c->row_id);
        hist_add(m, e->req, t->tag, c->row_id, -1, NULL, dg_strdup("inserted"));
        /* The parent it was inserted under: a revert checks it was not moved since. */
        m->hist[m->nhist - 1].has_new = 1;
        m->hist[m->nhist - 1].new_num = c->new_value;
        break;
      case DG_CHANGE_ROW_DELETE:
        id_list_add(e->deleted, t->def->name, c->row_id);
        hist_add(m, e->req, t->tag, c->row_id, -1, dg_strdup("deleted"), NULL);
        break;
      case DG_CHANGE_ROW_MOVE: {
        json_t *mv = json_pack("{s:s,s:I}", "table", t->def->name, "row_id", (json_int_t)c->row_id);
        json_object_set_new(mv, "from", c->old_value == DG_ROW_NONE ? json_null() : json_integer(c->old_value));
        json_object_set_new(mv, "to", c->new_value == DG_ROW_NONE ? json_null() : json_integer(c->new_value));
        json_array_append_new(e->moved, mv);
        char from[48], to[48];
        snprintf(from, sizeof from, "parent %" PRId64, c->old_value);
        snprintf(to, sizeof to, "parent %" PRId64, c->new_value);
        hist_add(m, e->req, t->tag, c->row_id, -1,
                 dg_strdup(c->old_value == DG_ROW_NONE ? "root" : from),
                 dg_strdup(c->new_value == DG_ROW_NONE ? "root" : to));
        break;
      }
      case DG_CHANGE_HOLD: {
        const dg_coldef_t *cd = col_of_slot(t, DG_COL_NUMBER, c->col);
        hist_add_kind(m, MHIST_HOLD, e->req, t->tag, c->row_id, col_index(t, cd),
                      dg_strdup(c->old_value ? "held" : "free"), dg_strdup(c->new_value ? "held" : "free"));
        break;
      }
    }
  }
  dg_buf_dispose(&head);
  dg_buf_dispose(&mid);
}

/* Records, for the audit log's dg.row_images, every row of the subtree
 * under `top` as it is now (pre-order, children in id order, so parents
 * come before their children): its parent and every cell, numbers as exact
 * decimal strings. Called just before the subtree is deleted, so that a
 * revert can bring it back (issue 19). */
static void record_images(effects_t *e, mtable_t *t, int64_t top) {
  dg_manager_t *m = e->m;
  size_t nstack = 0, capstack = 16, nkids = 0, capkids = 0;
  int64_t *stack = dg_malloc(capstack * sizeof *stack), *kids = NULL;
  stack[nstack++] = top;
  dg_buf_t b;
  dg_buf_init(&b);
  while (nstack > 0) {
    int64_t id = stack[--nstack];
    dg_erow_t row;
    if (dg_etable_row_get(t->et, id, &row) != 0) continue;
    dg_buf_reset(&b);
    dg_jsonw_t w;
    dg_jsonw_init(&w, &b);
    dg_jsonw_obj(&w);
    for (int i = 0; i < t->def->ncols; i++) {
      const dg_coldef_t *c = &t->def->cols[i];
      dg_jsonw_key(&w, c->name);
      if (c->type == DG_COL_NUMBER) {
        int64_t v = 0;
        char tmp[DG_DECIMAL_FORMAT_MAX + 8];
        dg_etable_number_get(t->et, id, (uint32_t)c->slot, &v);
        dg_jsonw_strn(&w, tmp, dg_decimal_format(v, c->scale, tmp, sizeof tmp));
      } else {
        const char *sv;
        size_t n;
        if (dg_etable_text_get(t->et, id, (uint32_t)c->slot, &sv, &n) == 0 && sv) dg_jsonw_strn(&w, sv, n);
        else dg_jsonw_null(&w);
      }
    }
    dg_jsonw_end(&w);
    hist_add_kind(m, MHIST_IMAGE, e->req, t->tag, id, -1, dg_strndup(b.data, b.len), NULL);
    mhist_t *h = &m->hist[m->nhist - 1];
    h->has_old = row.parent_id != DG_ROW_NONE;
    h->old_num = row.parent_id;
    /* Children in id order, pushed reversed so the smallest comes next. */
    nkids = 0;
    int64_t after = DG_ROW_NONE;
    for (;;) {
      if (capkids - nkids < 256) {
        capkids = capkids ? capkids * 2 : 256;
        kids = dg_realloc(kids, capkids * sizeof *kids);
      }
      size_t got = 0;
      if (dg_etable_children_get(t->et, id, after, kids + nkids, 256, &got) != 0 || got == 0) break;
      nkids += got;
      after = kids[nkids - 1];
      if (got < 256) break;
    }
    if (capstack - nstack < nkids) {
      capstack = (nstack + nkids) * 2;
      stack = dg_realloc(stack, capstack * sizeof *stack);
    }
    for (size_t i = nkids; i-- > 0;) stack[nstack++] = kids[i];
  }
  dg_buf_dispose(&b);
  dg_free(stack);
  dg_free(kids);
}

/* Writes a row object from the engine's state. */
static void render_row(dg_jsonw_t *w, mtable_t *t, int64_t id) {
  dg_erow_t row;
  if (dg_etable_row_get(t->et, id, &row) != 0) {
    dg_jsonw_null(w);
    return;
  }
  dg_jsonw_obj(w);
  dg_jsonw_key(w, "id");
  dg_jsonw_id(w, id);
  dg_jsonw_key(w, "parent_id");
  if (row.parent_id == DG_ROW_NONE) dg_jsonw_null(w);
  else dg_jsonw_id(w, row.parent_id);
  for (int i = 0; i < t->def->ncols; i++) {
    const dg_coldef_t *c = &t->def->cols[i];
    dg_jsonw_key(w, c->name);
    if (c->type == DG_COL_NUMBER) {
      int64_t v = 0;
      dg_etable_number_get(t->et, id, (uint32_t)c->slot, &v);
      dg_jsonw_dec(w, v, c->scale);
    } else {
      const char *s;
      size_t n;
      if (dg_etable_text_get(t->et, id, (uint32_t)c->slot, &s, &n) == 0 && s) dg_jsonw_strn(w, s, n);
      else dg_jsonw_null(w);
    }
  }
  dg_jsonw_end(w);
}

/* ---- operations ------------------------------------------------------------------ */

static int parse_mode(const mtable_t *t, const char *mode, dg_eset_t *how, failure_t *f) {
  memset(how, 0, sizeof *how);
  if (mode == NULL || strcmp(mode, "proportional") == 0) how->mode = DG_SPREAD_PROPORTIONAL;
  else if (strcmp(mode, "equal") == 0) how->mode = DG_SPREAD_EQUAL;
  else if (strcmp(mode, "add") == 0) how->mode = DG_SPREAD_ADD;
  else if (strcmp(mode, "percent") == 0) how->mode = DG_SPREAD_PERCENT;
  else if (strcmp(mode, "repeat_leaves") == 0) how->mode = DG_SPREAD_REPEAT_LEAVES;
  else if (strncmp(mode, "by:", 3) == 0) {
    const dg_coldef_t *c = dg_tabledef_col(t->def, mode + 3);
    if (c == NULL || c->type != DG_COL_NUMBER)
      return fail(f, 400, "mode '%s': no such number column", mode);
    how->mode = DG_SPREAD_BY;
    how->by_col = (uint32_t)c->slot;
  } else {
    return fail(f, 400, "unknown mode '%.60s'", mode);
  }
  return 0;
}

/* A decimal string (or number) from a normalised request at `scale`. */
static int dec_of(const json_t *v, int scale, int64_t *out) {
  if (json_is_string(v)) return dg_decimal_parse(json_string_value(v), json_string_length(v), scale, out);
  if (json_is_integer(v)) {
    char b[32];
    snprintf(b, sizeof b, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    return dg_decimal_parse(b, strlen(b), scale, out);
  }
  return DG_EINVAL;
}

/* Over DUCKGRID_REQUEST_CHANGES_MAX: checked after every engine call, so
 * the work of a request that goes over stops about one operation past the
 * cap (100,000 spreads of a million leaves each never run), and the request
 * is rejected whole (dg__mgr_apply rolls it back). 0, or -1 with f set. */
static int over_cap(const effects_t *e, failure_t *f) {
  size_t max = e->m->request_changes_max;
  if (max == 0 || e->nchanges <= max) return 0;
  return fail(f, 400, "the request would change more than the %zu cells allowed (DUCKGRID_REQUEST_CHANGES_MAX)",
              max);
}

/* One cell write (update_cell, an element of update_cells, a PATCH cell). */
static int write_cell(effects_t *e, mtable_t *t, int64_t row, const dg_coldef_t *c, const json_t *value,
                      const char *mode, const json_t *expected, failure_t *f) {
  dg_manager_t *m = e->m;
  size_t from = dg_changes_count(m->changes);
  int rc;
  if (c->type == DG_COL_TEXT) {
    if (expected && !json_is_null(expected)) {
      const char *s;
      size_t n;
      rc = dg_etable_text_get(t->et, row, (uint32_t)c->slot, &s, &n);
      if (rc != 0) return engine_fail(f, rc, t->def->name, row, c->name);
      const char *want = json_string_value(expected);
      if (s == NULL || want == NULL || n != strlen(want) || memcmp(s, want, n) != 0)
        return fail(f, 409, "compare-and-set: row %" PRId64 " column '%s' is not the expected value",
                    row, c->name);
    }
    const char *s = json_string_value(value);
    rc = dg_etable_text_set(t->et, row, (uint32_t)c->slot, s, s ? json_string_length(value) : 0,
                            m->changes);
  } else {
    dg_eset_t how;
    if (parse_mode(t, mode, &how, f) != 0) return -1;
    int64_t v;
    int vscale = how.mode == DG_SPREAD_PERCENT ? 6 : c->scale;
    if (dec_of(value, vscale, &v) != 0) return fail(f, 400, "value is not a valid decimal");
    if (expected && !json_is_null(expected)) {
      if (dec_of(expected, c->scale, &how.expected) != 0) return fail(f, 400, "expected is not a valid decimal");
      how.has_expected = true;
      int64_t cur;
      if (dg_etable_number_get(t->et, row, (uint32_t)c->slot, &cur) == 0 && cur != how.expected) {
        char a[32], b[32];
        dg_decimal_format(cur, c->scale, a, sizeof a);
        dg_decimal_format(how.expected, c->scale, b, sizeof b);
        return fail(f, 409, "compare-and-set: row %" PRId64 " column '%s' is %s, not the expected %s",
                    row, c->name, a, b);
      }
    }
    rc = dg_etable_set(t->et, row, (uint32_t)c->slot, v, &how, m->changes);
  }
  if (rc != 0) return engine_fail(f, rc, t->def->name, row, c->name);
  collect(e, t, from, INT64_MIN);
  return over_cap(e, f);
}

static int resolve_cell(dg_manager_t *m, const json_t *u, mtable_t **t, int64_t *row,
                        const dg_coldef_t **c, failure_t *f) {
  const char *tname = json_string_value(json_object_get(u, "table"));
  *t = dg__mgr_table(m, tname);
  if (*t == NULL) return fail(f, 404, "table '%s' does not exist", tname ? tname : "");
  *row = json_integer_value(json_object_get(u, "row_id"));
  const char *cname = json_string_value(json_object_get(u, "column"));
  *c = cname ? dg_tabledef_col((*t)->def, cname) : NULL;
  if (*c == NULL) return fail(f, 404, "table '%s' has no column '%s'", (*t)->def->name, cname ? cname : "");
  dg_erow_t r;
  if (dg_etable_row_get((*t)->et, *row, &r) != 0)
    return fail(f, 404, "table '%s' has no row %" PRId64, (*t)->def->name, *row);
  return 0;
}

/* Savepoints a request opened, to release or roll back together. */
typedef struct {
  mtable_t *t[16];
  dg_emark_t mark[16];
  int n;
  int overflow; /* more tables than slots: fall back to the batch */
} marks_t;

static void mark_table(marks_t *mk, mtable_t *t) {
  for (int i = 0; i < mk->n; i++)
    if (mk->t[i] == t) return;
  if (mk->n == 16) {
    mk->overflow = 1;
    return;
  }
  mk->t[mk->n] = t;
  mk->mark[mk->n++] = begin(t);
}

static void marks_end(marks_t *mk, int keep) {
  for (int i = mk->n - 1; i >= 0; i--) {
    if (keep) dg_etable_release(mk->t[i]->et, mk->mark[i]);
    else dg_etable_rollback(mk->t[i]->et, mk->mark[i]);
  }
}

static int op_update_cells(effects_t *e, json_t *list, marks_t *mk, failure_t *f) {
  for (size_t i = 0; i < json_array_size(list); i++) {
    json_t *u = json_array_get(list, i);
    mtable_t *t = NULL;
    int64_t row = 0;
    const dg_coldef_t *c = NULL;
    if (resolve_cell(e->m, u, &t, &row, &c, f) != 0) goto bad;
    mark_table(mk, t);
    if (mk->overflow) {
      fail(f, 400, "one update_cells may touch at most 16 tables");
      goto bad;
    }
    if (write_cell(e, t, row, c, json_object_get(u, "value"), json_string_value(json_object_get(u, "mode")),
                   json_object_get(u, "expected"), f) != 0)
      goto bad;
    continue;
  bad:
    if (json_array_size(list) > 1) {
      char d[sizeof f->detail + 32];
      snprintf(d, sizeof d, "updates[%zu]: %s", i, f->detail);
      size_t dn = strlen(d);
      if (dn >= sizeof f->detail) dn = sizeof f->detail - 1;
      memcpy(f->detail, d, dn);
      f->detail[dn] = '\0';
    }
    return -1;
  }
  return 0;
}

/* Cells of an insert/patch, as engine arrays. */
static int row_values(mtable_t *t, json_t *cells, int64_t *nums, dg_etext_t *texts, failure_t *f) {
  const char *k;
  json_t *v;
  json_object_foreach(cells, k, v) {
    const dg_coldef_t *c = dg_tabledef_col(t->def, k);
    if (c == NULL) return fail(f, 400, "table '%s' has no column '%s'", t->def->name, k);
    if (c->type == DG_COL_NUMBER) {
      if (dec_of(v, c->scale, &nums[c->slot]) != 0) return fail(f, 400, "column '%s': not a decimal", k);
    } else {
      texts[c->slot].ptr = json_string_value(v);
      texts[c->slot].len = texts[c->slot].ptr ? json_string_length(v) : 0;
    }
  }
  return 0;
}

/* ---- revert (issue 19) ------------------------------------------------------------
 *
 * The API reads what the reverted update U did from the audit log and sends
 * it as one request; only the request's content and the engine's state
 * decide, so a follower or a replay does exactly the same.
 *
 *   "rows":  what U did to whole rows, each to be undone:
 *     {"undo":"insert","table","row_id","parent_id"?,"expected":{col:v}}
 *         U inserted it: delete it (with its subtree). parent_id (absent
 *         for updates logged before it was recorded) and expected (its
 *         cells after U; an absent number is 0, an absent text null) say
 *         what it must still be.
 *     {"undo":"move","table","row_id","parent_id","expected_parent"}
 *         U moved it from parent_id to expected_parent: move it back.
 *     {"undo":"delete","table","row_id","parent_id","cells":{col:v}}
 *         U deleted it: insert it again, same id, parent and cells (the
 *         API lists parents before their children).
 *   "cells": every other cell U changed, {table, row_id, column, expected:
 *     its value after U, value: its value before}.
 *
 * Check first, change nothing: a row or cell that changed since is a
 * conflict, listed in *conflicts, and rejects the request unless "force":
 * an inserted row that is gone, was moved, has a child U did not insert, or
 * holds another value; a moved row moved again; a cell whose value is not
 * U's. Without rows (a revert of cell writes) every cell is checked, parents'
 * too; with rows, a parent's number cells are roll-ups that come back with
 * the rows and are not checked. Some conflicts force cannot override: an id
 * taken since, a parent gone, a move back that would make a cycle.
 *
 * Then undo, in this order: delete what U inserted (tops with cascade,
 * recording images as any delete does, so a revert of this revert brings
 * them back); move back what U moved (last first); insert again what U
 * deleted; write the cells back: text cells and number cells of leaves take
 * their old value exactly, number cells of parents roll up from their
 * leaves (so a spread comes back to the cent, and a parent that gave way to
 * an inserted child gets its own value back). */
#define REVERT_CONFLICTS_LISTED 100

typedef struct {
  json_t *list;   /* conflicts listed (at most REVERT_CONFLICTS_LISTED)       */
  size_t n;       /* conflicts found                                         */
  size_t nrows;   /* of which about whole rows                               */
  size_t hard;    /* of which force cannot override                          */
} rconf_t;

static void conflict_add(rconf_t *rc, json_t *x, int row, int hard) {
  rc->n++;
  rc->nrows += row != 0;
  rc->hard += hard != 0;
  if (rc->list == NULL) rc->list = json_array();
  if (json_array_size(rc->list) < REVERT_CONFLICTS_LISTED) json_array_append_new(rc->list, x);
  else json_decref(x);
}

static void row_conflict(rconf_t *rc, const json_t *u, const char *reason, int hard) {
  conflict_add(rc,
               json_pack("{s:O?,s:O?,s:O?,s:s}", "table", json_object_get(u, "table"), "row_id",
                         json_object_get(u, "row_id"), "undo", json_object_get(u, "undo"), "reason", reason),
               1, hard);
}

static int cell_is(mtable_t *t, int64_t row, const dg_coldef_t *c, const json_t *want) {
  if (c->type == DG_COL_TEXT) {
    const char *s;
    size_t n;
    if (dg_etable_text_get(t->et, row, (uint32_t)c->slot, &s, &n) != 0) return 0;
    if (want == NULL || json_is_null(want)) return s == NULL;
    return s != NULL && json_is_string(want) && n == json_string_length(want) &&
           memcmp(s, json_string_value(want), n) == 0;
  }
  int64_t cur, w = 0;
  if (dg_etable_number_get(t->et, row, (uint32_t)c->slot, &cur) != 0) return 0;
  return (want == NULL || dec_of(want, c->scale, &w) == 0) && cur == w;
}

static int64_t parent_of_json(const json_t *p) {
  return p == NULL || json_is_null(p) ? DG_ROW_NONE : (int64_t)json_integer_value(p);
}

/* The rows U inserted, per table: whose children may go with them. */
typedef struct {
  mtable_t *t[16];
  dg_idset_t ids[16];
  int n;
} rset_t;

static dg_idset_t *rset_of(rset_t *s, mtable_t *t, int add) {
  for (int i = 0; i < s->n; i++)
    if (s->t[i] == t) return &s->ids[i];
  if (!add || s->n == 16) return NULL;
  s->t[s->n] = t;
  dg_idset_init(&s->ids[s->n]);
  return &s->ids[s->n++];
}

static void rset_dispose(rset_t *s) {
  for (int i = 0; i < s->n; i++) dg_idset_dispose(&s->ids[i]);
}

/* Whether `a` is `row` or lies under it. */
static int under(mtable_t *t, int64_t a, int64_t row) {
  dg_erow_t r;
  for (size_t hops = 0; a != DG_ROW_NONE && hops <= DG_ENGINE_MAX_ROWS; hops++) {
    if (a == row) return 1;
    if (dg_etable_row_get(t->et, a, &r) != 0) return 0;
    a = r.parent_id;
  }
  return 0;
}

static void check_inserted(dg_manager_t *m, const json_t *u, rset_t *ins, rconf_t *rc) {
  mtable_t *t = dg__mgr_table(m, json_string_value(json_object_get(u, "table")));
  int64_t id = json_integer_value(json_object_get(u, "row_id"));
  dg_erow_t r;
  if (t == NULL || dg_etable_row_get(t->et, id, &r) != 0) {
    row_conflict(rc, u, "gone", 0);
    return;
  }
  json_t *pj = json_object_get(u, "parent_id");
  if (pj && parent_of_json(pj) != r.parent_id) row_conflict(rc, u, "moved", 0);
  if (r.nchildren > 0) {
    dg_idset_t *set = rset_of(ins, t, 0);
    int64_t kids[64], after = DG_ROW_NONE;
    size_t got = 0;
    int foreign = 0;
    while (!foreign && dg_etable_children_get(t->et, id, after, kids, 64, &got) == 0 && got > 0) {
      for (size_t k = 0; k < got && !foreign; k++) foreign = set == NULL || !dg_idset_has(set, kids[k]);
      after = kids[got - 1];
      if (got < 64) break;
    }
    if (foreign) row_conflict(rc, u, "children", 0);
  }
  json_t *exp = json_object_get(u, "expected");
  for (int i = 0; i < t->def->ncols; i++) {
    const dg_coldef_t *c = &t->def->cols[i];
    if (c->type == DG_COL_NUMBER && r.nchildren > 0) continue; /* a roll-up */
    json_t *want = json_object_get(exp, c->name);
    if (cell_is(t, id, c, want)) continue;
    json_t *shown = want ? json_incref(want) : c->type == DG_COL_NUMBER ? json_string("0") : json_null();
    conflict_add(rc,
                 json_pack("{s:O?,s:I,s:s,s:o}", "table", json_object_get(u, "table"), "row_id", (json_int_t)id,
                           "column", c->name, "expected", shown),
                 0, 0);
  }
}

static void check_moved(dg_manager_t *m, const json_t *u, rconf_t *rc) {
  mtable_t *t = dg__mgr_table(m, json_string_value(json_object_get(u, "table")));
  int64_t id = json_integer_value(json_object_get(u, "row_id"));
  int64_t back = parent_of_json(json_object_get(u, "parent_id"));
  dg_erow_t r, p;
  if (t == NULL || dg_etable_row_get(t->et, id, &r) != 0) {
    row_conflict(rc, u, "gone", 0);
    return;
  }
  if (r.parent_id != parent_of_json(json_object_get(u, "expected_parent"))) row_conflict(rc, u, "moved", 0);
  if (back != DG_ROW_NONE && dg_etable_row_get(t->et, back, &p) != 0) row_conflict(rc, u, "parent_gone", 1);
  else if (back != DG_ROW_NONE && under(t, back, id)) row_conflict(rc, u, "cycle", 1);
}

static void check_deleted(dg_manager_t *m, const json_t *u, rset_t *del, rconf_t *rc) {
  mtable_t *t = dg__mgr_table(m, json_string_value(json_object_get(u, "table")));
  int64_t id = json_integer_value(json_object_get(u, "row_id"));
  int64_t parent = parent_of_json(json_object_get(u, "parent_id"));
  dg_erow_t r;
  if (t == NULL) {
    row_conflict(rc, u, "table_gone", 1);
    return;
  }
  if (dg_etable_row_get(t->et, id, &r) == 0) row_conflict(rc, u, "exists", 1);
  dg_idset_t *set = rset_of(del, t, 0);
  if (parent != DG_ROW_NONE && dg_etable_row_get(t->et, parent, &r) != 0 && !(set && dg_idset_has(set, parent)))
    row_conflict(rc, u, "parent_gone", 1);
}

static int op_revert(effects_t *e, json_t *o, marks_t *mk, json_t **conflicts, failure_t *f) {
  dg_manager_t *m = e->m;
  json_t *cells = json_object_get(o, "cells"), *rows = json_object_get(o, "rows");
  const char *uid = json_string_value(json_object_get(o, "reverts"));
  int force = json_is_true(json_object_get(o, "force"));
  int structural = json_array_size(rows) > 0;
  rconf_t rc = {NULL, 0, 0, 0};
  rset_t ins, del;
  ins.n = del.n = 0;
  int ret = 0;
  for (size_t i = 0; i < json_array_size(rows); i++) {
    json_t *u = json_array_get(rows, i);
    const char *undo = json_string_value(json_object_get(u, "undo"));
    mtable_t *t = dg__mgr_table(m, json_string_value(json_object_get(u, "table")));
    rset_t *s = undo && strcmp(undo, "insert") == 0 ? &ins : undo && strcmp(undo, "delete") == 0 ? &del : NULL;
    if (s == NULL && (undo == NULL || strcmp(undo, "move") != 0)) {
      ret = fail(f, 400, "rows[%zu]: undo must be insert, move or delete", i);
      goto out;
    }
    if (s && t) {
      dg_idset_t *set = rset_of(s, t, 1);
      if (set == NULL) {
        ret = fail(f, 400, "one revert may touch at most 16 tables");
        goto out;
      }
      dg_idset_add(set, json_integer_value(json_object_get(u, "row_id")));
    }
  }

  /* ---- check ---- */
  for (size_t i = 0; i < json_array_size(rows); i++) {
    json_t *u = json_array_get(rows, i);
    const char *undo = json_string_value(json_object_get(u, "undo"));
    if (strcmp(undo, "insert") == 0) check_inserted(m, u, &ins, &rc);
    else if (strcmp(undo, "move") == 0) check_moved(m, u, &rc);
    else check_deleted(m, u, &del, &rc);
  }
  for (size_t i = 0; i < json_array_size(cells); i++) {
    json_t *u = json_array_get(cells, i);
    mtable_t *t = NULL;
    int64_t row = 0;
    const dg_coldef_t *c = NULL;
    failure_t ignored = {0, ""};
    int gone = resolve_cell(m, u, &t, &row, &c, &ignored) != 0;
    if (!gone && structural && c->type == DG_COL_NUMBER) {
      dg_erow_t r;
      if (dg_etable_row_get(t->et, row, &r) == 0 && r.nchildren > 0) continue; /* a roll-up */
    }
    if (!gone && cell_is(t, row, c, json_object_get(u, "expected"))) continue;
    json_t *x = json_pack("{s:O?,s:O?,s:O?,s:O?}", "table", json_object_get(u, "table"), "row_id",
                          json_object_get(u, "row_id"), "column", json_object_get(u, "column"), "expected",
                          json_object_get(u, "expected"));
    if (gone) json_object_set_new(x, "gone", json_true());
    conflict_add(&rc, x, 0, 0);
  }
  if (rc.hard > 0) {
    ret = fail(f, 409,
               "update %s cannot be reverted: %zu row%s cannot be put back (an id taken since, a parent gone, or a "
               "cycle); force does not override this",
               uid ? uid : "?", rc.hard, rc.hard == 1 ? "" : "s");
    goto out;
  }
  if (rc.n > 0 && !force) {
    if (rc.nrows == 0)
      ret = fail(f, 409, "%zu cell%s changed since update %s (revert with \"force\":true to overwrite them)", rc.n,
                 rc.n == 1 ? "" : "s", uid ? uid : "?");
    else
      ret = fail(f, 409, "%zu row%s or cell%s changed since update %s (revert with \"force\":true to overwrite them)",
                 rc.n, rc.n == 1 ? "" : "s", rc.n == 1 ? "" : "s", uid ? uid : "?");
    goto out;
  }

  /* ---- undo ---- */
  /* 1. What U inserted: each row whose parent is not going too is deleted
   *    with its subtree (a child added since goes with it only when forced:
   *    otherwise it was a conflict). */
  for (size_t i = 0; i < json_array_size(rows); i++) {
    json_t *u = json_array_get(rows, i);
    if (strcmp(json_string_value(json_object_get(u, "undo")), "insert") != 0) continue;
    mtable_t *t = dg__mgr_table(m, json_string_value(json_object_get(u, "table")));
    int64_t id = json_integer_value(json_object_get(u, "row_id"));
    dg_erow_t r;
    if (t == NULL || dg_etable_row_get(t->et, id, &r) != 0) continue; /* gone: forced past */
    dg_idset_t *set = rset_of(&ins, t, 0);
    if (r.parent_id != DG_ROW_NONE && set && dg_idset_has(set, r.parent_id)) continue; /* goes with its parent */
    mark_table(mk, t);
    if (mk->overflow) {
      ret = fail(f, 400, "one revert may touch at most 16 tables");
      goto out;
    }
    size_t from = dg_changes_count(m->changes);
    record_images(e, t, id);
    int erc = dg_etable_delete(t->et, id, true, m->changes);
    if (erc != 0) {
      ret = engine_fail(f, erc, t->def->name, id, NULL);
      goto out;
    }
    collect(e, t, from, INT64_MIN);
  }
  /* 2. What U moved, back where it was (the last move first). */
  for (size_t i = json_array_size(rows); i-- > 0;) {
    json_t *u = json_array_get(rows, i);
    if (strcmp(json_string_value(json_object_get(u, "undo")), "move") != 0) continue;
    mtable_t *t = dg__mgr_table(m, json_string_value(json_object_get(u, "table")));
    int64_t id = json_integer_value(json_object_get(u, "row_id"));
    dg_erow_t r;
    if (t == NULL || dg_etable_row_get(t->et, id, &r) != 0) continue; /* gone: forced past */
    mark_table(mk, t);
    if (mk->overflow) {
      ret = fail(f, 400, "one revert may touch at most 16 tables");
      goto out;
    }
    size_t from = dg_changes_count(m->changes);
    int erc = dg_etable_move(t->et, id, parent_of_json(json_object_get(u, "parent_id")), m->changes);
    if (erc != 0) {
      ret = engine_fail(f, erc, t->def->name, id, NULL);
      goto out;
    }
    collect(e, t, from, INT64_MIN);
  }
  /* 3. What U deleted, inserted again as it was (parents first). */
  for (size_t i = 0; i < json_array_size(rows); i++) {
    json_t *u = json_array_get(rows, i);
    if (strcmp(json_string_value(json_object_get(u, "undo")), "delete") != 0) continue;
    mtable_t *t = dg__mgr_table(m, json_string_value(json_object_get(u, "table")));
    int64_t id = json_integer_value(json_object_get(u, "row_id"));
    mark_table(mk, t);
    if (mk->overflow) {
      ret = fail(f, 400, "one revert may touch at most 16 tables");
      goto out;
    }
    uint32_t nnum = dg_etable_num_columns(t->et), ntext = dg_etable_text_columns(t->et);
    int64_t *nums = dg_calloc(nnum + 1, sizeof *nums);
    dg_etext_t *texts = dg_calloc(ntext + 1, sizeof *texts);
    int erc = 0;
    if (row_values(t, json_object_get(u, "cells"), nums, texts, f) != 0) erc = -1;
    size_t from = dg_changes_count(m->changes);
    if (erc == 0) {
      erc = dg_etable_insert(t->et, id, parent_of_json(json_object_get(u, "parent_id")), nums, texts, m->changes);
      if (erc != 0) engine_fail(f, erc, t->def->name, id, NULL);
    }
    dg_free(nums);
    dg_free(texts);
    if (erc != 0) {
      ret = -1;
      goto out;
    }
    if (id >= m->next_row_id) m->next_row_id = id == INT64_MAX ? INT64_MAX : id + 1;
    collect(e, t, from, id);
  }
  /* 4. The cells: leaves take their old value, parents roll up. */
  for (size_t i = 0; i < json_array_size(cells); i++) {
    json_t *u = json_array_get(cells, i);
    mtable_t *t = NULL;
    int64_t row = 0;
    const dg_coldef_t *c = NULL;
    failure_t ignored = {0, ""};
    if (resolve_cell(m, u, &t, &row, &c, &ignored) != 0) continue; /* gone: forced past */
    if (c->type == DG_COL_NUMBER) {
      dg_erow_t r;
      if (dg_etable_row_get(t->et, row, &r) == 0 && r.nchildren > 0) continue; /* rolls up */
    }
    json_t *value = json_object_get(u, "value");
    if (c->type == DG_COL_NUMBER && json_is_null(value)) continue;
    mark_table(mk, t);
    if (mk->overflow) {
      ret = fail(f, 400, "one revert may touch at most 16 tables");
      goto out;
    }
    if (write_cell(e, t, row, c, value, NULL, NULL, f) != 0) {
      ret = -1;
      goto out;
    }
  }
out:
  if (ret != 0 && rc.list && f->status == 409) {
    *conflicts = rc.list;
    rc.list = NULL;
  }
  json_decref(rc.list);
  rset_dispose(&ins);
  rset_dispose(&del);
  return ret;
}

/* ---- compact revert (issue 19) ------------------------------------------------------
 *
 * {"op":"revert","reverts":U,"compact":true,"force":f}: the API sends this
 * form for an update that only wrote cells (update_cell, update_cells, a
 * revert of those); the records come from undo.c (the cache of recent
 * writes, or the audit log read after a barrier), never from the request,
 * so a revert of a million-leaf spread is a request of a hundred bytes.
 *
 * Same rules as op_revert without rows: every cell U changed is checked
 * (parents' roll-ups too) against its value after U; a difference is a
 * conflict unless forced. Then text cells and number leaves take their
 * value before U, all the leaves of a column at once
 * (dg_etable_set_leaves: one roll-up per ancestor, not one per leaf), and
 * parents roll up. A cell's net change within U is its first record's old
 * value and its last record's new one (a parent rolled up once per written
 * child has several). */

typedef struct {
  const mundo_cell_t *first, *last;
} cnet_t;

static uint64_t cnet_hash(uint32_t tag, int32_t col, int64_t row) {
  uint64_t h = (uint64_t)row * 0x9e3779b97f4a7c15ULL ^ ((uint64_t)tag << 40 | (uint32_t)col) * 0xff51afd7ed558ccdULL;
  return h ^ (h >> 29);
}

/* The net change of each cell, in the order of first change. */
static size_t net_changes(const mundo_t *u, cnet_t *out) {
  size_t cap = 16;
  while (cap < u->n * 2) cap <<= 1;
  uint32_t *slots = dg_calloc(cap, sizeof *slots); /* index + 1 into out; 0 = empty */
  size_t n = 0;
  for (size_t i = 0; i < u->n; i++) {
    const mundo_cell_t *c = &u->cells[i];
    size_t at = cnet_hash(c->tag, c->col, c->row) & (cap - 1);
    for (;; at = (at + 1) & (cap - 1)) {
      if (slots[at] == 0) {
        out[n] = (cnet_t){c, c};
        slots[at] = (uint32_t)++n;
        break;
      }
      const mundo_cell_t *f = out[slots[at] - 1].first;
      if (f->tag == c->tag && f->col == c->col && f->row == c->row) {
        out[slots[at] - 1].last = c;
        break;
      }
    }
  }
  dg_free(slots);
  return n;
}

static int text_is(mtable_t *t, int64_t row, const dg_coldef_t *c, const char *want) {
  const char *s;
  size_t n;
  if (dg_etable_text_get(t->et, row, (uint32_t)c->slot, &s, &n) != 0) return 0;
  if (want == NULL) return s == NULL;
  return s != NULL && n == strlen(want) && memcmp(s, want, n) == 0;
}

static json_t *cnet_value(const mtable_t *t, const dg_coldef_t *c, const mundo_cell_t *x, int new_side) {
  if (c->type == DG_COL_TEXT) {
    const char *v = new_side ? x->new_text : x->old_text;
    return v ? json_string(v) : json_null();
  }
  (void)t;
  if (!new_side && !x->has_old) return json_null();
  char b[DG_DECIMAL_FORMAT_MAX + 8];
  size_t n = dg_decimal_format(new_side ? x->new_num : x->old_num, c->scale, b, sizeof b);
  return json_stringn(b, n);
}

static int op_revert_compact(effects_t *e, json_t *o, marks_t *mk, json_t **conflicts, failure_t *f) {
  dg_manager_t *m = e->m;
  const char *uid = json_string_value(json_object_get(o, "reverts"));
  int force = json_is_true(json_object_get(o, "force"));
  dg_redis_xid_t x;
  if (uid == NULL || dg_redis_xid_parse(uid, strlen(uid), &x) != 0) return fail(f, 400, "reverts is not an update id");
  const mundo_t *u = dg__mgr_undo_find(m, x);
  if (u == NULL) /* manager.c and replay.c load it before: a bug */
    return fail(f, 500, "the records of update %s were not read before its revert", uid);
  rconf_t rc = {NULL, 0, 0, 0};
  int ret = 0;
  cnet_t *net = NULL;
  size_t n = 0;
  if (u->n == 0) {
    ret = fail(f, 404, "update %s changed no cells (or does not exist, or was rejected)", uid);
    goto out;
  }
  for (size_t i = 0; i < u->n && ret == 0; i++) {
    if (u->cells[i].kind == MUNDO_OTHER)
      ret = fail(f, 400, "update %s changed rows or holds: it is reverted by the detailed form only", uid);
    else if (u->cells[i].kind == MUNDO_GONE)
      ret = fail(f, 400, "update %s touched a column that no longer exists", uid);
  }
  if (ret != 0) goto out;
  net = dg_malloc(u->n * sizeof *net);
  n = net_changes(u, net);

  /* ---- check ---- */
  for (size_t i = 0; i < n; i++) {
    const mundo_cell_t *a = net[i].first, *z = net[i].last;
    mtable_t *t = a->tag < m->ntables ? m->tables[a->tag] : NULL;
    const dg_coldef_t *c = t && a->col >= 0 && a->col < t->def->ncols ? &t->def->cols[a->col] : NULL;
    if (c == NULL) { /* the cache is emptied by DDL, and a read resolves names now */
      ret = fail(f, 500, "update %s names a column this node does not have", uid);
      goto out;
    }
    dg_erow_t r;
    int gone = dg_etable_row_get(t->et, a->row, &r) != 0;
    int same;
    if (gone) same = 0;
    else if (c->type == DG_COL_TEXT) same = text_is(t, a->row, c, z->new_text);
    else {
      int64_t cur;
      same = dg_etable_number_get(t->et, a->row, (uint32_t)c->slot, &cur) == 0 && cur == z->new_num;
    }
    if (same) continue;
    json_t *cx = json_pack("{s:s,s:I,s:s,s:o}", "table", t->def->name, "row_id", (json_int_t)a->row, "column",
                           c->name, "expected", cnet_value(t, c, z, 1));
    if (gone) json_object_set_new(cx, "gone", json_true());
    conflict_add(&rc, cx, 0, 0);
  }
  if (rc.n > 0 && !force) {
    ret = fail(f, 409, "%zu cell%s changed since update %s (revert with \"force\":true to overwrite them)", rc.n,
               rc.n == 1 ? "" : "s", uid);
    goto out;
  }

  /* ---- undo ---- */
  int64_t *ids = dg_malloc(n * sizeof *ids), *vals = dg_malloc(n * sizeof *vals);
  uint8_t *done = dg_calloc(n, 1); /* grouped by (table, column) as first met */
  for (size_t g = 0; g < n && ret == 0; g++) {
    if (done[g]) continue;
    const mundo_cell_t *head = net[g].first;
    mtable_t *t = m->tables[head->tag];
    const dg_coldef_t *c = &t->def->cols[head->col];
    mark_table(mk, t);
    if (mk->overflow) {
      ret = fail(f, 400, "one revert may touch at most 16 tables");
      break;
    }
    size_t k = 0;
    for (size_t i = g; i < n && ret == 0; i++) {
      const mundo_cell_t *a = net[i].first;
      if (done[i] || a->tag != head->tag || a->col != head->col) continue;
      done[i] = 1;
      dg_erow_t r;
      if (dg_etable_row_get(t->et, a->row, &r) != 0) continue; /* gone: forced past */
      if (c->type == DG_COL_TEXT) {
        size_t from = dg_changes_count(m->changes);
        const char *s = a->old_text;
        int erc = dg_etable_text_set(t->et, a->row, (uint32_t)c->slot, s, s ? strlen(s) : 0, m->changes);
        if (erc != 0) ret = engine_fail(f, erc, t->def->name, a->row, c->name);
        else collect(e, t, from, INT64_MIN);
        continue;
      }
      if (r.nchildren > 0 || !a->has_old) continue; /* rolls up; or was null */
      ids[k] = a->row;
      vals[k++] = a->old_num;
    }
    if (ret != 0 || k == 0) continue;
    size_t from = dg_changes_count(m->changes), bad = 0;
    int erc = dg_etable_set_leaves(t->et, (uint32_t)c->slot, ids, vals, k, m->changes, &bad);
    if (erc == DG_ECONFLICT) { /* held cells in the column: one leaf at a time, as a write does */
      erc = 0;
      for (size_t i = 0; i < k && erc == 0; i++) {
        erc = dg_etable_set(t->et, ids[i], (uint32_t)c->slot, vals[i], NULL, m->changes);
        bad = i;
      }
    }
    if (erc != 0) ret = engine_fail(f, erc, t->def->name, ids[bad < k ? bad : 0], c->name);
    else collect(e, t, from, INT64_MIN);
    if (ret == 0) ret = over_cap(e, f);
  }
  dg_free(ids);
  dg_free(vals);
  dg_free(done);
out:
  if (ret != 0 && rc.list && f->status == 409) {
    *conflicts = rc.list;
    rc.list = NULL;
  }
  json_decref(rc.list);
  dg_free(net);
  if (u == &m->undo_loaded) dg__mgr_undo_free(&m->undo_loaded); /* read for this request only */
  return ret;
}

/* Inserts row i of an insert_rows request (named "rows[i]", or "row i"
 * when by column, in a failure) and collects its changes. 0, or -1 with f
 * set. */
static int insert_one(effects_t *e, mtable_t *t, int by_column, size_t i, int64_t id, int64_t parent,
                      const int64_t *nums, const dg_etext_t *texts, failure_t *f) {
  size_t from = dg_changes_count(e->m->changes);
  int erc = dg_etable_insert(t->et, id, parent, nums, texts, e->m->changes);
  if (erc != 0) {
    char at[48];
    snprintf(at, sizeof at, by_column ? "row %zu" : "rows[%zu]", i);
    engine_fail(f, erc, t->def->name, id, NULL);
    if (erc == DG_ENOTFOUND)
      fail(f, 404, "%s: parent %" PRId64 " does not exist in table '%s'", at, parent, t->def->name);
    else if (erc == DG_EEXIST)
      fail(f, 409, "%s: row %" PRId64 " exists already", at, id);
    return -1;
  }
  collect(e, t, from, id);
  return over_cap(e, f);
}

/* rw: where the inserted rows are rendered, or NULL for none. */
static int op_insert_rows(effects_t *e, mtable_t *t, json_t *rows, dg_jsonw_t *rw, int64_t *next_id,
                          failure_t *f) {
  uint32_t nnum = dg_etable_num_columns(t->et), ntext = dg_etable_text_columns(t->et);
  int64_t *nums = dg_calloc(nnum + 1, sizeof *nums);
  dg_etext_t *texts = dg_calloc(ntext + 1, sizeof *texts);
  int64_t *ids_made = dg_calloc(json_array_size(rows) + 1, sizeof *ids_made);
  int rc = 0;
  for (size_t i = 0; i < json_array_size(rows) && rc == 0; i++) {
    json_t *row = json_array_get(rows, i);
    memset(nums, 0, (nnum + 1) * sizeof *nums);
    memset(texts, 0, (ntext + 1) * sizeof *texts);
    json_t *idj = json_object_get(row, "id");
    /* Ids without one come from above the largest id in use; at INT64_MAX
     * the counter saturates and an insert there fails as a duplicate. */
    int64_t id = idj ? json_integer_value(idj) : *next_id;
    if (id >= *next_id) *next_id = id == INT64_MAX ? INT64_MAX : id + 1;
    ids_made[i] = id;
    json_t *pj = json_object_get(row, "parent_id");
    int64_t parent = pj && !json_is_null(pj) ? json_integer_value(pj) : DG_ROW_NONE;
    if (row_values(t, json_object_get(row, "cells"), nums, texts, f) != 0) {
      rc = -1;
      break;
    }
    if (insert_one(e, t, 0, i, id, parent, nums, texts, f) != 0) {
      rc = -1;
      break;
    }
  }
  /* The answer shows the rows as the whole insert left them (a parent
   * inserted first has rolled up its children by now). */
  for (size_t i = 0; rw && i < json_array_size(rows) && rc == 0; i++) {
    json_t *idj = json_object_get(json_array_get(rows, i), "id");
    render_row(rw, t, idj ? json_integer_value(idj) : ids_made[i]);
  }
  dg_free(nums);
  dg_free(texts);
  dg_free(ids_made);
  return rc;
}

/*
 * An import's rows by column (src/http/import.c), the compact form of
 * insert_rows: one list per field instead of one object per row, so a
 * million-row request decodes into a few strings and one array of texts,
 * not two million objects and five million scalars.
 *
 *   "count": N,
 *   "ids": "<list>"            optional; an empty item or no list: a new id
 *   "parent_ids": "<list>"     optional; an empty item or no list: a root
 *   "columns": [{"name", "scale": s, "values": "<list>"}   a number, in units
 *                                          of 10^-s (s: the column's scale)
 *               {"name", "values": [string|null…]}…]     a text
 *
 * A <list> is N comma-separated decimal integers, each item possibly empty
 * ("7,,-3": 7, none, -3; for N = 0 the empty string). Rows are inserted in
 * list order (the API puts parents first). An empty number is left at 0, a
 * null text is null. The scale travels with the values so that a table
 * made again with another scale between queueing and applying rejects the
 * request instead of misreading it. Anything malformed is a 400 before any
 * row goes in.
 */

/* Rows in one request by column: as many as one import takes. */
#define COLUMN_ROWS_MAX 1000000

/* A by-column integer list: n items into out (has[i] = 0 for an empty
 * one). 0, or -1 unless it is exactly n items of 1..19 digits, an optional
 * '-', within int64. */
static int int_list(const json_t *j, size_t n, int64_t *out, uint8_t *has) {
  if (!json_is_string(j)) return -1;
  const char *p = json_string_value(j), *end = p + json_string_length(j);
  if (n == 0) return p == end ? 0 : -1;
  size_t i = 0;
  for (;;) {
    if (i == n) return -1;
    has[i] = p < end && *p != ',';
    if (has[i]) {
      int neg = *p == '-';
      p += neg;
      const char *d = p;
      uint64_t x = 0;
      while (p < end && *p >= '0' && *p <= '9') {
        if (p - d == 19) return -1;
        x = x * 10 + (uint64_t)(*p++ - '0');
      }
      if (p == d || x > (uint64_t)INT64_MAX + (uint64_t)neg) return -1;
      out[i] = neg ? (int64_t)(0 - x) : (int64_t)x;
    }
    i++;
    if (p == end) break;
    if (*p++ != ',') return -1;
  }
  return i == n ? 0 : -1;
}

static int column_error(failure_t *f, const char *what) { return fail(f, 400, "insert_rows by column: %s", what); }

/* One field of a by-column request, decoded. */
typedef struct {
  const dg_coldef_t *cd; /* NULL: ids or parent ids                  */
  int64_t *num;          /* numbers, ids                              */
  uint8_t *has;
  json_t *texts;         /* a text column's values                    */
} field_t;

static int op_insert_columns(effects_t *e, mtable_t *t, json_t *o, int64_t *next_id, size_t *count,
                             failure_t *f) {
  json_t *cj = json_object_get(o, "count"), *cols = json_object_get(o, "columns");
  if (!json_is_integer(cj) || json_integer_value(cj) < 0 || json_integer_value(cj) > COLUMN_ROWS_MAX)
    return column_error(f, "count must be 0..1000000");
  if (cols && !json_is_array(cols)) return column_error(f, "columns must be an array");
  size_t n = (size_t)json_integer_value(cj), ncols = json_array_size(cols);
  /* fields[0]: ids, [1]: parent ids, [2 + k]: column k */
  field_t *fl = dg_calloc(ncols + 2, sizeof *fl);
  uint32_t nnum = dg_etable_num_columns(t->et), ntext = dg_etable_text_columns(t->et);
  int64_t *nums = dg_calloc(nnum + 1, sizeof *nums);
  dg_etext_t *texts = dg_calloc(ntext + 1, sizeof *texts);
  int rc = 0;
  /* Everything checked first: no row goes in from a malformed request. */
  static const char *const idkeys[2] = {"ids", "parent_ids"};
  for (int k = 0; k < 2 && rc == 0; k++) {
    json_t *j = json_object_get(o, idkeys[k]);
    if (j == NULL) continue;
    fl[k].num = dg_malloc((n + 1) * sizeof *fl[k].num);
    fl[k].has = dg_malloc(n + 1);
    if (int_list(j, n, fl[k].num, fl[k].has) != 0)
      rc = fail(f, 400, "insert_rows by column: %s must list count 64-bit integers", idkeys[k]);
  }
  for (size_t k = 0; k < ncols && rc == 0; k++) {
    field_t *fd = &fl[2 + k];
    json_t *c = json_array_get(cols, k), *vals = json_object_get(c, "values");
    const char *name = json_string_value(json_object_get(c, "name"));
    fd->cd = name ? dg_tabledef_col(t->def, name) : NULL;
    if (fd->cd == NULL) {
      rc = name ? fail(f, 400, "table '%s' has no column '%.80s'", t->def->name, name)
                : column_error(f, "a column without a name");
      break;
    }
    for (size_t j = 0; j < k; j++)
      if (fl[2 + j].cd == fd->cd) rc = fail(f, 400, "column '%s' is given twice", fd->cd->name);
    if (rc != 0) break;
    if (fd->cd->type == DG_COL_TEXT) {
      fd->texts = vals;
      if (!json_is_array(vals) || json_array_size(vals) != n)
        rc = fail(f, 400, "column '%s': values must hold count texts or nulls", fd->cd->name);
      for (size_t i = 0; i < n && rc == 0; i++) {
        json_t *v = json_array_get(vals, i);
        if (!json_is_string(v) && !json_is_null(v))
          rc = fail(f, 400, "column '%s', row %zu: not a text or null", fd->cd->name, i);
      }
      continue;
    }
    json_t *sj = json_object_get(c, "scale");
    if (!json_is_integer(sj) || json_integer_value(sj) != fd->cd->scale) {
      rc = fail(f, 409, "column '%s' has scale %d, not the scale the values were written at", fd->cd->name,
                fd->cd->scale);
      break;
    }
    fd->num = dg_malloc((n + 1) * sizeof *fd->num);
    fd->has = dg_malloc(n + 1);
    if (int_list(vals, n, fd->num, fd->has) != 0)
      rc = fail(f, 400, "column '%s': values must list count integers", fd->cd->name);
    for (size_t i = 0; i < n && rc == 0; i++)
      if (fd->has[i] && (fd->num[i] <= -DG_DECIMAL_LIMIT || fd->num[i] >= DG_DECIMAL_LIMIT))
        rc = fail(f, 400, "column '%s', row %zu: out of range (|v| < 10^18 units)", fd->cd->name, i);
  }
  for (size_t i = 0; i < n && rc == 0; i++) {
    memset(nums, 0, (nnum + 1) * sizeof *nums);
    memset(texts, 0, (ntext + 1) * sizeof *texts);
    /* New ids as in op_insert_rows. */
    int64_t id = fl[0].has && fl[0].has[i] ? fl[0].num[i] : *next_id;
    if (id >= *next_id) *next_id = id == INT64_MAX ? INT64_MAX : id + 1;
    int64_t parent = fl[1].has && fl[1].has[i] ? fl[1].num[i] : DG_ROW_NONE;
    for (size_t k = 0; k < ncols; k++) {
      const field_t *fd = &fl[2 + k];
      if (fd->cd->type == DG_COL_NUMBER) {
        nums[fd->cd->slot] = fd->has[i] ? fd->num[i] : 0;
      } else {
        json_t *v = json_array_get(fd->texts, i);
        texts[fd->cd->slot].ptr = json_string_value(v);
        texts[fd->cd->slot].len = texts[fd->cd->slot].ptr ? json_string_length(v) : 0;
      }
    }
    if (insert_one(e, t, 1, i, id, parent, nums, texts, f) != 0) {
      rc = -1;
      break;
    }
  }
  *count = n;
  for (size_t k = 0; k < ncols + 2; k++) {
    dg_free(fl[k].num);
    dg_free(fl[k].has);
  }
  dg_free(fl);
  dg_free(nums);
  dg_free(texts);
  return rc;
}

/* ---- the entry point ------------------------------------------------------------- */

static const char *const ddl_ops[] = {DG_OP_CREATE_TABLE, DG_OP_DELETE_TABLE, DG_OP_CREATE_VIEW, DG_OP_DELETE_VIEW};

int dg__mgr_is_ddl(const char *json, size_t len) {
  /* Without decoding when the text begins {"op":"<name>" and that name,
   * free of escapes, is no DDL op: were the text valid JSON, its op would
   * be that name (a repeated "op" makes it invalid, see below); were it
   * invalid, it would be no DDL request either. So an import of a hundred
   * megabytes is not decoded an extra time just to read its op, which the
   * API writes first. */
  static const char head[] = "{\"op\":\"";
  if (len > sizeof head - 1 && memcmp(json, head, sizeof head - 1) == 0) {
    const char *p = json + sizeof head - 1, *q = p, *end = json + len;
    while (q < end && q - p <= 32 && *q != '"' && *q != '\\' && (unsigned char)*q >= 0x20) q++;
    if (q < end && *q == '"') {
      int ddl = 0;
      for (size_t i = 0; i < DG_ARRAY_SIZE(ddl_ops); i++)
        ddl |= strlen(ddl_ops[i]) == (size_t)(q - p) && memcmp(p, ddl_ops[i], (size_t)(q - p)) == 0;
      if (!ddl) return 0;
    }
  }
  /* Else decoded exactly as dg__mgr_apply decodes it, so both agree on "op"
   * whatever escapes or repeated keys the text holds. */
  dg_wire_req_t rq;
  (void)dg_wire_req_decode(json, len, 0, &rq);
  int yes = 0;
  for (size_t i = 0; rq.op && i < DG_ARRAY_SIZE(ddl_ops); i++) yes |= strcmp(rq.op, ddl_ops[i]) == 0;
  dg_wire_req_dispose(&rq);
  return yes;
}

static void ddl_add(dg_manager_t *m, char *sql) {
  if (m->nddl == m->ddl_cap) {
    m->ddl_cap = m->ddl_cap ? m->ddl_cap * 2 : 8;
    m->ddl = dg_realloc(m->ddl, m->ddl_cap * sizeof *m->ddl);
  }
  m->ddl[m->nddl++] = sql;
}

static int op_create_table(dg_manager_t *m, json_t *o, dg_jsonw_t *w, failure_t *f) {
  const char *name = json_string_value(json_object_get(o, DG_WIRE_TABLE));
  json_t *cols = json_object_get(o, "columns");
  if (!dg_name_valid(name)) return fail(f, 400, "invalid table name");
  if (dg__mgr_table(m, name)) return fail(f, 409, "table '%s' exists already", name);
  for (size_t i = 0; i < m->nviews; i++)
    if (strcmp(m->views[i], name) == 0) return fail(f, 409, "a view named '%s' exists already", name);
  /* The API validated this; the manager checks again, since anything that
   * can write to request_duck reaches here, and names go into DDL. */
  if (!json_is_array(cols) || json_array_size(cols) > DG_MAX_COLUMNS) return fail(f, 400, "invalid columns");
  for (size_t i = 0; i < json_array_size(cols); i++) {
    json_t *c = json_array_get(cols, i);
    const char *cn = json_string_value(json_object_get(c, "name"));
    const char *ty = json_string_value(json_object_get(c, "type"));
    json_t *sc = json_object_get(c, "scale");
    if (!dg_name_valid(cn) || ty == NULL || (strcmp(ty, "text") != 0 && strcmp(ty, "number") != 0) ||
        (sc && (!json_is_integer(sc) || json_integer_value(sc) < 0 || json_integer_value(sc) > 6)))
      return fail(f, 400, "columns[%zu] is not a valid column", i);
    for (size_t k = 0; k < i; k++)
      if (strcmp(cn, json_string_value(json_object_get(json_array_get(cols, k), "name"))) == 0)
        return fail(f, 400, "columns[%zu] repeats a name", i);
  }
  json_t *dj = json_pack("{s:s,s:O}", "name", name, "columns", cols);
  dg_tabledef_t *def = dj ? dg_tabledef_from_json(dj) : NULL;
  json_decref(dj);
  if (def == NULL) return fail(f, 400, "invalid columns");
  dg_buf_t sql;
  dg_buf_init(&sql);
  dg_buf_printf(&sql, "CREATE TABLE main.\"%s\" (id BIGINT PRIMARY KEY, parent_id BIGINT", name);
  for (int i = 0; i < def->ncols; i++) {
    const dg_coldef_t *c = &def->cols[i];
    if (c->type == DG_COL_NUMBER)
      dg_buf_printf(&sql, ", \"%s\" DECIMAL(18,%d) NOT NULL DEFAULT 0", c->name, c->scale);
    else
      dg_buf_printf(&sql, ", \"%s\" VARCHAR", c->name);
  }
  dg_buf_puts(&sql, ")");
  ddl_add(m, dg_buf_steal(&sql));
  ddl_add(m, dg_sql_table_insert(name));
  for (int i = 0; i < def->ncols; i++)
    ddl_add(m, dg_sql_column_insert(name, def->cols[i].name, i, def->cols[i].type == DG_COL_NUMBER ? "number" : "text",
                                    def->cols[i].scale));
  /* The engine table. */
  uint8_t *scales = dg_calloc((size_t)def->nnum + 1, 1);
  for (int i = 0; i < def->ncols; i++)
    if (def->cols[i].type == DG_COL_NUMBER) scales[def->cols[i].slot] = (uint8_t)def->cols[i].scale;
  mtable_t *t = dg_calloc(1, sizeof *t);
  t->def = def;
  t->tag = m->ntables;
  dg_etable_opts_t eo = {scales, (uint32_t)def->nnum, (uint32_t)def->ntext, t->tag, 0};
  int rc = dg_etable_create(&eo, &t->et);
  dg_free(scales);
  if (rc != 0) {
    dg__mgr_table_free(t);
    return fail(f, 400, "the table cannot be created: %s", dg_strerror(rc));
  }
  dg_idset_init(&t->touched);
  dg_idset_init(&t->fresh);
  m->tables = dg_realloc(m->tables, (m->ntables + 1) * sizeof *m->tables);
  m->tables[m->ntables++] = t;
  dg_jsonw_key(w, DG_WIRE_TABLE_DEF);
  dg_jsonw_obj(w);
  dg_jsonw_key(w, "name");
  dg_jsonw_str(w, name);
  dg_jsonw_key(w, "columns");
  dg_jsonw_arr(w);
  for (int i = 0; i < def->ncols; i++) {
    dg_jsonw_obj(w);
    dg_jsonw_key(w, "name");
    dg_jsonw_str(w, def->cols[i].name);
    dg_jsonw_key(w, "type");
    dg_jsonw_str(w, def->cols[i].type == DG_COL_NUMBER ? "number" : "text");
    if (def->cols[i].type == DG_COL_NUMBER) {
      dg_jsonw_key(w, "scale");
      dg_jsonw_int(w, def->cols[i].scale);
    }
    dg_jsonw_end(w);
  }
  dg_jsonw_end(w);
  dg_jsonw_key(w, "row_count");
  dg_jsonw_int(w, 0);
  dg_jsonw_end(w);
  return 0;
}

static int op_delete_table(dg_manager_t *m, const char *name, failure_t *f) {
  mtable_t *t = dg__mgr_table(m, name);
  if (t == NULL) return fail(f, 404, "table '%s' does not exist", name ? name : "");
  ddl_add(m, dg_strprintf("DROP TABLE main.\"%s\"", name));
  ddl_add(m, dg_sql_table_delete(name));
  ddl_add(m, dg_sql_columns_delete(name));
  ddl_add(m, dg_sql_holds_delete(name));
  if (t->staged) {
    ddl_add(m, dg_strprintf("DROP TABLE IF EXISTS temp.\"dg_upd_%s\"", name));
    ddl_add(m, dg_strprintf("DROP TABLE IF EXISTS temp.\"dg_ins_%s\"", name));
  }
  m->tables[t->tag] = NULL;
  dg__mgr_table_free(t);
  return 0;
}

static int op_create_view(dg_manager_t *m, const char *name, const char *sql, dg_jsonw_t *w,
                          failure_t *f) {
  if (!dg_name_valid(name) || sql == NULL) return fail(f, 400, "invalid view");
  if (dg__mgr_table(m, name)) return fail(f, 409, "a table named '%s' exists already", name);
  for (size_t i = 0; i < m->nviews; i++)
    if (strcmp(m->views[i], name) == 0) return fail(f, 409, "view '%s' exists already", name);
  char err[400];
  if (dg_view_sql_check(m->conn, sql, err, sizeof err) != 0) return fail(f, 400, "%s", err);
  /* sql passed DuckDB's own parser as exactly one read-only SELECT. */
  ddl_add(m, dg_strprintf("CREATE VIEW main.\"%s\" AS %s", name, sql));
  /* The text goes into dg.views through a bound parameter (persist.c). */
  ddl_add(m, dg_strprintf("\x01%s", name));
  ddl_add(m, dg_strdup(sql));
  m->views = dg_realloc(m->views, (m->nviews + 1) * sizeof *m->views);
  m->views[m->nviews++] = dg_strdup(name);
  dg_jsonw_key(w, DG_WIRE_VIEW);
  dg_jsonw_str(w, name);
  dg_jsonw_key(w, DG_WIRE_VIEW_DEF);
  dg_jsonw_obj(w);
  dg_jsonw_key(w, "name");
  dg_jsonw_str(w, name);
  dg_jsonw_key(w, "sql");
  dg_jsonw_str(w, sql);
  dg_jsonw_end(w);
  return 0;
}

static int op_delete_view(dg_manager_t *m, const char *name, dg_jsonw_t *w, failure_t *f) {
  size_t i;
  for (i = 0; i < m->nviews; i++)
    if (name && strcmp(m->views[i], name) == 0) break;
  if (i == m->nviews) return fail(f, 404, "view '%s' does not exist", name ? name : "");
  ddl_add(m, dg_strprintf("DROP VIEW main.\"%s\"", name));
  ddl_add(m, dg_sql_view_delete(name));
  dg_jsonw_key(w, DG_WIRE_VIEW);
  dg_jsonw_str(w, name);
  dg_free(m->views[i]);
  m->views[i] = m->views[--m->nviews];
  return 0;
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* The outcome's "inserted" / "deleted": the ids, or above
 * DUCKGRID_OUTCOME_IDS_MAX of them (max; 0: no cap) a compact form, as
 * "changes" has one: "<key>": [], "<key>_total": N, "<key>_truncated": true
 * and "<key>_ranges": [[first,last],…], every id exactly, ascending, in runs
 * of consecutive ids (an import's million new ids are one pair, not 8 MB
 * of list). The API's row set reads the ranges (reader.c). Above max runs
 * (scattered ids) there are no ranges either. */
static void write_id_map(dg_jsonw_t *w, int add, json_t *map, const char *table, size_t max) {
  json_t *a = table ? json_object_get(map, table) : NULL;
  if (a == NULL) return;
  size_t n = json_array_size(a);
  dg_jsonw_key(w, dg_wire_out_name(dg_wire_out_ids(add)));
  dg_jsonw_arr(w);
  if (max == 0 || n <= max) {
    for (size_t i = 0; i < n; i++) dg_jsonw_id(w, json_integer_value(json_array_get(a, i)));
    dg_jsonw_end(w);
    return;
  }
  dg_jsonw_end(w);
  int64_t *ids = dg_malloc(n * sizeof *ids);
  for (size_t i = 0; i < n; i++) ids[i] = json_integer_value(json_array_get(a, i));
  qsort(ids, n, sizeof *ids, cmp_i64);
  dg_jsonw_key(w, dg_wire_out_name(add ? DG_WIRE_O_INSERTED_TOTAL : DG_WIRE_O_DELETED_TOTAL));
  dg_jsonw_int(w, (int64_t)n);
  dg_jsonw_key(w, dg_wire_out_name(dg_wire_out_ids_truncated(add)));
  dg_jsonw_raw(w, "true", 4);
  /* Scattered ids make as many runs as ids: above max runs the ranges are
   * left out too, so the outcome stays small whatever was deleted. A
   * reader then reloads the table's row set from DuckDB (catalog.h
   * dg_catalog_rows_stale). */
  size_t runs = 0;
  for (size_t i = 0; i < n; i++)
    if (i == 0 || (ids[i] != ids[i - 1] && ids[i] != ids[i - 1] + 1)) runs++;
  if (runs <= max) {
    dg_jsonw_key(w, dg_wire_out_name(dg_wire_out_ids_ranges(add)));
    dg_jsonw_arr(w);
    for (size_t i = 0; i < n;) {
      size_t j = i;
      while (j + 1 < n && (ids[j + 1] == ids[j] || ids[j + 1] == ids[j] + 1)) j++;
      dg_jsonw_arr(w);
      dg_jsonw_id(w, ids[i]);
      dg_jsonw_id(w, ids[j]);
      dg_jsonw_end(w);
      i = j + 1;
    }
    dg_jsonw_end(w);
  }
  dg_free(ids);
}

void dg__mgr_apply(dg_manager_t *m, mreq_t *req, const char *text, size_t len) {
  /* Audit rows name the request by where the hand-over puts it in pend. */
  uint32_t ri = (uint32_t)(m->npend + (size_t)(req - m->reqs));
  dg_redis_xid_t sxid = {0, 0};
  dg_redis_xid_parse(req->stream_id, strlen(req->stream_id), &sxid);
  char ts[64];
  dg__mgr_time_iso(sxid.ms, ts, sizeof ts);
  /* The envelope borrows from the request's DOM (wire.h). A request_id
   * that is not 1..128 printable ASCII characters (the API checks the
   * same) comes back NULL: it is answered under the stream id, never cut. */
  dg_wire_req_t rq;
  (void)dg_wire_req_decode(text, len, 0, &rq);
  json_t *o = rq.body;
  const char *op = rq.op, *rid = rq.request_id, *user = rq.user, *table = rq.table, *caller = rq.caller;
  snprintf(req->request_id, sizeof req->request_id, "%s", rid ? rid : req->stream_id);
  snprintf(req->user, sizeof req->user, "%s", user ? user : "");
  snprintf(req->table_name, sizeof req->table_name, "%s", table ? table : "");

  /* Idempotency is per caller (API v1.1): the key's id or the JWT's sub
   * scopes the request_id. Requests queued before the caller was recorded
   * are scoped by the user name. */
  if (caller && strlen(caller) < sizeof req->caller) snprintf(req->caller, sizeof req->caller, "%s", caller);
  else snprintf(req->caller, sizeof req->caller, "user:%.60s", user ? user : "");
  if (rid) {
    uint64_t key = dg__mgr_idem_key(req->caller, req->request_id);
    dg_redis_xid_t first;
    if (dg__mgr_idem_find(&m->idem, key, sxid.ms, m->idem_window_ms, &first)) {
      req->duplicate = 1; /* the first outcome stands; nothing is applied again */
      req->first = first;
      dg_wire_req_dispose(&rq);
      return;
    }
    req->idem = 1;
    pthread_mutex_lock(&m->idem_lock);
    dg__mgr_idem_add(&m->idem, key, sxid);
    pthread_mutex_unlock(&m->idem_lock);
  }

  size_t hist_mark = m->nhist;
  size_t ddl_mark = m->nddl;
  dg_buf_reset(&m->json);
  dg_jsonw_t w;
  dg_wire_out_open(&w, &m->json, req->stream_id, req->request_id, user, rq.caller_tag, op ? op : "unknown", table);
  /* The changes go to their own buffer and come last in the outcome, after
   * the small members (status, error, ids, ts), so readers that only need
   * those stop scanning early even when a spread lists a million cells. */
  dg_buf_t chg;
  dg_buf_init(&chg);
  dg_jsonw_t cw;
  dg_jsonw_init(&cw, &chg);
  cw.depth = 1; /* inside the changes array */
  cw.first[1] = 1;

  effects_t e = {m, ri, &cw, json_object(), json_object(), json_array(), 0};
  failure_t f = {0, ""};
  marks_t mk;
  memset(&mk, 0, sizeof mk);
  dg_changes_clear(m->changes);
  /* Output that follows the changes array (rows, row, table_def ...). */
  dg_buf_t extra;
  dg_buf_init(&extra);
  dg_jsonw_t xw;
  dg_jsonw_init(&xw, &extra);
  xw.depth = 1; /* members of the outcome object */
  xw.first[1] = 0;
  int rc = 0;
  json_t *conflicts = NULL; /* a rejected revert's changed cells */
  mtable_t *t = table ? dg__mgr_table(m, table) : NULL;

  /* Test-only hook (DUCKGRID_TEST_HOOKS=1, see manager.c): provoke the
   * crash of a poison request. */
  if (m->test_crash_on && rid && !req->poison && strcmp(rid, m->test_crash_on) == 0) abort();

  if (req->poison) {
    rc = fail(&f, 500, "applying this request stopped the manager %d time(s); it is rejected so that the log goes on",
              req->poison);
  } else if (o == NULL || op == NULL) {
    rc = fail(&f, 400, "the request is not valid JSON");
  } else if (strcmp(op, DG_OP_UPDATE_CELL) == 0) {
    json_t *list = json_array();
    json_array_append(list, o);
    rc = op_update_cells(&e, list, &mk, &f);
    json_decref(list);
  } else if (strcmp(op, DG_OP_UPDATE_CELLS) == 0) {
    rc = op_update_cells(&e, json_object_get(o, "updates"), &mk, &f);
  } else if (strcmp(op, DG_OP_REVERT) == 0) {
    if (json_is_true(json_object_get(o, "compact"))) rc = op_revert_compact(&e, o, &mk, &conflicts, &f);
    else rc = op_revert(&e, o, &mk, &conflicts, &f);
    if (rc == 0) {
      dg_jsonw_key(&xw, DG_WIRE_REVERTS);
      dg_jsonw_str(&xw, json_string_value(json_object_get(o, "reverts")));
    }
  } else if (strcmp(op, DG_OP_CREATE_TABLE) == 0) {
    rc = op_create_table(m, o, &xw, &f);
  } else if (strcmp(op, DG_OP_DELETE_TABLE) == 0) {
    rc = op_delete_table(m, table, &f);
  } else if (strcmp(op, DG_OP_CREATE_VIEW) == 0) {
    rc = op_create_view(m, json_string_value(json_object_get(o, "view")),
                        json_string_value(json_object_get(o, "sql")), &xw, &f);
  } else if (strcmp(op, DG_OP_DELETE_VIEW) == 0) {
    rc = op_delete_view(m, json_string_value(json_object_get(o, "view")), &xw, &f);
  } else if (t == NULL) {
    rc = fail(&f, 404, "table '%s' does not exist", table ? table : "");
  } else if (strcmp(op, DG_OP_INSERT_ROWS) == 0) {
    mark_table(&mk, t);
    int64_t next = m->next_row_id;
    /* "echo_rows": false (an import, src/http/import.c): the outcome counts
     * the rows ("rows_inserted") instead of showing each, which for a
     * million-row file would be an outcome of a hundred megabytes. */
    int echo = !json_is_false(json_object_get(o, "echo_rows"));
    if (echo) {
      dg_jsonw_key(&xw, DG_WIRE_ROWS);
      dg_jsonw_arr(&xw);
    }
    /* By column (an import): "count" instead of "rows"; never echoed. */
    int by_column = json_object_get(o, "count") != NULL;
    size_t inserted = json_array_size(json_object_get(o, "rows"));
    if (by_column && (echo || json_object_get(o, "rows")))
      rc = fail(&f, 400, "insert_rows by column: no \"rows\", and \"echo_rows\": false");
    else if (by_column)
      rc = op_insert_columns(&e, t, o, &next, &inserted, &f);
    else
      rc = op_insert_rows(&e, t, json_object_get(o, "rows"), echo ? &xw : NULL, &next, &f);
    if (echo) {
      dg_jsonw_end(&xw);
    } else if (rc == 0) {
      dg_jsonw_key(&xw, DG_WIRE_ROWS_INSERTED);
      dg_jsonw_int(&xw, (int64_t)inserted);
    }
    if (rc == 0) m->next_row_id = next;
  } else if (strcmp(op, DG_OP_UPDATE_ROW) == 0) {
    mark_table(&mk, t);
    int64_t id = json_integer_value(json_object_get(o, "row_id"));
    json_t *pj = json_object_get(o, "parent_id");
    dg_erow_t row;
    if (dg_etable_row_get(t->et, id, &row) != 0) {
      rc = fail(&f, 404, "table '%s' has no row %" PRId64, t->def->name, id);
    } else if (pj) {
      size_t from = dg_changes_count(m->changes);
      int64_t np = json_is_null(pj) ? DG_ROW_NONE : json_integer_value(pj);
      int erc = dg_etable_move(t->et, id, np, m->changes);
      if (erc == DG_ECONFLICT) rc = fail(&f, 409, "moving row %" PRId64 " under %" PRId64 " would make a cycle", id, np);
      else if (erc != 0) rc = engine_fail(&f, erc, t->def->name, id, NULL);
      else collect(&e, t, from, INT64_MIN);
    }
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(o, "cells"), k, v) {
      if (rc != 0) break;
      const dg_coldef_t *c = dg_tabledef_col(t->def, k);
      if (c == NULL) rc = fail(&f, 400, "no column '%s'", k);
      else rc = write_cell(&e, t, id, c, v, json_string_value(json_object_get(o, "mode")), NULL, &f);
    }
    if (rc == 0) {
      dg_jsonw_key(&xw, DG_WIRE_ROW);
      render_row(&xw, t, id);
    }
  } else if (strcmp(op, DG_OP_DELETE_ROW) == 0) {
    mark_table(&mk, t);
    int64_t id = json_integer_value(json_object_get(o, "row_id"));
    size_t from = dg_changes_count(m->changes);
    dg_erow_t row;
    int cascade = json_is_true(json_object_get(o, "cascade"));
    /* Images only of a delete that will go ahead (a rejected one drops its
     * audit rows anyway). */
    if (dg_etable_row_get(t->et, id, &row) == 0 && (cascade || row.nchildren == 0)) record_images(&e, t, id);
    int erc = dg_etable_delete(t->et, id, cascade, m->changes);
    if (erc == DG_ECONFLICT) rc = fail(&f, 409, "row %" PRId64 " has children: delete with cascade=true", id);
    else if (erc != 0) rc = engine_fail(&f, erc, t->def->name, id, NULL);
    else collect(&e, t, from, INT64_MIN);
  } else if (strcmp(op, DG_OP_HOLD) == 0 || strcmp(op, DG_OP_RELEASE) == 0) {
    mark_table(&mk, t);
    json_t *list = json_object_get(o, "holds");
    for (size_t i = 0; i < json_array_size(list) && rc == 0; i++) {
      json_t *hj = json_array_get(list, i);
      int64_t id = json_integer_value(json_object_get(hj, "row_id"));
      const dg_coldef_t *c = dg_tabledef_col(t->def, json_string_value(json_object_get(hj, "column")));
      size_t from = dg_changes_count(m->changes);
      if (c == NULL || c->type != DG_COL_NUMBER) {
        rc = fail(&f, 400, "holds[%zu]: not a number column", i);
        break;
      }
      int erc = dg_etable_hold(t->et, id, (uint32_t)c->slot, strcmp(op, DG_OP_HOLD) == 0, m->changes);
      if (erc != 0) rc = engine_fail(&f, erc, t->def->name, id, c->name);
      else collect(&e, t, from, INT64_MIN);
    }
  } else {
    rc = fail(&f, 400, "unknown op '%.40s'", op);
  }

  if (rc == 0 && m->request_changes_max > 0 && e.nchanges > m->request_changes_max)
    rc = fail(&f, 400, "the request would change %zu cells, more than the %zu allowed (DUCKGRID_REQUEST_CHANGES_MAX)",
              e.nchanges, m->request_changes_max);
  marks_end(&mk, rc == 0);
  req->rejected = rc != 0;
  if (rc == 0 && op) {
    if (strcmp(op, DG_OP_UPDATE_CELL) == 0 || strcmp(op, DG_OP_UPDATE_CELLS) == 0 || strcmp(op, DG_OP_REVERT) == 0)
      dg__mgr_undo_keep(m, sxid, hist_mark, m->nhist); /* what a compact revert of it reads */
    else if (strcmp(op, DG_OP_CREATE_TABLE) == 0 || strcmp(op, DG_OP_DELETE_TABLE) == 0 || strcmp(op, DG_OP_CREATE_VIEW) == 0 ||
             strcmp(op, DG_OP_DELETE_VIEW) == 0)
      dg__mgr_undo_clear(m); /* names and tags may change: reverts read the audit log */
  }
  if (rc != 0) {
    /* Nothing of a rejected request stays: audit rows, DDL, output. */
    for (size_t i = hist_mark; i < m->nhist; i++) {
      dg_free(m->hist[i].old_text);
      dg_free(m->hist[i].new_text);
    }
    m->nhist = hist_mark;
    for (size_t i = ddl_mark; i < m->nddl; i++) dg_free(m->ddl[i]);
    m->nddl = ddl_mark;
    char *cj = conflicts ? json_dumps(conflicts, JSON_COMPACT) : NULL;
    dg_wire_out_rejected(&w, f.status, f.detail, cj, ts);
    free(cj);
  } else {
    dg_jsonw_key(&w, DG_WIRE_STATUS);
    dg_jsonw_str(&w, DG_WIRE_APPLIED);
    dg_jsonw_key(&w, DG_WIRE_ERROR);
    dg_jsonw_null(&w);
    dg_jsonw_key(&w, DG_WIRE_TS);
    dg_jsonw_str(&w, ts);
    write_id_map(&w, 1, e.inserted, table, m->outcome_ids_max);
    write_id_map(&w, 0, e.deleted, table, m->outcome_ids_max);
    if (json_array_size(e.moved)) {
      char *mv = json_dumps(e.moved, JSON_COMPACT);
      dg_jsonw_key(&w, DG_WIRE_MOVED);
      dg_jsonw_raw(&w, mv, strlen(mv));
      free(mv);
    }
    if (extra.len) {
      dg_buf_putc(&m->json, ',');
      dg_buf_append(&m->json, extra.data + (extra.data[0] == ',' ? 1 : 0),
                    extra.len - (extra.data[0] == ',' ? 1 : 0));
    }
    if (m->outcome_changes_max > 0 && e.nchanges > m->outcome_changes_max) {
      /* A compact outcome (API v1.1): the full list is paged from the
       * audit log, GET /updates/{update_id}/changes. */
      dg_jsonw_key(&w, DG_WIRE_CHANGES_TOTAL);
      dg_jsonw_int(&w, (int64_t)e.nchanges);
      dg_jsonw_key(&w, DG_WIRE_CHANGES_TRUNCATED);
      dg_jsonw_raw(&w, "true", 4);
      dg_jsonw_key(&w, DG_WIRE_CHANGES);
      dg_jsonw_raw(&w, "[]", 2);
    } else {
      dg_jsonw_key(&w, DG_WIRE_CHANGES);
      dg_buf_putc(&m->json, '[');
      if (chg.len) dg_buf_append(&m->json, chg.data, chg.len);
      dg_buf_putc(&m->json, ']');
    }
  }
  dg_jsonw_end(&w);
  req->res = dg_strndup(m->json.data, m->json.len);
  req->res_len = m->json.len;
  dg_buf_dispose(&extra);
  dg_buf_dispose(&chg);
  json_decref(e.inserted);
  json_decref(e.deleted);
  json_decref(e.moved);
  json_decref(conflicts);
  dg_wire_req_dispose(&rq);
}
