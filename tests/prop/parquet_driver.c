/*
 * parquet_driver.c -- reads a Parquet file with DuckDB (in memory) and
 * prints it as one JSON document, for tests/api/test_export.py and
 * test_import.py (no Parquet reader is assumed on the test machine):
 *
 *   {"columns":[["id","BIGINT"],["v","DECIMAL(18,2)"],…],"rows":[["1",null,"1.50"],…]}
 *
 * Every value is DuckDB's text of it (a DECIMAL with all its decimals),
 * null for NULL. Usage: parquet_driver FILE. Exit 0, or 2 with DuckDB's
 * message on stderr.
 */
#include <duckdb.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

static void run(duckdb_connection c, const char *sql, const char *file, duckdb_result *res) {
  duckdb_prepared_statement st;
  if (duckdb_prepare(c, sql, &st) == DuckDBError) {
    fprintf(stderr, "%s\n", duckdb_prepare_error(st));
    exit(2);
  }
  duckdb_bind_varchar(st, 1, file);
  if (duckdb_execute_prepared(st, res) == DuckDBError) {
    fprintf(stderr, "%s\n", duckdb_result_error(res));
    exit(2);
  }
  duckdb_destroy_prepare(&st);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: parquet_driver FILE\n");
    return 2;
  }
  duckdb_database db;
  duckdb_connection c;
  if (duckdb_open(NULL, &db) == DuckDBError || duckdb_connect(db, &c) == DuckDBError) return 2;
  duckdb_result d, res;
  run(c, "SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet($1))", argv[1], &d);
  run(c, "SELECT * FROM read_parquet($1)", argv[1], &res);
  json_t *out = json_object(), *cols = json_array(), *rows = json_array();
  for (idx_t i = 0; i < duckdb_row_count(&d); i++) {
    char *n = duckdb_value_varchar(&d, 0, i), *t = duckdb_value_varchar(&d, 1, i);
    json_array_append_new(cols, json_pack("[ss]", n, t));
    duckdb_free(n);
    duckdb_free(t);
  }
  idx_t nc = duckdb_column_count(&res);
  for (idx_t i = 0; i < duckdb_row_count(&res); i++) {
    json_t *row = json_array();
    for (idx_t k = 0; k < nc; k++) {
      if (duckdb_value_is_null(&res, k, i)) {
        json_array_append_new(row, json_null());
        continue;
      }
      char *v = duckdb_value_varchar(&res, k, i);
      json_array_append_new(row, json_string(v));
      duckdb_free(v);
    }
    json_array_append_new(rows, row);
  }
  json_object_set_new(out, "columns", cols);
  json_object_set_new(out, "rows", rows);
  json_dumpf(out, stdout, JSON_COMPACT);
  putchar('\n');
  json_decref(out);
  duckdb_destroy_result(&d);
  duckdb_destroy_result(&res);
  duckdb_disconnect(&c);
  duckdb_close(&db);
  return 0;
}
