/* test_waiters.c -- synchronous-write waiters (src/api/waiters.c): delivery,
 * timeouts, repeated request_ids, shutdown, and threads hammering one table.
 *
 * Worker threads never call cmocka's assertions (they jump back into the
 * main thread's context); they count what went wrong and the main thread
 * asserts the counts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "dg/common.h"
#include "dg/waiters.h"

static void test_deliver_then_wait(void **state) {
  (void)state;
  dg_waiters_t *ws = dg_waiters_create();
  dg_waiter_t w;
  dg_waiters_add(ws, &w, "req-1");
  /* An outcome for another id reaches nobody. */
  assert_int_equal(dg_waiters_deliver(ws, "req-2", "{}", 2), 0);
  /* Delivered before the wait starts: registering first is what makes this safe. */
  assert_int_equal(dg_waiters_deliver(ws, "req-1", "{\"a\":1}xyz", 7), 1);
  assert_int_equal(dg_waiters_wait(ws, &w, 1000), 0);
  assert_int_equal(w.res_len, 7);
  assert_string_equal(w.res, "{\"a\":1}");
  /* A second delivery does not overwrite the first outcome. */
  assert_int_equal(dg_waiters_deliver(ws, "req-1", "{\"b\":2}", 7), 0);
  assert_string_equal(w.res, "{\"a\":1}");
  dg_waiters_remove(ws, &w);
  assert_null(w.res);
  /* Removed: nobody left to deliver to. */
  assert_int_equal(dg_waiters_deliver(ws, "req-1", "{}", 2), 0);
  dg_waiters_destroy(ws);
}

static void test_timeout(void **state) {
  (void)state;
  dg_waiters_t *ws = dg_waiters_create();
  dg_waiter_t w;
  dg_waiters_add(ws, &w, "never");
  int64_t t0 = dg_mono_us();
  assert_int_equal(dg_waiters_wait(ws, &w, 50), DG_ETIMEOUT);
  assert_true(dg_mono_us() - t0 >= 50 * 1000);
  assert_int_equal(w.done, 0);
  assert_null(w.res);
  dg_waiters_remove(ws, &w);
  dg_waiters_destroy(ws);
}

/* A request_id longer than the waiter's buffer is cut, consistently: the
 * delivery under the same (long) id still finds it. */
static void test_long_id(void **state) {
  (void)state;
  char id[400];
  memset(id, 'x', sizeof id - 1);
  id[sizeof id - 1] = '\0';
  dg_waiters_t *ws = dg_waiters_create();
  dg_waiter_t w;
  dg_waiters_add(ws, &w, id);
  assert_int_equal(strlen(w.request_id), sizeof w.request_id - 1);
  dg_waiters_remove(ws, &w);
  dg_waiters_destroy(ws);
}

/* ---- threads ------------------------------------------------------------- */

enum { WAITER_THREADS = 6, PER_THREAD = 400, SAME_ID_THREADS = 4 };

/* A small queue of request_ids that waiters hand to the deliverers, as a
 * request thread XADDs after registering. */
typedef struct {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  char ids[WAITER_THREADS * PER_THREAD][32];
  size_t head, tail;
  int done;
} idq_t;

typedef struct {
  dg_waiters_t *ws;
  idq_t *q;
  int index;
  atomic_int *errors;
  atomic_int *delivered;
} hammer_arg_t;

static void *waiter_main(void *p) {
  hammer_arg_t *a = p;
  for (int i = 0; i < PER_THREAD; i++) {
    char id[32], want[64];
    snprintf(id, sizeof id, "t%d-%d", a->index, i);
    snprintf(want, sizeof want, "{\"request_id\":\"%s\"}", id);
    dg_waiter_t w;
    dg_waiters_add(a->ws, &w, id);
    pthread_mutex_lock(&a->q->lock);
    snprintf(a->q->ids[a->q->tail++], sizeof a->q->ids[0], "%s", id);
    pthread_cond_signal(&a->q->cond);
    pthread_mutex_unlock(&a->q->lock);
    if (dg_waiters_wait(a->ws, &w, 20000) != 0 || w.res == NULL || strcmp(w.res, want) != 0 ||
        w.res_len != strlen(want))
      atomic_fetch_add(a->errors, 1);
    dg_waiters_remove(a->ws, &w);
  }
  return NULL;
}

static void *deliverer_main(void *p) {
  hammer_arg_t *a = p;
  for (;;) {
    char id[32];
    pthread_mutex_lock(&a->q->lock);
    while (a->q->head == a->q->tail && !a->q->done) pthread_cond_wait(&a->q->cond, &a->q->lock);
    if (a->q->head == a->q->tail) {
      pthread_mutex_unlock(&a->q->lock);
      return NULL;
    }
    snprintf(id, sizeof id, "%s", a->q->ids[a->q->head++]);
    pthread_mutex_unlock(&a->q->lock);
    char res[64];
    snprintf(res, sizeof res, "{\"request_id\":\"%s\"}", id);
    /* Outcomes nobody waits for are interleaved, as the reader sees them. */
    dg_waiters_deliver(a->ws, "nobody-waits", "{}", 2);
    int n = dg_waiters_deliver(a->ws, id, res, strlen(res));
    atomic_fetch_add(a->delivered, n);
  }
}

/* Six threads register, hand their id over and wait, while two deliverers
 * answer them in whatever order the queue gives: every waiter gets exactly
 * its own outcome, no delivery is lost or doubled. */
static void test_threads_hammer(void **state) {
  (void)state;
  static idq_t q;
  memset(&q, 0, sizeof q);
  pthread_mutex_init(&q.lock, NULL);
  pthread_cond_init(&q.cond, NULL);
  dg_waiters_t *ws = dg_waiters_create();
  atomic_int errors = 0, delivered = 0;
  hammer_arg_t args[WAITER_THREADS + 2];
  pthread_t th[WAITER_THREADS + 2];
  for (int i = 0; i < WAITER_THREADS + 2; i++) {
    args[i] = (hammer_arg_t){ws, &q, i, &errors, &delivered};
    assert_int_equal(pthread_create(&th[i], NULL, i < WAITER_THREADS ? waiter_main : deliverer_main,
                                    &args[i]), 0);
  }
  for (int i = 0; i < WAITER_THREADS; i++) pthread_join(th[i], NULL);
  pthread_mutex_lock(&q.lock);
  q.done = 1;
  pthread_cond_broadcast(&q.cond);
  pthread_mutex_unlock(&q.lock);
  for (int i = WAITER_THREADS; i < WAITER_THREADS + 2; i++) pthread_join(th[i], NULL);
  assert_int_equal(atomic_load(&errors), 0);
  assert_int_equal(atomic_load(&delivered), WAITER_THREADS * PER_THREAD);
  dg_waiters_destroy(ws);
  pthread_cond_destroy(&q.cond);
  pthread_mutex_destroy(&q.lock);
}

typedef struct {
  dg_waiters_t *ws;
  pthread_barrier_t *registered;
  const char *id;
  int rc;
  char res[32];
} same_arg_t;

static void *same_id_main(void *p) {
  same_arg_t *a = p;
  dg_waiter_t w;
  dg_waiters_add(a->ws, &w, a->id);
  pthread_barrier_wait(a->registered);
  a->rc = dg_waiters_wait(a->ws, &w, 20000);
  snprintf(a->res, sizeof a->res, "%s", w.res ? w.res : "");
  dg_waiters_remove(a->ws, &w);
  return NULL;
}

/* A repeated request_id in flight: one delivery reaches every waiter. */
static void test_same_id_many_threads(void **state) {
  (void)state;
  dg_waiters_t *ws = dg_waiters_create();
  pthread_barrier_t registered;
  pthread_barrier_init(&registered, NULL, SAME_ID_THREADS + 1);
  same_arg_t args[SAME_ID_THREADS];
  pthread_t th[SAME_ID_THREADS];
  for (int i = 0; i < SAME_ID_THREADS; i++) {
    args[i] = (same_arg_t){ws, &registered, "dup", -1, ""};
    assert_int_equal(pthread_create(&th[i], NULL, same_id_main, &args[i]), 0);
  }
  pthread_barrier_wait(&registered);
  assert_int_equal(dg_waiters_deliver(ws, "dup", "first", 5), SAME_ID_THREADS);
  for (int i = 0; i < SAME_ID_THREADS; i++) {
    pthread_join(th[i], NULL);
    assert_int_equal(args[i].rc, 0);
    assert_string_equal(args[i].res, "first");
  }
  pthread_barrier_destroy(&registered);
  dg_waiters_destroy(ws);
}

/* Shutdown: wake_all ends every wait at once, with no outcome. */
static void test_wake_all(void **state) {
  (void)state;
  dg_waiters_t *ws = dg_waiters_create();
  pthread_barrier_t registered;
  pthread_barrier_init(&registered, NULL, SAME_ID_THREADS + 1);
  same_arg_t args[SAME_ID_THREADS];
  pthread_t th[SAME_ID_THREADS];
  char ids[SAME_ID_THREADS][16];
  for (int i = 0; i < SAME_ID_THREADS; i++) {
    snprintf(ids[i], sizeof ids[i], "w%d", i);
    args[i] = (same_arg_t){ws, &registered, ids[i], 99, ""};
    assert_int_equal(pthread_create(&th[i], NULL, same_id_main, &args[i]), 0);
  }
  pthread_barrier_wait(&registered);
  int64_t t0 = dg_mono_us();
  dg_waiters_wake_all(ws);
  for (int i = 0; i < SAME_ID_THREADS; i++) {
    pthread_join(th[i], NULL);
    assert_int_equal(args[i].rc, DG_ETIMEOUT);
    assert_string_equal(args[i].res, "");
  }
  /* Far below the 20 s they would otherwise wait. */
  assert_true(dg_mono_us() - t0 < 10 * 1000 * 1000);
  /* A waiter added after shutdown does not sleep either. */
  dg_waiter_t w;
  dg_waiters_add(ws, &w, "late");
  assert_int_equal(dg_waiters_wait(ws, &w, 20000), DG_ETIMEOUT);
  dg_waiters_remove(ws, &w);
  pthread_barrier_destroy(&registered);
  dg_waiters_destroy(ws);
}

/* A waiter with a notify (a request parked on the front end's loop): the
 * notify runs once on delivery, take hands the outcome over and nothing
 * comes after it; an undelivered one is taken empty; wake_all notifies
 * what is still waiting. */
static int notified;
static void on_note(void *arg) { notified += *(int *)arg; }

static void test_notify_and_take(void **state) {
  (void)state;
  dg_waiters_t *ws = dg_waiters_create();
  dg_waiter_t a, b, c;
  int one = 1, ten = 10, hundred = 100;
  notified = 0;
  dg_waiters_add_notify(ws, &a, "k-a", on_note, &one);
  dg_waiters_add_notify(ws, &b, "k-b", on_note, &ten);
  assert_int_equal(dg_waiters_deliver(ws, "k-a", "{\"x\":1}", 7), 1);
  assert_int_equal(notified, 1);
  assert_int_equal(dg_waiters_deliver(ws, "k-a", "{}", 2), 0); /* once */
  assert_int_equal(notified, 1);
  size_t len = 0;
  char *res = dg_waiters_take(ws, &a, &len);
  assert_non_null(res);
  assert_int_equal(len, 7);
  assert_memory_equal(res, "{\"x\":1}", 7);
  dg_free(res);
  /* b never delivered: taken empty, and no notify after it */
  assert_null(dg_waiters_take(ws, &b, &len));
  assert_int_equal(len, 0);
  assert_int_equal(dg_waiters_deliver(ws, "k-b", "{}", 2), 0);
  assert_int_equal(notified, 1);
  /* at shutdown, what still waits is told */
  dg_waiters_add_notify(ws, &c, "k-c", on_note, &hundred);
  dg_waiters_wake_all(ws);
  assert_int_equal(notified, 101);
  assert_null(dg_waiters_take(ws, &c, NULL));
  dg_waiters_destroy(ws);
}

static void mark_visited(dg_waiter_t *w, void *arg) {
  (void)w;
  (*(int *)arg)++;
}

/* News for one waiter from another thread (the submitter's): only while it
 * is registered under that key with that serial; a key longer than a
 * waiter holds is found as add() cut it. */
static void test_visit(void **state) {
  (void)state;
  dg_waiters_t *ws = dg_waiters_create();
  dg_waiter_t a, b;
  char longkey[400];
  memset(longkey, 'k', sizeof longkey - 1);
  longkey[sizeof longkey - 1] = '\0';
  dg_waiters_add(ws, &a, "tag\x1fr-1");
  dg_waiters_add(ws, &b, longkey);
  assert_int_not_equal(a.serial, b.serial);
  int visits = 0;
  assert_int_equal(dg_waiters_visit(ws, "tag\x1fr-1", &a, a.serial, mark_visited, &visits), 1);
  assert_int_equal(dg_waiters_visit(ws, longkey, &b, b.serial, mark_visited, &visits), 1);
  assert_int_equal(visits, 2);
  /* Another serial (a waiter made since at the same address), another
   * key, another waiter: not visited. */
  assert_int_equal(dg_waiters_visit(ws, "tag\x1fr-1", &a, a.serial + 1000, mark_visited, &visits), 0);
  assert_int_equal(dg_waiters_visit(ws, "tag\x1fr-2", &a, a.serial, mark_visited, &visits), 0);
  assert_int_equal(dg_waiters_visit(ws, "tag\x1fr-1", &b, b.serial, mark_visited, &visits), 0);
  /* Taken away by its owner: no more news. */
  dg_free(dg_waiters_take(ws, &a, NULL));
  assert_int_equal(dg_waiters_visit(ws, "tag\x1fr-1", &a, a.serial, mark_visited, &visits), 0);
  dg_waiters_remove(ws, &b);
  assert_int_equal(dg_waiters_visit(ws, longkey, &b, b.serial, mark_visited, &visits), 0);
  assert_int_equal(visits, 2);
  dg_waiters_destroy(ws);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_deliver_then_wait),
      cmocka_unit_test(test_timeout),
      cmocka_unit_test(test_long_id),
      cmocka_unit_test(test_threads_hammer),
      cmocka_unit_test(test_same_id_many_threads),
      cmocka_unit_test(test_wake_all),
      cmocka_unit_test(test_notify_and_take),
      cmocka_unit_test(test_visit),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
