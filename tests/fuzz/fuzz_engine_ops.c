/*
 * fuzz_engine_ops.c -- randomised rebalance checks: libFuzzer decodes its
 * bytes into a table shape and a sequence of engine operations
 * (include/dg/engine.h): bulk load, insert, delete, move, set in every
 * spread mode with and without compare-and-set, text set, hold/release,
 * savepoint/rollback/release. After every operation it checks:
 *
 *   - dg_etable_verify() == 0 (sum of children == parent everywhere, ranges,
 *     links, index, holds); the engine is also built with DG_ENGINE_CHECK,
 *     so it asserts the same inside every operation;
 *   - a failed operation changed nothing: the whole table (ids, parents,
 *     child order, numbers, holds, texts) equals the snapshot taken before
 *     it, and it appended no change record;
 *   - a successful operation's change records describe exactly what changed:
 *     each NUMBER/HOLD/TEXT old side equals the snapshot before, the new side
 *     the state after, every cell that changed has a record and no cell has
 *     two; rows that appeared/disappeared/moved have ROW_INSERT/DELETE/MOVE;
 *   - rollback to a savepoint restores exactly the snapshot taken when it
 *     was opened;
 *   - a failed bulk load leaves the table empty.
 *
 * Input layout (missing bytes read as 0):
 *   [0] nnum = 1 + b % 3, ntext = (b / 3) % 3
 *   [1..nnum] scales (b % 7)
 *   [next] b & 1: start with a bulk load of (b >> 1) % 24 rows
 *   then one opcode byte per operation followed by its operands: (b & 0x7f)
 *   % 12 picks the operation, b & 0x80 runs it without a change buffer.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dg/engine.h"

#include "fuzz_check.h"

#define MAXNUM 3
#define MAXTEXT 2
#define MAXOPS 160
#define MAXMARKS 8
#define MAXROWS 64

/* ---- input --------------------------------------------------------------- */

typedef struct {
  const uint8_t *p;
  size_t n, i;
} in_t;

static uint8_t next(in_t *in) { return in->i < in->n ? in->p[in->i++] : 0; }
static bool more(const in_t *in) { return in->i < in->n; }

static int64_t next64(in_t *in, int bytes) {
  uint64_t v = 0;
  for (int k = 0; k < bytes; k++) v = v << 8 | next(in);
  /* sign-extend */
  int sh = 64 - 8 * bytes;
  return sh > 0 && sh < 64 ? (int64_t)(v << sh) >> sh : (int64_t)v;
}

static int64_t pick_id(in_t *in) {
  uint8_t b = next(in);
  if (b < 244) return b % 24 + 1;
  static const int64_t special[] = {0, -1, INT64_MAX, INT64_MIN + 1, DG_ROW_NONE, INT64_C(1) << 53,
                                    -(INT64_C(1) << 40), 1000000007, 25, 26, 27, 28};
  return special[b - 244];
}

static int64_t pick_parent(in_t *in) {
  uint8_t b = next(in);
  return b % 6 == 0 ? DG_ROW_NONE : pick_id(in);
}

static int64_t pick_val(in_t *in) {
  static const int64_t pow10[] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000,
                                  100000000, 1000000000, INT64_C(10000000000),
                                  INT64_C(1000000000000), INT64_C(100000000000000),
                                  INT64_C(10000000000000000), INT64_C(100000000000000000)};
  uint8_t b = next(in) % 16;
  switch (b) {
    case 0: return 0;
    case 1: return 1;
    case 2: return -1;
    case 3: return next64(in, 1);
    case 4: return pow10[next(in) % DG_ARRAY_SIZE(pow10)];
    case 5: return -pow10[next(in) % DG_ARRAY_SIZE(pow10)];
    case 6: return DG_DECIMAL_LIMIT - 1;
    case 7: return -(DG_DECIMAL_LIMIT - 1);
    case 8: return DG_DECIMAL_LIMIT;
    case 9: return next(in) & 1 ? INT64_MAX : INT64_MIN;
    case 10: return -100 * DG_PERCENT_SCALE; /* percent: -100 % */
    case 11: return next64(in, 2);
    case 12: return next64(in, 4);
    case 13: return next64(in, 8);
    default: return next64(in, 1) * 100;
  }
}

/* A text cell: null, empty, or up to 15 bytes of input. */
static dg_etext_t pick_text(in_t *in, char *buf) {
  uint8_t b = next(in);
  if (b % 4 == 0) return (dg_etext_t){NULL, 0};
  size_t n = (b >> 2) % 16;
  for (size_t k = 0; k < n; k++) buf[k] = (char)next(in);
  return (dg_etext_t){buf, n};
}

/* ---- snapshots ------------------------------------------------------------- */

typedef struct {
  int64_t id, parent;
  int64_t num[MAXNUM];
  bool held[MAXNUM];
  bool tnull[MAXTEXT];
  size_t tlen[MAXTEXT];
  char *text[MAXTEXT];
} srow_t;

typedef struct {
  srow_t *r;
  size_t n, cap;
} snap_t;

static uint32_t NNUM, NTEXT;

static void snap_free(snap_t *s) {
  for (size_t i = 0; i < s->n; i++)
    for (uint32_t c = 0; c < NTEXT; c++) free(s->r[i].text[c]);
  free(s->r);
  memset(s, 0, sizeof *s);
}

/* Pre-order walk: the order itself (children by id) is part of the state. */
static void snap_walk(const dg_etable_t *t, int64_t parent, snap_t *s, int depth) {
  CHECK(depth <= MAXROWS + 1, "walk deeper than the number of rows: a cycle");
  int64_t after = DG_ROW_NONE;
  for (;;) {
    int64_t ids[16];
    size_t n = 0;
    int rc = dg_etable_children_get(t, parent, after, ids, DG_ARRAY_SIZE(ids), &n);
    CHECK(rc == 0, "children_get(%" PRId64 ") = %d", parent, rc);
    for (size_t k = 0; k < n; k++) {
      if (k > 0 || after != DG_ROW_NONE)
        CHECK(ids[k] > (k ? ids[k - 1] : after), "children of %" PRId64 " out of id order", parent);
      if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 16;
        s->r = realloc(s->r, s->cap * sizeof *s->r);
      }
      srow_t *r = &s->r[s->n++];
      memset(r, 0, sizeof *r);
      r->id = ids[k];
      dg_erow_t er;
      CHECK(dg_etable_row_get(t, ids[k], &er) == 0, "row_get(%" PRId64 ")", ids[k]);
      CHECK(er.parent_id == parent, "row %" PRId64 " parent %" PRId64 " listed under %" PRId64,
            ids[k], er.parent_id, parent);
      r->parent = parent;
      CHECK(NNUM == 0 || dg_etable_numbers_get(t, ids[k], r->num) == 0, "numbers_get");
      for (uint32_t c = 0; c < NNUM; c++) {
        int64_t v;
        CHECK(dg_etable_number_get(t, ids[k], c, &v) == 0 && v == r->num[c], "number_get");
        CHECK(dg_etable_is_held(t, ids[k], c, &r->held[c]) == 0, "is_held");
      }
      for (uint32_t c = 0; c < NTEXT; c++) {
        const char *p;
        size_t len;
        CHECK(dg_etable_text_get(t, ids[k], c, &p, &len) == 0, "text_get");
        r->tnull[c] = p == NULL;
        r->tlen[c] = p ? len : 0;
        r->text[c] = malloc(r->tlen[c] + 1);
        if (p) memcpy(r->text[c], p, len);
      }
      snap_walk(t, ids[k], s, depth + 1);
    }
    if (n < DG_ARRAY_SIZE(ids)) break;
    after = ids[n - 1];
  }
}

static void snap_take(const dg_etable_t *t, snap_t *s) {
  memset(s, 0, sizeof *s);
  snap_walk(t, DG_ROW_NONE, s, 0);
  CHECK(s->n == dg_etable_row_count(t), "walk found %zu rows, row_count %zu", s->n,
        dg_etable_row_count(t));
}

static bool row_eq(const srow_t *a, const srow_t *b) {
  if (a->id != b->id || a->parent != b->parent) return false;
  for (uint32_t c = 0; c < NNUM; c++)
    if (a->num[c] != b->num[c] || a->held[c] != b->held[c]) return false;
  for (uint32_t c = 0; c < NTEXT; c++)
    if (a->tnull[c] != b->tnull[c] || a->tlen[c] != b->tlen[c] ||
        memcmp(a->text[c], b->text[c], a->tlen[c]) != 0)
      return false;
  return true;
}

static void snap_same(const snap_t *a, const snap_t *b, const char *what) {
  CHECK(a->n == b->n, "%s: %zu rows, expected %zu", what, b->n, a->n);
  for (size_t i = 0; i < a->n; i++)
    CHECK(row_eq(&a->r[i], &b->r[i]), "%s: row #%zu (id %" PRId64 ") differs", what, i, a->r[i].id);
}

static const srow_t *snap_find(const snap_t *s, int64_t id) {
  for (size_t i = 0; i < s->n; i++)
    if (s->r[i].id == id) return &s->r[i];
  return NULL;
}

/* A cell holds exactly the text tx (NULL ptr: null). */
static void text_is(const srow_t *r, uint32_t c, dg_etext_t tx, const char *what) {
  CHECK(r->tnull[c] == (tx.ptr == NULL), "%s: text %" PRId64 "/%u is %s, %s was written", what,
        r->id, c, r->tnull[c] ? "null" : "not null", tx.ptr ? "a string" : "null");
  if (tx.ptr)
    CHECK(r->tlen[c] == tx.len && memcmp(r->text[c], tx.ptr, tx.len) == 0,
          "%s: text %" PRId64 "/%u differs from what was written", what, r->id, c);
}

/* DG_SPREAD_PERCENT on one cell: round_half_away(old * (10^8 + p) / 10^8). */
static int64_t percent_of(int64_t old, int64_t p) {
  const __int128 d = (__int128)100 * DG_PERCENT_SCALE; /* 100 % */
  __int128 num = (__int128)old * ((__int128)100 * DG_PERCENT_SCALE + p);
  __int128 q = num / d, r = num % d;
  if (r < 0) r = -r;
  if (2 * r >= d) q += num < 0 ? -1 : 1;
  return (int64_t)q;
}

/* ---- change records --------------------------------------------------------- */

static void check_changes(const dg_changes_t *ch, size_t from, const snap_t *b, const snap_t *a) {
  size_t n = dg_changes_count(ch);
  const dg_change_t *v = dg_changes_items(ch);
  /* Every record agrees with the snapshots; no cell twice. */
  for (size_t i = from; i < n; i++) {
    const dg_change_t *c = &v[i];
    const srow_t *rb = snap_find(b, c->row_id), *ra = snap_find(a, c->row_id);
    CHECK(c->table_tag == 7, "table_tag %u", c->table_tag);
    switch (c->kind) {
      case DG_CHANGE_NUMBER:
      case DG_CHANGE_HOLD:
        CHECK(c->col < NNUM, "record column %u", c->col);
        if (c->kind == DG_CHANGE_NUMBER) {
          if (rb) CHECK(rb->num[c->col] == c->old_value, "NUMBER %" PRId64 "/%u old %" PRId64 " was %" PRId64,
                        c->row_id, c->col, c->old_value, rb->num[c->col]);
          else CHECK(c->old_value == 0, "NUMBER of a new row with old %" PRId64, c->old_value);
          if (ra) CHECK(ra->num[c->col] == c->new_value, "NUMBER %" PRId64 "/%u new %" PRId64 " is %" PRId64,
                        c->row_id, c->col, c->new_value, ra->num[c->col]);
          CHECK(c->new_value != c->old_value || !rb, "NUMBER record without a change");
        } else {
          CHECK(rb && ra && rb->held[c->col] == (c->old_value != 0) &&
                    ra->held[c->col] == (c->new_value != 0) && c->old_value != c->new_value,
                "HOLD record %" PRId64 "/%u", c->row_id, c->col);
        }
        break;
      case DG_CHANGE_TEXT: {
        CHECK(c->col < NTEXT, "TEXT column %u", c->col);
        const char *p;
        size_t len;
        CHECK(dg_changes_text(ch, c, false, &p, &len) == 0, "changes_text old");
        if (rb) CHECK((p == NULL) == rb->tnull[c->col] && (!p || (len == rb->tlen[c->col] &&
                      memcmp(p, rb->text[c->col], len) == 0)), "TEXT old side");
        else CHECK(p == NULL, "TEXT of a new row with an old side");
        CHECK(dg_changes_text(ch, c, true, &p, &len) == 0, "changes_text new");
        if (ra) CHECK((p == NULL) == ra->tnull[c->col] && (!p || (len == ra->tlen[c->col] &&
                      memcmp(p, ra->text[c->col], len) == 0)), "TEXT new side");
        break;
      }
      case DG_CHANGE_ROW_INSERT:
        CHECK(!rb && ra && ra->parent == c->new_value, "ROW_INSERT %" PRId64, c->row_id);
        break;
      case DG_CHANGE_ROW_DELETE:
        CHECK(rb && !ra && rb->parent == c->old_value, "ROW_DELETE %" PRId64, c->row_id);
        break;
      case DG_CHANGE_ROW_MOVE:
        CHECK(rb && ra && rb->parent == c->old_value && ra->parent == c->new_value,
              "ROW_MOVE %" PRId64, c->row_id);
        break;
      default: CHECK(0, "record kind %u", c->kind);
    }
    if (c->kind == DG_CHANGE_NUMBER || c->kind == DG_CHANGE_HOLD || c->kind == DG_CHANGE_TEXT ||
        c->kind == DG_CHANGE_ROW_INSERT || c->kind == DG_CHANGE_ROW_DELETE) {
      for (size_t j = from; j < i; j++)
        CHECK(!(v[j].kind == c->kind && v[j].row_id == c->row_id && v[j].col == c->col),
              "two records of kind %u for %" PRId64 "/%u", c->kind, c->row_id, c->col);
    }
  }
  /* Every change has a record. */
  for (size_t i = 0; i < a->n; i++) {
    const srow_t *ra = &a->r[i], *rb = snap_find(b, ra->id);
    bool has_ins = false, has_move = false;
    for (size_t k = from; k < n; k++) {
      if (v[k].row_id != ra->id) continue;
      has_ins |= v[k].kind == DG_CHANGE_ROW_INSERT;
      has_move |= v[k].kind == DG_CHANGE_ROW_MOVE;
    }
    if (!rb) {
      CHECK(has_ins, "row %" PRId64 " appeared without ROW_INSERT", ra->id);
    } else if (rb->parent != ra->parent) {
      CHECK(has_move, "row %" PRId64 " moved without ROW_MOVE", ra->id);
    }
    for (uint32_t c = 0; c < NNUM; c++) {
      int64_t before = rb ? rb->num[c] : 0;
      bool rec = false, hrec = false;
      for (size_t k = from; k < n; k++) {
        if (v[k].row_id != ra->id || v[k].col != c) continue;
        rec |= v[k].kind == DG_CHANGE_NUMBER;
        hrec |= v[k].kind == DG_CHANGE_HOLD;
      }
      CHECK(ra->num[c] == before || rec, "row %" PRId64 " col %u: %" PRId64 " -> %" PRId64
            " without a NUMBER record", ra->id, c, before, ra->num[c]);
      CHECK(!rb || rb->held[c] == ra->held[c] || hrec, "hold of %" PRId64 "/%u changed silently",
            ra->id, c);
      CHECK(rb || !ra->held[c], "new row %" PRId64 " is held", ra->id);
    }
    for (uint32_t c = 0; c < NTEXT; c++) {
      bool same = rb ? rb->tnull[c] == ra->tnull[c] &&
                           rb->tlen[c] == ra->tlen[c] &&
                           memcmp(rb->text[c], ra->text[c], ra->tlen[c]) == 0
                     : ra->tnull[c];
      if (same) continue;
      bool rec = false;
      for (size_t k = from; k < n; k++)
        rec |= v[k].row_id == ra->id && v[k].col == c && v[k].kind == DG_CHANGE_TEXT;
      CHECK(rec, "text %" PRId64 "/%u changed without a TEXT record", ra->id, c);
    }
  }
  for (size_t i = 0; i < b->n; i++) {
    if (snap_find(a, b->r[i].id)) continue;
    bool rec = false;
    for (size_t k = from; k < n; k++)
      rec |= v[k].row_id == b->r[i].id && v[k].kind == DG_CHANGE_ROW_DELETE;
    CHECK(rec, "row %" PRId64 " vanished without ROW_DELETE", b->r[i].id);
  }
}

/* ---- the driver -------------------------------------------------------------- */

static void verify(const dg_etable_t *t, const char *op) {
  int rc = dg_etable_verify(t);
  CHECK(rc == 0, "dg_etable_verify after %s: %d", op, rc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  in_t in = {data, size, 0};
  uint8_t shape = next(&in);
  NNUM = 1 + shape % MAXNUM;
  NTEXT = (shape / MAXNUM) % (MAXTEXT + 1);
  uint8_t scales[MAXNUM];
  for (uint32_t c = 0; c < NNUM; c++) scales[c] = next(&in) % 7;
  dg_etable_opts_t o = {.scales = scales, .nnum = NNUM, .ntext = NTEXT, .tag = 7, .flags = DG_ETABLE_CHECK};
  dg_etable_t *t = NULL;
  CHECK(dg_etable_create(&o, &t) == 0 && t, "create");
  dg_changes_t *ch = dg_changes_create();
  char tbuf[MAXTEXT][16];

  uint8_t load = next(&in);
  if (load & 1) {
    int rc = dg_etable_load_begin(t, next(&in));
    CHECK(rc == 0, "load_begin %d", rc);
    int nrows = (load >> 1) % 24;
    for (int k = 0; k < nrows; k++) {
      int64_t id = pick_id(&in), parent = pick_parent(&in);
      int64_t nums[MAXNUM];
      dg_etext_t texts[MAXTEXT];
      for (uint32_t c = 0; c < NNUM; c++) nums[c] = pick_val(&in);
      for (uint32_t c = 0; c < NTEXT; c++) texts[c] = pick_text(&in, tbuf[c]);
      rc = dg_etable_load_row(t, id, parent, nums, texts);
      CHECK(rc == 0 || rc == DG_EINVAL || rc == DG_EOVERFLOW, "load_row %d", rc);
      /* Out of range values are refused (EOVERFLOW), which the row reflects. */
      if (rc == 0) {
        CHECK(id != DG_ROW_NONE, "load_row accepted DG_ROW_NONE");
        for (uint32_t c = 0; c < NNUM; c++)
          CHECK(nums[c] > -DG_DECIMAL_LIMIT && nums[c] < DG_DECIMAL_LIMIT, "load_row took %" PRId64,
                nums[c]);
      }
    }
    CHECK(dg_etable_insert(t, 99, DG_ROW_NONE, NULL, NULL, NULL) == DG_EINVAL, "insert while loading");
    rc = dg_etable_load_finish(t, next(&in) & 1 ? DG_ELOAD_RECOMPUTE : 0);
    CHECK(rc == 0 || rc == DG_EEXIST || rc == DG_ENOTFOUND || rc == DG_ECONFLICT ||
              rc == DG_EOVERFLOW || rc == DG_EINTERNAL,
          "load_finish %d", rc);
    if (rc != 0) CHECK(dg_etable_row_count(t) == 0, "failed load left %zu rows", dg_etable_row_count(t));
    verify(t, "load_finish");
  }

  snap_t marks_snap[MAXMARKS + 1];
  dg_emark_t marks[MAXMARKS + 1];
  int nmarks = 0;

  for (int op = 0; op < MAXOPS && more(&in); op++) {
    uint8_t code = next(&in);
    bool report = !(code & 0x80);
    dg_changes_t *out = report ? ch : NULL;
    size_t from = dg_changes_count(ch);
    if (from > 4096) {
      dg_changes_clear(ch);
      from = 0;
    }
    snap_t before, after;
    snap_take(t, &before);
    int rc = 0;
    const char *name = "?";
    switch ((code & 0x7f) % 13) {
      case 0:
      case 1: {
        name = "insert";
        int64_t id = pick_id(&in), parent = pick_parent(&in);
        int64_t nums[MAXNUM];
        dg_etext_t texts[MAXTEXT];
        for (uint32_t c = 0; c < NNUM; c++) nums[c] = pick_val(&in);
        for (uint32_t c = 0; c < NTEXT; c++) texts[c] = pick_text(&in, tbuf[c]);
        if (dg_etable_row_count(t) >= MAXROWS) break;
        const int64_t *np = next(&in) % 8 ? nums : NULL;
        const dg_etext_t *tp = next(&in) % 8 ? texts : NULL;
        rc = dg_etable_insert(t, id, parent, np, tp, out);
        if (rc == 0) {
          /* The new row is a leaf holding exactly what was given. */
          snap_take(t, &after);
          const srow_t *r = snap_find(&after, id);
          CHECK(r && r->parent == parent, "inserted row %" PRId64 " not under %" PRId64, id, parent);
          for (uint32_t c = 0; c < NNUM; c++)
            CHECK(r->num[c] == (np ? np[c] : 0), "inserted %" PRId64 "/%u = %" PRId64 ", given %" PRId64,
                  id, c, r->num[c], np ? np[c] : 0);
          for (uint32_t c = 0; c < NTEXT; c++)
            text_is(r, c, tp ? tp[c] : (dg_etext_t){NULL, 0}, "insert");
          snap_free(&after);
        }
        break;
      }
      case 2: {
        name = "delete";
        int64_t id = pick_id(&in);
        rc = dg_etable_delete(t, id, next(&in) & 1, out);
        break;
      }
      case 3: {
        name = "move";
        int64_t id = pick_id(&in), parent = pick_parent(&in);
        rc = dg_etable_move(t, id, parent, out);
        break;
      }
      case 4:
      case 5:
      case 6: {
        name = "set";
        int64_t id = pick_id(&in);
        uint32_t col = next(&in) % (NNUM + 1);
        dg_eset_t how = {0};
        uint8_t m = next(&in);
        how.mode = (dg_spread_mode_t)((m & 0x0f) % 7);
        how.by_col = next(&in) % (NNUM + 1);
        int64_t value = pick_val(&in);
        if (m & 0x10) {
          how.has_expected = true;
          int64_t cur = 0;
          if ((m & 0x20) && dg_etable_number_get(t, id, col, &cur) == 0) how.expected = cur;
          else how.expected = pick_val(&in);
        }
        const dg_eset_t *hp = (m & 0x40) && how.mode == DG_SPREAD_PROPORTIONAL && !how.has_expected
                                  ? NULL : &how;
        rc = dg_etable_set(t, id, col, value, hp, out);
        if (rc == 0 && how.has_expected) {
          int64_t cur = 0;
          const srow_t *r = snap_find(&before, id);
          if (r && col < NNUM) cur = r->num[col];
          CHECK(cur == how.expected, "compare-and-set succeeded on %" PRId64 " != expected %" PRId64,
                cur, how.expected);
        }
        if (rc == 0 && col < NNUM) {
          const srow_t *r = snap_find(&before, id);
          CHECK(r && !r->held[col], "set of a held or missing cell succeeded");
          /* The written cell takes the value the mode defines. */
          bool leaf = true;
          for (size_t k = 0; k < before.n; k++) leaf &= before.r[k].parent != id;
          int64_t want = r->num[col];
          bool known = true;
          switch (how.mode) {
            case DG_SPREAD_PROPORTIONAL:
            case DG_SPREAD_EQUAL:
            case DG_SPREAD_BY: want = value; break;
            case DG_SPREAD_REPEAT_LEAVES: known = leaf; want = value; break;
            case DG_SPREAD_ADD: want = (int64_t)((__int128)r->num[col] + value); break;
            case DG_SPREAD_PERCENT: want = percent_of(r->num[col], value); break;
            default: known = false;
          }
          if (known) {
            int64_t got = 0;
            CHECK(dg_etable_number_get(t, id, col, &got) == 0, "number_get");
            CHECK(got == want, "set %" PRId64 "/%u mode %d value %" PRId64 " from %" PRId64
                  ": cell is %" PRId64 ", expected %" PRId64, id, col, how.mode, value,
                  r->num[col], got, want);
          }
        }
        break;
      }
      case 7: {
        name = "text_set";
        int64_t id = pick_id(&in);
        uint32_t col = next(&in) % (NTEXT + 1);
        dg_etext_t tx = pick_text(&in, tbuf[0]);
        rc = dg_etable_text_set(t, id, col, tx.ptr, tx.len, out);
        if (rc == 0) {
          snap_take(t, &after);
          const srow_t *r = snap_find(&after, id);
          CHECK(r != NULL && col < NTEXT, "text_set of a missing cell succeeded");
          text_is(r, col, tx, "text_set");
          snap_free(&after);
        }
        break;
      }
      case 8: {
        name = "hold";
        int64_t id = pick_id(&in);
        uint32_t col = next(&in) % (NNUM + 1);
        rc = dg_etable_hold(t, id, col, next(&in) & 1, out);
        break;
      }
      case 9:
        name = "savepoint";
        if (nmarks < MAXMARKS) {
          marks[nmarks] = dg_etable_savepoint(t);
          CHECK(marks[nmarks] != 0, "savepoint returned 0");
          snap_take(t, &marks_snap[nmarks]);
          nmarks++;
        }
        break;
      case 10:
      case 11: {
        bool rollback = (code & 0x7f) % 13 == 10;
        name = rollback ? "rollback" : "release";
        uint8_t b = next(&in);
        if (nmarks == 0 || b >= 0xf0) {
          dg_emark_t bad = nmarks ? marks[nmarks - 1] + 1 + b % 3 : b % 3;
          rc = rollback ? dg_etable_rollback(t, bad) : dg_etable_release(t, bad);
          CHECK(rc == DG_EINVAL, "%s of unopened mark %u = %d", name, bad, rc);
          break;
        }
        int k = b % nmarks;
        rc = rollback ? dg_etable_rollback(t, marks[k]) : dg_etable_release(t, marks[k]);
        CHECK(rc == 0, "%s of open mark %u = %d", name, marks[k], rc);
        if (rollback) {
          snap_take(t, &after);
          snap_same(&marks_snap[k], &after, "rollback");
          snap_free(&after);
        }
        for (int j = k; j < nmarks; j++) snap_free(&marks_snap[j]);
        nmarks = k;
        snap_free(&before);
        verify(t, name);
        continue; /* rollback/release report no changes */
      }
      case 12: {
        name = "set_leaves";
        int64_t ids[4], vals[4];
        size_t k = 1 + next(&in) % 4, bad = 99;
        uint32_t col = next(&in) % (NNUM + 1);
        for (size_t i = 0; i < k; i++) {
          ids[i] = pick_id(&in);
          vals[i] = pick_val(&in);
        }
        rc = dg_etable_set_leaves(t, col, ids, vals, k, out, &bad);
        CHECK(rc == 0 || rc == DG_EINVAL || rc == DG_ENOTFOUND || rc == DG_ECONFLICT || rc == DG_EOVERFLOW,
              "set_leaves returned %d", rc);
        if (rc == DG_ENOTFOUND) CHECK(bad < k && snap_find(&before, ids[bad]) == NULL, "set_leaves: bad %zu", bad);
        if (rc == 0) {
          /* Each listed leaf holds its value (the roll-ups: verify). */
          for (size_t i = 0; i < k; i++) {
            int64_t got = 0;
            CHECK(dg_etable_number_get(t, ids[i], col, &got) == 0 && got == vals[i],
                  "set_leaves %" PRId64 "/%u = %" PRId64 ", cell is %" PRId64, ids[i], col, vals[i], got);
          }
        }
        break;
      }
    }
    verify(t, name);
    CHECK(rc <= 0 && rc >= DG_EAUTH, "%s returned %d", name, rc);
    CHECK(rc != DG_EINTERNAL && rc != DG_ENOMEM, "%s returned %s", name, dg_strerror(rc));
    snap_take(t, &after);
    if (rc != 0) {
      snap_same(&before, &after, name);
      CHECK(dg_changes_count(ch) == from, "failed %s appended %zu records", name,
            dg_changes_count(ch) - from);
    } else if (report) {
      check_changes(ch, from, &before, &after);
    }
    snap_free(&before);
    snap_free(&after);
  }

  if (nmarks > 0 && (size & 1)) {
    /* Roll everything back to the first savepoint's state. */
    CHECK(dg_etable_rollback(t, marks[0]) == 0, "final rollback");
    verify(t, "final rollback");
    snap_t s;
    snap_take(t, &s);
    snap_same(&marks_snap[0], &s, "final rollback");
    snap_free(&s);
  }
  for (int j = 0; j < nmarks; j++) snap_free(&marks_snap[j]);
  dg_changes_destroy(ch);
  dg_etable_destroy(t);
  return 0;
}
