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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_add_has_remove),
      cmocka_unit_test(test_random_against_reference),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
