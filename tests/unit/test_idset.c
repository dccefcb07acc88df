/* test_idset.c -- the row-id hash set against a plain reference array. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "dg/idset.h"

static void test_add_has_remove(void **state) {
  (void)state;
  dg_idset_t s;
  dg_idset_init(&s);
  assert_false(dg_idset_has(&s, 1));
  assert_int_equal(dg_idset_remove(&s, 1), 0);
  assert_int_equal(dg_idset_add(&s, 1), 1);
  assert_int_equal(dg_idset_add(&s, 1), 0);
  assert_true(dg_idset_has(&s, 1));
  assert_int_equal(dg_idset_add(&s, INT64_MIN), 1);
  assert_int_equal(dg_idset_add(&s, INT64_MAX), 1);
  assert_true(dg_idset_has(&s, INT64_MIN));
  assert_int_equal(dg_idset_remove(&s, 1), 1);
  assert_false(dg_idset_has(&s, 1));
  assert_int_equal(s.count, 2);
  dg_idset_dispose(&s);
}

/* Random adds and removes in a small id range, checked against a bitmap;
 * many tombstones exercise the rehash on growth. */
static void test_random_against_reference(void **state) {
  (void)state;
  enum { RANGE = 5000, OPS = 400000 };
  static unsigned char ref[RANGE];
  dg_idset_t s;
  dg_idset_init(&s);
  srand(42);
  size_t count = 0;
  for (int i = 0; i < OPS; i++) {
    int64_t id = (rand() % RANGE) - RANGE / 2;
    unsigned char *r = &ref[id + RANGE / 2];
    if (rand() % 3) {
      assert_int_equal(dg_idset_add(&s, id), !*r);
      count += !*r;
      *r = 1;
    } else {
      assert_int_equal(dg_idset_remove(&s, id), *r);
      count -= *r;
      *r = 0;
    }
    assert_int_equal(s.count, count);
  }
  for (int64_t id = -RANGE / 2; id < RANGE / 2; id++)
    assert_int_equal(dg_idset_has(&s, id), ref[id + RANGE / 2]);
  dg_idset_dispose(&s);
}

/* Runs, strides (the block hash keeps runs together, so strides that are
 * multiples of the block must still scatter), reserve, and tombstones
 * reused: every id found, none extra, the load at most a half. */
static void test_patterns_and_reserve(void **state) {
  (void)state;
  static const int64_t strides[] = {1, 2, 63, 64, 65, 4096, (int64_t)1 << 32};
  for (size_t k = 0; k < sizeof strides / sizeof *strides; k++) {
    dg_idset_t s;
    dg_idset_init(&s);
    if (k % 2) dg_idset_reserve(&s, 20000);
    size_t cap0 = s.cap;
    int64_t base = k % 3 == 0 ? -7 : 1000003;
    for (int64_t i = 0; i < 20000; i++) assert_int_equal(dg_idset_add(&s, base + i * strides[k]), 1);
    if (k % 2) assert_int_equal(s.cap, cap0); /* reserved: no rehash on the way */
    assert_true(s.used * 2 <= s.cap);
    for (int64_t i = 0; i < 20000; i++) {
      assert_true(dg_idset_has(&s, base + i * strides[k]));
      assert_int_equal(dg_idset_add(&s, base + i * strides[k]), 0);
      if (strides[k] > 1) assert_false(dg_idset_has(&s, base + i * strides[k] + 1));
    }
    /* remove every other one, add them back: the tombstones are reused */
    for (int64_t i = 0; i < 20000; i += 2) assert_int_equal(dg_idset_remove(&s, base + i * strides[k]), 1);
    size_t used = s.used;
    for (int64_t i = 0; i < 20000; i += 2) assert_int_equal(dg_idset_add(&s, base + i * strides[k]), 1);
    assert_int_equal(s.used, used);
    assert_int_equal(s.count, 20000);
    dg_idset_dispose(&s);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_add_has_remove),
      cmocka_unit_test(test_random_against_reference),
      cmocka_unit_test(test_patterns_and_reserve),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
