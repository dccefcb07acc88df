/*
 * test_engine_spread.c -- writing number cells: roll-up from leaves, every
 * spread mode, the largest-remainder rule to the last cent (the issue's
 * exact cases), signs, scales 0 and 6, depth 20, 100,000 children, overflow
 * and compare-and-set leaving everything untouched.
 */
#include "test_engine_util.h"

/* parent 1 with children 2,3,4 of the given values (column 0, scale 2). */
static dg_etable_t *three(int64_t a, int64_t b, int64_t c) {
  dg_etable_t *t = mk1(2);
  ins1(t, 1, NONE, 0);
  ins1(t, 2, 1, a);
  ins1(t, 3, 1, b);
  ins1(t, 4, 1, c);
  assert_int_equal(num(t, 1, 0), a + b + c);
  return t;
}

static void kids_are(dg_etable_t *t, int64_t p, int64_t a, int64_t b, int64_t c) {
  assert_int_equal(num(t, 2, 0), a);
  assert_int_equal(num(t, 3, 0), b);
  assert_int_equal(num(t, 4, 0), c);
  assert_int_equal(num(t, 1, 0), p);
  assert_int_equal(dg_etable_verify(t), 0);
}

static void test_ten_over_three_zeros(void **s) {
  (void)s;
  dg_etable_t *t = three(0, 0, 0);
  set_ok(t, 1, 0, 1000, DG_SPREAD_PROPORTIONAL);
  kids_are(t, 1000, 334, 333, 333);
  dg_etable_destroy(t);
}

static void test_one_over_ones(void **s) {
  (void)s;
  dg_etable_t *t = three(100, 100, 100);
  set_ok(t, 1, 0, 100, DG_SPREAD_PROPORTIONAL);
  kids_are(t, 100, 34, 33, 33);
  dg_etable_destroy(t);
  t = three(1, 1, 1); /* 0.01 each: same proportions */
  set_ok(t, 1, 0, 100, DG_SPREAD_PROPORTIONAL);
  kids_are(t, 100, 34, 33, 33);
  dg_etable_destroy(t);
}

static void test_negative_mirror(void **s) {
  (void)s;
  dg_etable_t *t = three(0, 0, 0);
  set_ok(t, 1, 0, -1000, DG_SPREAD_PROPORTIONAL);
  kids_are(t, -1000, -334, -333, -333);
  set_ok(t, 1, 0, -100, DG_SPREAD_PROPORTIONAL); /* proportional from -3.34,-3.33,-3.33 */
  /* quotas -33.4, -33.3, -33.3 (units) mirrored: 33.4,33.3,33.3 -> 33,33,33 + 1 to id 2 */
  kids_are(t, -100, -34, -33, -33);
  dg_etable_destroy(t);
}

static void test_negative_children(void **s) {
  (void)s;
  dg_etable_t *t = three(-100, -200, -300);
  /* 10.00 over -1,-2,-3: quotas 166.67, 333.33, 500 -> 167, 333, 500 */
  set_ok(t, 1, 0, 1000, DG_SPREAD_PROPORTIONAL);
  kids_are(t, 1000, 167, 333, 500);
  dg_etable_destroy(t);
}

static void test_mixed_sign(void **s) {
  (void)s;
  dg_etable_t *t = mk1(2);
  ins1(t, 1, NONE, 0);
  ins1(t, 2, 1, 300);
  ins1(t, 3, 1, -100);
  /* 1.01 over 3,-1 (sum 2): quotas 151.5, -50.5 -> floors 151,-51, one unit,
   * tie .5/.5 -> lower id: 152, -51 */
  set_ok(t, 1, 0, 101, DG_SPREAD_PROPORTIONAL);
  assert_int_equal(num(t, 2, 0), 152);
  assert_int_equal(num(t, 3, 0), -51);
  /* and to -1.01: mirror -> -152, 51 */
  ins1(t, 10, NONE, 0);
  ins1(t, 11, 10, 300);
  ins1(t, 12, 10, -100);
  set_ok(t, 10, 0, -101, DG_SPREAD_PROPORTIONAL);
  assert_int_equal(num(t, 11, 0), -152);
  assert_int_equal(num(t, 12, 0), 51);
  dg_etable_destroy(t);
}

static void test_cancelling(void **s) {
  (void)s;
  dg_etable_t *t = three(500, -500, 0);
  /* Σ = 0: the delta 10.00 is spread equally: +3.34, +3.33, +3.33 */
  set_ok(t, 1, 0, 1000, DG_SPREAD_PROPORTIONAL);
  kids_are(t, 1000, 834, -167, 333);
  dg_etable_destroy(t);
}

static void test_leaf_rollup_and_order(void **s) {
  (void)s;
  dg_etable_t *t = mk1(2);
  ins1(t, 1, NONE, 0);
  ins1(t, 2, 1, 0);
  ins1(t, 3, 2, 100);
  ins1(t, 4, 3, 100);
  ins1(t, 5, 3, 50);
  assert_int_equal(num(t, 1, 0), 150);
  dg_changes_t *c = dg_changes_create();
  assert_int_equal(set_mode(t, 5, 0, 75, DG_SPREAD_PROPORTIONAL, c), 0);
  assert_int_equal(dg_changes_count(c), 4);
  chg_is(c, 0, 5, 0, 50, 75);
  chg_is(c, 1, 3, 0, 150, 175);
  chg_is(c, 2, 2, 0, 150, 175);
  chg_is(c, 3, 1, 0, 150, 175);
  /* Parent write: the cell, its subtree in pre-order, then ancestors. */
  dg_changes_clear(c);
  assert_int_equal(set_mode(t, 3, 0, 350, DG_SPREAD_PROPORTIONAL, c), 0);
  assert_int_equal(dg_changes_count(c), 5);
  chg_is(c, 0, 3, 0, 175, 350);
  chg_is(c, 1, 4, 0, 100, 200);
  chg_is(c, 2, 5, 0, 75, 150);
  chg_is(c, 3, 2, 0, 175, 350);
  chg_is(c, 4, 1, 0, 175, 350);
  /* The current value: nothing. */
  dg_changes_clear(c);
  assert_int_equal(set_mode(t, 3, 0, 350, DG_SPREAD_PROPORTIONAL, c), 0);
  assert_int_equal(dg_changes_count(c), 0);
  dg_changes_destroy(c);
  dg_etable_destroy(t);
}

static void test_equal(void **s) {
  (void)s;
  dg_etable_t *t = three(100, 200, 300);
  set_ok(t, 1, 0, 1000, DG_SPREAD_EQUAL);
  kids_are(t, 1000, 334, 333, 333);
  /* equal recurses: child 2 gets two children, then equal again */
  ins1(t, 20, 2, 0);
  ins1(t, 21, 2, 0);
  set_ok(t, 1, 0, 600, DG_SPREAD_EQUAL);
  assert_int_equal(num(t, 2, 0), 200);
  assert_int_equal(num(t, 20, 0), 100);
  assert_int_equal(num(t, 21, 0), 100);
  /* same total, unequal: equal still redistributes */
  set_ok(t, 20, 0, 150, DG_SPREAD_PROPORTIONAL);
  set_ok(t, 1, 0, 650, DG_SPREAD_EQUAL);
  assert_int_equal(num(t, 20, 0), 109); /* 2 gets 217 (216.67, lower id), 108.5 -> 109 */
  assert_int_equal(num(t, 21, 0), 108);
  assert_int_equal(num(t, 3, 0), 217);
  assert_int_equal(num(t, 4, 0), 216);
  dg_etable_destroy(t);
}

static void test_add(void **s) {
  (void)s;
  dg_etable_t *t = three(100, 100, 100);
  set_ok(t, 1, 0, 100, DG_SPREAD_ADD);
  kids_are(t, 400, 134, 133, 133);
  set_ok(t, 3, 0, -33, DG_SPREAD_ADD); /* add on a leaf */
  kids_are(t, 367, 134, 100, 133);
  dg_etable_destroy(t);
}

static void test_percent(void **s) {
  (void)s;
  dg_etable_t *t = three(5000, 3000, 2000);
  set_ok(t, 1, 0, 5 * DG_PERCENT_SCALE, DG_SPREAD_PERCENT);
  kids_are(t, 10500, 5250, 3150, 2100);
  set_ok(t, 1, 0, -125 * DG_PERCENT_SCALE / 10, DG_SPREAD_PERCENT); /* -12.5 % */
  /* 105.00 * 0.875 = 91.875 -> 91.88; children 45.9375, 27.5625, 18.375 scaled
   * to the rounded total: quotas 45.94..., 27.56..., 18.37... */
  assert_int_equal(num(t, 1, 0), 9188);
  assert_int_equal(num(t, 2, 0) + num(t, 3, 0) + num(t, 4, 0), 9188);
  assert_int_equal(num(t, 2, 0), 4594);
  assert_int_equal(num(t, 3, 0), 2756);
  assert_int_equal(num(t, 4, 0), 1838);
  dg_etable_destroy(t);
  /* 0.03 + 50 % = 0.045 -> 0.05 (half away); 5/3 each -> 2, 2, 1 */
  t = three(1, 1, 1);
  set_ok(t, 1, 0, 50 * DG_PERCENT_SCALE, DG_SPREAD_PERCENT);
  kids_are(t, 5, 2, 2, 1);
  dg_etable_destroy(t);
  /* Cancelling children scale too: +5.00, -5.00 at +10 % -> 5.50, -5.50 */
  t = three(500, -500, 0);
  set_ok(t, 1, 0, 10 * DG_PERCENT_SCALE, DG_SPREAD_PERCENT);
  kids_are(t, 0, 550, -550, 0);
  /* a negative percentage on a negative leaf, rounding half away from zero */
  set_ok(t, 3, 0, -1 * DG_PERCENT_SCALE, DG_SPREAD_PERCENT); /* -5.50 * 0.99 = -5.445 -> -5.45 */
  assert_int_equal(num(t, 3, 0), -545);
  dg_etable_destroy(t);
}

static void test_repeat_leaves(void **s) {
  (void)s;
  dg_etable_t *t = mk1(2);
  ins1(t, 1, NONE, 0);
  ins1(t, 2, 1, 0);
  ins1(t, 3, 1, 0);
  ins1(t, 4, 2, 10);
  ins1(t, 5, 2, 20);
  ins1(t, 6, 3, 30);
  dg_changes_t *c = dg_changes_create();
  assert_int_equal(set_mode(t, 1, 0, 150, DG_SPREAD_REPEAT_LEAVES, c), 0);
  assert_int_equal(num(t, 4, 0), 150);
  assert_int_equal(num(t, 5, 0), 150);
  assert_int_equal(num(t, 6, 0), 150);
  assert_int_equal(num(t, 2, 0), 300);
  assert_int_equal(num(t, 3, 0), 150);
  assert_int_equal(num(t, 1, 0), 450);
  /* pre-order: 1, 2, 4, 5, 3, 6 */
  assert_int_equal(dg_changes_count(c), 6);
  chg_is(c, 0, 1, 0, 60, 450);
  chg_is(c, 1, 2, 0, 30, 300);
  chg_is(c, 2, 4, 0, 10, 150);
  chg_is(c, 3, 5, 0, 20, 150);
  chg_is(c, 4, 3, 0, 30, 150);
  chg_is(c, 5, 6, 0, 30, 150);
  dg_changes_destroy(c);
  dg_etable_destroy(t);
}

static void test_by_column(void **s) {
  (void)s;
  uint8_t sc[2] = {2, 0};
  dg_etable_t *t = mk_table(2, sc, 0);
  int64_t r[2] = {0, 0};
  insn(t, 1, NONE, r);
  int64_t a[2] = {0, 10}, b[2] = {0, 30}, c[2] = {0, 60};
  insn(t, 2, 1, a);
  insn(t, 3, 1, b);
  insn(t, 4, 1, c);
  set_by(t, 1, 0, 20000, 1);
  assert_int_equal(num(t, 2, 0), 2000);
  assert_int_equal(num(t, 3, 0), 6000);
  assert_int_equal(num(t, 4, 0), 12000);
  /* Σ reference 0 -> equal */
  int64_t z[2] = {0, 0};
  insn(t, 10, NONE, z);
  insn(t, 11, 10, z);
  insn(t, 12, 10, z);
  insn(t, 13, 10, z);
  set_by(t, 10, 0, 1000, 1);
  assert_int_equal(num(t, 11, 0), 334);
  assert_int_equal(num(t, 12, 0), 333);
  assert_int_equal(num(t, 13, 0), 333);
  dg_eset_t bad = {.mode = DG_SPREAD_BY, .by_col = 2};
  assert_int_equal(dg_etable_set(t, 10, 0, 5, &bad, NULL), DG_EINVAL);
  dg_etable_destroy(t);
}

static void test_scale0_and_scale6(void **s) {
  (void)s;
  dg_etable_t *t = mk1(0);
  ins1(t, 1, NONE, 0);
  for (int i = 2; i <= 4; i++) ins1(t, i, 1, 0);
  set_ok(t, 1, 0, 10, DG_SPREAD_PROPORTIONAL);
  kids_are(t, 10, 4, 3, 3);
  set_ok(t, 1, 0, 999999999999999999, DG_SPREAD_PROPORTIONAL);
  /* quotas .4, .3, .3 of it: floors ...999, ...999, ...999 and the two units
   * go to the larger remainders (.7, .7 over .6) */
  kids_are(t, 999999999999999999, 399999999999999999, 300000000000000000, 300000000000000000);
  dg_etable_destroy(t);
  t = mk1(6);
  ins1(t, 1, NONE, 0);
  for (int i = 2; i <= 4; i++) ins1(t, i, 1, 0);
  set_ok(t, 1, 0, 1000000, DG_SPREAD_PROPORTIONAL); /* 1.000000 */
  kids_are(t, 1000000, 333334, 333333, 333333);
  set_ok(t, 1, 0, -1, DG_SPREAD_PROPORTIONAL); /* -0.000001 */
  kids_are(t, -1, -1, 0, 0);
  dg_etable_destroy(t);
}

/* A chain 1 -> 2 -> ... -> 20 (depth 20), each level also holding a leaf
 * sibling 101..119. */
static void test_depth20(void **s) {
  (void)s;
  dg_etable_t *t = mk1(2);
  ins1(t, 1, NONE, 0);
  for (int d = 2; d <= 20; d++) {
    ins1(t, d, d - 1, 100);
    ins1(t, 100 + d - 1, d - 1, 100);
  }
  /* chain leaf 20 = 1.00, each level adds a 1.00 sibling: node d holds 20-d+... */
  assert_int_equal(num(t, 20, 0), 100);
  assert_int_equal(num(t, 1, 0), 100 * 20);
  dg_changes_t *c = dg_changes_create();
  assert_int_equal(set_mode(t, 20, 0, 1100, DG_SPREAD_PROPORTIONAL, c), 0);
  assert_int_equal(dg_changes_count(c), 20); /* the leaf and 19 ancestors */
  for (int d = 19; d >= 1; d--) chg_is(c, (size_t)(20 - d), d, 0, 100 * (21 - d), 100 * (21 - d) + 1000);
  /* Spread the root: 30.00 over 20 + 10 ... down all 20 levels. */
  dg_changes_clear(c);
  assert_int_equal(set_mode(t, 1, 0, 6000, DG_SPREAD_PROPORTIONAL, c), 0);
  assert_int_equal(num(t, 1, 0), 6000);
  assert_int_equal(dg_etable_verify(t), 0);
  int64_t sum = 0;
  for (int d = 1; d <= 19; d++) sum += num(t, 100 + d, 0);
  assert_int_equal(sum + num(t, 20, 0), 6000);
  dg_changes_destroy(c);
  dg_etable_destroy(t);
}

static void test_100k_children(void **s) {
  (void)s;
  /* Checking every operation would make 100,000 single inserts quadratic, so
   * this table verifies explicitly; the rows come through the bulk loader in
   * descending id order (the children list must come out sorted). */
  uint8_t sc = 2;
  dg_etable_opts_t o = {.scales = &sc, .nnum = 1, .tag = 7};
  dg_etable_t *t = NULL;
  assert_int_equal(dg_etable_create(&o, &t), 0);
  assert_int_equal(dg_etable_load_begin(t, 100001), 0);
  int64_t zero = 0;
  for (int64_t i = 100001; i >= 2; i--) assert_int_equal(dg_etable_load_row(t, i, 1, &zero, NULL), 0);
  assert_int_equal(dg_etable_load_row(t, 1, NONE, &zero, NULL), 0);
  assert_int_equal(dg_etable_load_finish(t, 0), 0);
  assert_int_equal(dg_etable_verify(t), 0);
  /* and a few single inserts out of order */
  ins1(t, 100003, 1, 0);
  ins1(t, 100002, 1, 0);
  assert_int_equal(dg_etable_delete(t, 100003, false, NULL), 0);
  assert_int_equal(dg_etable_delete(t, 100002, false, NULL), 0);
  dg_changes_t *c = dg_changes_create();
  /* 1,000.01 over 100,000 zeros: one cent each, and one more for the lowest id. */
  assert_int_equal(set_mode(t, 1, 0, 100001, DG_SPREAD_PROPORTIONAL, c), 0);
  assert_int_equal(dg_changes_count(c), 100001);
  assert_int_equal(num(t, 2, 0), 2);
  assert_int_equal(num(t, 3, 0), 1);
  assert_int_equal(num(t, 100001, 0), 1);
  chg_is(c, 1, 2, 0, 0, 2);
  chg_is(c, 100000, 100001, 0, 0, 1);
  assert_int_equal(dg_etable_verify(t), 0);
  /* Proportional with remainders everywhere. */
  set_ok(t, 50000, 0, 5, DG_SPREAD_PROPORTIONAL);
  set_ok(t, 1, 0, 33333, DG_SPREAD_PROPORTIONAL);
  int64_t sum = 0;
  for (int64_t i = 2; i <= 100001; i++) sum += num(t, i, 0);
  assert_int_equal(sum, 33333);
  /* quotas 33333*w/100005: w=5 -> 1.66657, w=2 (id 2) -> 0.66663, w=1 -> 0.33331;
   * 33332 units after the floors: id 2, id 50000, then the lowest ids. */
  assert_int_equal(num(t, 50000, 0), 2);
  assert_int_equal(num(t, 2, 0), 1);
  assert_int_equal(num(t, 3, 0), 1);
  assert_int_equal(num(t, 33332, 0), 1);
  assert_int_equal(num(t, 33333, 0), 0);
  assert_int_equal(dg_etable_verify(t), 0);
  set_ok(t, 1, 0, -77777, DG_SPREAD_EQUAL);
  assert_int_equal(dg_etable_verify(t), 0);
  dg_changes_destroy(c);
  dg_etable_destroy(t);
}

static void test_overflow_changes_nothing(void **s) {
  (void)s;
  dg_etable_t *t = mk1(2);
  ins1(t, 1, NONE, 0);
  ins1(t, 2, 1, 900000000000000000);
  ins1(t, 3, 1, 0);
  ins1(t, 4, 3, 0);
  char *before = snapshot(t);
  dg_changes_t *c = dg_changes_create();
  assert_int_equal(set_mode(t, 4, 0, 5, DG_SPREAD_PROPORTIONAL, c), 0);
  size_t n0 = dg_changes_count(c);
  free(before);
  before = snapshot(t);
  /* the leaf is in range, the root would not be */
  assert_int_equal(set_mode(t, 4, 0, 100000000000000000, DG_SPREAD_PROPORTIONAL, c), DG_EOVERFLOW);
  assert_int_equal(set_mode(t, 4, 0, DG_DECIMAL_LIMIT, DG_SPREAD_PROPORTIONAL, c), DG_EOVERFLOW);
  assert_int_equal(set_mode(t, 4, 0, INT64_MAX, DG_SPREAD_ADD, c), DG_EOVERFLOW);
  assert_int_equal(set_mode(t, 2, 0, 20 * DG_PERCENT_SCALE, DG_SPREAD_PERCENT, c), DG_EOVERFLOW);
  assert_int_equal(dg_changes_count(c), n0);
  char *mid = snapshot(t);
  assert_string_equal(before, mid);
  free(mid);
  /* a spread whose mixed-sign children would leave the range */
  ins1(t, 10, NONE, 0);
  ins1(t, 11, 10, 500000000000000000);
  ins1(t, 12, 10, -400000000000000000);
  free(before);
  before = snapshot(t);
  n0 = dg_changes_count(c);
  assert_int_equal(set_mode(t, 10, 0, 200000000000000000, DG_SPREAD_PROPORTIONAL, c), DG_EOVERFLOW);
  assert_int_equal(set_mode(t, 10, 0, 5, DG_SPREAD_REPEAT_LEAVES, c), 0);
  assert_int_equal(set_mode(t, 10, 0, 600000000000000000, DG_SPREAD_REPEAT_LEAVES, c), DG_EOVERFLOW);
  assert_int_equal(dg_changes_count(c), n0 + 3);
  n0 = dg_changes_count(c);
  free(before);
  before = snapshot(t);
  int64_t big = 950000000000000000;
  assert_int_equal(dg_etable_insert(t, 99, 1, &big, NULL, c), DG_EOVERFLOW);
  assert_int_equal(dg_changes_count(c), n0);
  char *after = snapshot(t);
  assert_string_equal(before, after);
  free(after);
  free(before);
  dg_changes_destroy(c);
  dg_etable_destroy(t);
}

static void test_compare_and_set(void **s) {
  (void)s;
  dg_etable_t *t = three(100, 200, 300);
  char *before = snapshot(t);
  dg_changes_t *c = dg_changes_create();
  dg_eset_t how = {.mode = DG_SPREAD_PROPORTIONAL, .has_expected = true, .expected = 599};
  assert_int_equal(dg_etable_set(t, 1, 0, 1200, &how, c), DG_ECONFLICT);
  assert_int_equal(dg_changes_count(c), 0);
  char *after = snapshot(t);
  assert_string_equal(before, after);
  how.expected = 600;
  assert_int_equal(dg_etable_set(t, 1, 0, 1200, &how, c), 0);
  kids_are(t, 1200, 200, 400, 600);
  free(before);
  free(after);
  dg_changes_destroy(c);
  dg_etable_destroy(t);
}

static void test_bad_arguments(void **s) {
  (void)s;
  dg_etable_t *t = three(1, 2, 3);
  assert_int_equal(set_mode(t, 99, 0, 1, DG_SPREAD_PROPORTIONAL, NULL), DG_ENOTFOUND);
  assert_int_equal(set_mode(t, 1, 1, 1, DG_SPREAD_PROPORTIONAL, NULL), DG_EINVAL);
  assert_int_equal(set_mode(t, 1, 0, 1, (dg_spread_mode_t)42, NULL), DG_EINVAL);
  assert_int_equal(set_mode(t, 1, 0, -DG_DECIMAL_LIMIT, DG_SPREAD_PROPORTIONAL, NULL), DG_EOVERFLOW);
  uint8_t bad = 7;
  dg_etable_opts_t o = {.scales = &bad, .nnum = 1};
  dg_etable_t *u = NULL;
  assert_int_equal(dg_etable_create(&o, &u), DG_EINVAL);
  assert_null(u);
  dg_etable_destroy(t);
}

/* dg_etable_set_leaves (a revert of a spread): 1 -> {2, 3}, 2 -> {4, 5, 6},
 * 3 -> {7, 8}; cents. */
static dg_etable_t *revert_tree(void) {
  dg_etable_t *t = mk1(2);
  ins1(t, 1, NONE, 0);
  ins1(t, 2, 1, 0);
  ins1(t, 3, 1, 0);
  ins1(t, 4, 2, 100);
  ins1(t, 5, 2, 200);
  ins1(t, 6, 2, 333);
  ins1(t, 7, 3, 1);
  ins1(t, 8, 3, 0);
  return t;
}

static void test_set_leaves_reverts_a_spread(void **s) {
  (void)s;
  dg_etable_t *t = revert_tree();
  assert_int_equal(num(t, 1, 0), 634);
  char *before = snapshot(t);
  /* 6.34 -> 10.00 over the leaves, largest remainder, each to the cent */
  set_ok(t, 1, 0, 1000, DG_SPREAD_PROPORTIONAL);
  assert_int_equal(num(t, 4, 0), 158);
  assert_int_equal(num(t, 5, 0), 315);
  assert_int_equal(num(t, 6, 0), 525);
  assert_int_equal(num(t, 7, 0), 2);
  assert_int_equal(num(t, 8, 0), 0);
  const int64_t ids[] = {4, 5, 6, 7, 8};
  const int64_t back[] = {100, 200, 333, 1, 0};
  dg_changes_t *c = dg_changes_create();
  assert_int_equal(dg_etable_set_leaves(t, 0, ids, back, 5, c, NULL), 0);
  char *after = snapshot(t);
  assert_string_equal(before, after);
  /* the leaves that moved, in the order given, then each ancestor once */
  assert_int_equal(dg_changes_count(c), 7);
  chg_is(c, 0, 4, 0, 158, 100);
  chg_is(c, 1, 5, 0, 315, 200);
  chg_is(c, 2, 6, 0, 525, 333);
  chg_is(c, 3, 7, 0, 2, 1);
  chg_is(c, 4, 2, 0, 998, 633);
  chg_is(c, 5, 1, 0, 1000, 634);
  chg_is(c, 6, 3, 0, 2, 1);
  free(before);
  free(after);
  dg_changes_destroy(c);
  dg_etable_destroy(t);
}

static void test_set_leaves_matches_one_by_one(void **s) {
  (void)s;
  dg_etable_t *a = revert_tree(), *b = revert_tree();
  const int64_t ids[] = {8, 4, 7, 6};
  const int64_t v[] = {-1999, 12345, 7, -1};
  for (int i = 0; i < 4; i++) set_ok(a, ids[i], 0, v[i], DG_SPREAD_PROPORTIONAL);
  assert_int_equal(dg_etable_set_leaves(b, 0, ids, v, 4, NULL, NULL), 0);
  char *sa = snapshot(a), *sb = snapshot(b);
  assert_string_equal(sa, sb);
  assert_int_equal(num(b, 1, 0), 12345 + 200 - 1 + 7 - 1999);
  free(sa);
  free(sb);
  dg_etable_destroy(a);
  dg_etable_destroy(b);
}

static void test_set_leaves_refuses_and_changes_nothing(void **s) {
  (void)s;
  dg_etable_t *t = revert_tree();
  char *before = snapshot(t);
  dg_changes_t *c = dg_changes_create();
  size_t bad = 99;
  const int64_t parent[] = {4, 2}, twice[] = {4, 5, 4}, gone[] = {4, 42}, v[] = {1, 2, 3};
  assert_int_equal(dg_etable_set_leaves(t, 0, parent, v, 2, c, &bad), DG_EINVAL);
  assert_int_equal(bad, 1);
  assert_int_equal(dg_etable_set_leaves(t, 0, twice, v, 3, c, &bad), DG_EINVAL);
  assert_int_equal(bad, 2);
  assert_int_equal(dg_etable_set_leaves(t, 0, gone, v, 2, c, &bad), DG_ENOTFOUND);
  assert_int_equal(bad, 1);
  assert_int_equal(dg_etable_set_leaves(t, 1, gone, v, 1, c, &bad), DG_EINVAL);
  const int64_t huge[] = {DG_DECIMAL_LIMIT - 1, DG_DECIMAL_LIMIT - 1};
  /* each leaf in range, their parent not */
  assert_int_equal(dg_etable_set_leaves(t, 0, twice, huge, 2, c, &bad), DG_EOVERFLOW);
  dg_changes_clear(c);
  char *mid = snapshot(t);
  assert_string_equal(before, mid);
  free(mid);
  hold(t, 7, 0);
  assert_int_equal(dg_etable_set_leaves(t, 0, parent, v, 1, c, NULL), DG_ECONFLICT);
  assert_int_equal(dg_changes_count(c), 0);
  free(before);
  dg_changes_destroy(c);
  dg_etable_destroy(t);
}

static void test_set_leaves_rolls_back(void **s) {
  (void)s;
  dg_etable_t *t = revert_tree();
  char *before = snapshot(t);
  dg_emark_t m = dg_etable_savepoint(t);
  const int64_t ids[] = {5, 8, 6}, v[] = {0, 50, -33};
  assert_int_equal(dg_etable_set_leaves(t, 0, ids, v, 3, NULL, NULL), 0);
  assert_int_equal(num(t, 1, 0), 100 + 0 - 33 + 1 + 50);
  assert_int_equal(dg_etable_rollback(t, m), 0);
  char *after = snapshot(t);
  assert_string_equal(before, after);
  free(before);
  free(after);
  dg_etable_destroy(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ten_over_three_zeros),
      cmocka_unit_test(test_one_over_ones),
      cmocka_unit_test(test_negative_mirror),
      cmocka_unit_test(test_negative_children),
      cmocka_unit_test(test_mixed_sign),
      cmocka_unit_test(test_cancelling),
      cmocka_unit_test(test_leaf_rollup_and_order),
      cmocka_unit_test(test_equal),
      cmocka_unit_test(test_add),
      cmocka_unit_test(test_percent),
      cmocka_unit_test(test_repeat_leaves),
      cmocka_unit_test(test_by_column),
      cmocka_unit_test(test_scale0_and_scale6),
      cmocka_unit_test(test_depth20),
      cmocka_unit_test(test_100k_children),
      cmocka_unit_test(test_overflow_changes_nothing),
      cmocka_unit_test(test_compare_and_set),
      cmocka_unit_test(test_bad_arguments),
      cmocka_unit_test(test_set_leaves_reverts_a_spread),
      cmocka_unit_test(test_set_leaves_matches_one_by_one),
      cmocka_unit_test(test_set_leaves_refuses_and_changes_nothing),
      cmocka_unit_test(test_set_leaves_rolls_back),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
