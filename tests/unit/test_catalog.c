/* test_catalog.c -- a stale row set (an outcome that could not list its
 * scattered ids) and its reload from DuckDB: existence is "maybe" while
 * stale, the changes that arrive meanwhile survive the reload, and a reload
 * waits for a DuckDB that holds the outcome. DuckDB in memory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "dg/catalog.h"

static dg_redis_xid_t at(uint64_t ms) { return (dg_redis_xid_t){ms, 0}; }

typedef struct {
  duckdb_database db;
  duckdb_connection conn;
  dg_catalog_t *cat;
} fx_t;

static void sql(fx_t *f, const char *q) {
  duckdb_result r;
  assert_int_equal(duckdb_query(f->conn, q, &r), DuckDBSuccess);
  duckdb_destroy_result(&r);
}

static int setup(void **state) {
  fx_t *f = calloc(1, sizeof *f);
  assert_int_equal(duckdb_open(NULL, &f->db), DuckDBSuccess);
  assert_int_equal(duckdb_connect(f->db, &f->conn), DuckDBSuccess);
  sql(f, "CREATE TABLE main.t (id BIGINT PRIMARY KEY)");
  f->cat = dg_catalog_create();
  dg_tabledef_t *t = dg_tabledef_new("t", 1);
  snprintf(t->cols[0].name, sizeof t->cols[0].name, "v");
  t->cols[0].type = DG_COL_NUMBER;
  dg_tabledef_finish(t);
  dg_catalog_put_table(f->cat, t);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx_t *f = *state;
  dg_catalog_destroy(f->cat);
  duckdb_disconnect(&f->conn);
  duckdb_close(&f->db);
  free(f);
  return 0;
}

static void test_stale_set_is_maybe_and_reloads_with_later_changes(void **state) {
  fx_t *f = *state;
  int64_t first[] = {1, 2, 3};
  dg_catalog_rows_add(f->cat, "t", first, 3, at(5));
  assert_int_equal(dg_catalog_refresh(f->cat, f->conn, at(100)), 0); /* nothing stale */
  /* Update 10 inserted 4, 5, 6 without listing them. */
  dg_catalog_rows_stale(f->cat, "t", at(10));
  assert_true(dg_catalog_has_row(f->cat, "t", 99));   /* may be there */
  assert_false(dg_catalog_row_known(f->cat, "t", 1)); /* known: nothing */
  assert_false(dg_catalog_has_row(f->cat, "nope", 1));
  /* Listed changes after it: +50 (11), -2 (12), +7 then -7 (13, 14). */
  int64_t fifty = 50, two = 2, seven = 7;
  dg_catalog_rows_add(f->cat, "t", &fifty, 1, at(11));
  dg_catalog_rows_remove(f->cat, "t", &two, 1, at(12));
  dg_catalog_rows_add(f->cat, "t", &seven, 1, at(13));
  dg_catalog_rows_remove(f->cat, "t", &seven, 1, at(14));
  /* DuckDB holds update 10 (and 11: it may be ahead of the log). */
  sql(f, "INSERT INTO main.t VALUES (1), (2), (3), (4), (5), (6), (50)");
  /* Not reloaded from a DuckDB before update 10. */
  assert_int_equal(dg_catalog_refresh(f->cat, f->conn, at(9)), 0);
  assert_true(dg_catalog_has_row(f->cat, "t", 99));
  assert_int_equal(dg_catalog_refresh(f->cat, f->conn, at(10)), 1);
  int64_t yes[] = {1, 3, 4, 5, 6, 50};
  for (size_t i = 0; i < 6; i++) {
    assert_true(dg_catalog_has_row(f->cat, "t", yes[i]));
    assert_true(dg_catalog_row_known(f->cat, "t", yes[i]));
  }
  int64_t no[] = {2, 7, 8, 99};
  for (size_t i = 0; i < 4; i++) assert_false(dg_catalog_has_row(f->cat, "t", no[i]));
  assert_int_equal(dg_catalog_row_count(f->cat, "t"), 6);
  /* Known again: nothing more to reload. */
  assert_int_equal(dg_catalog_refresh(f->cat, f->conn, at(100)), 0);
}

/* DuckDB ahead of the outcomes read so far: the reload shows their rows
 * early, and the same changes arriving afterwards leave it right. */
static void test_reload_from_a_database_ahead_of_the_log(void **state) {
  fx_t *f = *state;
  int64_t first[] = {1, 2};
  dg_catalog_rows_add(f->cat, "t", first, 2, at(5));
  dg_catalog_rows_stale(f->cat, "t", at(20));
  /* DuckDB: update 20 added 8 and 9; 21 deleted 1; 22 added 60. */
  sql(f, "INSERT INTO main.t VALUES (2), (8), (9), (60)");
  assert_int_equal(dg_catalog_refresh(f->cat, f->conn, at(22)), 1);
  int64_t one = 1, sixty = 60;
  dg_catalog_rows_remove(f->cat, "t", &one, 1, at(21));
  dg_catalog_rows_add(f->cat, "t", &sixty, 1, at(22));
  int64_t yes[] = {2, 8, 9, 60};
  for (size_t i = 0; i < 4; i++) assert_true(dg_catalog_row_known(f->cat, "t", yes[i]));
  assert_false(dg_catalog_has_row(f->cat, "t", 1));
}

/* A table dropped (or made again) before its reload is left alone, and a
 * new table starts known and empty. */
static void test_dropped_table_is_not_reloaded(void **state) {
  fx_t *f = *state;
  dg_catalog_rows_stale(f->cat, "t", at(30));
  dg_catalog_drop_table(f->cat, "t");
  assert_int_equal(dg_catalog_refresh(f->cat, f->conn, at(40)), 0);
  dg_tabledef_t *t = dg_tabledef_new("t", 1);
  snprintf(t->cols[0].name, sizeof t->cols[0].name, "v");
  dg_tabledef_finish(t);
  dg_catalog_put_table(f->cat, t);
  assert_false(dg_catalog_has_row(f->cat, "t", 1));
  assert_int_equal(dg_catalog_refresh(f->cat, f->conn, at(40)), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_stale_set_is_maybe_and_reloads_with_later_changes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_reload_from_a_database_ahead_of_the_log, setup, teardown),
      cmocka_unit_test_setup_teardown(test_dropped_table_is_not_reloaded, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
