/*
 * test_engine_struct.c -- rows: insert (a leaf gaining its first child gives
 * way), delete with roll-down, move with both chains and cycle rejection,
 * text cells, reading and paging, the bulk loader, savepoints (exact
 * rollback of everything, nesting) and the change buffer.
 */
#include "test_engine_util.h"

static const dg_change_t *chg(const dg_changes_t *c, size_t i) {
  assert_true(i < dg_changes_count(c));
  return &dg_changes_items(c)[i];
}

static void test_insert_rollup_and_first_child(void **s) {
  (void)s;
  dg_etable_t *t = mk1(2);
  dg_changes_t *c = dg_changes_create();
  int64_t v = 500;
  assert_int_equal(dg_etable_insert(t, 1, NONE, &v, NULL, c), 0);
  assert_int_equal(dg_changes_count(c), 2);
  assert_int_equal(chg(c, 0)->kind, DG_CHANGE_ROW_INSERT);
  assert_true(chg(c, 0)->new_value == NONE);
  chg_is(c, 1, 1, 0, 0, 500);
  dg_changes_clear(c);
  /* 1 is a leaf holding 5.00; its first child's 2.00 replaces that. */
  v = 200;
  assert_int_equal(dg_etable_insert(t, 2, 1, &v, NULL, c), 0);
  assert_int_equal(dg_changes_count(c), 3);
  assert_int_equal(chg(c, 0)->kind, DG_CHANGE_ROW_INSERT);
  assert_int_equal(chg(c, 0)->row_id, 2);
  assert_int_equal(chg(c, 0)->new_value, 1);
  chg_is(c, 1, 2, 0, 0, 200);
  chg_is(c, 2, 1, 0, 500, 200);
  /* a second child adds */
  ins1(t, 3, 1, 50);
  assert_int_equal(num(t, 1, 0), 250);
  /* an omitted value is 0 */
  assert_int_equal(dg_etable_insert(t, 4, 1, NULL, NULL, NULL), 0);
  assert_int_equal(num(t, 4, 0), 0);
  assert_int_equal(num(t, 1, 0), 250);
  /* errors */
  assert_int_equal(dg_etable_insert(t, 2, 1, &v, NULL, c), DG_EEXIST);
  assert_int_equal(dg_etable_insert(t, 9, 99, &v, NULL, c), DG_ENOTFOUND);
  assert_int_equal(dg_etable_insert(t, NONE, 1, &v, NULL, c), DG_EINVAL);
  v = DG_DECIMAL_LIMIT;
  assert_int_equal(dg_etable_insert(t, 9, 1, &v, NULL, c), DG_EOVERFLOW);
  assert_int_equal(dg_changes_count(c), 3);
  assert_int_equal(dg_etable_row_count(t), 4);
  dg_changes_destroy(c);
  dg_etable_destroy(t);
}

static void test_delete(void **s) {
  (void)s;
  dg_etable_t *t = mk1(2);
  ins1(t, 1, NONE, 0);
  ins1(t, 2, 1, 0);
  ins1(t, 3, 1, 100);
  ins1(t, 4, 2, 10);
  ins1(t, 5, 2, 20);
  ins1(t, 6, 5, 20);
  dg_changes_t *c = dg_changes_create();
  assert_int_equal(dg_etable_delete(t, 2, false, c), DG_ECONFLICT);
  assert_int_equal(dg_etable_delete(t, 77, false, c), DG_ENOTFOUND);
  assert_int_equal(dg_changes_count(c), 0);
  assert_int_equal(dg_etable_delete(t, 4, false, c), 0);
  assert_int_equal(dg_changes_count(c), 3);
  assert_int_equal(chg(c, 0)->kind, DG_CHANGE_ROW_DELETE);
  assert_int_equal(chg(c, 0)->old_value, 2);
  chg_is(c, 1, 2, 0, 30, 20);
  chg_is(c, 2, 1, 0, 130, 120);
  dg_changes_clear(c);
  assert_int_equal(dg_etable_delete(t, 2, true, c), 0);
  /* 6 before 5 before 2, then the root */
  assert_int_equal(dg_changes_count(c), 4);
  assert_int_equal(chg(c, 0)->row_id, 6);
  assert_int_equal(chg(c, 1)->row_id, 5);
  assert_int_equal(chg(c, 2)->row_id, 2);
  assert_int_equal(chg(c, 2)->old_value, 1);
  chg_is(c, 3, 1, 0, 120, 100);
  assert_int_equal(dg_etable_row_count(t), 2);
  int64_t x;
  assert_int_equal(dg_etable_number_get(t, 5, 0, &x), DG_ENOTFOUND);
  /* the last child goes: the parent keeps what remains, 0 */
  assert_int_equal(dg_etable_delete(t, 3, false, NULL), 0);
  assert_int_equal(num(t, 1, 0), 0);
  dg_erow_t r;
  assert_int_equal(dg_etable_row_get(t, 1, &r), 0);
  assert_int_equal(r.nchildren, 0);
  /* ids can be reused */
  ins1(t, 2, 1, 7);
  assert_int_equal(num(t, 1, 0), 7);
  dg_changes_destroy(c);
  dg_etable_destroy(t);
}

static void test_move(void **s) {
  (void)s;
  dg_etable_t *t = mk1(2);
  ins1(t, 1, NONE, 0);
  ins1(t, 2, 1, 0);
  ins1(t, 3, 1, 50);
  ins1(t, 4, 2, 100);
  dg_changes_t *c = dg_changes_create();
  /* 4 moves from 2 to the leaf 3: 2 drops to 0, 3 gives way to 1.00, 1 nets -0.50 */
  assert_int_equal(dg_etable_move(t, 4, 3, c), 0);
  assert_int_equal(dg_changes_count(c), 4);
  assert_int_equal(chg(c, 0)->kind, DG_CHANGE_ROW_MOVE);
  assert_int_equal(chg(c, 0)->old_value, 2);
  assert_int_equal(chg(c, 0)->new_value, 3);
  chg_is(c, 1, 2, 0, 100, 0);
  chg_is(c, 2, 1, 0, 150, 100);
  chg_is(c, 3, 3, 0, 50, 100);
  /* cycles */
  assert_int_equal(dg_etable_move(t, 1, 4, c), DG_ECONFLICT);
  assert_int_equal(dg_etable_move(t, 1, 1, c), DG_ECONFLICT);
  assert_int_equal(dg_etable_move(t, 3, 4, c), DG_ECONFLICT);
  assert_int_equal(dg_etable_move(t, 3, 99, c), DG_ENOTFOUND);
  assert_int_equal(dg_changes_count(c), 4);
  /* same parent: nothing */
  assert_int_equal(dg_etable_move(t, 4, 3, c), 0);
  assert_int_equal(dg_changes_count(c), 4);
  /* to a root */
  dg_changes_clear(c);
  assert_int_equal(dg_etable_move(t, 3, NONE, c), 0);
  assert_int_equal(num(t, 1, 0), 0);
  assert_int_equal(num(t, 3, 0), 100);
  assert_int_equal(chg(c, 0)->new_value, NONE);
  /* under the leaf 2, which gives way */
  assert_int_equal(dg_etable_move(t, 3, 2, NULL), 0);
  assert_int_equal(num(t, 2, 0), 100);
  assert_int_equal(num(t, 1, 0), 100);
  dg_etable_destroy(t);
  dg_changes_destroy(c);
}

static void test_text_cells(void **s) {
  (void)s;
  uint8_t sc = 2;
  dg_etable_t *t = mk_table(1, &sc, 2);
  dg_etext_t tx[2] = {{"SKU 7", 5}, {NULL, 0}};
  int64_t v = 1250;
  dg_changes_t *c = dg_changes_create();
  assert_int_equal(dg_etable_insert(t, 7, NONE, &v, tx, c), 0);
  assert_int_equal(dg_changes_count(c), 3); /* insert, number, one text */
  assert_int_equal(chg(c, 2)->kind, DG_CHANGE_TEXT);
  const char *p;
  size_t n;
  assert_int_equal(dg_changes_text(c, chg(c, 2), true, &p, &n), 0);
  assert_int_equal(n, 5);
  assert_memory_equal(p, "SKU 7", 5);
  assert_int_equal(dg_changes_text(c, chg(c, 2), false, &p, &n), 0);
  assert_null(p);
  assert_int_equal(dg_changes_text(c, chg(c, 1), false, &p, &n), DG_EINVAL);
  assert_int_equal(dg_etable_text_get(t, 7, 0, &p, &n), 0);
  assert_memory_equal(p, "SKU 7", 5);
  assert_int_equal(dg_etable_text_get(t, 7, 1, &p, &n), 0);
  assert_null(p);
  dg_changes_clear(c);
  assert_int_equal(dg_etable_text_set(t, 7, 1, "a\0b", 3, c), 0);
  assert_int_equal(dg_etable_text_set(t, 7, 1, "a\0b", 3, c), 0); /* same: no-op */
  assert_int_equal(dg_etable_text_set(t, 7, 0, "", 0, c), 0);     /* empty is not null */
  assert_int_equal(dg_changes_count(c), 2);
  assert_int_equal(dg_etable_text_get(t, 7, 1, &p, &n), 0);
  assert_int_equal(n, 3);
  assert_memory_equal(p, "a\0b", 3);
  assert_int_equal(dg_etable_text_get(t, 7, 0, &p, &n), 0);
  assert_non_null(p);
  assert_int_equal(n, 0);
  assert_int_equal(dg_changes_text(c, chg(c, 1), false, &p, &n), 0);
  assert_memory_equal(p, "SKU 7", 5);
  assert_int_equal(dg_etable_text_set(t, 7, 2, "x", 1, c), DG_EINVAL);
  assert_int_equal(dg_etable_text_set(t, 8, 0, "x", 1, c), DG_ENOTFOUND);
  assert_int_equal(dg_etable_text_set(t, 7, 0, "x", DG_ENGINE_MAX_TEXT + 1, c), DG_EINVAL);
  assert_int_equal(dg_etable_text_set(t, 7, 0, NULL, 0, c), 0);
  assert_int_equal(dg_etable_text_get(t, 7, 0, &p, &n), 0);
  assert_null(p);
  dg_changes_destroy(c);
  dg_etable_destroy(t);
}

static void test_children_paging(void **s) {
  (void)s;
  dg_etable_t *t = mk1(0);
  ins1(t, 55, NONE, 0);
  ins1(t, -3, NONE, 0);
  for (int64_t i = 30; i >= 1; i--) ins1(t, i * 10, 55, i);
  int64_t ids[8];
  size_t n = 0;
  assert_int_equal(dg_etable_children_get(t, NONE, NONE, ids, 8, &n), 0);
  assert_int_equal(n, 2);
  assert_int_equal(ids[0], -3);
  assert_int_equal(ids[1], 55);
  int64_t after = NONE, expect = 10;
  size_t total = 0;
  for (;;) {
    assert_int_equal(dg_etable_children_get(t, 55, after, ids, 8, &n), 0);
    if (n == 0) break;
    for (size_t i = 0; i < n; i++, expect += 10) assert_int_equal(ids[i], expect);
    total += n;
    after = ids[n - 1];
  }
  assert_int_equal(total, 30);
  assert_int_equal(dg_etable_children_get(t, 55, 155, ids, 8, &n), 0);
  assert_int_equal(ids[0], 160);
  assert_int_equal(dg_etable_children_get(t, 51, NONE, ids, 8, &n), DG_ENOTFOUND);
  dg_erow_t r;
  assert_int_equal(dg_etable_row_get(t, 120, &r), 0);
  assert_int_equal(r.parent_id, 55);
  assert_int_equal(r.nchildren, 0);
  assert_int_equal(dg_etable_row_get(t, 55, &r), 0);
  assert_true(r.parent_id == NONE);
  assert_int_equal(r.nchildren, 30);
  assert_int_equal(num(t, 55, 0), 465);
  dg_etable_destroy(t);
}

/* A mix of everything inside a savepoint, rolled back: the snapshot (values,
 * holds, text, structure, order) is exactly the one before. */
static void test_savepoint_rollback_everything(void **s) {
  (void)s;
  uint8_t sc[2] = {2, 0};
  dg_etable_t *t = mk_table(2, sc, 1);
  int64_t v[2] = {100, 1};
  dg_etext_t tx = {"a", 1};
  assert_int_equal(dg_etable_insert(t, 1, NONE, v, &tx, NULL), 0);
  for (int64_t i = 2; i <= 9; i++) {
    v[0] = i * 100;
    assert_int_equal(dg_etable_insert(t, i, i <= 4 ? 1 : (i - 3) / 2, v, &tx, NULL), 0);
  }
  hold(t, 5, 0);
  char *before = snapshot(t);
  size_t mem0 = dg_etable_memory(t);
  assert_true(mem0 > 0);
  dg_changes_t *c = dg_changes_create();
  dg_emark_t m = dg_etable_savepoint(t);
  assert_true(m != 0);
  set_ok(t, 1, 0, 123456, DG_SPREAD_PROPORTIONAL);
  set_ok(t, 1, 1, 77, DG_SPREAD_EQUAL);
  assert_int_equal(dg_etable_text_set(t, 3, 0, "changed", 7, c), 0);
  assert_int_equal(dg_etable_delete(t, 2, true, c), 0);
  v[0] = 5;
  assert_int_equal(dg_etable_insert(t, 2, 4, v, NULL, c), 0); /* same id, elsewhere */
  assert_int_equal(dg_etable_insert(t, 100, 2, v, &tx, c), 0);
  assert_int_equal(dg_etable_move(t, 3, 100, c), 0);
  assert_int_equal(dg_etable_hold(t, 5, 0, false, c), 0);
  hold(t, 100, 1);
  set_ok(t, 4, 0, 999, DG_SPREAD_REPEAT_LEAVES);
  assert_int_equal(dg_etable_delete(t, 100, true, c), 0);
  assert_int_equal(dg_etable_verify(t), 0);
  char *mid = snapshot(t);
  assert_string_not_equal(before, mid);
  assert_int_equal(dg_etable_rollback(t, m), 0);
  char *after = snapshot(t);
  assert_string_equal(before, after);
  assert_int_equal(dg_etable_rollback(t, m), DG_EINVAL); /* closed */
  assert_int_equal(dg_etable_release(t, m), DG_EINVAL);
  /* the same operations again, released: they stay */
  m = dg_etable_savepoint(t);
  set_ok(t, 1, 0, 123456, DG_SPREAD_PROPORTIONAL);
  assert_int_equal(dg_etable_delete(t, 2, true, NULL), 0);
  assert_int_equal(dg_etable_release(t, m), 0);
  assert_int_equal(num(t, 1, 0) + 0, num(t, 1, 0));
  int64_t x;
  assert_int_equal(dg_etable_number_get(t, 2, 0, &x), DG_ENOTFOUND);
  assert_int_equal(dg_etable_verify(t), 0);
  free(before);
  free(mid);
  free(after);
  dg_changes_destroy(c);
  dg_etable_destroy(t);
}

static void test_savepoint_nesting(void **s) {
  (void)s;
  dg_etable_t *t = mk1(2);
  ins1(t, 1, NONE, 0);
  ins1(t, 2, 1, 100);
  dg_emark_t outer = dg_etable_savepoint(t);
  set_ok(t, 2, 0, 200, DG_SPREAD_PROPORTIONAL);
  char *after_a = snapshot(t);
  dg_emark_t inner = dg_etable_savepoint(t);
  assert_true(inner != outer);
  ins1(t, 3, 1, 50);
  dg_emark_t inner2 = dg_etable_savepoint(t);
  set_ok(t, 3, 0, 60, DG_SPREAD_PROPORTIONAL);
  assert_int_equal(dg_etable_rollback(t, inner), 0); /* closes inner2 too */
  assert_int_equal(dg_etable_release(t, inner2), DG_EINVAL);
  char *now = snapshot(t);
  assert_string_equal(after_a, now);
  free(now);
  /* release the inner level: the outer rollback still undoes it */
  inner = dg_etable_savepoint(t);
  ins1(t, 4, 1, 50);
  assert_int_equal(dg_etable_release(t, inner), 0);
  assert_int_equal(num(t, 1, 0), 250);
  assert_int_equal(dg_etable_rollback(t, outer), 0);
  assert_int_equal(num(t, 1, 0), 100);
  assert_int_equal(dg_etable_row_count(t), 2);
  /* no savepoint: nothing to roll back */
  assert_int_equal(dg_etable_rollback(t, outer), DG_EINVAL);
  free(after_a);
  dg_etable_destroy(t);
}

static void test_bulk_load(void **s) {
  (void)s;
  uint8_t sc[2] = {2, 0};
  dg_etable_t *t = mk_table(2, sc, 1);
  assert_int_equal(dg_etable_load_begin(t, 8), 0);
  /* children before parents, ids unsorted, wrong parent totals */
  int64_t v[2];
  dg_etext_t tx = {"x", 1};
#define LOAD(id, par, a, b)                                          \
  do {                                                               \
    v[0] = (a), v[1] = (b);                                          \
    assert_int_equal(dg_etable_load_row(t, id, par, v, &tx), 0);     \
  } while (0)
  LOAD(7, 3, 100, 1);
  LOAD(5, 3, 200, 2);
  LOAD(3, 1, 0, 0);
  LOAD(9, NONE, 40, 4);
  LOAD(1, NONE, 999, 9);
  LOAD(2, 1, 50, 5);
  /* other operations wait for the end of the load */
  assert_int_equal(dg_etable_insert(t, 100, NONE, NULL, NULL, NULL), DG_EINVAL);
  assert_int_equal(dg_etable_load_finish(t, DG_ELOAD_RECOMPUTE), 0);
  assert_int_equal(dg_etable_row_count(t), 6);
  assert_int_equal(num(t, 3, 0), 300);
  assert_int_equal(num(t, 3, 1), 3);
  assert_int_equal(num(t, 1, 0), 350);
  assert_int_equal(num(t, 1, 1), 8);
  int64_t ids[4];
  size_t n;
  assert_int_equal(dg_etable_children_get(t, 3, NONE, ids, 4, &n), 0);
  assert_int_equal(n, 2);
  assert_int_equal(ids[0], 5);
  assert_int_equal(ids[1], 7);
  set_ok(t, 1, 0, 700, DG_SPREAD_PROPORTIONAL);
  assert_int_equal(num(t, 5, 0), 400);
  dg_etable_destroy(t);

  /* checked (not recomputed): a wrong total fails, and the table is empty */
  t = mk_table(2, sc, 1);
  assert_int_equal(dg_etable_load_begin(t, 0), 0);
  LOAD(1, NONE, 10, 1);
  LOAD(2, 1, 10, 2);
  assert_int_equal(dg_etable_load_finish(t, 0), DG_EINTERNAL);
  assert_int_equal(dg_etable_row_count(t), 0);
  assert_int_equal(dg_etable_load_begin(t, 0), 0);
  LOAD(1, NONE, 10, 2);
  LOAD(2, 1, 10, 2);
  assert_int_equal(dg_etable_load_finish(t, 0), 0);
  assert_int_equal(dg_etable_row_count(t), 2);
  assert_int_equal(dg_etable_load_begin(t, 0), DG_EINVAL); /* not empty */
  dg_etable_destroy(t);

  /* duplicate, unknown parent, cycle, overflow */
  t = mk_table(2, sc, 1);
  assert_int_equal(dg_etable_load_begin(t, 0), 0);
  LOAD(1, NONE, 0, 0);
  LOAD(1, NONE, 0, 0);
  assert_int_equal(dg_etable_load_finish(t, DG_ELOAD_RECOMPUTE), DG_EEXIST);
  assert_int_equal(dg_etable_load_begin(t, 0), 0);
  LOAD(1, 5, 0, 0);
  assert_int_equal(dg_etable_load_finish(t, DG_ELOAD_RECOMPUTE), DG_ENOTFOUND);
  assert_int_equal(dg_etable_load_begin(t, 0), 0);
  LOAD(1, NONE, 0, 0);
  LOAD(2, 3, 0, 0);
  LOAD(3, 4, 0, 0);
  LOAD(4, 2, 0, 0);
  assert_int_equal(dg_etable_load_finish(t, DG_ELOAD_RECOMPUTE), DG_ECONFLICT);
  assert_int_equal(dg_etable_load_begin(t, 0), 0);
  LOAD(1, NONE, 0, 0);
  LOAD(2, 1, 900000000000000000, 0);
  LOAD(3, 1, 900000000000000000, 0);
  assert_int_equal(dg_etable_load_finish(t, DG_ELOAD_RECOMPUTE), DG_EOVERFLOW);
  assert_int_equal(dg_etable_load_begin(t, 0), 0);
  v[0] = DG_DECIMAL_LIMIT;
  assert_int_equal(dg_etable_load_row(t, 1, NONE, v, NULL), DG_EOVERFLOW);
  assert_int_equal(dg_etable_load_row(t, NONE, NONE, NULL, NULL), DG_EINVAL);
  assert_int_equal(dg_etable_load_finish(t, 0), 0); /* an empty load is fine */
  assert_int_equal(dg_etable_row_count(t), 0);
  assert_int_equal(dg_etable_load_row(t, 1, NONE, NULL, NULL), DG_EINVAL); /* not loading */
  dg_etable_destroy(t);
#undef LOAD
}

/* The id index in both of its forms: a dense load gets the direct map, a
 * sparse one the hash; new rows right after the direct range extend it,
 * others go to the hash; duplicates are caught in both; rollback puts ids
 * back where they were. Every operation runs verify (DG_ENGINE_CHECK),
 * which recounts both parts of the index. */
static void test_id_index_direct_and_hashed(void **s) {
  (void)s;
  const int64_t far = 1000000000000LL;
  for (int sparse = 0; sparse < 2; sparse++) {
    dg_etable_t *t = mk1(0);
    assert_int_equal(dg_etable_load_begin(t, 0), 0);
    int64_t v = 1;
    assert_int_equal(dg_etable_load_row(t, 1, NONE, &v, NULL), 0);
    for (int64_t id = 2; id <= 1000; id++) assert_int_equal(dg_etable_load_row(t, id, 1, &v, NULL), 0);
    if (sparse) assert_int_equal(dg_etable_load_row(t, far, 1, &v, NULL), 0);
    assert_int_equal(dg_etable_load_finish(t, DG_ELOAD_RECOMPUTE), 0);
    assert_int_equal(num(t, 1, 0), sparse ? 1000 : 999);
    ins1(t, 1001, 1, 1);          /* right after the direct range (or the hash's first new id) */
    ins1(t, 1002, 1, 1);
    ins1(t, -far, 1, 1);          /* far below: hashed */
    ins1(t, far + 1, 1, 1);       /* far above */
    assert_int_equal(dg_etable_insert(t, 1001, 1, NULL, NULL, NULL), DG_EEXIST);
    assert_int_equal(dg_etable_insert(t, -far, 1, NULL, NULL, NULL), DG_EEXIST);
    assert_int_equal(dg_etable_delete(t, 500, false, NULL), 0);
    assert_int_equal(dg_etable_delete(t, -far, false, NULL), 0);
    dg_emark_t m = dg_etable_savepoint(t);
    assert_int_equal(dg_etable_delete(t, 1002, false, NULL), 0);
    ins1(t, 500, 1001, 7);
    ins1(t, -far, 500, 3);
    ins1(t, 1003, NONE, 2);
    /* +4 inserted, -2 deleted, -1 (1002), +6 (1001 takes its new child's 7), -4 (500 takes 3) */
    assert_int_equal(num(t, 1, 0), (sparse ? 1000 : 999) + 4 - 2 - 1 + 6 - 4);
    assert_int_equal(dg_etable_rollback(t, m), 0);
    int64_t x;
    assert_int_equal(dg_etable_number_get(t, 500, 0, &x), DG_ENOTFOUND);
    assert_int_equal(dg_etable_number_get(t, -far, 0, &x), DG_ENOTFOUND);
    assert_int_equal(dg_etable_number_get(t, 1003, 0, &x), DG_ENOTFOUND);
    assert_int_equal(num(t, 1002, 0), 1);
    assert_int_equal(num(t, far + 1, 0), 1);
    assert_int_equal(dg_etable_row_count(t), (size_t)(1000 + sparse + 3 - 1));
    for (int64_t id = -3; id < 1010; id++) dg_etable_prefetch(t, id, id & 1);
    assert_int_equal(dg_etable_verify(t), 0);
    dg_etable_destroy(t);
  }
  /* a duplicate inside the direct range fails the load */
  dg_etable_t *t = mk1(0);
  assert_int_equal(dg_etable_load_begin(t, 0), 0);
  for (int64_t id = 1; id <= 100; id++) assert_int_equal(dg_etable_load_row(t, id, NONE, NULL, NULL), 0);
  assert_int_equal(dg_etable_load_row(t, 37, NONE, NULL, NULL), 0);
  assert_int_equal(dg_etable_load_finish(t, 0), DG_EEXIST);
  assert_int_equal(dg_etable_row_count(t), 0);
  ins1(t, 37, NONE, 1); /* the table works again, its index starts afresh */
  assert_int_equal(num(t, 37, 0), 1);
  dg_etable_destroy(t);
}

static void test_prefetch_is_harmless(void **s) {
  (void)s;
  dg_etable_t *t = mk1(2);
  dg_etable_prefetch(t, 1, 0); /* empty table */
  dg_etable_prefetch(t, 1, 1);
  ins1(t, 1, NONE, 5);
  char *before = snapshot(t);
  for (int64_t id = -3; id < 5; id++) {
    dg_etable_prefetch(t, id, 0);
    dg_etable_prefetch(t, id, 1);
    dg_etable_prefetch(t, id, 7);
  }
  dg_etable_prefetch(t, NONE, 1);
  char *after = snapshot(t);
  assert_string_equal(before, after);
  free(before);
  free(after);
  dg_etable_destroy(t);
}

static void test_change_buffer(void **s) {
  (void)s;
  dg_changes_t *c = dg_changes_create();
  assert_int_equal(dg_changes_count(c), 0);
  dg_etable_t *t = mk1(2);
  for (int64_t i = 1; i <= 1000; i++) {
    int64_t v = i;
    assert_int_equal(dg_etable_insert(t, i, i == 1 ? NONE : 1, &v, NULL, c), 0);
  }
  assert_int_equal(dg_changes_count(c), 2 + 999 * 3);
  dg_changes_truncate(c, 10);
  assert_int_equal(dg_changes_count(c), 10);
  dg_changes_truncate(c, 100);
  assert_int_equal(dg_changes_count(c), 10);
  dg_changes_clear(c);
  assert_int_equal(dg_changes_count(c), 0);
  dg_changes_destroy(c);
  dg_changes_destroy(NULL);
  dg_etable_destroy(t);
  dg_etable_destroy(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_insert_rollup_and_first_child),
      cmocka_unit_test(test_delete),
      cmocka_unit_test(test_move),
      cmocka_unit_test(test_text_cells),
      cmocka_unit_test(test_children_paging),
      cmocka_unit_test(test_savepoint_rollback_everything),
      cmocka_unit_test(test_savepoint_nesting),
      cmocka_unit_test(test_bulk_load),
      cmocka_unit_test(test_id_index_direct_and_hashed),
      cmocka_unit_test(test_prefetch_is_harmless),
      cmocka_unit_test(test_change_buffer),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
