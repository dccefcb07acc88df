/*
 * test_engine_holds.c -- held cells: skipped by spreads at every level,
 * rigid subtrees, conflicts that change nothing, writes below a held
 * ancestor offset among the unheld siblings on the path, holds in
 * savepoints.
 */
#include "test_engine_util.h"

static void test_held_sibling_keeps(void **s) {
  (void)s;
  dg_etable_t *t = mk1(2);
  ins1(t, 1, NONE, 0);
  ins1(t, 2, 1, 100);
  ins1(t, 3, 1, 200);
  ins1(t, 4, 1, 300);
  dg_changes_t *c = dg_changes_create();
  assert_int_equal(dg_etable_hold(t, 3, 0, true, c), 0);
  assert_int_equal(dg_changes_count(c), 1);
  const dg_change_t *h = &dg_changes_items(c)[0];
  assert_int_equal(h->kind, DG_CHANGE_HOLD);
  assert_int_equal(h->row_id, 3);
  assert_int_equal(h->old_value, 0);
  assert_int_equal(h->new_value, 1);
  assert_int_equal(dg_etable_hold(t, 3, 0, true, c), 0); /* again: no-op */
  assert_int_equal(dg_changes_count(c), 1);
  bool held = false;
  assert_int_equal(dg_etable_is_held(t, 3, 0, &held), 0);
  assert_true(held);
  set_ok(t, 1, 0, 1200, DG_SPREAD_PROPORTIONAL);
  assert_int_equal(num(t, 2, 0), 250);
  assert_int_equal(num(t, 3, 0), 200);
  assert_int_equal(num(t, 4, 0), 750);
  set_ok(t, 1, 0, 500, DG_SPREAD_EQUAL); /* 300 over 2 and 4 */
  assert_int_equal(num(t, 2, 0), 150);
  assert_int_equal(num(t, 3, 0), 200);
  assert_int_equal(num(t, 4, 0), 150);
  /* a held cell cannot be written */
  assert_int_equal(set_mode(t, 3, 0, 1, DG_SPREAD_PROPORTIONAL, c), DG_ECONFLICT);
  assert_int_equal(dg_etable_hold(t, 3, 0, false, c), 0);
  set_ok(t, 3, 0, 1, DG_SPREAD_PROPORTIONAL);
  assert_int_equal(num(t, 1, 0), 301);
  dg_changes_destroy(c);
  dg_etable_destroy(t);
}

/* 1 -> 2 -> {5, 6H}, 3H, 4: holds at two levels. */
static void test_holds_two_levels(void **s) {
  (void)s;
  dg_etable_t *t = mk1(2);
  ins1(t, 1, NONE, 0);
  ins1(t, 2, 1, 0);
  ins1(t, 3, 1, 300);
  ins1(t, 4, 1, 200);
  ins1(t, 5, 2, 100);
  ins1(t, 6, 2, 100);
  hold(t, 6, 0);
  hold(t, 3, 0);
  assert_int_equal(num(t, 1, 0), 700);
  set_ok(t, 1, 0, 1000, DG_SPREAD_PROPORTIONAL);
  /* free at the top: 2 (200) and 4 (200) share 1000 - 300 */
  assert_int_equal(num(t, 2, 0), 350);
  assert_int_equal(num(t, 4, 0), 350);
  assert_int_equal(num(t, 3, 0), 300);
  /* inside 2 only 5 is free */
  assert_int_equal(num(t, 5, 0), 250);
  assert_int_equal(num(t, 6, 0), 100);
  /* equal respects both levels too */
  set_ok(t, 1, 0, 900, DG_SPREAD_EQUAL);
  assert_int_equal(num(t, 2, 0), 300);
  assert_int_equal(num(t, 4, 0), 300);
  assert_int_equal(num(t, 5, 0), 200);
  /* percent: the held cells stay, the rest absorbs */
  set_ok(t, 1, 0, 10 * DG_PERCENT_SCALE, DG_SPREAD_PERCENT);
  assert_int_equal(num(t, 1, 0), 990);
  assert_int_equal(num(t, 3, 0), 300);
  assert_int_equal(num(t, 6, 0), 100);
  assert_int_equal(num(t, 2, 0) + num(t, 4, 0), 690);
  /* repeat_leaves: held leaf 6 and held 3 keep their values */
  set_ok(t, 1, 0, 50, DG_SPREAD_REPEAT_LEAVES);
  assert_int_equal(num(t, 5, 0), 50);
  assert_int_equal(num(t, 4, 0), 50);
  assert_int_equal(num(t, 6, 0), 100);
  assert_int_equal(num(t, 1, 0), 50 + 100 + 300 + 50);
  dg_etable_destroy(t);
}

static void test_all_held_conflict(void **s) {
  (void)s;
  dg_etable_t *t = mk1(2);
  ins1(t, 1, NONE, 0);
  ins1(t, 2, 1, 0);
  ins1(t, 3, 1, 300);
  ins1(t, 5, 2, 100);
  ins1(t, 6, 2, 100);
  hold(t, 5, 0);
  hold(t, 6, 0);
  hold(t, 3, 0); /* 2 is unheld but rigid: everything under it is held */
  char *before = snapshot(t);
  dg_changes_t *c = dg_changes_create();
  for (int m = DG_SPREAD_PROPORTIONAL; m <= DG_SPREAD_REPEAT_LEAVES; m++)
    assert_int_equal(set_mode(t, 1, 0, m == DG_SPREAD_PERCENT ? DG_PERCENT_SCALE : 1000,
                              (dg_spread_mode_t)m, c),
                     DG_ECONFLICT);
  assert_int_equal(set_mode(t, 2, 0, 7, DG_SPREAD_PROPORTIONAL, c), DG_ECONFLICT);
  assert_int_equal(dg_changes_count(c), 0);
  char *after = snapshot(t);
  assert_string_equal(before, after);
  free(after);
  /* writing the current value places nothing and succeeds */
  assert_int_equal(set_mode(t, 1, 0, 500, DG_SPREAD_PROPORTIONAL, c), 0);
  assert_int_equal(dg_changes_count(c), 0);
  /* release one: it absorbs everything */
  assert_int_equal(dg_etable_hold(t, 5, 0, false, NULL), 0);
  set_ok(t, 1, 0, 1000, DG_SPREAD_PROPORTIONAL);
  assert_int_equal(num(t, 5, 0), 600);
  assert_int_equal(num(t, 2, 0), 700);
  free(before);
  dg_changes_destroy(c);
  dg_etable_destroy(t);
}

/* 10 -> {1H -> {2, 3, 4}, 11}: a leaf written under a held parent. */
static void test_write_below_held_parent(void **s) {
  (void)s;
  dg_etable_t *t = mk1(2);
  ins1(t, 10, NONE, 0);
  ins1(t, 1, 10, 0);
  ins1(t, 11, 10, 50);
  ins1(t, 2, 1, 100);
  ins1(t, 3, 1, 200);
  ins1(t, 4, 1, 300);
  hold(t, 1, 0);
  dg_changes_t *c = dg_changes_create();
  assert_int_equal(set_mode(t, 2, 0, 160, DG_SPREAD_PROPORTIONAL, c), 0);
  /* -0.60 over 3 (200) and 4 (300): 176, 264; 1 and 10 unchanged */
  assert_int_equal(dg_changes_count(c), 3);
  chg_is(c, 0, 2, 0, 100, 160);
  chg_is(c, 1, 3, 0, 200, 176);
  chg_is(c, 2, 4, 0, 300, 264);
  assert_int_equal(num(t, 1, 0), 600);
  assert_int_equal(num(t, 10, 0), 650);
  dg_changes_destroy(c);
  dg_etable_destroy(t);
}

/* 1H -> {2 -> {5, 6}, 3}: the offset goes to the siblings at every level of
 * the path, proportionally to their values, in one largest-remainder round. */
static void test_write_below_held_deep(void **s) {
  (void)s;
  dg_etable_t *t = mk1(2);
  ins1(t, 1, NONE, 0);
  ins1(t, 2, 1, 0);
  ins1(t, 3, 1, 400);
  ins1(t, 5, 2, 100);
  ins1(t, 6, 2, 300);
  hold(t, 1, 0);
  dg_changes_t *c = dg_changes_create();
  assert_int_equal(set_mode(t, 5, 0, 200, DG_SPREAD_PROPORTIONAL, c), 0);
  /* -1.00 over 6 (300) and 3 (400): 600*3/7 = 257.14, 600*4/7 = 342.86 */
  assert_int_equal(dg_changes_count(c), 4);
  chg_is(c, 0, 5, 0, 100, 200);
  chg_is(c, 1, 3, 0, 400, 343);
  chg_is(c, 2, 6, 0, 300, 257);
  chg_is(c, 3, 2, 0, 400, 457);
  assert_int_equal(num(t, 1, 0), 800);
  /* with 3 held as well only 6 absorbs */
  hold(t, 3, 0);
  set_ok(t, 5, 0, 300, DG_SPREAD_PROPORTIONAL);
  assert_int_equal(num(t, 6, 0), 157);
  assert_int_equal(num(t, 2, 0), 457);
  assert_int_equal(num(t, 1, 0), 800);
  /* nothing left to absorb: conflict, nothing changed */
  hold(t, 6, 0);
  char *before = snapshot(t);
  dg_changes_clear(c);
  assert_int_equal(set_mode(t, 5, 0, 301, DG_SPREAD_PROPORTIONAL, c), DG_ECONFLICT);
  assert_int_equal(dg_changes_count(c), 0);
  char *after = snapshot(t);
  assert_string_equal(before, after);
  free(before);
  free(after);
  /* a parent written below a held ancestor: spread down, offset beside */
  assert_int_equal(dg_etable_hold(t, 3, 0, false, NULL), 0);
  assert_int_equal(dg_etable_hold(t, 6, 0, false, NULL), 0);
  set_ok(t, 2, 0, 500, DG_SPREAD_PROPORTIONAL); /* 5:300, 6:157 -> 328.23, 171.77 */
  assert_int_equal(num(t, 5, 0) + num(t, 6, 0), 500);
  assert_int_equal(num(t, 5, 0), 328);
  assert_int_equal(num(t, 3, 0), 300);
  assert_int_equal(num(t, 1, 0), 800);
  dg_changes_destroy(c);
  dg_etable_destroy(t);
}

/* Two held ancestors: the nearest one binds; the offset stays beneath it. */
static void test_nearest_held_ancestor(void **s) {
  (void)s;
  dg_etable_t *t = mk1(0);
  ins1(t, 1, NONE, 0);
  ins1(t, 2, 1, 0);
  ins1(t, 9, 1, 10);
  ins1(t, 3, 2, 5);
  ins1(t, 4, 2, 5);
  hold(t, 1, 0);
  hold(t, 2, 0);
  set_ok(t, 3, 0, 8, DG_SPREAD_PROPORTIONAL);
  assert_int_equal(num(t, 4, 0), 2);
  assert_int_equal(num(t, 9, 0), 10);
  assert_int_equal(num(t, 2, 0), 10);
  /* a rigid sibling (all held below) is not a candidate either */
  ins1(t, 5, 2, 0);
  ins1(t, 6, 5, 0);
  hold(t, 6, 0);
  set_ok(t, 3, 0, 4, DG_SPREAD_PROPORTIONAL);
  assert_int_equal(num(t, 4, 0), 6);
  assert_int_equal(num(t, 6, 0), 0);
  dg_etable_destroy(t);
}

/* Σ of the candidates 0: the offset is spread equally. */
static void test_below_held_zero_siblings(void **s) {
  (void)s;
  dg_etable_t *t = mk1(2);
  ins1(t, 1, NONE, 0);
  ins1(t, 2, 1, 0);
  ins1(t, 3, 1, 0);
  ins1(t, 4, 1, 0);
  hold(t, 1, 0);
  set_ok(t, 2, 0, 1000, DG_SPREAD_PROPORTIONAL);
  assert_int_equal(num(t, 3, 0), -500);
  assert_int_equal(num(t, 4, 0), -500);
  set_ok(t, 2, 0, 1001, DG_SPREAD_PROPORTIONAL); /* -0.01 over -5,-5 proportionally: -1 mirrored, tie -> id 3 */
  assert_int_equal(num(t, 3, 0), -501);
  assert_int_equal(num(t, 4, 0), -500);
  dg_etable_destroy(t);
}

static void test_holds_in_savepoints(void **s) {
  (void)s;
  dg_etable_t *t = mk1(2);
  ins1(t, 1, NONE, 0);
  ins1(t, 2, 1, 100);
  ins1(t, 3, 1, 100);
  char *before = snapshot(t);
  dg_emark_t m = dg_etable_savepoint(t);
  hold(t, 2, 0);
  set_ok(t, 1, 0, 500, DG_SPREAD_PROPORTIONAL);
  assert_int_equal(num(t, 3, 0), 400);
  assert_int_equal(dg_etable_delete(t, 2, false, NULL), 0); /* the hold goes with the row */
  assert_int_equal(dg_etable_rollback(t, m), 0);
  char *after = snapshot(t);
  assert_string_equal(before, after);
  bool held = true;
  assert_int_equal(dg_etable_is_held(t, 2, 0, &held), 0);
  assert_false(held);
  /* and a release rolled back comes back held */
  hold(t, 3, 0);
  m = dg_etable_savepoint(t);
  assert_int_equal(dg_etable_hold(t, 3, 0, false, NULL), 0);
  assert_int_equal(dg_etable_delete(t, 1, true, NULL), 0);
  assert_int_equal(dg_etable_rollback(t, m), 0);
  assert_int_equal(dg_etable_is_held(t, 3, 0, &held), 0);
  assert_true(held);
  assert_int_equal(dg_etable_verify(t), 0);
  free(before);
  free(after);
  dg_etable_destroy(t);
}

/* Holds are per column: a hold in column 1 does not bind column 0. */
static void test_holds_per_column(void **s) {
  (void)s;
  uint8_t sc[2] = {2, 2};
  dg_etable_t *t = mk_table(2, sc, 0);
  int64_t v[2] = {100, 100};
  int64_t z[2] = {0, 0};
  insn(t, 1, NONE, z);
  insn(t, 2, 1, v);
  insn(t, 3, 1, v);
  hold(t, 2, 1);
  set_ok(t, 1, 0, 1000, DG_SPREAD_PROPORTIONAL);
  assert_int_equal(num(t, 2, 0), 500);
  set_ok(t, 1, 1, 1000, DG_SPREAD_PROPORTIONAL);
  assert_int_equal(num(t, 2, 1), 100);
  assert_int_equal(num(t, 3, 1), 900);
  dg_etable_destroy(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_held_sibling_keeps),
      cmocka_unit_test(test_holds_two_levels),
      cmocka_unit_test(test_all_held_conflict),
      cmocka_unit_test(test_write_below_held_parent),
      cmocka_unit_test(test_write_below_held_deep),
      cmocka_unit_test(test_nearest_held_ancestor),
      cmocka_unit_test(test_below_held_zero_siblings),
      cmocka_unit_test(test_holds_in_savepoints),
      cmocka_unit_test(test_holds_per_column),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
