/*
 * test_dgsql.c -- the schema dg's SQL (dgsql.c) against an in-memory DuckDB:
 * every migration runs in order on an empty database, every named statement
 * prepares against the schema they make, and the builders write the exact
 * text their callers used to write themselves.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <duckdb.h>

#include "dg/common.h"
#include "dg/dgsql.h"

typedef struct {
  duckdb_database db;
  duckdb_connection c;
} fx_t;

static void exec(duckdb_connection c, const char *sql) {
  duckdb_result res;
  if (duckdb_query(c, sql, &res) == DuckDBError) fail_msg("%s: %s", sql, duckdb_result_error(&res));
  duckdb_destroy_result(&res);
}

static void prepares(duckdb_connection c, const char *sql) {
  duckdb_prepared_statement st;
  if (duckdb_prepare(c, sql, &st) == DuckDBError) fail_msg("%s: %s", sql, duckdb_prepare_error(st));
  duckdb_destroy_prepare(&st);
}

static int setup(void **state) {
  fx_t *f = dg_calloc(1, sizeof *f);
  assert_int_equal(duckdb_open(NULL, &f->db), DuckDBSuccess);
  assert_int_equal(duckdb_connect(f->db, &f->c), DuckDBSuccess);
  exec(f->c, dg_sql_schema_init);
  exec(f->c, dg_sql_schema_version_insert0);
  char set[128];
  for (int v = 1; v <= dg_sql_migration_count(); v++) {
    exec(f->c, dg_sql_migration(v));
    dg_sql_schema_version_set(set, sizeof set, NULL, v);
    exec(f->c, set);
  }
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx_t *f = *state;
  duckdb_disconnect(&f->c);
  duckdb_close(&f->db);
  dg_free(f);
  return 0;
}

static void test_migrations(void **state) {
  fx_t *f = *state;
  assert_true(dg_sql_migration_count() >= 9);
  assert_null(dg_sql_migration(0));
  assert_null(dg_sql_migration(dg_sql_migration_count() + 1));
  duckdb_result res;
  assert_int_equal(duckdb_query(f->c, dg_sql_schema_version_read, &res), DuckDBSuccess);
  assert_int_equal(duckdb_value_int64(&res, 0, 0), dg_sql_migration_count());
  duckdb_destroy_result(&res);
  assert_int_equal(duckdb_query(f->c, dg_sql_applied_read, &res), DuckDBSuccess);
  assert_int_equal(duckdb_row_count(&res), 1);
  char *last = duckdb_value_varchar(&res, 0, 0);
  assert_string_equal(last, "0-0");
  duckdb_free(last);
  duckdb_destroy_result(&res);
}

static void test_statements_prepare(void **state) {
  fx_t *f = *state;
  const char *const all[] = {
      dg_sql_schema_version_read, dg_sql_key_insert, dg_sql_key_lookup, dg_sql_key_touch,
      dg_sql_key_admin_count, dg_sql_key_delete, dg_sql_key_role, dg_sql_key_scope_upsert,
      dg_sql_key_scope_delete, dg_sql_bootstrapped_count, dg_sql_bootstrapped_insert, dg_sql_key_ids,
      dg_sql_revoked_jtis, dg_sql_table_names, dg_sql_table_columns, dg_sql_view_names,
      dg_sql_name_taken, dg_sql_view_insert, dg_sql_applied_last_id, dg_sql_applied_read,
      dg_sql_applied_write, dg_sql_holds_read, dg_sql_hold_delete, dg_sql_hold_insert,
      dg_sql_idem_since, dg_sql_idem_prune, dg_sql_idem_lookup, dg_sql_audit_cols_read,
      dg_sql_audit_cols_names, dg_sql_audit_col_insert, dg_sql_cell_log_of, dg_sql_revert_cells,
      dg_sql_revert_images, dg_sql_rebuild_exists, dg_sql_admin_audit_insert, dg_sql_admin_audit_list,
      dg_sql_key_list, dg_sql_token_revoke, dg_sql_holds_of_table, dg_sql_row_history, dg_sql_view_sql,
      dg_sql_view_list, dg_sql_view_exists,
  };
  for (size_t i = 0; i < DG_ARRAY_SIZE(all); i++) prepares(f->c, all[i]);
  /* The fragment, completed as its callers complete it. */
  char sql[1024];
  snprintf(sql, sizeof sql, "SELECT count(*)%s", dg_sql_update_changes_from);
  prepares(f->c, sql);
}

static void test_builders(void **state) {
  fx_t *f = *state;
  char buf[256];
  dg_sql_schema_version_set(buf, sizeof buf, NULL, 7);
  assert_string_equal(buf, "UPDATE dg.schema_version SET version = 7");
  dg_sql_schema_version_set(buf, sizeof buf, DG_SQL_SNAPSHOT_ALIAS, 1000009);
  assert_string_equal(buf, "UPDATE dg_snapshot_out.dg.schema_version SET version = 1000009");
  dg_sql_holds_delete_staged(buf, sizeof buf, "sales");
  assert_string_equal(buf, "DELETE FROM dg.holds WHERE table_name = 'sales' AND row_id IN (SELECT id FROM temp.dg_del)");

  struct {
    char *got;
    const char *want;
  } b[] = {
      {dg_sql_table_insert("sales"), "INSERT INTO dg.tables(name) VALUES ('sales')"},
      {dg_sql_column_insert("sales", "amount", 1, "number", 2),
       "INSERT INTO dg.columns VALUES ('sales', 'amount', 1, 'number', 2)"},
      {dg_sql_table_delete("sales"), "DELETE FROM dg.tables WHERE name = 'sales'"},
      {dg_sql_columns_delete("sales"), "DELETE FROM dg.columns WHERE table_name = 'sales'"},
      {dg_sql_holds_delete("sales"), "DELETE FROM dg.holds WHERE table_name = 'sales'"},
      {dg_sql_view_delete("summary"), "DELETE FROM dg.views WHERE name = 'summary'"},
  };
  exec(f->c, "CREATE TEMP TABLE dg_del (id BIGINT)");
  exec(f->c, buf); /* the staged delete */
  for (size_t i = 0; i < DG_ARRAY_SIZE(b); i++) {
    assert_string_equal(b[i].got, b[i].want);
    exec(f->c, b[i].got);
    dg_free(b[i].got);
  }
}

/* The snapshot's side (the copy under DG_SQL_SNAPSHOT_ALIAS) and the
 * consumer's (this database). */
static void test_rebuild(void **state) {
  fx_t *f = *state;
  exec(f->c, "ATTACH ':memory:' AS " DG_SQL_SNAPSHOT_ALIAS);
  exec(f->c, "CREATE SCHEMA " DG_SQL_SNAPSHOT_ALIAS ".dg");
  exec(f->c, dg_sql_rebuild_create);
  prepares(f->c, dg_sql_rebuild_insert);
  exec(f->c, "CREATE TABLE dg.snapshot_rebuild AS SELECT * FROM " DG_SQL_SNAPSHOT_ALIAS ".dg.snapshot_rebuild");
  duckdb_result res;
  assert_int_equal(duckdb_query(f->c, dg_sql_rebuild_exists, &res), DuckDBSuccess);
  assert_int_equal(duckdb_value_int64(&res, 0, 0), 1);
  duckdb_destroy_result(&res);
  prepares(f->c, dg_sql_rebuild_steps);
  exec(f->c, dg_sql_rebuild_drop);
  exec(f->c, "DETACH " DG_SQL_SNAPSHOT_ALIAS);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_migrations),
      cmocka_unit_test(test_statements_prepare),
      cmocka_unit_test(test_builders),
      cmocka_unit_test(test_rebuild),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
