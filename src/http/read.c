/*
 * read.c -- the read side of tables and rows:
 *
 *   GET /tables                          {"tables":[table…]} in name order
 *   GET /tables/{table}                  {"name","columns":[…],"row_count"}
 *   GET /tables/{table}/rows             {"rows":[row…],"next":id|null}
 *       ?parent_id=null|N&limit=&after=
 *       &children=true                   each row also carries "children" (its count)
 *   GET /tables/{table}/rows/{id}        the row plus "children"
 *   GET /tables/{table}/holds            {"holds":[{"row_id","column"}…]}
 *   GET /tables/{table}/rows/{id}/history {"history":[change…],"next":update id|null}
 *       ?column=&limit=&before=          a row's changes from the audit log, newest first
 *   GET /tables/{table}/export?format=csv|json|parquet  every row, one snapshot
 *
 * Which tables exist and what their columns are comes from the catalog (the
 * API's validated copy); the rows themselves come straight from DuckDB, the
 * system of record, on this thread's own connection. Each response is one
 * statement, so it reads one consistent snapshot.
 *
 * Number cells are DECIMAL(18,scale). They are read from the result chunks as
 * the raw scaled integers DuckDB stores and printed with exactly `scale`
 * decimals by the JSON writer, so no double ever touches a value. Names reach
 * SQL only after dg_name_valid() and always double-quoted; every client value
 * is a bound parameter.
 *
 * Paging is by id (keyset): a page asks for limit+1 rows after the cursor, so
 * "next" is set exactly when another row follows, and a row inserted or
 * deleted between pages never shifts the ones the client has yet to see.
 */
#include <duckdb.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dg/buf.h"
#include "dg/catalog.h"
#include "dg/common.h"
#include "dg/db.h"
#include "dg/decimal.h"
#include "dg/http.h"
#include "dg/iofile.h"
#include "dg/jsonw.h"
#include "dg/log.h"
#include "dg/redis.h"

/* Rows per page unless the client asks otherwise. */
#define ROWS_LIMIT_DEFAULT 100
/* Most rows per page: ~1-2 MB of JSON for a grid of a dozen columns, which
 * one response can carry without a client or proxy choking on it. */
#define ROWS_LIMIT_MAX 10000

/* ======================================================================= */
/* Parameters                                                                */
/* ======================================================================= */

/* Parses a strict decimal int64: optional '-', digits, no leading zeros, no
 * spaces or '+', overflow checked. 0 or DG_EINVAL (*out untouched). */
static int parse_i64(const char *s, int64_t *out) {
  if (s == NULL) return DG_EINVAL;
  int neg = *s == '-';
  const char *p = s + neg;
  if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] != '\0') || (neg && p[0] == '0'))
    return DG_EINVAL;
  uint64_t v = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
  for (; *p; p++) {
    if (*p < '0' || *p > '9') return DG_EINVAL;
    unsigned d = (unsigned)(*p - '0');
    if (v > (lim - d) / 10) return DG_EINVAL;
    v = v * 10 + d;
  }
  *out = neg ? (v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v) : (int64_t)v;
  return 0;
}

/* ?limit= in 1..ROWS_LIMIT_MAX (default when absent); answers 400 otherwise. */
static int limit_or_problem(dg_req_t *r, int64_t *out) {
  const char *s = dg_query(r, "limit");
  int64_t v = ROWS_LIMIT_DEFAULT;
  if (s && (parse_i64(s, &v) != 0 || v < 1 || v > ROWS_LIMIT_MAX)) {
    dg_problem(r, 400, NULL, "limit must be an integer from 1 to %d", ROWS_LIMIT_MAX);
    return DG_EINVAL;
  }
  *out = v;
  return 0;
}

/* This thread's DuckDB connection, or NULL after answering 503. */
static duckdb_connection conn_or_problem(dg_req_t *r) {
  duckdb_connection c = dg_db_conn(r->app->db);
  if (c == NULL) dg_problem(r, 503, NULL, "the database is unavailable");
  return c;
}

/* Answers a failed statement: 404 if the table vanished meanwhile (dropped
 * between the catalog lookup and the query), else 500 with the cause logged. */
static void db_failed(dg_req_t *r, const char *table, const char *what, const char *why) {
  dg_tabledef_t *t = dg_catalog_table(r->app->catalog, table);
  if (t == NULL) {
    dg_problem(r, 404, NULL, "table '%s' does not exist", table);
    return;
  }
  dg_tabledef_unref(t);
  dg_log_error("%s of table '%s' failed: %s", what, table, why ? why : "?");
  dg_problem(r, 500, NULL, "reading table '%s' failed", table);
}

/* One statement built around catalog names, run prepared: whatever a name
 * held, the text can only ever be one statement (duckdb_query would run
 * every statement it is given). The names are checked against the
 * whitelist here too, though the catalog only takes whitelisted ones.
 * DuckDBSuccess, or DuckDBError with *res zeroed (destroying it is a no-op)
 * and the reason in err. */
static duckdb_state query_prepared(duckdb_connection c, const dg_tabledef_t *t, const char *sql,
                                   duckdb_result *res, char *err, size_t errcap) {
  memset(res, 0, sizeof *res);
  int ok = dg_name_valid(t->name);
  for (int i = 0; ok && i < t->ncols; i++) ok = dg_name_valid(t->cols[i].name);
  if (!ok) {
    snprintf(err, errcap, "not a valid table or column name");
    return DuckDBError;
  }
  return dg_db_query_one(c, sql, res, err, errcap);
}

/* ======================================================================= */
/* Tables                                                                    */
/* ======================================================================= */

/* SELECT count(*) of a table. DG_EIO when DuckDB fails (e.g. the table was
 * dropped meanwhile), with DuckDB's message in err. */
static int count_rows(duckdb_connection c, const char *table, int64_t *out, char *err,
                      size_t errcap) {
  /* The name passed the whitelist; prepared, so the text can only ever be
   * one statement (duckdb_query would run every statement it is given). */
  if (!dg_name_valid(table)) {
    snprintf(err, errcap, "not a valid table name");
    return DG_EINVAL;
  }
  char sql[DG_NAME_MAX + 64];
  snprintf(sql, sizeof sql, "SELECT count(*) FROM main.\"%s\"", table);
  duckdb_prepared_statement st;
  duckdb_result res;
  int rc = DG_EIO;
  if (duckdb_prepare(c, sql, &st) == DuckDBError) {
    snprintf(err, errcap, "%s", duckdb_prepare_error(st));
    duckdb_destroy_prepare(&st);
    return rc;
  }
  if (duckdb_execute_prepared(st, &res) == DuckDBError) {
    snprintf(err, errcap, "%s", duckdb_result_error(&res));
  } else if (duckdb_row_count(&res) == 1) {
    *out = duckdb_value_int64(&res, 0, 0);
    rc = 0;
  } else {
    snprintf(err, errcap, "count(*) gave no row");
  }
  duckdb_destroy_result(&res);
  duckdb_destroy_prepare(&st);
  return rc;
}

/* {"name","columns":[{"name","type"[,"scale"]}…],"row_count"} */
static void write_table(dg_jsonw_t *w, const dg_tabledef_t *t, int64_t row_count) {
  dg_jsonw_obj(w);
  dg_jsonw_key(w, "name");
  dg_jsonw_str(w, t->name);
  dg_jsonw_key(w, "columns");
  dg_jsonw_arr(w);
  for (int i = 0; i < t->ncols; i++) {
    const dg_coldef_t *col = &t->cols[i];
    dg_jsonw_obj(w);
    dg_jsonw_key(w, "name");
    dg_jsonw_str(w, col->name);
    dg_jsonw_key(w, "type");
    dg_jsonw_str(w, col->type == DG_COL_NUMBER ? "number" : "text");
    if (col->type == DG_COL_NUMBER) {
      dg_jsonw_key(w, "scale");
      dg_jsonw_int(w, col->scale);
    }
    dg_jsonw_end(w);
  }
  dg_jsonw_end(w);
  dg_jsonw_key(w, "row_count");
  dg_jsonw_int(w, row_count);
  dg_jsonw_end(w);
}

static int tables_list(dg_req_t *r) {
  if (dg_read_consistent_or_problem(r) != 0) return 0;
  duckdb_connection c = conn_or_problem(r);
  if (c == NULL) return 0;
  size_t n = 0;
  char **names = dg_catalog_table_names(r->app->catalog, &n);
  dg_buf_t buf;
  dg_buf_init(&buf);
  dg_jsonw_t w;
  dg_jsonw_init(&w, &buf);
  dg_jsonw_obj(&w);
  dg_jsonw_key(&w, "tables");
  dg_jsonw_arr(&w);
  for (size_t i = 0; i < n; i++) {
    if (!dg_principal_can(&r->who, names[i])) continue; /* a scoped key sees its tables */
    dg_tabledef_t *t = dg_catalog_table(r->app->catalog, names[i]);
    int64_t count;
    char why[256];
    /* A table dropped since the names were taken is simply left out. */
    if (t && count_rows(c, t->name, &count, why, sizeof why) == 0) write_table(&w, t, count);
    dg_tabledef_unref(t);
  }
  dg_jsonw_end(&w);
  dg_jsonw_end(&w);
  dg_catalog_names_free(names, n);
  dg_reply_buf(r, 200, &buf);
  dg_buf_dispose(&buf);
  return 0;
}

static int table_get(dg_req_t *r) {
  if (dg_read_consistent_or_problem(r) != 0) return 0;
  dg_tabledef_t *t = dg_table_or_problem(r, r->params[0]);
  if (t == NULL) return 0;
  duckdb_connection c = conn_or_problem(r);
  int64_t count;
  char why[256];
  if (c == NULL) {
    /* answered */
  } else if (count_rows(c, t->name, &count, why, sizeof why) != 0) {
    db_failed(r, t->name, "counting rows", why);
  } else {
    dg_buf_t buf;
    dg_buf_init(&buf);
    dg_jsonw_t w;
    dg_jsonw_init(&w, &buf);
    write_table(&w, t, count);
    dg_reply_buf(r, 200, &buf);
    dg_buf_dispose(&buf);
  }
  dg_tabledef_unref(t);
  return 0;
}

/* ======================================================================= */
/* Rows                                                                      */
/* ======================================================================= */

/*
 * Result layout of every row query:
 *
 *   col 0   id         BIGINT
 *   col 1   parent_id  BIGINT, NULL for roots
 *   col 2+i the table's column i, in declared order:
 *           text   -> VARCHAR
 *           number -> DECIMAL(18,scale), stored as int64 (int16/int32 for
 *                     narrower widths, which we accept too)
 *   [last]  children   BIGINT (single-row query, or a list with ?children=true)
 */
#define FIRST_CELL 2

/* One result column of the current chunk. */
typedef struct {
  const void *data;       /* the vector's values                         */
  uint64_t *valid;        /* validity mask or NULL when all are valid    */
  duckdb_type internal;   /* storage type of a DECIMAL, else its type    */
  int scale;              /* DECIMAL scale                               */
} colv_t;

/* "SELECT id, parent_id, "c1", … " for t (names are whitelisted and quoted). */
static void select_list(dg_buf_t *sql, const dg_tabledef_t *t) {
  dg_buf_puts(sql, "SELECT id, parent_id");
  for (int i = 0; i < t->ncols; i++) dg_buf_printf(sql, ", \"%s\"", t->cols[i].name);
}

/* Checks the result's columns against the table definition and records each
 * DECIMAL's storage type and scale. 0, or DG_EINTERNAL on a mismatch. */
static int describe_result(duckdb_result *res, const dg_tabledef_t *t, idx_t ncols,
                           colv_t *cols) {
  if (duckdb_column_count(res) != ncols) return DG_EINTERNAL;
  for (idx_t k = 0; k < ncols; k++) {
    duckdb_logical_type lt = duckdb_column_logical_type(res, k);
    duckdb_type ty = duckdb_get_type_id(lt);
    cols[k].internal = ty;
    cols[k].scale = 0;
    int ok;
    int cell = (int)k - FIRST_CELL;
    if (cell < 0 || cell >= t->ncols) {
      ok = ty == DUCKDB_TYPE_BIGINT;
    } else if (t->cols[cell].type == DG_COL_TEXT) {
      ok = ty == DUCKDB_TYPE_VARCHAR;
    } else {
      ok = ty == DUCKDB_TYPE_DECIMAL;
      if (ok) {
        cols[k].internal = duckdb_decimal_internal_type(lt);
        cols[k].scale = duckdb_decimal_scale(lt);
        ok = cols[k].internal == DUCKDB_TYPE_SMALLINT ||
             cols[k].internal == DUCKDB_TYPE_INTEGER || cols[k].internal == DUCKDB_TYPE_BIGINT;
      }
    }
    duckdb_destroy_logical_type(&lt);
    if (!ok) return DG_EINTERNAL;
  }
  return 0;
}

static void bind_chunk(duckdb_data_chunk chunk, idx_t ncols, colv_t *cols) {
  for (idx_t k = 0; k < ncols; k++) {
    duckdb_vector v = duckdb_data_chunk_get_vector(chunk, k);
    cols[k].data = duckdb_vector_get_data(v);
    cols[k].valid = duckdb_vector_get_validity(v);
  }
}

static int is_valid(const colv_t *c, idx_t i) {
  return c->valid == NULL || duckdb_validity_row_is_valid(c->valid, i);
}

/* The raw scaled integer of a DECIMAL cell. */
static int64_t decimal_at(const colv_t *c, idx_t i) {
  switch (c->internal) {
    case DUCKDB_TYPE_SMALLINT: return ((const int16_t *)c->data)[i];
    case DUCKDB_TYPE_INTEGER: return ((const int32_t *)c->data)[i];
    default: return ((const int64_t *)c->data)[i];
  }
}

static int64_t bigint_at(const colv_t *c, idx_t i) { return ((const int64_t *)c->data)[i]; }

/* {"id","parent_id",<cells>[,"children"]} for row i of the current chunk. */
static void write_row(dg_jsonw_t *w, const dg_tabledef_t *t, const colv_t *cols, idx_t i,
                      int with_children) {
  dg_jsonw_obj(w);
  dg_jsonw_key(w, "id");
  dg_jsonw_id(w, bigint_at(&cols[0], i));
  dg_jsonw_key(w, "parent_id");
  if (is_valid(&cols[1], i)) dg_jsonw_id(w, bigint_at(&cols[1], i));
  else dg_jsonw_null(w);
  for (int c = 0; c < t->ncols; c++) {
    const colv_t *cv = &cols[FIRST_CELL + c];
    dg_jsonw_key(w, t->cols[c].name);
    if (!is_valid(cv, i)) {
      dg_jsonw_null(w);
    } else if (t->cols[c].type == DG_COL_NUMBER) {
      dg_jsonw_dec(w, decimal_at(cv, i), cv->scale);
    } else {
      duckdb_string_t *s = &((duckdb_string_t *)cv->data)[i];
      dg_jsonw_strn(w, duckdb_string_t_data(s), duckdb_string_t_length(*s));
    }
  }
  if (with_children) {
    dg_jsonw_key(w, "children");
    dg_jsonw_int(w, bigint_at(&cols[FIRST_CELL + t->ncols], i));
  }
  dg_jsonw_end(w);
}

/* Prepares sql; on failure answers (404 if the table is gone, else 500). */
static int prepare_or_problem(dg_req_t *r, duckdb_connection c, const dg_tabledef_t *t,
                              const char *sql, duckdb_prepared_statement *st) {
  if (duckdb_prepare(c, sql, st) == DuckDBSuccess) return 0;
  db_failed(r, t->name, "preparing a read", duckdb_prepare_error(*st));
  duckdb_destroy_prepare(st);
  return DG_EIO;
}

static int rows_list(dg_req_t *r) {
  if (dg_read_consistent_or_problem(r) != 0) return 0;
  const char *parent_s = dg_query(r, "parent_id");
  const char *after_s = dg_query(r, "after");
  const char *children_s = dg_query(r, "children");
  int64_t limit, parent = 0, after = 0;
  int roots = 0, with_children = 0;
  /* Parameters first: a malformed request is 400 whatever the table. */
  if (limit_or_problem(r, &limit) != 0) return 0;
  if (children_s) {
    with_children = strcmp(children_s, "true") == 0;
    if (!with_children && strcmp(children_s, "false") != 0) {
      dg_problem(r, 400, NULL, "children must be true or false");
      return 0;
    }
  }
  if (parent_s) {
    roots = strcmp(parent_s, "null") == 0;
    if (!roots && parse_i64(parent_s, &parent) != 0) {
      dg_problem(r, 400, NULL, "parent_id must be a 64-bit integer or null");
      return 0;
    }
  }
  if (after_s && parse_i64(after_s, &after) != 0) {
    dg_problem(r, 400, NULL, "after must be a 64-bit integer row id");
    return 0;
  }
  dg_tabledef_t *t = dg_table_or_problem(r, r->params[0]);
  if (t == NULL) return 0;
  duckdb_connection c = conn_or_problem(r);
  if (c == NULL) {
    dg_tabledef_unref(t);
    return 0;
  }

  dg_buf_t sql;
  dg_buf_init(&sql);
  select_list(&sql, t);
  /* The child count (a tree grid draws a toggle only where there are
   * children) is a correlated count DuckDB turns into one grouped join; the
   * outer table is aliased so the inner id and parent_id are unambiguous. */
  if (with_children)
    dg_buf_printf(&sql, ", (SELECT count(*) FROM main.\"%s\" AS c WHERE c.parent_id = o.id)::BIGINT",
                  t->name);
  dg_buf_printf(&sql, " FROM main.\"%s\" AS o WHERE true", t->name);
  idx_t np = 0;
  if (roots) dg_buf_puts(&sql, " AND parent_id IS NULL");
  else if (parent_s) dg_buf_printf(&sql, " AND parent_id = $%llu", (unsigned long long)++np);
  if (after_s) dg_buf_printf(&sql, " AND id > $%llu", (unsigned long long)++np);
  dg_buf_printf(&sql, " ORDER BY id LIMIT $%llu", (unsigned long long)++np);

  duckdb_prepared_statement st = NULL;
  if (prepare_or_problem(r, c, t, sql.data, &st) != 0) goto out;
  idx_t p = 1;
  if (parent_s && !roots) duckdb_bind_int64(st, p++, parent);
  if (after_s) duckdb_bind_int64(st, p++, after);
  duckdb_bind_int64(st, p, limit + 1); /* one more tells whether "next" is due */

  duckdb_result res;
  if (duckdb_execute_prepared(st, &res) == DuckDBError) {
    db_failed(r, t->name, "listing rows", duckdb_result_error(&res));
    duckdb_destroy_result(&res);
    duckdb_destroy_prepare(&st);
    goto out;
  }
  idx_t ncols = FIRST_CELL + (idx_t)t->ncols + (with_children ? 1 : 0);
  colv_t *cols = dg_calloc(ncols, sizeof *cols);
  if (describe_result(&res, t, ncols, cols) != 0) {
    db_failed(r, t->name, "listing rows", "the columns differ from the catalog");
  } else {
    dg_buf_t body;
    dg_buf_init(&body);
    dg_jsonw_t w;
    dg_jsonw_init(&w, &body);
    dg_jsonw_obj(&w);
    dg_jsonw_key(&w, "rows");
    dg_jsonw_arr(&w);
    int64_t written = 0, last = 0;
    int more = 0;
    duckdb_data_chunk chunk;
    while (!more && (chunk = duckdb_fetch_chunk(res)) != NULL) {
      idx_t n = duckdb_data_chunk_get_size(chunk);
      bind_chunk(chunk, ncols, cols);
      for (idx_t i = 0; i < n; i++) {
        if (written == limit) {
          more = 1;
          break;
        }
        write_row(&w, t, cols, i, with_children);
        last = bigint_at(&cols[0], i);
        written++;
      }
      duckdb_destroy_data_chunk(&chunk);
    }
    dg_jsonw_end(&w);
    dg_jsonw_key(&w, "next");
    if (more) dg_jsonw_id(&w, last);
    else dg_jsonw_null(&w);
    dg_jsonw_end(&w);
    dg_reply_buf(r, 200, &body);
    dg_buf_dispose(&body);
  }
  dg_free(cols);
  duckdb_destroy_result(&res);
  duckdb_destroy_prepare(&st);
out:
  dg_buf_dispose(&sql);
  dg_tabledef_unref(t);
  return 0;
}

static int row_get(dg_req_t *r) {
  if (dg_read_consistent_or_problem(r) != 0) return 0;
  int64_t id;
  dg_tabledef_t *t = dg_table_or_problem(r, r->params[0]);
  if (t == NULL) return 0;
  if (parse_i64(r->params[1], &id) != 0) {
    dg_problem(r, 400, NULL, "'%.40s' is not a 64-bit integer row id", r->params[1]);
    dg_tabledef_unref(t);
    return 0;
  }
  duckdb_connection c = conn_or_problem(r);
  if (c == NULL) {
    dg_tabledef_unref(t);
    return 0;
  }
  /* One statement, so the row and its child count come from one snapshot. */
  dg_buf_t sql;
  dg_buf_init(&sql);
  select_list(&sql, t);
  dg_buf_printf(&sql,
                ", (SELECT count(*) FROM main.\"%s\" WHERE parent_id = $1)::BIGINT"
                " FROM main.\"%s\" WHERE id = $1",
                t->name, t->name);
  duckdb_prepared_statement st = NULL;
  if (prepare_or_problem(r, c, t, sql.data, &st) != 0) goto out;
  duckdb_bind_int64(st, 1, id);
  duckdb_result res;
  if (duckdb_execute_prepared(st, &res) == DuckDBError) {
    db_failed(r, t->name, "reading a row", duckdb_result_error(&res));
    duckdb_destroy_result(&res);
    duckdb_destroy_prepare(&st);
    goto out;
  }
  idx_t ncols = FIRST_CELL + (idx_t)t->ncols + 1;
  colv_t *cols = dg_calloc(ncols, sizeof *cols);
  duckdb_data_chunk chunk = NULL;
  if (describe_result(&res, t, ncols, cols) != 0) {
    db_failed(r, t->name, "reading a row", "the columns differ from the catalog");
  } else if ((chunk = duckdb_fetch_chunk(res)) == NULL || duckdb_data_chunk_get_size(chunk) == 0) {
    dg_problem(r, 404, NULL, "row %" PRId64 " does not exist in table '%s'", id, t->name);
  } else {
    dg_buf_t body;
    dg_buf_init(&body);
    dg_jsonw_t w;
    dg_jsonw_init(&w, &body);
    bind_chunk(chunk, ncols, cols);
    write_row(&w, t, cols, 0, 1);
    dg_reply_buf(r, 200, &body);
    dg_buf_dispose(&body);
  }
  if (chunk) duckdb_destroy_data_chunk(&chunk);
  dg_free(cols);
  duckdb_destroy_result(&res);
  duckdb_destroy_prepare(&st);
out:
  dg_buf_dispose(&sql);
  dg_tabledef_unref(t);
  return 0;
}

/* GET /tables/{table}/holds: the held cells, as dg.holds has them once
 * every answered write is persisted (a web grid draws their lock icons from
 * it). */
static int holds_list(dg_req_t *r) {
  if (dg_read_consistent_or_problem(r) != 0) return 0;
  dg_tabledef_t *t = dg_table_or_problem(r, r->params[0]);
  if (t == NULL) return 0;
  duckdb_connection c = conn_or_problem(r);
  if (c == NULL) {
    dg_tabledef_unref(t);
    return 0;
  }
  duckdb_prepared_statement st = NULL;
  if (prepare_or_problem(r, c, t,
                         "SELECT row_id, column_name FROM dg.holds WHERE table_name = $1"
                         " ORDER BY row_id, column_name",
                         &st) != 0) {
    dg_tabledef_unref(t);
    return 0;
  }
  duckdb_bind_varchar(st, 1, t->name);
  duckdb_result res;
  if (duckdb_execute_prepared(st, &res) == DuckDBError) {
    db_failed(r, t->name, "listing holds", duckdb_result_error(&res));
  } else {
    dg_buf_t body;
    dg_buf_init(&body);
    dg_jsonw_t w;
    dg_jsonw_init(&w, &body);
    dg_jsonw_obj(&w);
    dg_jsonw_key(&w, "holds");
    dg_jsonw_arr(&w);
    idx_t n = duckdb_row_count(&res);
    for (idx_t i = 0; i < n; i++) {
      char *col = duckdb_value_varchar(&res, 1, i);
      dg_jsonw_obj(&w);
      dg_jsonw_key(&w, "row_id");
      dg_jsonw_id(&w, duckdb_value_int64(&res, 0, i));
      dg_jsonw_key(&w, "column");
      dg_jsonw_strn(&w, col ? col : "", col ? strlen(col) : 0);
      dg_jsonw_end(&w);
      duckdb_free(col);
    }
    dg_jsonw_end(&w);
    dg_jsonw_end(&w);
    dg_reply_buf(r, 200, &body);
    dg_buf_dispose(&body);
  }
  duckdb_destroy_result(&res);
  duckdb_destroy_prepare(&st);
  dg_tabledef_unref(t);
  return 0;
}

/* GET /tables/{table}/rows/{id}/history: who changed the row's cells (or the
 * row itself: insert, move, delete, which carry "column": null), when, old ->
 * new, by which update, from the audit log (dg.cell_history, see migration 5
 * in src/store/db.c), newest update first. ?column= keeps one column's
 * changes; ?limit= counts updates, so one update's changes to the row are
 * never split across pages; ?before=<update id> continues from "next". One
 * statement: one snapshot. */
static int row_history(dg_req_t *r) {
  if (dg_read_consistent_or_problem(r) != 0) return 0;
  int64_t id, limit;
  dg_tabledef_t *t = dg_table_or_problem(r, r->params[0]);
  if (t == NULL) return 0;
  if (parse_i64(r->params[1], &id) != 0) {
    dg_problem(r, 400, NULL, "'%.40s' is not a 64-bit integer row id", r->params[1]);
    goto out_t;
  }
  if (limit_or_problem(r, &limit) != 0) goto out_t;
  const char *column = dg_query(r, "column");
  if (column && dg_tabledef_col(t, column) == NULL) {
    dg_problem(r, 400, NULL, "table '%s' has no column '%.80s'", t->name, column);
    goto out_t;
  }
  dg_redis_xid_t before = {(uint64_t)INT64_MAX, 0};
  const char *bs = dg_query(r, "before");
  if (bs && (dg_redis_xid_parse(bs, strlen(bs), &before) != 0 || before.ms > (uint64_t)INT64_MAX ||
             before.seq > (uint64_t)INT64_MAX)) {
    dg_problem(r, 400, NULL, "before must be an update id like \"1732870000000-0\"; got '%.60s'", bs);
    goto out_t;
  }
  duckdb_connection c = conn_or_problem(r);
  if (c == NULL) goto out_t;
  duckdb_prepared_statement st = NULL;
  if (prepare_or_problem(r, c, t,
                         "WITH h AS (SELECT CAST(split_part(stream_id, '-', 1) AS BIGINT) AS ms,"
                         "  CAST(split_part(stream_id, '-', 2) AS BIGINT) AS seq, stream_id, request_id,"
                         "  \"user\", strftime(ts, '%Y-%m-%dT%H:%M:%S.%gZ') AS ts, column_name, old, new"
                         "  FROM dg.cell_history WHERE table_name = $1 AND row_id = $2"
                         "  AND ($3::VARCHAR IS NULL OR column_name = $3)),"
                         " p AS (SELECT * FROM h WHERE ms < $4 OR (ms = $4 AND seq < $5)),"
                         " u AS (SELECT DISTINCT ms, seq FROM p ORDER BY ms DESC, seq DESC LIMIT $6)"
                         " SELECT p.ms, p.seq, stream_id, request_id, \"user\", ts, column_name, old, new"
                         " FROM p JOIN u ON p.ms = u.ms AND p.seq = u.seq"
                         " ORDER BY p.ms DESC, p.seq DESC, column_name NULLS FIRST, old NULLS FIRST",
                         &st) != 0)
    goto out_t;
  duckdb_bind_varchar(st, 1, t->name);
  duckdb_bind_int64(st, 2, id);
  if (column) duckdb_bind_varchar(st, 3, column);
  else duckdb_bind_null(st, 3);
  duckdb_bind_int64(st, 4, (int64_t)before.ms);
  duckdb_bind_int64(st, 5, (int64_t)before.seq);
  duckdb_bind_int64(st, 6, limit + 1);
  duckdb_result res;
  if (duckdb_execute_prepared(st, &res) == DuckDBError) {
    db_failed(r, t->name, "reading a row's history", duckdb_result_error(&res));
  } else {
    dg_buf_t body;
    dg_buf_init(&body);
    dg_jsonw_t w;
    dg_jsonw_init(&w, &body);
    dg_jsonw_obj(&w);
    dg_jsonw_key(&w, "history");
    dg_jsonw_arr(&w);
    idx_t n = duckdb_row_count(&res);
    int64_t updates = 0, last_ms = -1, last_seq = -1;
    char *next = NULL;
    for (idx_t i = 0; i < n; i++) {
      int64_t ms = duckdb_value_int64(&res, 0, i), seq = duckdb_value_int64(&res, 1, i);
      if (ms != last_ms || seq != last_seq) {
        if (++updates > limit) {
          next = duckdb_value_varchar(&res, 2, i - 1);
          break;
        }
        last_ms = ms;
        last_seq = seq;
      }
      static const char *const keys[] = {"update_id", "request_id", "user", "ts", "column", "old", "new"};
      dg_jsonw_obj(&w);
      for (idx_t k = 0; k < 7; k++) {
        dg_jsonw_key(&w, keys[k]);
        char *v = duckdb_value_is_null(&res, 2 + k, i) ? NULL : duckdb_value_varchar(&res, 2 + k, i);
        if (v) dg_jsonw_str(&w, v);
        else dg_jsonw_null(&w);
        duckdb_free(v);
      }
      dg_jsonw_end(&w);
    }
    dg_jsonw_end(&w);
    dg_jsonw_key(&w, "next");
    if (next) dg_jsonw_str(&w, next);
    else dg_jsonw_null(&w);
    duckdb_free(next);
    dg_jsonw_end(&w);
    dg_reply_buf(r, 200, &body);
    dg_buf_dispose(&body);
  }
  duckdb_destroy_result(&res);
  duckdb_destroy_prepare(&st);
out_t:
  dg_tabledef_unref(t);
  return 0;
}

/* One CSV field (RFC 4180) of n bytes written at p, which has room for
 * 2n + 2: anything with a comma, quote, CR, LF, or nothing at all (an empty
 * text, unlike null) is quoted with its quotes doubled. Returns the end. */
static char *csv_put(char *p, const char *v, size_t n) {
  int plain = n > 0;
  for (size_t i = 0; plain && i < n; i++) plain = v[i] != ',' && v[i] != '"' && v[i] != '\r' && v[i] != '\n';
  if (plain) {
    memcpy(p, v, n);
    return p + n;
  }
  *p++ = '"';
  for (size_t i = 0; i < n; i++) {
    if (v[i] == '"') *p++ = '"';
    *p++ = v[i];
  }
  *p++ = '"';
  return p;
}

/* A CSV field appended to b; NULL is empty. */
static void csv_fieldn(dg_buf_t *b, const char *v, size_t n) {
  if (v == NULL) return;
  dg_buf_reserve(b, 2 * n + 2);
  b->len = (size_t)(csv_put(b->data + b->len, v, n) - b->data);
  b->data[b->len] = '\0';
}

static void csv_field(dg_buf_t *b, const char *v) { csv_fieldn(b, v, v ? strlen(v) : 0); }

/* The text of cell k (>= FIRST_CELL) of row i when it is a number or an id
 * (k < FIRST_CELL) into tmp: its length. */
static size_t number_text(const colv_t *cols, idx_t k, idx_t i, char tmp[DG_DECIMAL_FORMAT_MAX + 8]) {
  int64_t v = k < FIRST_CELL ? bigint_at(&cols[k], i) : decimal_at(&cols[k], i);
  return dg_decimal_format(v, k < FIRST_CELL ? 0 : cols[k].scale, tmp, DG_DECIMAL_FORMAT_MAX + 8);
}

/* One CSV record (with its CRLF) for row i of the current chunk, written
 * into space reserved once for the whole record. */
static void csv_row(dg_buf_t *b, const dg_tabledef_t *t, const colv_t *cols, idx_t i) {
  idx_t ncols = FIRST_CELL + (idx_t)t->ncols;
  size_t need = 2;
  for (idx_t k = 0; k < ncols; k++) {
    int text = k >= FIRST_CELL && t->cols[k - FIRST_CELL].type == DG_COL_TEXT;
    need += 1 + (text && is_valid(&cols[k], i)
                     ? 2 * duckdb_string_t_length(((duckdb_string_t *)cols[k].data)[i]) + 2
                     : DG_DECIMAL_FORMAT_MAX + 8);
  }
  dg_buf_reserve(b, need);
  char *p = b->data + b->len;
  for (idx_t k = 0; k < ncols; k++) {
    if (k) *p++ = ',';
    if (!is_valid(&cols[k], i)) continue; /* null: an empty field */
    if (k < FIRST_CELL || t->cols[k - FIRST_CELL].type == DG_COL_NUMBER) {
      char tmp[DG_DECIMAL_FORMAT_MAX + 8];
      size_t n = number_text(cols, k, i, tmp);
      memcpy(p, tmp, n);
      p += n;
      continue;
    }
    duckdb_string_t *sv = &((duckdb_string_t *)cols[k].data)[i];
    p = csv_put(p, duckdb_string_t_data(sv), duckdb_string_t_length(*sv));
  }
  *p++ = '\r';
  *p++ = '\n';
  *p = '\0';
  b->len = (size_t)(p - b->data);
}

/* One {"id","parent_id",<columns>} of the JSON export for row i: ids and
 * numbers as JSON numbers. */
static void json_row(dg_jsonw_t *w, const dg_tabledef_t *t, const colv_t *cols, idx_t i) {
  dg_jsonw_obj(w);
  for (idx_t k = 0; k < FIRST_CELL + (idx_t)t->ncols; k++) {
    int text = k >= FIRST_CELL && t->cols[k - FIRST_CELL].type == DG_COL_TEXT;
    dg_jsonw_key(w, k == 0 ? "id" : k == 1 ? "parent_id" : t->cols[k - FIRST_CELL].name);
    if (!is_valid(&cols[k], i)) {
      dg_jsonw_null(w);
    } else if (text) {
      duckdb_string_t *sv = &((duckdb_string_t *)cols[k].data)[i];
      dg_jsonw_strn(w, duckdb_string_t_data(sv), duckdb_string_t_length(*sv));
    } else {
      char tmp[DG_DECIMAL_FORMAT_MAX + 8];
      dg_jsonw_raw(w, tmp, number_text(cols, k, i, tmp));
    }
  }
  dg_jsonw_end(w);
}

/* A Parquet export being sent: the file, already unlinked. */
typedef struct {
  int fd;
  off_t pos;
} pq_stream_t;

/* Read on the event loop: a local file just written, in the page cache. */
static ssize_t pq_read(void *cls, char *buf, size_t max, int can_block) {
  pq_stream_t *s = cls;
  ssize_t n;
  (void)can_block;
  do n = pread(s->fd, buf, max, s->pos);
  while (n < 0 && errno == EINTR);
  if (n < 0) return DG_STREAM_ERROR;
  s->pos += n;
  return n == 0 ? DG_STREAM_END : n;
}

static void pq_free(void *cls) {
  pq_stream_t *s = cls;
  close(s->fd);
  dg_free(s);
}

/* The parquet half of table_export: DuckDB's own writer (COPY … TO, one
 * statement, so one snapshot) into a scratch file of the server's own
 * (dg/iofile.h), which is opened, unlinked at once and streamed from the
 * open descriptor: nothing is left on disk whatever becomes of the
 * request. Columns keep their types: id and parent_id BIGINT, text
 * VARCHAR, numbers DECIMAL(18,scale), exact. */
static void export_parquet(dg_req_t *r, duckdb_connection c, const dg_tabledef_t *t) {
  char path[DG_IOFILE_PATH_MAX];
  if (dg_iofile_path(dg_db_path(r->app->db), "export", "parquet", path, sizeof path) != 0) {
    dg_log_error("export of table '%s': no scratch file: %s", t->name, strerror(errno));
    dg_problem(r, 500, NULL, "exporting table '%s' failed", t->name);
    return;
  }
  dg_buf_t sql;
  dg_buf_init(&sql);
  dg_buf_puts(&sql, "COPY (");
  select_list(&sql, t);
  dg_buf_printf(&sql, " FROM main.\"%s\" ORDER BY id) TO ", t->name);
  dg_iofile_sql_literal(&sql, path);
  dg_buf_puts(&sql, " (FORMAT parquet)");
  duckdb_result res;
  int fd = -1;
  char why[512];
  if (query_prepared(c, t, sql.data, &res, why, sizeof why) == DuckDBError) {
    db_failed(r, t->name, "exporting", why);
  } else if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
    dg_log_error("export of table '%s': cannot open the file DuckDB wrote: %s", t->name, strerror(errno));
    dg_problem(r, 500, NULL, "exporting table '%s' failed", t->name);
  }
  unlink(path); /* the open descriptor keeps the bytes until it is closed */
  duckdb_destroy_result(&res);
  dg_buf_dispose(&sql);
  if (fd < 0) return;
  struct stat st;
  if (fstat(fd, &st) != 0) {
    close(fd);
    dg_problem(r, 500, NULL, "exporting table '%s' failed", t->name);
    return;
  }
  pq_stream_t *s = dg_calloc(1, sizeof *s);
  s->fd = fd;
  dg_stream_t stream = {.read = pq_read, .free = pq_free, .arg = s, .length = (int64_t)st.st_size};
  dg_reply_stream(r, 200, "application/vnd.apache.parquet", &stream);
  char disp[DG_NAME_MAX + 64];
  snprintf(disp, sizeof disp, "attachment; filename=\"%s.parquet\"", t->name);
  dg_set_header(r, "Content-Disposition", disp);
}

/* GET /tables/{table}/export?format=csv|json|parquet: every row of the table, in id
 * order, with id, parent_id and every column, from one statement (one
 * snapshot) that reflects every answered write. Numbers are printed from
 * the DECIMAL's scaled integer with all the scale's decimals (the text
 * DuckDB's own cast gives), never a double. CSV has a header
 * line id,parent_id,<columns>; JSON is {"table","columns":[names],"rows":[…]}
 * with numbers as JSON numbers. The answer is built whole, then sent.
 * Parquet (export_parquet) is DuckDB's own file, streamed. */
static int table_export(dg_req_t *r) {
  if (dg_read_consistent_or_problem(r) != 0) return 0;
  const char *format = dg_query(r, "format");
  if (format == NULL) format = "csv";
  int csv = strcmp(format, "csv") == 0, parquet = strcmp(format, "parquet") == 0;
  if (!csv && !parquet && strcmp(format, "json") != 0) {
    dg_problem(r, 400, NULL, "format must be csv, json or parquet; got '%.20s'", format);
    return 0;
  }
  dg_tabledef_t *t = dg_table_or_problem(r, r->params[0]);
  if (t == NULL) return 0;
  duckdb_connection c = conn_or_problem(r);
  if (c == NULL || parquet) {
    if (c) export_parquet(r, c, t);
    dg_tabledef_unref(t);
    return 0;
  }
  dg_buf_t sql;
  dg_buf_init(&sql);
  select_list(&sql, t); /* native types: DuckDB neither casts nor sorts text */
  dg_buf_printf(&sql, " FROM main.\"%s\" ORDER BY id", t->name);
  idx_t ncols = FIRST_CELL + (idx_t)t->ncols;
  colv_t *cols = dg_calloc(ncols, sizeof *cols);
  duckdb_result res;
  int64_t t0 = dg_mono_us();
  char why[512];
  if (query_prepared(c, t, sql.data, &res, why, sizeof why) == DuckDBError) {
    db_failed(r, t->name, "exporting", why);
  } else if (describe_result(&res, t, ncols, cols) != 0) {
    dg_log_error("export of table '%s': the result does not match the table's columns", t->name);
    dg_problem(r, 500, NULL, "exporting table '%s' failed", t->name);
  } else {
    int64_t t_query = dg_mono_us();
    dg_buf_t body;
    dg_buf_init(&body);
    dg_jsonw_t w;
    if (csv) {
      dg_buf_puts(&body, "id,parent_id");
      for (int i = 0; i < t->ncols; i++) {
        dg_buf_putc(&body, ',');
        csv_field(&body, t->cols[i].name);
      }
      dg_buf_puts(&body, "\r\n");
    } else {
      dg_jsonw_init(&w, &body);
      dg_jsonw_obj(&w);
      dg_jsonw_key(&w, "table");
      dg_jsonw_str(&w, t->name);
      dg_jsonw_key(&w, "columns");
      dg_jsonw_arr(&w);
      for (int i = 0; i < t->ncols; i++) dg_jsonw_str(&w, t->cols[i].name);
      dg_jsonw_end(&w);
      dg_jsonw_key(&w, "rows");
      dg_jsonw_arr(&w);
    }
    /* Straight from the result's chunks: no allocation per cell, numbers
     * printed here from the scaled integers (the text DuckDB's cast would
     * give: every decimal of the scale). */
    duckdb_data_chunk chunk;
    while ((chunk = duckdb_fetch_chunk(res)) != NULL) {
      idx_t n = duckdb_data_chunk_get_size(chunk);
      bind_chunk(chunk, ncols, cols);
      for (idx_t i = 0; i < n; i++) {
        if (csv) csv_row(&body, t, cols, i);
        else json_row(&w, t, cols, i);
      }
      duckdb_destroy_data_chunk(&chunk);
    }
    if (!csv) {
      dg_jsonw_end(&w);
      dg_jsonw_end(&w);
    }
    int64_t t_text = dg_mono_us();
    dg_reply_buf(r, 200, &body);
    dg_log_info("export of '%s' (%s): %zu bytes: query %.0f ms, text %.0f ms, handed over %.0f ms", t->name,
                csv ? "csv" : "json", body.len, (double)(t_query - t0) / 1000.0, (double)(t_text - t_query) / 1000.0,
                (double)(dg_mono_us() - t_text) / 1000.0);
    dg_buf_dispose(&body);
    if (csv) r->out_type = "text/csv; charset=utf-8";
    char disp[DG_NAME_MAX + 64];
    snprintf(disp, sizeof disp, "attachment; filename=\"%s.%s\"", t->name, csv ? "csv" : "json");
    dg_set_header(r, "Content-Disposition", disp);
  }
  dg_free(cols);
  duckdb_destroy_result(&res);
  dg_buf_dispose(&sql);
  dg_tabledef_unref(t);
  return 0;
}

const dg_route_t dg_routes_read[] = {
    {"GET", "/tables", DG_ROLE_READ, tables_list, 0},
    {"GET", "/tables/:table", DG_ROLE_READ, table_get, 0},
    {"GET", "/tables/:table/rows", DG_ROLE_READ, rows_list, 0},
    {"GET", "/tables/:table/rows/:id", DG_ROLE_READ, row_get, 0},
    {"GET", "/tables/:table/holds", DG_ROLE_READ, holds_list, 0},
    {"GET", "/tables/:table/rows/:id/history", DG_ROLE_READ, row_history, 0},
    {"GET", "/tables/:table/export", DG_ROLE_READ, table_export, 0},
    {NULL, NULL, DG_ROLE_NONE, NULL, 0},
};
