/* test_ratelimit.c -- per-caller token buckets (src/auth/ratelimit.c): the
 * burst, the wait it announces, the bounded table, and threads hammering it.
 *
 * Worker threads only count; the main thread asserts (cmocka's assertions
 * must not run on other threads). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "dg/ratelimit.h"

static void test_no_limit(void **state) {
  (void)state;
  dg_ratelimit_t *rl = dg_ratelimit_create(0, 0);
  for (int i = 0; i < 10000; i++) assert_int_equal(dg_ratelimit_take(rl, "k"), 0);
  dg_ratelimit_destroy(rl);
  assert_int_equal(dg_ratelimit_take(NULL, "k"), 0);
}

/* A burst of 5, then a wait: at 1 request in 1000 s the wait announced is
 * close to 1000 s, and whole seconds, at least 1. */
static void test_burst_then_wait(void **state) {
  (void)state;
  dg_ratelimit_t *rl = dg_ratelimit_create(0.001, 5);
  for (int i = 0; i < 5; i++) assert_int_equal(dg_ratelimit_take(rl, "alice"), 0);
  int wait = dg_ratelimit_take(rl, "alice");
  assert_in_range(wait, 990, 1000);
  /* Callers are independent. */
  assert_int_equal(dg_ratelimit_take(rl, "bob"), 0);
  dg_ratelimit_destroy(rl);

  /* No burst given: the rate, at least 1. At 0.5/s the next token is 2 s
   * away (a little less once time has passed). */
  rl = dg_ratelimit_create(0.5, 0);
  assert_int_equal(dg_ratelimit_take(rl, "c"), 0);
  assert_in_range(dg_ratelimit_take(rl, "c"), 1, 2);
  dg_ratelimit_destroy(rl);
  rl = dg_ratelimit_create(0.001 * 20, 0); /* burst 1 */
  assert_int_equal(dg_ratelimit_take(rl, "d"), 0);
  assert_in_range(dg_ratelimit_take(rl, "d"), 40, 50);
  dg_ratelimit_destroy(rl);
}

/* Far more distinct callers than the table holds: memory stays bounded and
 * a caller new to the table always starts with a full bucket. */
static void test_table_bounded(void **state) {
  (void)state;
  dg_ratelimit_t *rl = dg_ratelimit_create(0.001, 1);
  char name[32];
  for (int i = 0; i < 50000; i++) {
    snprintf(name, sizeof name, "caller-%d", i);
    assert_int_equal(dg_ratelimit_take(rl, name), 0);
  }
  dg_ratelimit_destroy(rl);
}

/* ---- threads ------------------------------------------------------------- */

enum { THREADS = 8, TAKES = 2000, BURST = 1000 };

typedef struct {
  dg_ratelimit_t *rl;
  int index;
  atomic_int *allowed;     /* takes of the shared caller that passed      */
  atomic_int *bad_wait;    /* refusals announcing a wait under 1 s        */
  atomic_int *fresh_refused; /* first takes of new callers that failed    */
} arg_t;

static void *shared_main(void *p) {
  arg_t *a = p;
  for (int i = 0; i < TAKES; i++) {
    int w = dg_ratelimit_take(a->rl, "shared");
    if (w == 0) atomic_fetch_add(a->allowed, 1);
    else if (w < 1) atomic_fetch_add(a->bad_wait, 1);
  }
  return NULL;
}

/* Eight threads take from one caller: exactly the burst passes (the refill
 * at 1 token in 1000 s adds nothing during the test), whatever the
 * interleaving -- a lost update under a race would let more through. */
static void test_threads_one_caller(void **state) {
  (void)state;
  dg_ratelimit_t *rl = dg_ratelimit_create(0.001, BURST);
  atomic_int allowed = 0, bad_wait = 0, fresh_refused = 0;
  pthread_t th[THREADS];
  arg_t args[THREADS];
  for (int i = 0; i < THREADS; i++) {
    args[i] = (arg_t){rl, i, &allowed, &bad_wait, &fresh_refused};
    assert_int_equal(pthread_create(&th[i], NULL, shared_main, &args[i]), 0);
  }
  for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
  assert_int_equal(atomic_load(&allowed), BURST);
  assert_int_equal(atomic_load(&bad_wait), 0);
  dg_ratelimit_destroy(rl);
}

static void *many_main(void *p) {
  arg_t *a = p;
  char name[40];
  for (int i = 0; i < TAKES * 4; i++) {
    snprintf(name, sizeof name, "t%d-caller-%d", a->index, i);
    if (dg_ratelimit_take(a->rl, name) != 0) atomic_fetch_add(a->fresh_refused, 1);
    /* The same name again at once: its bucket (burst 1) is empty now,
     * unless another thread's flood evicted it meanwhile. */
    int w = dg_ratelimit_take(a->rl, name);
    if (w != 0 && w < 1) atomic_fetch_add(a->bad_wait, 1);
  }
  return NULL;
}

/* Eight threads flood the table with distinct callers, evicting each
 * other's buckets: every new caller passes its first request. */
static void test_threads_flood(void **state) {
  (void)state;
  dg_ratelimit_t *rl = dg_ratelimit_create(0.001, 1);
  atomic_int allowed = 0, bad_wait = 0, fresh_refused = 0;
  pthread_t th[THREADS];
  arg_t args[THREADS];
  for (int i = 0; i < THREADS; i++) {
    args[i] = (arg_t){rl, i, &allowed, &bad_wait, &fresh_refused};
    assert_int_equal(pthread_create(&th[i], NULL, many_main, &args[i]), 0);
  }
  for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
  assert_int_equal(atomic_load(&fresh_refused), 0);
  assert_int_equal(atomic_load(&bad_wait), 0);
  dg_ratelimit_destroy(rl);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_no_limit),
      cmocka_unit_test(test_burst_then_wait),
      cmocka_unit_test(test_table_bounded),
      cmocka_unit_test(test_threads_one_caller),
      cmocka_unit_test(test_threads_flood),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
