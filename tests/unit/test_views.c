/*
 * test_views.c -- dg_view_sql_check against an in-memory DuckDB holding the
 * same catalog shape as a real one (dg.tables, dg.views, a user table and a
 * view, an attached second database): what a report query needs passes;
 * everything that writes, reads files, DuckDB's catalog, duckgrid's own
 * schema or another database is refused with a one-line reason.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "dg/common.h"
#include "dg/views.h"

typedef struct {
  duckdb_database db;
  duckdb_connection c;
} fx_t;

static void exec(duckdb_connection c, const char *sql) {
  duckdb_result res;
  if (duckdb_query(c, sql, &res) == DuckDBError) fail_msg("%s: %s", sql, duckdb_result_error(&res));
  duckdb_destroy_result(&res);
}

static int setup(void **state) {
  fx_t *f = dg_calloc(1, sizeof *f);
  assert_int_equal(duckdb_open(NULL, &f->db), DuckDBSuccess);
  assert_int_equal(duckdb_connect(f->db, &f->c), DuckDBSuccess);
  exec(f->c,
       "CREATE SCHEMA dg;"
       "CREATE TABLE dg.tables(name VARCHAR PRIMARY KEY);"
       "CREATE TABLE dg.views(name VARCHAR PRIMARY KEY, sql VARCHAR NOT NULL);"
       "CREATE TABLE dg.api_keys(id BIGINT, hash VARCHAR);"
       "CREATE SEQUENCE dg.api_keys_seq START 1;"
       "CREATE TABLE main.sales(id BIGINT PRIMARY KEY, parent_id BIGINT, name VARCHAR,"
       "  product_family VARCHAR, sales DECIMAL(18,2), units DECIMAL(18,0));"
       "INSERT INTO dg.tables VALUES ('sales');"
       "INSERT INTO main.sales VALUES (1, NULL, 'Brand X', NULL, 10.50, 3),"
       "  (2, 1, 'SKU 2', 'Snacks', 10.50, 3);"
       "CREATE TABLE main.stray(x INTEGER);" /* in main but not the grid's */
       "CREATE VIEW main.summary AS SELECT product_family, sum(sales) AS total FROM sales"
       "  GROUP BY 1;"
       "INSERT INTO dg.views VALUES ('summary', 'SELECT ...');"
       "ATTACH ':memory:' AS other;"
       "CREATE TABLE other.main.t(x INTEGER);");
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

static void want_ok(fx_t *f, const char *sql) {
  char err[256] = "unset";
  int rc = dg_view_sql_check(f->c, sql, err, sizeof err);
  if (rc != 0) fail_msg("rejected (%d: %s) but should pass: %s", rc, err, sql);
}

/* Rejected with DG_EINVAL, a one-line reason containing `why` (may be NULL). */
static void want_no(fx_t *f, const char *sql, const char *why) {
  char err[256] = "";
  int rc = dg_view_sql_check(f->c, sql, err, sizeof err);
  if (rc != DG_EINVAL) fail_msg("rc %d (%s), want DG_EINVAL, for: %s", rc, err, sql);
  if (err[0] == '\0') fail_msg("no reason given for: %s", sql);
  if (strchr(err, '\n')) fail_msg("reason has a line break: %s", err);
  if (why && strstr(err, why) == NULL) fail_msg("reason '%s' lacks '%s' for: %s", err, why, sql);
}

static void test_accepts_report_queries(void **state) {
  fx_t *f = *state;
  want_ok(f, "SELECT * FROM sales");
  want_ok(f, "SELECT * FROM sales;");
  want_ok(f, "  -- a comment\nSELECT 1 /* ; DROP TABLE sales */");
  want_ok(f, "select product_family, sum(sales) AS total_sales FROM sales "
             "WHERE parent_id IS NOT NULL GROUP BY product_family ORDER BY 2 DESC LIMIT 10");
  want_ok(f, "FROM sales SELECT name");
  want_ok(f, "SELECT * FROM main.sales");
  want_ok(f, "SELECT * FROM Sales");
  want_ok(f, "SELECT * FROM \"sales\"");
  want_ok(f, "SELECT * FROM summary");
  want_ok(f, "SELECT s.name, p.name AS parent FROM sales s LEFT JOIN sales p ON s.parent_id = p.id");
  want_ok(f, "SELECT * FROM sales WHERE id IN (SELECT parent_id FROM sales) AND "
             "EXISTS (SELECT 1 FROM summary)");
  want_ok(f, "SELECT name, sales, sum(sales) OVER (PARTITION BY parent_id ORDER BY id "
             "ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) FROM sales QUALIFY row_number() "
             "OVER (ORDER BY id) < 5");
  want_ok(f, "SELECT CASE WHEN sales > 5 THEN 'big' ELSE 'small' END, CAST(sales AS "
             "DECIMAL(10,1)), sales::DOUBLE, [1,2], {'a': 1}, list_transform([1], x -> x + 1), "
             "name COLLATE nocase, id BETWEEN 1 AND 2, coalesce(name, '?'), upper(name) "
             "FROM sales");
  want_ok(f, "SELECT * FROM (VALUES (1, 'a'), (2, 'b')) v(k, label)");
  want_ok(f, "SELECT 1");
  want_ok(f, "SELECT id FROM sales UNION ALL SELECT id FROM sales EXCEPT SELECT 3");
  want_ok(f, "SELECT DISTINCT ON (parent_id) * FROM sales ORDER BY ALL");
  want_ok(f, "SELECT name, sum(sales) FROM sales GROUP BY ROLLUP (name) HAVING sum(sales) > 0");
  want_ok(f, "SELECT * FROM sales USING SAMPLE 50%");
  want_ok(f, "SELECT #1 FROM sales");
  want_ok(f, "SELECT main.abs(-1)");
  want_ok(f, "UNPIVOT sales ON sales INTO NAME k VALUE v");
  want_ok(f, "SELECT * FROM (PIVOT sales ON product_family IN ('Snacks') USING sum(sales) "
             "GROUP BY parent_id)");
}

static void test_accepts_ctes(void **state) {
  fx_t *f = *state;
  want_ok(f, "WITH a AS (SELECT * FROM sales), b AS (SELECT * FROM a) SELECT * FROM b");
  want_ok(f, "WITH A AS (SELECT * FROM sales) SELECT * FROM a");
  want_ok(f, "WITH a AS MATERIALIZED (SELECT * FROM sales), b AS MATERIALIZED "
             "(SELECT * FROM a) SELECT * FROM b JOIN a USING (id)");
  want_ok(f, "WITH RECURSIVE tree AS (SELECT id, parent_id, 0 AS depth FROM sales WHERE "
             "parent_id IS NULL UNION ALL SELECT s.id, s.parent_id, t.depth + 1 FROM sales s "
             "JOIN tree t ON s.parent_id = t.id) SELECT * FROM tree");
  /* An outer CTE is visible inside subqueries. */
  want_ok(f, "WITH a AS (SELECT * FROM sales) SELECT * FROM sales WHERE id IN "
             "(SELECT id FROM a)");
  /* A CTE may shadow a user table; both are the grid's. */
  want_ok(f, "WITH sales AS (SELECT 1 AS id) SELECT * FROM sales");
}

static void test_rejects_non_select(void **state) {
  fx_t *f = *state;
  want_no(f, "", "empty");
  want_no(f, "   \n", "empty");
  want_no(f, "SELECT 1; SELECT 2", "exactly one");
  want_no(f, "SELECT 1 FROM sales; DROP TABLE sales", "exactly one");
  want_no(f, "DELETE FROM sales", "SELECT");
  want_no(f, "INSERT INTO sales VALUES (9, NULL, 'x', NULL, 1, 1)", "SELECT");
  want_no(f, "UPDATE sales SET sales = 0", "SELECT");
  want_no(f, "DROP TABLE sales", "SELECT");
  want_no(f, "CREATE TABLE x AS SELECT 1", "SELECT");
  want_no(f, "ATTACH ':memory:' AS x", "SELECT");
  want_no(f, "COPY sales TO '/tmp/dg_test_views_copy.csv'", "SELECT");
  want_no(f, "PRAGMA version", "SELECT");
  want_no(f, "EXPLAIN SELECT 1", "SELECT");
  want_no(f, "SET threads = 1", "SELECT");
  want_no(f, "CALL pragma_version()", "SELECT");
  want_no(f, "INSTALL httpfs", "SELECT");
  want_no(f, "SELEC 1", "syntax");
  want_no(f, "SELECT $1", "parameter");
  want_no(f, "SELECT ?", "parameter");
  /* Nothing above ran: sales still has its rows. */
  duckdb_result res;
  assert_int_equal(duckdb_query(f->c, "SELECT count(*) FROM sales", &res), DuckDBSuccess);
  assert_int_equal(duckdb_value_int64(&res, 0, 0), 2);
  duckdb_destroy_result(&res);
}

static void test_rejects_outside_reads(void **state) {
  fx_t *f = *state;
  want_no(f, "SELECT * FROM read_csv('/etc/passwd')", "read_csv");
  want_no(f, "SELECT * FROM read_text('/etc/passwd')", "table functions");
  want_no(f, "SELECT * FROM '/etc/passwd'", "not a table");
  want_no(f, "SELECT * FROM 'data.parquet'", "not a table");
  want_no(f, "FROM 'x.csv'", "not a table");
  want_no(f, "SELECT * FROM glob('*')", "table functions");
  want_no(f, "SELECT * FROM range(10)", "table functions");
  want_no(f, "SELECT * FROM duckdb_tables()", "table functions");
  want_no(f, "SELECT * FROM duckdb_tables", "not a table");
  want_no(f, "SELECT * FROM main.duckdb_tables", "not a table");
  want_no(f, "SELECT * FROM sqlite_master", "not a table");
  want_no(f, "SELECT * FROM stray", "not a table");
  want_no(f, "SELECT * FROM information_schema.tables", "grid");
  want_no(f, "SELECT * FROM pg_catalog.pg_class", "grid");
  want_no(f, "SELECT * FROM dg.views", "internal");
  want_no(f, "SELECT * FROM DG.api_keys", "internal");
  want_no(f, "SELECT * FROM \"dg\".\"api_keys\"", "internal");
  want_no(f, "SELECT * FROM sales WHERE name IN (SELECT hash FROM dg.api_keys)", "internal");
  want_no(f, "SELECT (SELECT max(hash) FROM dg.api_keys) FROM sales", "internal");
  want_no(f, "SELECT * FROM other.main.t", "another database");
  want_no(f, "SELECT * FROM other.t", "grid");
  want_no(f, "SELECT * FROM memory.main.sales", "another database");
  want_no(f, "SELECT * FROM nosuch", "not a table");
  want_no(f, "SHOW TABLES", "SHOW");
  want_no(f, "DESCRIBE sales", "SHOW");
  want_no(f, "SUMMARIZE sales", "SHOW");
  want_no(f, "SELECT * FROM sales AT (VERSION => 1)", "time travel");
  want_no(f, "SELECT nextval('dg.api_keys_seq')", "nextval");
  want_no(f, "SELECT current_setting('threads')", "current_setting");
  want_no(f, "SELECT setseed(0.5)", "setseed");
  want_no(f, "SELECT pg_get_viewdef(1)", "pg_get_viewdef");
  want_no(f, "SELECT col_description(1, 1)", "col_description");
  want_no(f, "SELECT NEXTVAL('dg.api_keys_seq')", "nextval");
  want_no(f, "SELECT dg.abs(1)", "qualified");
  want_no(f, "SELECT system.main.abs(1)", "qualified");
  want_no(f, "SELECT nosuchcol FROM sales", "nosuchcol");
}

/* A name that is not a CTE where it is used falls through to DuckDB's catalog,
 * so scope must be tracked as DuckDB binds it. */
static void test_cte_scope(void **state) {
  fx_t *f = *state;
  want_no(f, "WITH duckdb_tables AS (SELECT * FROM duckdb_tables) SELECT * FROM duckdb_tables",
          "not a table");
  want_no(f, "WITH a AS (SELECT * FROM duckdb_views), duckdb_views AS (SELECT 1) "
             "SELECT * FROM a",
          "not a table");
  want_no(f, "WITH sqlite_master AS MATERIALIZED (SELECT * FROM sqlite_master) "
             "SELECT * FROM sqlite_master",
          "not a table");
  want_no(f, "SELECT * FROM (WITH duckdb_tables AS (SELECT 1) SELECT * FROM duckdb_tables) x, "
             "duckdb_tables",
          "not a table");
  want_no(f, "WITH x AS (SELECT 1) SELECT * FROM main.x", "not a table");
  want_no(f, "WITH RECURSIVE r AS (SELECT * FROM duckdb_tables UNION ALL SELECT * FROM r) "
             "SELECT 1",
          "not a table");
}

static void test_limits(void **state) {
  fx_t *f = *state;
  size_t n = DG_VIEW_SQL_MAX + 16;
  char *big = dg_malloc(n + 1);
  memset(big, ' ', n);
  memcpy(big, "SELECT 1", 8);
  big[n] = '\0';
  want_no(f, big, "longer");
  dg_free(big);
  want_no(f, NULL, "empty");
  /* A small err buffer is still NUL-terminated; NULL err is allowed. */
  char tiny[8];
  assert_int_equal(dg_view_sql_check(f->c, "DROP TABLE sales", tiny, sizeof tiny), DG_EINVAL);
  assert_true(strlen(tiny) < sizeof tiny);
  assert_int_equal(dg_view_sql_check(f->c, "DROP TABLE sales", NULL, 0), DG_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_accepts_report_queries),
      cmocka_unit_test(test_accepts_ctes),
      cmocka_unit_test(test_rejects_non_select),
      cmocka_unit_test(test_rejects_outside_reads),
      cmocka_unit_test(test_cte_scope),
      cmocka_unit_test(test_limits),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
