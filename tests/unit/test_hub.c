/* test_hub.c -- outcome fan-out and the ring of recent outcomes
 * (src/api/hub.c): filters, slow subscribers, shutdown, eviction and
 * coverage, single flight, and threads hammering each part.
 *
 * Worker threads never call cmocka's assertions (they would jump into the
 * main thread's context); they count what went wrong and the main thread
 * asserts the counts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "dg/common.h"
#include "dg/hub.h"

/* The ring's entry bound (src/api/hub.c, RING_MAX_ENTRIES). */
#define RING_ENTRIES 16384

static dg_redis_xid_t xid(uint64_t ms, uint64_t seq) {
  return (dg_redis_xid_t){ms, seq};
}

static void publish_n(dg_hub_t *h, const char *id, const char *res, const char *table) {
  const char *tables[1] = {table};
  dg_hub_publish(h, id, res, strlen(res), tables, table ? 1 : 0);
}

/* ---- subscribers ----------------------------------------------------------- */

static void test_subscribe_filter(void **state) {
  (void)state;
  dg_hub_t *h = dg_hub_create();
  /* Nobody subscribed: publishing is a no-op. */
  publish_n(h, "1-0", "{\"x\":0}", "a");
  const char *only_b[] = {"b"};
  dg_sub_t *all = dg_hub_subscribe(h, NULL, 0, 1 << 20);
  dg_sub_t *b = dg_hub_subscribe(h, only_b, 1, 1 << 20);
  assert_int_equal(dg_hub_count(h), 2);
  publish_n(h, "1-1", "{\"x\":1}", "a");
  publish_n(h, "1-2", "{\"x\":2}", "b");
  dg_event_t *ev = NULL;
  assert_int_equal(dg_sub_next(h, all, 1000, &ev), DG_HUB_EVENT);
  assert_string_equal(ev->id, "1-1");
  assert_string_equal(ev->res, "{\"x\":1}");
  assert_true(dg_event_matches(ev, "a"));
  assert_false(dg_event_matches(ev, "b"));
  assert_true(dg_event_matches(ev, NULL));
  dg_event_release(h, ev);
  assert_int_equal(dg_sub_next(h, all, 1000, &ev), DG_HUB_EVENT);
  assert_string_equal(ev->id, "1-2");
  dg_event_release(h, ev);
  assert_int_equal(dg_sub_next(h, b, 1000, &ev), DG_HUB_EVENT);
  assert_string_equal(ev->id, "1-2");
  dg_event_release(h, ev);
  assert_int_equal(dg_sub_next(h, b, 20, &ev), DG_HUB_TIMEOUT);
  /* A new filter applies to what is published next. */
  const char *only_a[] = {"a"};
  dg_sub_set_tables(h, b, only_a, 1, 0);
  publish_n(h, "1-3", "{\"x\":3}", "b");
  publish_n(h, "1-4", "{\"x\":4}", "a");
  assert_int_equal(dg_sub_next(h, b, 1000, &ev), DG_HUB_EVENT);
  assert_string_equal(ev->id, "1-4");
  dg_event_release(h, ev);
  /* No table listed, not "all": nothing (a NULL list meant every table once). */
  dg_sub_set_tables(h, b, NULL, 0, 0);
  publish_n(h, "1-5", "{\"x\":5}", "a");
  assert_int_equal(dg_sub_next(h, b, 20, &ev), DG_HUB_TIMEOUT);
  dg_sub_set_tables(h, b, NULL, 0, 1);
  publish_n(h, "1-6", "{\"x\":6}", "b");
  assert_int_equal(dg_sub_next(h, b, 1000, &ev), DG_HUB_EVENT);
  assert_string_equal(ev->id, "1-6");
  dg_event_release(h, ev);
  /* Unsubscribing with events still queued frees them. */
  dg_hub_unsubscribe(h, all);
  assert_int_equal(dg_hub_count(h), 1);
  dg_hub_unsubscribe(h, b);
  assert_int_equal(dg_hub_count(h), 0);
  dg_hub_destroy(h);
}

/* A subscriber whose queue would pass max_bytes is dropped, and stays so. */
static void test_slow_subscriber_dropped(void **state) {
  (void)state;
  dg_hub_t *h = dg_hub_create();
  dg_sub_t *s = dg_hub_subscribe(h, NULL, 0, 20);
  publish_n(h, "1-1", "0123456789", NULL);
  publish_n(h, "1-2", "0123456789", NULL);
  publish_n(h, "1-3", "0123456789", NULL); /* 30 bytes > 20 */
  dg_event_t *ev = NULL;
  assert_int_equal(dg_sub_next(h, s, 1000, &ev), DG_HUB_DROPPED);
  assert_int_equal(dg_sub_next(h, s, 1000, &ev), DG_HUB_DROPPED);
  dg_hub_unsubscribe(h, s);
  dg_hub_destroy(h);
}

/* ---- threads: fan-out ----------------------------------------------------- */

enum { SUBS = 6, EVENTS = 3000 };

typedef struct {
  dg_hub_t *h;
  int index;
  pthread_barrier_t *ready;
  atomic_int *errors;
  int received;
} fan_arg_t;

/* Subscriber i takes every table, or only table "t<i % 3>": it must get
 * exactly its events, in publication order, each text intact. */
static void *fan_sub_main(void *p) {
  fan_arg_t *a = p;
  char table[8];
  snprintf(table, sizeof table, "t%d", a->index % 3);
  const char *tables[1] = {table};
  int all = a->index < 2;
  dg_sub_t *s = dg_hub_subscribe(a->h, all ? NULL : tables, all ? 0 : 1, (size_t)1 << 30);
  pthread_barrier_wait(a->ready);
  int next = 0; /* the next sequence number this subscriber should see */
  for (;;) {
    if (!all)
      while (next < EVENTS && next % 3 != a->index % 3) next++;
    dg_event_t *ev = NULL;
    int rc = dg_sub_next(a->h, s, 20000, &ev);
    if (rc == DG_HUB_CLOSED) break;
    if (rc != DG_HUB_EVENT) {
      atomic_fetch_add(a->errors, 1);
      break;
    }
    char want[64];
    snprintf(want, sizeof want, "{\"seq\":%d}", next);
    if (strcmp(ev->res, want) != 0 || ev->len != strlen(want)) atomic_fetch_add(a->errors, 1);
    dg_event_release(a->h, ev);
    a->received++;
    next++;
  }
  dg_hub_unsubscribe(a->h, s);
  return NULL;
}

/* Subscribes, changes its filter and leaves, over and over, while events fly. */
static void *churn_main(void *p) {
  fan_arg_t *a = p;
  pthread_barrier_wait(a->ready);
  const char *t0[] = {"t0"}, *t1[] = {"t1", "t2"};
  for (int i = 0; i < 300; i++) {
    dg_sub_t *s = dg_hub_subscribe(a->h, t0, 1, 64);
    dg_sub_set_tables(a->h, s, t1, 2, i % 2);
    dg_event_t *ev = NULL;
    if (dg_sub_next(a->h, s, 1, &ev) == DG_HUB_EVENT) dg_event_release(a->h, ev);
    dg_hub_unsubscribe(a->h, s);
  }
  return NULL;
}

static void test_threads_fanout(void **state) {
  (void)state;
  dg_hub_t *h = dg_hub_create();
  pthread_barrier_t ready;
  pthread_barrier_init(&ready, NULL, SUBS + 2);
  atomic_int errors = 0;
  pthread_t th[SUBS + 1];
  fan_arg_t args[SUBS + 1];
  for (int i = 0; i <= SUBS; i++) {
    args[i] = (fan_arg_t){h, i, &ready, &errors, 0};
    assert_int_equal(pthread_create(&th[i], NULL, i < SUBS ? fan_sub_main : churn_main, &args[i]), 0);
  }
  pthread_barrier_wait(&ready);
  for (int i = 0; i < EVENTS; i++) {
    char id[32], res[64], table[8];
    snprintf(id, sizeof id, "1-%d", i + 1);
    snprintf(res, sizeof res, "{\"seq\":%d}", i);
    snprintf(table, sizeof table, "t%d", i % 3);
    publish_n(h, id, res, table);
  }
  pthread_join(th[SUBS], NULL); /* the churn thread */
  /* Every event is queued by now; the subscribers drain, then see CLOSED. */
  dg_hub_close(h);
  for (int i = 0; i < SUBS; i++) pthread_join(th[i], NULL);
  assert_int_equal(atomic_load(&errors), 0);
  for (int i = 0; i < SUBS; i++)
    assert_int_equal(args[i].received, i < 2 ? EVENTS : EVENTS / 3);
  assert_int_equal(dg_hub_count(h), 0);
  pthread_barrier_destroy(&ready);
  dg_hub_destroy(h);
}

/* ---- the ring ---------------------------------------------------------------- */

static void test_ring_basic(void **state) {
  (void)state;
  dg_hub_t *h = dg_hub_create();
  const dg_event_t *out[8];
  dg_ring_read_t rd = {.cursor = xid(5, 0), .limit = 8, .scan_max = 100, .out = out};
  /* Nothing is covered before the first reset. */
  assert_int_equal(dg_ring_read(h, &rd, NULL), DG_RING_NOT_COVERED);
  dg_ring_reset(h, xid(5, 0));
  const char *ta[] = {"a"}, *tb[] = {"b"};
  dg_ring_append(h, xid(6, 0), "{\"n\":1}", 7, ta, 1);
  dg_ring_append(h, xid(6, 1), NULL, 0, NULL, 0); /* no usable update */
  dg_ring_append(h, xid(7, 0), "{\"n\":2}", 7, tb, 1);
  dg_ring_notify(h);
  /* Before the floor: not covered. */
  rd.cursor = xid(4, 9);
  assert_int_equal(dg_ring_read(h, &rd, NULL), DG_RING_NOT_COVERED);
  assert_int_equal(rd.matched, 0);
  /* From the floor: both updates, the empty entry scanned past. */
  rd.cursor = xid(5, 0);
  assert_int_equal(dg_ring_read(h, &rd, NULL), DG_RING_COVERED);
  assert_int_equal(rd.matched, 2);
  assert_int_equal(rd.scanned, 3);
  assert_string_equal(out[0]->id, "6-0");
  assert_string_equal(out[0]->res, "{\"n\":1}");
  assert_string_equal(out[1]->id, "7-0");
  assert_int_equal(dg_redis_xid_cmp(rd.cursor, xid(7, 0)), 0);
  dg_ring_release(out, rd.matched);
  /* A table filter. */
  dg_ring_read_t rb = {.cursor = xid(5, 0), .table = "b", .limit = 8, .scan_max = 100, .out = out};
  assert_int_equal(dg_ring_read(h, &rb, NULL), DG_RING_COVERED);
  assert_int_equal(rb.matched, 1);
  assert_string_equal(out[0]->id, "7-0");
  dg_ring_release(out, rb.matched);
  /* Waiting past the newest entry times out with nothing. */
  dg_ring_read_t rw = {.cursor = xid(7, 0), .limit = 8, .scan_max = 100, .out = out};
  struct timespec until;
  dg_deadline_after_ms(&until, 30);
  assert_int_equal(dg_ring_read(h, &rw, &until), DG_RING_COVERED);
  assert_int_equal(rw.matched, 0);
  /* Shutdown ends a wait. */
  dg_hub_close(h);
  dg_deadline_after_ms(&until, 20000);
  assert_int_equal(dg_ring_read(h, &rw, &until), DG_RING_CLOSED);
  dg_hub_destroy(h);
}

/* More entries than the ring holds: the oldest are evicted and the floor
 * moves onto the last evicted one; an entry a reader still holds outlives
 * its eviction. */
static void test_ring_eviction(void **state) {
  (void)state;
  dg_hub_t *h = dg_hub_create();
  dg_ring_reset(h, xid(0, 0));
  dg_ring_append(h, xid(1, 0), "first", 5, NULL, 0);
  const dg_event_t *held[1];
  dg_ring_read_t rd = {.cursor = xid(0, 0), .limit = 1, .scan_max = 1, .out = held};
  assert_int_equal(dg_ring_read(h, &rd, NULL), DG_RING_COVERED);
  assert_int_equal(rd.matched, 1);
  for (uint64_t i = 2; i <= RING_ENTRIES + 10; i++) dg_ring_append(h, xid(i, 0), "x", 1, NULL, 0);
  /* RING_ENTRIES + 10 appended: 1-0 .. 10-0 are gone, the floor is 10-0. */
  const dg_event_t *out[4];
  dg_ring_read_t old = {.cursor = xid(9, 5), .limit = 4, .scan_max = 4, .out = out};
  assert_int_equal(dg_ring_read(h, &old, NULL), DG_RING_NOT_COVERED);
  dg_ring_read_t at = {.cursor = xid(10, 0), .limit = 4, .scan_max = 4, .out = out};
  assert_int_equal(dg_ring_read(h, &at, NULL), DG_RING_COVERED);
  assert_int_equal(at.matched, 4);
  assert_string_equal(out[0]->id, "11-0");
  dg_ring_release(out, at.matched);
  /* The evicted first entry is still readable by its holder. */
  assert_string_equal(held[0]->res, "first");
  dg_ring_release(held, 1);
  dg_hub_destroy(h);
}

enum { RING_READERS = 5, RING_BATCHES = 600, RING_BATCH = 10 };

typedef struct {
  dg_hub_t *h;
  int index;
  pthread_barrier_t *ready;
  atomic_int *errors;
  atomic_int *not_covered;
  atomic_long seen;       /* entries received (the main thread watches it) */
} ring_arg_t;

/* A long-poll client: waits for entries after its cursor, checks that they
 * arrive in order with nothing missing, releases them, polls again. Reader
 * 0 filters on a table and gets every other entry. */
static void *ring_reader_main(void *p) {
  ring_arg_t *a = p;
  const char *table = a->index == 0 ? "even" : NULL;
  dg_redis_xid_t cursor = xid(1000, 0);
  uint64_t want = 1; /* next expected ms */
  pthread_barrier_wait(a->ready);
  const dg_event_t *out[16];
  for (;;) {
    dg_ring_read_t rd = {.cursor = cursor, .table = table, .limit = 16, .scan_max = 64,
                         .any_entry = a->index == 1, .out = out};
    struct timespec until;
    dg_deadline_after_ms(&until, 20000);
    int rc = dg_ring_read(a->h, &rd, &until);
    for (size_t i = 0; i < rd.matched; i++) {
      if (table) while (want % 2 != 0) want++;
      char id[48], res[48];
      snprintf(id, sizeof id, "%llu-0", (unsigned long long)(1000 + want));
      snprintf(res, sizeof res, "{\"seq\":%llu}", (unsigned long long)want);
      if (strcmp(out[i]->id, id) != 0 || out[i]->res == NULL || strcmp(out[i]->res, res) != 0)
        atomic_fetch_add(a->errors, 1);
      want++;
      atomic_fetch_add(&a->seen, 1);
    }
    dg_ring_release(out, rd.matched);
    cursor = rd.cursor;
    if (rc == DG_RING_CLOSED) break;
    if (rc == DG_RING_NOT_COVERED) { /* fell behind the eviction: stop */
      atomic_fetch_add(a->not_covered, 1);
      break;
    }
    if (rd.matched == 0 && rd.scanned == 0) { /* 20 s with nothing new */
      atomic_fetch_add(a->errors, 1);
      break;
    }
  }
  return NULL;
}

/* One appender (the response reader) appends batches and notifies once per
 * batch, while five long polls read and wait. */
static void test_threads_ring(void **state) {
  (void)state;
  dg_hub_t *h = dg_hub_create();
  dg_ring_reset(h, xid(1000, 0));
  pthread_barrier_t ready;
  pthread_barrier_init(&ready, NULL, RING_READERS + 1);
  atomic_int errors = 0, not_covered = 0;
  pthread_t th[RING_READERS];
  ring_arg_t args[RING_READERS];
  for (int i = 0; i < RING_READERS; i++) {
    args[i].h = h;
    args[i].index = i;
    args[i].ready = &ready;
    args[i].errors = &errors;
    args[i].not_covered = &not_covered;
    atomic_init(&args[i].seen, 0);
    assert_int_equal(pthread_create(&th[i], NULL, ring_reader_main, &args[i]), 0);
  }
  pthread_barrier_wait(&ready);
  uint64_t seq = 1;
  for (int b = 0; b < RING_BATCHES; b++) {
    for (int k = 0; k < RING_BATCH; k++, seq++) {
      char res[48];
      snprintf(res, sizeof res, "{\"seq\":%llu}", (unsigned long long)seq);
      const char *tables[1] = {seq % 2 == 0 ? "even" : "odd"};
      dg_ring_append(h, xid(1000 + seq, 0), res, strlen(res), tables, 1);
    }
    dg_ring_notify(h);
    if (b % 50 == 0) usleep(1000); /* let the readers catch up now and then */
  }
  /* Wait until every reader has taken all it can (bounded), then close. */
  for (int spin = 0; spin < 2000; spin++) {
    int behind = 0;
    for (int i = 0; i < RING_READERS; i++) {
      long want = i == 0 ? (long)(seq - 1) / 2 : (long)(seq - 1);
      if (atomic_load(&args[i].seen) < want) behind = 1;
    }
    if (!behind) break;
    usleep(10000);
  }
  dg_hub_close(h);
  for (int i = 0; i < RING_READERS; i++) pthread_join(th[i], NULL);
  assert_int_equal(atomic_load(&errors), 0);
  /* 6,000 entries fit in the ring: nobody can fall behind the floor. */
  assert_int_equal(atomic_load(&not_covered), 0);
  assert_int_equal(atomic_load(&args[0].seen), (long)(seq - 1) / 2);
  for (int i = 1; i < RING_READERS; i++) assert_int_equal(atomic_load(&args[i].seen), (long)(seq - 1));
  pthread_barrier_destroy(&ready);
  dg_hub_destroy(h);
}

/* ---- single flight ------------------------------------------------------------ */

typedef struct {
  atomic_int started;   /* runs begun, ever                */
  atomic_int running;   /* runs under way now (at most 1)  */
  atomic_int overlap;   /* times two ran at once           */
} flight_state_t;

static int flight_fn(void *arg, void *result) {
  flight_state_t *f = arg;
  int n = atomic_fetch_add(&f->started, 1) + 1;
  if (atomic_fetch_add(&f->running, 1) != 0) atomic_fetch_add(&f->overlap, 1);
  usleep(200);
  atomic_fetch_sub(&f->running, 1);
  memcpy(result, &n, sizeof n);
  return n;
}

enum { FLIGHT_THREADS = 8, FLIGHT_CALLS = 200 };

typedef struct {
  dg_hub_t *h;
  flight_state_t *f;
  atomic_int *errors;
} flight_arg_t;

/* Each caller must get the result of a run that began after its call began:
 * its run number is above the count of runs begun before the call. */
static void *flight_main(void *p) {
  flight_arg_t *a = p;
  for (int i = 0; i < FLIGHT_CALLS; i++) {
    int before = atomic_load(&a->f->started);
    int got = 0;
    int rc = dg_hub_shared_run(a->h, flight_fn, a->f, &got, sizeof got);
    if (rc != got || got <= before) atomic_fetch_add(a->errors, 1);
  }
  return NULL;
}

static void test_threads_shared_run(void **state) {
  (void)state;
  dg_hub_t *h = dg_hub_create();
  flight_state_t f = {0};
  atomic_int errors = 0;
  pthread_t th[FLIGHT_THREADS];
  flight_arg_t arg = {h, &f, &errors};
  for (int i = 0; i < FLIGHT_THREADS; i++)
    assert_int_equal(pthread_create(&th[i], NULL, flight_main, &arg), 0);
  for (int i = 0; i < FLIGHT_THREADS; i++) pthread_join(th[i], NULL);
  assert_int_equal(atomic_load(&errors), 0);
  assert_int_equal(atomic_load(&f.overlap), 0);
  /* Never more runs than calls. */
  assert_true(atomic_load(&f.started) <= FLIGHT_THREADS * FLIGHT_CALLS);
  dg_hub_destroy(h);
}

static void count_hook(void *arg) { atomic_fetch_add((atomic_int *)arg, 1); }

/* The single flight without waiting (an HTTP loop's asks): tickets of runs
 * that begin after the ask, one serve for the asks of a moment, the result
 * once the ticket's run is done, and the ring's hook after each run. */
static void test_shared_ask_serve(void **state) {
  (void)state;
  dg_hub_t *h = dg_hub_create();
  atomic_int hooks = 0;
  dg_ring_set_hook(h, count_hook, &hooks);
  flight_state_t f = {0};
  int serve = 0, rc = 0, got = 0;
  uint64_t t1 = dg_hub_shared_ask(h, &serve);
  assert_int_equal(t1, 1);
  assert_int_equal(serve, 1); /* the first ask starts the serve */
  uint64_t t1b = dg_hub_shared_ask(h, &serve);
  assert_int_equal(t1b, 1);   /* no run began since: the same ticket */
  assert_int_equal(serve, 0); /* and one serve is enough */
  assert_int_equal(dg_hub_shared_result(h, t1, &rc, &got, sizeof got), 0);
  dg_hub_shared_serve(h, flight_fn, &f, sizeof got);
  assert_int_equal(atomic_load(&f.started), 1);
  assert_int_equal(atomic_load(&hooks), 1);
  assert_int_equal(dg_hub_shared_result(h, t1, &rc, &got, sizeof got), 1);
  assert_int_equal(rc, 1);
  assert_int_equal(got, 1);
  /* An ask after that run wants a new one. */
  uint64_t t2 = dg_hub_shared_ask(h, &serve);
  assert_int_equal(t2, 2);
  assert_int_equal(serve, 1);
  assert_int_equal(dg_hub_shared_result(h, t2, &rc, &got, sizeof got), 0);
  /* A blocking caller's run, begun after the ask, serves it too; the serve
   * then has nothing to run but still wakes the loops once. */
  assert_int_equal(dg_hub_shared_run(h, flight_fn, &f, &got, sizeof got), 2);
  assert_int_equal(dg_hub_shared_result(h, t2, &rc, &got, sizeof got), 1);
  assert_int_equal(got, 2);
  dg_hub_shared_serve(h, flight_fn, &f, sizeof got);
  assert_int_equal(atomic_load(&f.started), 2);
  assert_int_equal(atomic_load(&hooks), 2);
  dg_ring_set_hook(h, NULL, NULL);
  dg_hub_destroy(h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_shared_ask_serve),
      cmocka_unit_test(test_subscribe_filter),
      cmocka_unit_test(test_slow_subscriber_dropped),
      cmocka_unit_test(test_threads_fanout),
      cmocka_unit_test(test_ring_basic),
      cmocka_unit_test(test_ring_eviction),
      cmocka_unit_test(test_threads_ring),
      cmocka_unit_test(test_threads_shared_run),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
