/* test_rowset.c -- the catalog's row-id set (bitmap + outliers) against a
 * reference set, over dense runs, far outliers, negative ids and both
 * extremes of int64. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "dg/idset.h"
#include "dg/rowset.h"

static void test_basics_and_extremes(void **state) {
  (void)state;
  dg_rowset_t s;
  dg_rowset_init(&s);
  assert_false(dg_rowset_has(&s, 1));
  assert_int_equal(dg_rowset_remove(&s, 1), 0);
  assert_int_equal(dg_rowset_add(&s, 1), 1);
  assert_int_equal(dg_rowset_add(&s, 1), 0);
  assert_int_equal(dg_rowset_add(&s, INT64_MIN), 1);
  assert_int_equal(dg_rowset_add(&s, INT64_MAX), 1);
  assert_int_equal(dg_rowset_add(&s, INT64_MAX), 0);
  assert_true(dg_rowset_has(&s, INT64_MIN));
  assert_true(dg_rowset_has(&s, INT64_MAX));
  assert_false(dg_rowset_has(&s, INT64_MAX - 1));
  assert_false(dg_rowset_has(&s, 0));
  assert_int_equal(s.count, 3);
  assert_int_equal(dg_rowset_remove(&s, INT64_MIN), 1);
  assert_int_equal(dg_rowset_remove(&s, 1), 1);
  assert_int_equal(dg_rowset_remove(&s, 1), 0);
  assert_int_equal(s.count, 1);
  dg_rowset_dispose(&s);
}

/* Ten million dense ids (the scale benchmark's shape: leaves first, then
 * the parents below them) stay a bitmap of about 1.25 MB. */
static void test_dense_is_compact(void **state) {
  (void)state;
  dg_rowset_t s;
  dg_rowset_init(&s);
  const int64_t n = 10000000, first_leaf = 10011;
  for (int64_t id = first_leaf; id < first_leaf + n; id++) assert_int_equal(dg_rowset_add(&s, id), 1);
  for (int64_t id = 1; id < first_leaf; id++) assert_int_equal(dg_rowset_add(&s, id), 1);
  assert_int_equal(s.count, (size_t)(n + first_leaf - 1));
  assert_true(dg_rowset_memory(&s) < 3 * 1000 * 1000);
  assert_false(dg_rowset_has(&s, 0));
  assert_true(dg_rowset_has(&s, 1));
  assert_true(dg_rowset_has(&s, n + first_leaf - 1));
  assert_false(dg_rowset_has(&s, n + first_leaf));
  dg_rowset_dispose(&s);
}

/* Random operations mixing a dense window, a far cluster, and ids spread
 * over the whole int64 range, checked against dg_idset_t. */
static void test_random_against_reference(void **state) {
  (void)state;
  dg_rowset_t s;
  dg_idset_t ref;
  dg_rowset_init(&s);
  dg_idset_init(&ref);
  srand(7);
  int64_t seen[4096];
  size_t nseen = 0;
  for (int i = 0; i < 300000; i++) {
    int64_t id;
    switch (rand() % 6) {
      case 0: id = (int64_t)(rand() % 20000) - 5000; break;
      case 1: id = (int64_t)1 << 50 | (rand() % 3000); break;
      case 2: id = (int64_t)(((uint64_t)rand() << 33) ^ ((uint64_t)rand() << 2) ^ (uint64_t)(rand() & 3)); break;
      case 3: id = nseen ? seen[rand() % nseen] : 0; break;
      case 4: id = (int64_t)(rand() % 40) + (rand() % 2 ? INT64_MAX - 39 : INT64_MIN); break;
      default: id = 100000 + i; break; /* a growing run, as max + 1 ids grow */
    }
    if (nseen < 4096) seen[nseen++] = id;
    if (rand() % 3) {
      assert_int_equal(dg_rowset_add(&s, id), dg_idset_add(&ref, id));
    } else {
      assert_int_equal(dg_rowset_remove(&s, id), dg_idset_remove(&ref, id));
    }
    assert_int_equal(s.count, ref.count);
    int64_t probe = seen[rand() % nseen];
    assert_int_equal(dg_rowset_has(&s, probe), dg_idset_has(&ref, probe));
  }
  for (size_t i = 0; i < ref.cap; i++)
    if (ref.state[i] == 1) assert_true(dg_rowset_has(&s, ref.keys[i]));
  for (int64_t id = -6000; id < 16000; id++) assert_int_equal(dg_rowset_has(&s, id), dg_idset_has(&ref, id));
  dg_rowset_dispose(&s);
  dg_idset_dispose(&ref);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_basics_and_extremes),
      cmocka_unit_test(test_dense_is_compact),
      cmocka_unit_test(test_random_against_reference),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
