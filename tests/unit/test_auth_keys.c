/*
 * test_auth_keys.c -- API keys and their check cache (src/auth/keys.c) on a
 * real DuckDB file in a temp directory: create, check, delete, the last
 * admin key, and threads checking keys while others are deleted and the
 * cache is flushed.
 *
 * Worker threads never call cmocka's assertions (they would jump into the
 * main thread's context); they count what went wrong and the main thread
 * asserts the counts.
 */
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

#include "dg/alive.h"
#include "dg/auth.h"
#include "dg/common.h"
#include "dg/db.h"

#define ADMIN_KEY "dg_unit_test_admin_key_0123456789abcdefghijklmnop"

typedef struct {
  char dir[64];
  char path[128];
  dg_db_t *db;
  dg_auth_t *auth;
} fx_t;

static int setup(void **state) {
  fx_t *f = dg_calloc(1, sizeof *f);
  snprintf(f->dir, sizeof f->dir, "/tmp/dg-unit-auth-XXXXXX");
  if (mkdtemp(f->dir) == NULL) fail_msg("mkdtemp failed");
  snprintf(f->path, sizeof f->path, "%s/keys.duckdb", f->dir);
  char err[256] = "";
  if (dg_db_open(f->path, 2, &f->db, err, sizeof err) != 0) fail_msg("dg_db_open: %s", err);
  char pepper[128];
  snprintf(pepper, sizeof pepper, "%s/pepper", f->dir);
  if (dg_auth_create(f->db, pepper, &f->auth, err, sizeof err) != 0) fail_msg("dg_auth_create: %s", err);
  char *generated = NULL;
  char keyfile[128];
  snprintf(keyfile, sizeof keyfile, "%s/admin-key", f->dir);
  if (dg_auth_bootstrap(f->auth, ADMIN_KEY, keyfile, &generated, err, sizeof err) != 0)
    fail_msg("dg_auth_bootstrap: %s", err);
  assert_null(generated);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx_t *f = *state;
  dg_auth_destroy(f->auth);
  dg_db_close(f->db);
  char cmd[160];
  snprintf(cmd, sizeof cmd, "%s/keys.duckdb", f->dir);
  unlink(cmd);
  snprintf(cmd, sizeof cmd, "%s/keys.duckdb.wal", f->dir);
  unlink(cmd);
  snprintf(cmd, sizeof cmd, "%s/pepper", f->dir);
  unlink(cmd);
  rmdir(f->dir);
  dg_free(f);
  return 0;
}

static void test_create_check_delete(void **state) {
  fx_t *f = *state;
  dg_principal_t p;
  assert_int_equal(dg_auth_check(f->auth, ADMIN_KEY, strlen(ADMIN_KEY), &p), 0);
  assert_int_equal(p.role, DG_ROLE_ADMIN);
  assert_string_equal(p.user, "bootstrap-admin");

  char key[DG_KEY_LEN + 1];
  int64_t id = 0;
  assert_int_equal(dg_auth_key_create(f->auth, "reader-1", DG_ROLE_READ, key, &id), 0);
  assert_true(id > 0);
  assert_int_equal(strlen(key), DG_KEY_LEN);
  assert_memory_equal(key, "dg_", 3);
  assert_int_equal(dg_auth_check(f->auth, key, strlen(key), &p), 0);
  assert_int_equal(p.role, DG_ROLE_READ);
  assert_int_equal(p.key_id, id);
  assert_string_equal(p.user, "reader-1");
  /* Cached now: a second check answers the same. */
  memset(&p, 0, sizeof p);
  assert_int_equal(dg_auth_check(f->auth, key, strlen(key), &p), 0);
  assert_int_equal(p.key_id, id);

  /* Unknown, empty and oversized keys are refused. */
  char wrong[DG_KEY_LEN + 1];
  memcpy(wrong, key, sizeof wrong);
  wrong[10] = wrong[10] == 'A' ? 'B' : 'A';
  assert_int_equal(dg_auth_check(f->auth, wrong, strlen(wrong), &p), DG_EAUTH);
  assert_int_equal(dg_auth_check(f->auth, "", 0, &p), DG_EAUTH);
  assert_int_equal(dg_auth_check(f->auth, NULL, 5, &p), DG_EAUTH);
  char big[600];
  memset(big, 'k', sizeof big);
  assert_int_equal(dg_auth_check(f->auth, big, sizeof big, &p), DG_EAUTH);

  /* Bad names and roles create nothing. */
  assert_int_equal(dg_auth_key_create(f->auth, "", DG_ROLE_READ, wrong, NULL), DG_EINVAL);
  assert_int_equal(dg_auth_key_create(f->auth, "x", DG_ROLE_NONE, wrong, NULL), DG_EINVAL);

  /* Deleted: refused at once in this process, whatever is cached. */
  assert_int_equal(dg_auth_key_delete(f->auth, id), 0);
  assert_int_equal(dg_auth_check(f->auth, key, strlen(key), &p), DG_EAUTH);
  assert_int_equal(dg_auth_key_delete(f->auth, id), DG_ENOTFOUND);

  /* The last admin key cannot go. */
  assert_int_equal(dg_auth_check(f->auth, ADMIN_KEY, strlen(ADMIN_KEY), &p), 0);
  assert_int_equal(dg_auth_key_delete(f->auth, p.key_id), DG_ECONFLICT);
  assert_int_equal(dg_auth_check(f->auth, ADMIN_KEY, strlen(ADMIN_KEY), &p), 0);
}

/* ---- threads ------------------------------------------------------------- */

enum { KEYS = 32, KEPT = 4, CHECKERS = 4, MIN_ROUNDS = 300 };

typedef struct {
  dg_auth_t *auth;
  char keys[KEYS][DG_KEY_LEN + 1];
  int64_t ids[KEYS];
  atomic_int deleted[KEYS];   /* 1 once dg_auth_key_delete returned 0   */
  atomic_int stop;
  atomic_int accepted_deleted; /* a check begun after the delete passed */
  atomic_int refused_kept;     /* a key never deleted was refused      */
  atomic_int wrong_principal;
  atomic_int checks;
  atomic_int delete_failed;
} shared_t;

typedef struct {
  shared_t *s;
  int index;
} targ_t;

static void *checker_main(void *p) {
  targ_t *t = p;
  shared_t *s = t->s;
  for (int round = 0; round < MIN_ROUNDS || !atomic_load(&s->stop); round++) {
    int j = (round + t->index) % KEYS;
    int gone_before = atomic_load(&s->deleted[j]);
    dg_principal_t pr;
    int rc = dg_auth_check(s->auth, s->keys[j], DG_KEY_LEN, &pr);
    atomic_fetch_add(&s->checks, 1);
    if (rc == 0 && gone_before) atomic_fetch_add(&s->accepted_deleted, 1);
    if (rc != 0 && j < KEPT) atomic_fetch_add(&s->refused_kept, 1);
    if (rc == 0 && (pr.key_id != s->ids[j] || pr.role != DG_ROLE_WRITE))
      atomic_fetch_add(&s->wrong_principal, 1);
  }
  return NULL;
}

/* Deletes keys KEPT.. one at a time, a little apart, while the checkers
 * use them; then tells the checkers to stop. */
static void *deleter_main(void *p) {
  targ_t *t = p;
  shared_t *s = t->s;
  for (int j = KEPT; j < KEYS; j++) {
    usleep(2000);
    int rc = dg_auth_key_delete(s->auth, s->ids[j]);
    if (rc != 0) atomic_fetch_add(&s->delete_failed, 1);
    else atomic_store(&s->deleted[j], 1);
  }
  usleep(20000);
  atomic_store(&s->stop, 1);
  return NULL;
}

/* Flushes the cache over and over (another process's view of deletes). */
static void *flusher_main(void *p) {
  targ_t *t = p;
  while (!atomic_load(&t->s->stop)) {
    dg_auth_invalidate(t->s->auth);
    usleep(3000);
  }
  return NULL;
}

/* Four threads check eight keys through the cache while a fifth deletes
 * half of them and a sixth flushes the cache: a check that begins after a
 * delete returned never passes, the kept keys always pass with their own
 * principal. */
static void test_threads_check_while_deleting(void **state) {
  fx_t *f = *state;
  static shared_t s;
  memset(&s, 0, sizeof s);
  s.auth = f->auth;
  for (int j = 0; j < KEYS; j++) {
    char name[32];
    snprintf(name, sizeof name, "writer-%d", j);
    assert_int_equal(dg_auth_key_create(f->auth, name, DG_ROLE_WRITE, s.keys[j], &s.ids[j]), 0);
    atomic_init(&s.deleted[j], 0);
  }
  pthread_t th[CHECKERS + 2];
  targ_t args[CHECKERS + 2];
  for (int i = 0; i < CHECKERS + 2; i++) {
    args[i] = (targ_t){&s, i};
    void *(*fn)(void *) = i < CHECKERS ? checker_main : i == CHECKERS ? deleter_main : flusher_main;
    assert_int_equal(pthread_create(&th[i], NULL, fn, &args[i]), 0);
  }
  for (int i = 0; i < CHECKERS + 2; i++) pthread_join(th[i], NULL);
  assert_int_equal(atomic_load(&s.delete_failed), 0);
  assert_int_equal(atomic_load(&s.accepted_deleted), 0);
  assert_int_equal(atomic_load(&s.refused_kept), 0);
  assert_int_equal(atomic_load(&s.wrong_principal), 0);
  assert_true(atomic_load(&s.checks) >= CHECKERS * MIN_ROUNDS);
  /* And afterwards, from this thread too. */
  dg_principal_t pr;
  for (int j = 0; j < KEYS; j++)
    assert_int_equal(dg_auth_check(f->auth, s.keys[j], DG_KEY_LEN, &pr), j < KEPT ? 0 : DG_EAUTH);
}

/* Key scopes and expiry (issue 14, item 9): a scope set after creation is
 * seen at once although the key was cached; an expired key is refused like
 * an unknown one; dg_principal_can matches whole names only. */
static void test_scope_and_expiry(void **state) {
  fx_t *f = *state;
  dg_principal_t p;
  char key[DG_KEY_LEN + 1];
  int64_t id = 0;
  assert_int_equal(dg_auth_key_create(f->auth, "scoped", DG_ROLE_WRITE, key, &id), 0);
  assert_int_equal(dg_auth_check(f->auth, key, strlen(key), &p), 0);
  assert_true(dg_principal_can(&p, "anything"));
  assert_int_equal(dg_auth_key_scope(f->auth, id, ",sales,sales_eu,", 0), 0);
  assert_int_equal(dg_auth_check(f->auth, key, strlen(key), &p), 0);
  assert_string_equal(p.tables, ",sales,sales_eu,");
  assert_int_equal(p.expires_s, 0);
  assert_true(dg_principal_can(&p, "sales"));
  assert_true(dg_principal_can(&p, "sales_eu"));
  assert_false(dg_principal_can(&p, "sale"));
  assert_false(dg_principal_can(&p, "eu"));
  assert_false(dg_principal_can(&p, "costs"));
  assert_false(dg_principal_can(&p, NULL));

  int64_t soon = (int64_t)time(NULL) + 2; /* at least a second away */
  assert_int_equal(dg_auth_key_scope(f->auth, id, NULL, soon), 0);
  assert_int_equal(dg_auth_check(f->auth, key, strlen(key), &p), 0);
  assert_int_equal(p.expires_s, soon);
  assert_string_equal(p.tables, "");
  for (int i = 0; i < 60 && time(NULL) < soon; i++) usleep(50000);
  assert_int_equal(dg_auth_check(f->auth, key, strlen(key), &p), DG_EAUTH); /* from the cache */
  dg_auth_invalidate(f->auth);
  assert_int_equal(dg_auth_check(f->auth, key, strlen(key), &p), DG_EAUTH); /* from DuckDB */
  assert_int_equal(dg_auth_key_delete(f->auth, id), 0);
}

/* The loops' revocation check (dg_alive_peek) answers from the snapshot the
 * refresher thread keeps: a deleted key is reported within a few seconds;
 * a key created after the last snapshot is not taken for a deleted one. */
static int peek_until(dg_alive_t *al, const dg_principal_t *who, int want, int ms) {
  char why[120];
  int rc = -1;
  for (int i = 0; i < ms / 10; i++) {
    rc = dg_alive_peek(al, who, why, sizeof why);
    if (rc == want) return rc;
    usleep(10000);
  }
  return rc;
}

static void test_alive_peek(void **state) {
  fx_t *f = *state;
  dg_alive_t *al = dg_alive_create(f->db);
  assert_int_equal(dg_alive_start(al), 0);
  char key[DG_KEY_LEN + 1];
  int64_t id;
  assert_int_equal(dg_auth_key_create(f->auth, "streamer", DG_ROLE_READ, key, &id), 0);
  dg_principal_t who;
  assert_int_equal(dg_auth_check(f->auth, key, strlen(key), &who), 0);
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  who.seen_us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
  char why[120];
  assert_int_equal(dg_alive_peek(al, &who, why, sizeof why), 0);
  usleep(1500 * 1000); /* the refresher has read a snapshot holding it */
  assert_int_equal(dg_alive_peek(al, &who, why, sizeof why), 0);

  /* created after that snapshot: alive, not "missing" */
  char key2[DG_KEY_LEN + 1];
  int64_t id2;
  assert_int_equal(dg_auth_key_create(f->auth, "late", DG_ROLE_READ, key2, &id2), 0);
  dg_principal_t who2;
  assert_int_equal(dg_auth_check(f->auth, key2, strlen(key2), &who2), 0);
  clock_gettime(CLOCK_MONOTONIC, &ts);
  who2.seen_us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
  assert_int_equal(dg_alive_peek(al, &who2, why, sizeof why), 0);

  /* deleted: reported after the refresher's next read */
  assert_int_equal(dg_auth_key_delete(f->auth, id), 0);
  dg_alive_invalidate(al);
  assert_int_equal(peek_until(al, &who, DG_EAUTH, 5000), DG_EAUTH);
  assert_int_equal(dg_alive_peek(al, &who, why, sizeof why), DG_EAUTH);
  assert_non_null(strstr(why, "deleted"));
  assert_int_equal(dg_alive_peek(al, &who2, why, sizeof why), 0);
  dg_alive_destroy(al);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_create_check_delete, setup, teardown),
      cmocka_unit_test_setup_teardown(test_scope_and_expiry, setup, teardown),
      cmocka_unit_test_setup_teardown(test_alive_peek, setup, teardown),
      cmocka_unit_test_setup_teardown(test_threads_check_while_deleting, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
