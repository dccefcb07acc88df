/* test_service_read.c -- the read service (service_read.h) against a real
 * DuckDB file: rows decoded from the result chunks (scaled integers with
 * their scale, text, NULL, child counts), keyset paging's "more", a row
 * that is not there, and the error codes a handler maps to 404 / 500.
 * Also the update stream's retention rule (service_updates.h), which is
 * pure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "dg/catalog.h"
#include "dg/common.h"
#include "dg/db.h"
#include "dg/service_read.h"
#include "dg/service_updates.h"

typedef struct {
  char dir[64];
  char path[128];
  dg_app_t app;
  dg_tabledef_t *t;
} fx_t;

static void exec_sql(fx_t *f, const char *q) {
  char err[256] = "";
  if (dg_db_exec(dg_db_conn(f->app.db), q, err, sizeof err) != 0) fail_msg("%s: %s", q, err);
}

static int setup(void **state) {
  fx_t *f = dg_calloc(1, sizeof *f);
  snprintf(f->dir, sizeof f->dir, "/tmp/dg-unit-service-XXXXXX");
  if (mkdtemp(f->dir) == NULL) fail_msg("mkdtemp failed");
  snprintf(f->path, sizeof f->path, "%s/read.duckdb", f->dir);
  char err[256] = "";
  if (dg_db_open(f->path, 1, &f->app.db, err, sizeof err) != 0) fail_msg("dg_db_open: %s", err);
  f->app.catalog = dg_catalog_create();
  dg_tabledef_t *t = dg_tabledef_new("plan", 2);
  snprintf(t->cols[0].name, sizeof t->cols[0].name, "amount");
  t->cols[0].type = DG_COL_NUMBER;
  t->cols[0].scale = 2;
  snprintf(t->cols[1].name, sizeof t->cols[1].name, "note");
  t->cols[1].type = DG_COL_TEXT;
  dg_tabledef_finish(t);
  f->t = dg_tabledef_ref(t);
  dg_catalog_put_table(f->app.catalog, t);
  exec_sql(f, "CREATE TABLE main.plan (id BIGINT PRIMARY KEY, parent_id BIGINT, amount DECIMAL(18,2), note VARCHAR)");
  exec_sql(f, "INSERT INTO main.plan VALUES (1, NULL, 12.50, 'root'), (2, 1, -0.07, NULL), (3, 1, NULL, ''),"
              " (4, NULL, 1000000000000000.00, 'a \"quoted\", long text')");
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx_t *f = *state;
  dg_tabledef_unref(f->t);
  dg_catalog_destroy(f->app.catalog);
  dg_db_close(f->app.db);
  char p[160];
  snprintf(p, sizeof p, "%s.wal", f->path);
  unlink(p);
  unlink(f->path);
  rmdir(f->dir);
  dg_free(f);
  return 0;
}

/* What the callbacks saw: up to 8 rows, copied. */
typedef struct {
  int n;
  int64_t id[8], parent[8], children[8], num[8];
  int has_parent[8], num_null[8], scale[8], text_null[8];
  char text[8][64];
} seen_t;

static void record(void *arg, const dg_row_t *row) {
  seen_t *s = arg;
  int i = s->n++;
  assert_true(i < 8);
  s->id[i] = row->id;
  s->has_parent[i] = row->has_parent;
  s->parent[i] = row->parent_id;
  s->children[i] = row->children;
  s->num_null[i] = row->cells[0].null;
  s->num[i] = row->cells[0].num;
  s->scale[i] = row->cells[0].scale;
  s->text_null[i] = row->cells[1].null;
  if (!row->cells[1].null) snprintf(s->text[i], sizeof s->text[i], "%.*s", (int)row->cells[1].len, row->cells[1].str);
}

static void test_rows_decoded_and_paged(void **state) {
  fx_t *f = *state;
  seen_t s = {0};
  int more = -1;
  dg_rows_query_t q = {.limit = 3, .children = 1};
  assert_int_equal(dg_service_rows(&f->app, f->t, &q, record, &s, &more), 0);
  assert_int_equal(s.n, 3);
  assert_int_equal(more, 1); /* row 4 follows */
  assert_int_equal(s.id[0], 1);
  assert_false(s.has_parent[0]);
  assert_int_equal(s.children[0], 2);
  assert_int_equal(s.num[0], 1250);
  assert_int_equal(s.scale[0], 2);
  assert_string_equal(s.text[0], "root");
  assert_true(s.has_parent[1]);
  assert_int_equal(s.parent[1], 1);
  assert_int_equal(s.num[1], -7);
  assert_true(s.text_null[1]);
  assert_true(s.num_null[2]);
  assert_false(s.text_null[2]); /* an empty text is not NULL */
  assert_string_equal(s.text[2], "");

  seen_t rest = {0};
  dg_rows_query_t next = {.limit = 3, .has_after = 1, .after = 3};
  assert_int_equal(dg_service_rows(&f->app, f->t, &next, record, &rest, &more), 0);
  assert_int_equal(rest.n, 1);
  assert_int_equal(more, 0);
  assert_int_equal(rest.num[0], 100000000000000000LL);

  seen_t kids = {0};
  dg_rows_query_t by_parent = {.limit = 10, .by_parent = 1, .parent = 1};
  assert_int_equal(dg_service_rows(&f->app, f->t, &by_parent, record, &kids, &more), 0);
  assert_int_equal(kids.n, 2);
  assert_int_equal(kids.id[1], 3);
}

static void test_one_row_or_none(void **state) {
  fx_t *f = *state;
  seen_t s = {0};
  assert_int_equal(dg_service_row(&f->app, f->t, 2, record, &s), 0);
  assert_int_equal(s.n, 1);
  assert_int_equal(s.children[0], 0);
  assert_int_equal(dg_service_row(&f->app, f->t, 99, record, &s), 0);
  assert_int_equal(s.n, 1); /* not called: no such row */
  int64_t count = -1;
  assert_int_equal(dg_service_table_count(&f->app, f->t, &count), 0);
  assert_int_equal(count, 4);
}

static void test_export_rows_in_id_order(void **state) {
  fx_t *f = *state;
  seen_t s = {0};
  assert_int_equal(dg_service_export_rows(&f->app, f->t, record, &s), 0);
  assert_int_equal(s.n, 4);
  for (int i = 0; i < 4; i++) assert_int_equal(s.id[i], i + 1);
  assert_string_equal(s.text[3], "a \"quoted\", long text");
}

static void test_dropped_table_codes(void **state) {
  fx_t *f = *state;
  exec_sql(f, "DROP TABLE main.plan");
  seen_t s = {0};
  int more = 0;
  dg_rows_query_t q = {.limit = 10};
  /* Still in the catalog: DuckDB's failure is an I/O error (logged). */
  assert_int_equal(dg_service_rows(&f->app, f->t, &q, record, &s, &more), DG_EIO);
  /* Dropped from the catalog too: the table is gone (a 404). */
  dg_catalog_drop_table(f->app.catalog, "plan");
  assert_int_equal(dg_service_rows(&f->app, f->t, &q, record, &s, &more), DG_ENOTFOUND);
  assert_int_equal(dg_service_row(&f->app, f->t, 1, record, &s), DG_ENOTFOUND);
  int64_t count = 0;
  assert_int_equal(dg_service_table_count(&f->app, f->t, &count), DG_ENOTFOUND);
  assert_int_equal(s.n, 0); /* a call that fails never calls back */
}

static void test_stream_gone_rule(void **state) {
  (void)state;
  dg_redis_xid_t since = {100, 0};
  dg_stream_state_t untrimmed = {.length = 5, .entries_added = 5, .first = {50, 0}, .last = {200, 0}};
  assert_false(dg_service_stream_gone(&untrimmed, since));
  dg_stream_state_t trimmed = {.length = 5, .entries_added = 9, .first = {150, 0}, .last = {200, 0}};
  assert_true(dg_service_stream_gone(&trimmed, since));
  assert_false(dg_service_stream_gone(&trimmed, (dg_redis_xid_t){150, 0}));
  dg_stream_state_t unknown = {.length = 5, .entries_added = -1, .first = {150, 0}, .last = {200, 0}};
  assert_true(dg_service_stream_gone(&unknown, since)); /* a Redis before 7.0: trimmed may have happened */
  dg_stream_state_t emptied = {.length = 0, .entries_added = 9, .last = {200, 0}};
  assert_true(dg_service_stream_gone(&emptied, since));
  assert_false(dg_service_stream_gone(&emptied, (dg_redis_xid_t){200, 0}));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_rows_decoded_and_paged, setup, teardown),
      cmocka_unit_test_setup_teardown(test_one_row_or_none, setup, teardown),
      cmocka_unit_test_setup_teardown(test_export_rows_in_id_order, setup, teardown),
      cmocka_unit_test_setup_teardown(test_dropped_table_codes, setup, teardown),
      cmocka_unit_test(test_stream_gone_rule),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
