/*
 * bench_mkdb.c -- runs SQL statements against a DuckDB file (the server
 * stopped), one per argument, each timed on stderr. bench/run.py uses it to
 * fill the big tables of the `spread` and `scale` scenarios set-based in
 * seconds, where 1M-10M rows through POST /tables/{t}/rows would take far
 * longer than the whole bench may (the insert rate through the API is
 * measured separately, on the 100k-leaf table). The table itself is created
 * through the API first, so the catalog is the server's own.
 *
 * Usage: bench_mkdb DB_FILE SQL...
 */
#include <stdio.h>
#include <time.h>

#include <duckdb.h>

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: bench_mkdb DB_FILE SQL...\n");
    return 2;
  }
  duckdb_database db;
  duckdb_connection conn;
  char *err = NULL;
  duckdb_config cfg;
  duckdb_create_config(&cfg);
  duckdb_set_config(cfg, "autoinstall_known_extensions", "false");
  duckdb_set_config(cfg, "autoload_known_extensions", "false");
  if (duckdb_open_ext(argv[1], &db, cfg, &err) == DuckDBError) {
    fprintf(stderr, "bench_mkdb: open %s: %s\n", argv[1], err ? err : "?");
    return 1;
  }
  duckdb_destroy_config(&cfg);
  if (duckdb_connect(db, &conn) == DuckDBError) {
    fprintf(stderr, "bench_mkdb: connect failed\n");
    return 1;
  }
  int rc = 0;
  for (int i = 2; i < argc && rc == 0; i++) {
    double t0 = now_ms();
    duckdb_result res;
    if (duckdb_query(conn, argv[i], &res) == DuckDBError) {
      fprintf(stderr, "bench_mkdb: %s\n  in: %.200s\n", duckdb_result_error(&res), argv[i]);
      rc = 1;
    } else {
      fprintf(stderr, "bench_mkdb: %.1f ms, %llu rows: %.100s\n", now_ms() - t0,
              (unsigned long long)duckdb_rows_changed(&res), argv[i]);
      /* First column of the first row, for queries that return something. */
      if (duckdb_column_count(&res) > 0 && duckdb_row_count(&res) > 0) {
        char *v = duckdb_value_varchar(&res, 0, 0);
        if (v) printf("%s\n", v);
        duckdb_free(v);
      }
    }
    duckdb_destroy_result(&res);
  }
  duckdb_disconnect(&conn);
  duckdb_close(&db);
  return rc;
}
