/*
 * test_engine_util.h -- helpers shared by the test_engine_*.c executables:
 * building tables tersely, reading cells, snapshotting a whole table as text
 * (to prove a failed operation changed nothing), and checking change lists.
 * Every table made here has DG_ETABLE_CHECK on, so the invariant checker runs
 * after every operation even in RelWithDebInfo builds (which define NDEBUG).
 */
#ifndef DG_TEST_ENGINE_UTIL_H
#define DG_TEST_ENGINE_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dg/engine.h"

#define NONE DG_ROW_NONE

static inline dg_etable_t *mk_table(uint32_t nnum, const uint8_t *scales, uint32_t ntext) {
  dg_etable_opts_t o = {.scales = scales, .nnum = nnum, .ntext = ntext, .tag = 7,
                        .flags = DG_ETABLE_CHECK};
  dg_etable_t *t = NULL;
  assert_int_equal(dg_etable_create(&o, &t), 0);
  assert_non_null(t);
  return t;
}

/* One number column of the given scale. */
static inline dg_etable_t *mk1(int scale) {
  static uint8_t sc[7] = {0, 1, 2, 3, 4, 5, 6};
  return mk_table(1, &sc[scale], 0);
}

/* Insert with one value (column 0); must succeed. */
static inline void ins1(dg_etable_t *t, int64_t id, int64_t parent, int64_t v) {
  int rc = dg_etable_insert(t, id, parent, &v, NULL, NULL);
  if (rc != 0) fail_msg("insert %lld under %lld: %s", (long long)id, (long long)parent, dg_strerror(rc));
}

/* Insert with all number columns given. */
static inline void insn(dg_etable_t *t, int64_t id, int64_t parent, const int64_t *v) {
  int rc = dg_etable_insert(t, id, parent, v, NULL, NULL);
  if (rc != 0) fail_msg("insert %lld: %s", (long long)id, dg_strerror(rc));
}

static inline int64_t num(const dg_etable_t *t, int64_t id, uint32_t col) {
  int64_t v = 0;
  int rc = dg_etable_number_get(t, id, col, &v);
  if (rc != 0) fail_msg("number_get %lld/%u: %s", (long long)id, col, dg_strerror(rc));
  return v;
}

static inline int set_mode(dg_etable_t *t, int64_t id, uint32_t col, int64_t v, dg_spread_mode_t m,
                           dg_changes_t *out) {
  dg_eset_t how = {.mode = m};
  return dg_etable_set(t, id, col, v, &how, out);
}

static inline void set_ok(dg_etable_t *t, int64_t id, uint32_t col, int64_t v, dg_spread_mode_t m) {
  int rc = set_mode(t, id, col, v, m, NULL);
  if (rc != 0) fail_msg("set %lld/%u = %lld: %s", (long long)id, col, (long long)v, dg_strerror(rc));
}

static inline void set_by(dg_etable_t *t, int64_t id, uint32_t col, int64_t v, uint32_t by) {
  dg_eset_t how = {.mode = DG_SPREAD_BY, .by_col = by};
  int rc = dg_etable_set(t, id, col, v, &how, NULL);
  if (rc != 0) fail_msg("set by: %s", dg_strerror(rc));
}

static inline void hold(dg_etable_t *t, int64_t id, uint32_t col) {
  assert_int_equal(dg_etable_hold(t, id, col, true, NULL), 0);
}

/* Appends a text rendering of the subtree under parent (all cells, holds). */
static void snap_rec(const dg_etable_t *t, int64_t parent, int depth, char **buf, size_t *len,
                     size_t *cap) {
  int64_t after = NONE;
  for (;;) {
    int64_t ids[64];
    size_t n = 0;
    assert_int_equal(dg_etable_children_get(t, parent, after, ids, 64, &n), 0);
    if (n == 0) break;
    for (size_t i = 0; i < n; i++) {
      char line[512];
      int w = snprintf(line, sizeof line, "%*s%lld:", depth * 2, "", (long long)ids[i]);
      dg_erow_t r;
      assert_int_equal(dg_etable_row_get(t, ids[i], &r), 0);
      assert_true(r.parent_id == parent);
      for (uint32_t c = 0; c < dg_etable_num_columns(t); c++) {
        bool h = false;
        assert_int_equal(dg_etable_is_held(t, ids[i], c, &h), 0);
        w += snprintf(line + w, sizeof line - (size_t)w, " %lld%s", (long long)num(t, ids[i], c),
                      h ? "H" : "");
      }
      for (uint32_t c = 0; c < dg_etable_text_columns(t); c++) {
        const char *s;
        size_t sl;
        assert_int_equal(dg_etable_text_get(t, ids[i], c, &s, &sl), 0);
        w += snprintf(line + w, sizeof line - (size_t)w, " '%.*s'%s", (int)(s ? sl : 0),
                      s ? s : "", s ? "" : "null");
      }
      w += snprintf(line + w, sizeof line - (size_t)w, "\n");
      while (*len + (size_t)w + 1 > *cap) {
        *cap = *cap ? *cap * 2 : 4096;
        *buf = realloc(*buf, *cap);
      }
      memcpy(*buf + *len, line, (size_t)w + 1);
      *len += (size_t)w;
      snap_rec(t, ids[i], depth + 1, buf, len, cap);
    }
    after = ids[n - 1];
  }
}

/* The whole table as text; free() it. */
static inline char *snapshot(const dg_etable_t *t) {
  char *buf = malloc(1);
  buf[0] = '\0';
  size_t len = 0, cap = 1;
  snap_rec(t, NONE, 0, &buf, &len, &cap);
  return buf;
}

/* Asserts that change i of c is a NUMBER change of (row, col) old -> new. */
static inline void chg_is(const dg_changes_t *c, size_t i, int64_t row, uint32_t col, int64_t old,
                          int64_t new_) {
  assert_true(i < dg_changes_count(c));
  const dg_change_t *ch = &dg_changes_items(c)[i];
  if (ch->kind != DG_CHANGE_NUMBER || ch->row_id != row || ch->col != col ||
      ch->old_value != old || ch->new_value != new_)
    fail_msg("change %zu: kind %d row %lld col %u %lld -> %lld; want number row %lld col %u %lld -> %lld",
             i, ch->kind, (long long)ch->row_id, ch->col, (long long)ch->old_value,
             (long long)ch->new_value, (long long)row, col, (long long)old, (long long)new_);
  assert_int_equal(ch->table_tag, 7);
}

#endif
