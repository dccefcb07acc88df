/*
 * read.c (service) -- the read side of tables and rows as a handler sees it
 * (service_read.h): the only place the API's read routes speak DuckDB.
 *
 * Which tables exist and what their columns are comes from the catalog (the
 * API's validated copy); the rows themselves come straight from DuckDB, the
 * system of record, on this thread's own connection. Each call is one
 * statement, so it reads one consistent snapshot.
 *
 * Number cells are DECIMAL(18,scale). They are read from the result chunks as
 * the raw scaled integers DuckDB stores and handed on with their scale, so no
 * double ever touches a value. Names reach SQL only after dg_name_valid() and
 * always double-quoted; every client value is a bound parameter.
 *
 * Paging is by id (keyset): a page asks for limit+1 rows after the cursor, so
 * "more" is set exactly when another row follows, and a row inserted or
 * deleted between pages never shifts the ones the client has yet to see.
 */
#include "dg/dgsql.h"
#include "dg/service_read.h"

#include <duckdb.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "dg/buf.h"
#include "dg/common.h"
#include "dg/db.h"
#include "dg/iofile.h"
#include "dg/log.h"
#include "dg/metrics.h"
#include "dg/progress.h"

/* ======================================================================= */
/* Statements                                                                */
/* ======================================================================= */

/* A failed statement: DG_ENOTFOUND if the table vanished meanwhile (dropped
 * between the caller's catalog lookup and the query), else DG_EIO with the
 * cause logged. */
static int failed(dg_app_t *app, const char *table, const char *what, const char *why) {
  dg_tabledef_t *t = dg_catalog_table(app->catalog, table);
  if (t == NULL) return DG_ENOTFOUND;
  dg_tabledef_unref(t);
  dg_log_error("%s of table '%s' failed: %s", what, table, why ? why : "?");
  return DG_EIO;
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

/* Prepares sql: 0, or the failure (DG_ENOTFOUND / DG_EIO) with nothing left
 * to destroy. */
static int prepare(dg_app_t *app, duckdb_connection c, const dg_tabledef_t *t, const char *sql,
                   duckdb_prepared_statement *st) {
  if (duckdb_prepare(c, sql, st) == DuckDBSuccess) return 0;
  int rc = failed(app, t->name, "preparing a read", duckdb_prepare_error(*st));
  duckdb_destroy_prepare(st);
  return rc;
}

/* SELECT count(*) of a table. DG_EIO when DuckDB fails (e.g. the table was
 * dropped meanwhile), with DuckDB's message in err. */
static int count_rows(duckdb_connection c, const char *table, int64_t *out, char *err, size_t errcap) {
  /* The name passed the whitelist; prepared, so the text can only ever be
   * one statement (duckdb_query would run every statement it is given). */
  if (!dg_name_valid(table)) {
    snprintf(err, errcap, "not a valid table name");
    return DG_EINVAL;
  }
  char sql[DG_NAME_MAX + 64];
  snprintf(sql, sizeof sql, "SELECT count(*) FROM main.\"%s\"", table);
  duckdb_result res;
  int rc = DG_EIO;
  if (dg_db_query_one(c, sql, &res, err, errcap) == DuckDBSuccess) { /* else err says why */
    if (duckdb_row_count(&res) == 1) {
      *out = duckdb_value_int64(&res, 0, 0);
      rc = 0;
    } else {
      snprintf(err, errcap, "count(*) gave no row");
    }
  }
  duckdb_destroy_result(&res);
  return rc;
}

/* ======================================================================= */
/* Tables                                                                    */
/* ======================================================================= */

int dg_service_table_count(dg_app_t *app, const dg_tabledef_t *t, int64_t *count) {
  duckdb_connection c = dg_db_conn(app->db);
  if (c == NULL) return DG_EUNAVAIL;
  char why[256];
  if (count_rows(c, t->name, count, why, sizeof why) != 0) return failed(app, t->name, "counting rows", why);
  return 0;
}

int dg_service_tables(dg_app_t *app, dg_table_want_fn want, dg_table_fn fn, void *arg) {
  duckdb_connection c = dg_db_conn(app->db);
  if (c == NULL) return DG_EUNAVAIL;
  size_t n = 0;
  char **names = dg_catalog_table_names(app->catalog, &n);
  for (size_t i = 0; i < n; i++) {
    if (want && !want(arg, names[i])) continue;
    dg_tabledef_t *t = dg_catalog_table(app->catalog, names[i]);
    int64_t count;
    char why[256];
    /* A table dropped since the names were taken is simply left out. */
    if (t && count_rows(c, t->name, &count, why, sizeof why) == 0) fn(arg, t, count);
    dg_tabledef_unref(t);
  }
  dg_catalog_names_free(names, n);
  return 0;
}

/* ======================================================================= */
/* Decoding rows                                                             */
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
 *   [last]  children   BIGINT (single-row query, or a list with children)
 */
#define FIRST_CELL 2

/* One result column of the current chunk. */
typedef struct {
  const void *data;       /* the vector's values                         */
  uint64_t *valid;        /* validity mask or NULL when all are valid    */
  duckdb_type internal;   /* storage type of a DECIMAL, else its type    */
  int scale;              /* DECIMAL scale                               */
} colv_t;

/* Decodes a result's rows for a callback: the column vectors of the chunk
 * at hand, and the cells of the row being handed on. */
typedef struct {
  const dg_tabledef_t *t;
  idx_t ncols;            /* result columns                              */
  int children;           /* the last column is the child count          */
  colv_t *cols;           /* ncols                                        */
  dg_cell_t *cells;       /* t->ncols                                     */
} decoder_t;

static void decoder_init(decoder_t *d, const dg_tabledef_t *t, int children) {
  d->t = t;
  d->children = children;
  d->ncols = FIRST_CELL + (idx_t)t->ncols + (children ? 1 : 0);
  d->cols = dg_calloc(d->ncols, sizeof *d->cols);
  d->cells = dg_calloc(t->ncols > 0 ? (size_t)t->ncols : 1, sizeof *d->cells);
}

static void decoder_dispose(decoder_t *d) {
  dg_free(d->cols);
  dg_free(d->cells);
}

/* Checks the result's columns against the table definition and records each
 * DECIMAL's storage type and scale. 0, or DG_EINTERNAL on a mismatch. */
static int describe_result(duckdb_result *res, decoder_t *d) {
  const dg_tabledef_t *t = d->t;
  colv_t *cols = d->cols;
  if (duckdb_column_count(res) != d->ncols) return DG_EINTERNAL;
  for (idx_t k = 0; k < d->ncols; k++) {
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
        ok = cols[k].internal == DUCKDB_TYPE_SMALLINT || cols[k].internal == DUCKDB_TYPE_INTEGER ||
             cols[k].internal == DUCKDB_TYPE_BIGINT;
      }
    }
    duckdb_destroy_logical_type(&lt);
    if (!ok) return DG_EINTERNAL;
  }
  return 0;
}

static void bind_chunk(decoder_t *d, duckdb_data_chunk chunk) {
  for (idx_t k = 0; k < d->ncols; k++) {
    duckdb_vector v = duckdb_data_chunk_get_vector(chunk, k);
    d->cols[k].data = duckdb_vector_get_data(v);
    d->cols[k].valid = duckdb_vector_get_validity(v);
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

/* Row i of the bound chunk into *row (its cells point into the chunk). */
static void decode_row(decoder_t *d, idx_t i, dg_row_t *row) {
  const colv_t *cols = d->cols;
  row->id = bigint_at(&cols[0], i);
  row->has_parent = is_valid(&cols[1], i);
  row->parent_id = row->has_parent ? bigint_at(&cols[1], i) : 0;
  for (int c = 0; c < d->t->ncols; c++) {
    const colv_t *cv = &cols[FIRST_CELL + c];
    dg_cell_t *cell = &d->cells[c];
    cell->null = !is_valid(cv, i);
    if (cell->null) continue;
    if (d->t->cols[c].type == DG_COL_NUMBER) {
      cell->num = decimal_at(cv, i);
      cell->scale = cv->scale;
    } else {
      duckdb_string_t *s = &((duckdb_string_t *)cv->data)[i];
      cell->str = duckdb_string_t_data(s);
      cell->len = duckdb_string_t_length(*s);
    }
  }
  row->cells = d->cells;
  row->children = d->children ? bigint_at(&cols[FIRST_CELL + d->t->ncols], i) : 0;
}

/* Hands fn the rows of res, at most limit of them (-1: all); *more (when
 * not NULL) is 1 when a row was left over. */
static void emit_rows(decoder_t *d, duckdb_result *res, int64_t limit, dg_row_fn fn, void *arg, int *more) {
  int64_t written = 0;
  int over = 0;
  duckdb_data_chunk chunk;
  while (!over && (chunk = duckdb_fetch_chunk(*res)) != NULL) {
    idx_t n = duckdb_data_chunk_get_size(chunk);
    bind_chunk(d, chunk);
    for (idx_t i = 0; i < n; i++) {
      if (written == limit) {
        over = 1;
        break;
      }
      dg_row_t row;
      decode_row(d, i, &row);
      fn(arg, &row);
      written++;
    }
    duckdb_destroy_data_chunk(&chunk);
  }
  if (more) *more = over;
}

/* "SELECT id, parent_id, "c1", … " for t (names are whitelisted and quoted). */
static void select_list(dg_buf_t *sql, const dg_tabledef_t *t) {
  dg_buf_puts(sql, "SELECT id, parent_id");
  for (int i = 0; i < t->ncols; i++) dg_buf_printf(sql, ", \"%s\"", t->cols[i].name);
}

/* ======================================================================= */
/* Rows                                                                      */
/* ======================================================================= */

int dg_service_rows(dg_app_t *app, const dg_tabledef_t *t, const dg_rows_query_t *q, dg_row_fn fn, void *arg,
                    int *more) {
  duckdb_connection c = dg_db_conn(app->db);
  if (c == NULL) return DG_EUNAVAIL;
  dg_buf_t sql;
  dg_buf_init(&sql);
  select_list(&sql, t);
  /* The child count (a tree grid draws a toggle only where there are
   * children) is a correlated count DuckDB turns into one grouped join; the
   * outer table is aliased so the inner id and parent_id are unambiguous. */
  if (q->children)
    dg_buf_printf(&sql, ", (SELECT count(*) FROM main.\"%s\" AS c WHERE c.parent_id = o.id)::BIGINT", t->name);
  dg_buf_printf(&sql, " FROM main.\"%s\" AS o WHERE true", t->name);
  idx_t np = 0;
  if (q->roots) dg_buf_puts(&sql, " AND parent_id IS NULL");
  else if (q->by_parent) dg_buf_printf(&sql, " AND parent_id = $%llu", (unsigned long long)++np);
  if (q->has_after) dg_buf_printf(&sql, " AND id > $%llu", (unsigned long long)++np);
  dg_buf_printf(&sql, " ORDER BY id LIMIT $%llu", (unsigned long long)++np);

  duckdb_prepared_statement st = NULL;
  int rc = prepare(app, c, t, sql.data, &st);
  dg_buf_dispose(&sql);
  if (rc != 0) return rc;
  idx_t p = 1;
  if (q->by_parent && !q->roots) duckdb_bind_int64(st, p++, q->parent);
  if (q->has_after) duckdb_bind_int64(st, p++, q->after);
  duckdb_bind_int64(st, p, q->limit + 1); /* one more tells whether "more" is due */
  dg_metrics_row_read(app->metrics, 1, 0);

  duckdb_result res;
  if (duckdb_execute_prepared(st, &res) == DuckDBError) {
    rc = failed(app, t->name, "listing rows", duckdb_result_error(&res));
  } else {
    decoder_t d;
    decoder_init(&d, t, q->children);
    if (describe_result(&res, &d) != 0)
      rc = failed(app, t->name, "listing rows", "the columns differ from the catalog");
    else
      emit_rows(&d, &res, q->limit, fn, arg, more);
    decoder_dispose(&d);
  }
  duckdb_destroy_result(&res);
  duckdb_destroy_prepare(&st);
  return rc;
}

int dg_service_row(dg_app_t *app, const dg_tabledef_t *t, int64_t id, dg_row_fn fn, void *arg) {
  duckdb_connection c = dg_db_conn(app->db);
  if (c == NULL) return DG_EUNAVAIL;
  /* One statement, so the row and its child count come from one snapshot. */
  dg_buf_t sql;
  dg_buf_init(&sql);
  select_list(&sql, t);
  dg_buf_printf(&sql,
                ", (SELECT count(*) FROM main.\"%s\" WHERE parent_id = $1)::BIGINT"
                " FROM main.\"%s\" WHERE id = $1",
                t->name, t->name);
  duckdb_prepared_statement st = NULL;
  int rc = prepare(app, c, t, sql.data, &st);
  dg_buf_dispose(&sql);
  if (rc != 0) return rc;
  duckdb_bind_int64(st, 1, id);
  dg_metrics_row_read(app->metrics, 0, 0);
  duckdb_result res;
  if (duckdb_execute_prepared(st, &res) == DuckDBError) {
    rc = failed(app, t->name, "reading a row", duckdb_result_error(&res));
  } else {
    decoder_t d;
    decoder_init(&d, t, 1);
    if (describe_result(&res, &d) != 0)
      rc = failed(app, t->name, "reading a row", "the columns differ from the catalog");
    else
      emit_rows(&d, &res, 1, fn, arg, NULL);
    decoder_dispose(&d);
  }
  duckdb_destroy_result(&res);
  duckdb_destroy_prepare(&st);
  return rc;
}

/* What a consistent read must reflect (dg_service_await_applied's want)
 * into *want, and how the manager's memory may wait for it: a loop never
 * waits; a ?min_update ahead of what this node has seen published is the
 * client's own wait (wait_ms, then 504: the DuckDB way keeps it), any
 * other want is reached within a batch or two. */
static int want_of(dg_app_t *app, const dg_redis_xid_t *min, int nowait, dg_redis_xid_t *want) {
  *want = dg_progress_read_mark(app->progress);
  int ahead = min && dg_redis_xid_cmp(*min, *want) > 0;
  if (ahead) *want = *min;
  return nowait ? DG_ROWREAD_TRY : ahead ? DG_ROWREAD_LOCK : DG_ROWREAD_CATCH;
}

int dg_service_row_memory(dg_app_t *app, const dg_tabledef_t *t, int64_t id, const dg_redis_xid_t *min, int nowait,
                          dg_row_fn fn, void *arg, char *applied, size_t cap) {
  if (app->links.row_read == NULL || app->progress == NULL) return DG_EUNAVAIL;
  dg_redis_xid_t want, at = {0, 0};
  int mode = want_of(app, min, nowait, &want);
  int rc = app->links.row_read(app->links.row_arg, t, id, &want, mode, fn, arg, &at);
  if (rc < 0) return rc;
  dg_redis_xid_format(at, applied, cap);
  dg_metrics_row_read(app->metrics, 0, 1);
  return rc;
}

int dg_service_rows_memory(dg_app_t *app, const dg_tabledef_t *t, const dg_rows_query_t *q,
                           const dg_redis_xid_t *min, int nowait, dg_row_fn fn, void *arg, int *more, char *applied,
                           size_t cap) {
  if (app->links.rows_read == NULL || app->progress == NULL) return DG_EUNAVAIL;
  /* The engine keeps children by parent; a page of the whole table in id
   * order is DuckDB's. INT64_MIN is the engine's "no parent": as a
   * parent_id it is a row id no row has, for DuckDB to say so. */
  if (!q->roots && (!q->by_parent || q->parent == INT64_MIN)) return DG_EUNAVAIL;
  dg_redis_xid_t want, at = {0, 0};
  int mode = want_of(app, min, nowait, &want);
  int rc = app->links.rows_read(app->links.row_arg, t, q->roots ? INT64_MIN : q->parent,
                                q->has_after ? q->after : INT64_MIN, (size_t)q->limit, &want, mode, fn, arg, more,
                                &at);
  if (rc < 0) return rc;
  dg_redis_xid_format(at, applied, cap);
  dg_metrics_row_read(app->metrics, 1, 1);
  return 0;
}

/* ======================================================================= */
/* Export                                                                    */
/* ======================================================================= */

int dg_service_export_rows(dg_app_t *app, const dg_tabledef_t *t, dg_row_fn fn, void *arg) {
  duckdb_connection c = dg_db_conn(app->db);
  if (c == NULL) return DG_EUNAVAIL;
  dg_buf_t sql;
  dg_buf_init(&sql);
  select_list(&sql, t); /* native types: DuckDB neither casts nor sorts text */
  dg_buf_printf(&sql, " FROM main.\"%s\" ORDER BY id", t->name);
  duckdb_result res;
  char why[512];
  int rc = 0;
  decoder_t d;
  decoder_init(&d, t, 0);
  if (query_prepared(c, t, sql.data, &res, why, sizeof why) == DuckDBError) {
    rc = failed(app, t->name, "exporting", why);
  } else if (describe_result(&res, &d) != 0) {
    dg_log_error("export of table '%s': the result does not match the table's columns", t->name);
    rc = DG_EINTERNAL;
  } else {
    /* Straight from the result's chunks: no allocation per cell. */
    emit_rows(&d, &res, -1, fn, arg, NULL);
  }
  decoder_dispose(&d);
  duckdb_destroy_result(&res);
  dg_buf_dispose(&sql);
  return rc;
}

/* DuckDB's own writer (COPY … TO, one statement, so one snapshot) into a
 * scratch file of the server's own (dg/iofile.h), which is opened, unlinked
 * at once: nothing is left on disk whatever becomes of the request. Columns
 * keep their types: id and parent_id BIGINT, text VARCHAR, numbers
 * DECIMAL(18,scale), exact. */
int dg_service_export_parquet(dg_app_t *app, const dg_tabledef_t *t, int *fdp) {
  duckdb_connection c = dg_db_conn(app->db);
  if (c == NULL) return DG_EUNAVAIL;
  char path[DG_IOFILE_PATH_MAX];
  if (dg_iofile_path(dg_db_path(app->db), "export", "parquet", path, sizeof path) != 0) {
    dg_log_error("export of table '%s': no scratch file: %s", t->name, strerror(errno));
    return DG_EINTERNAL;
  }
  dg_buf_t sql;
  dg_buf_init(&sql);
  dg_buf_puts(&sql, "COPY (");
  select_list(&sql, t);
  dg_buf_printf(&sql, " FROM main.\"%s\" ORDER BY id) TO ", t->name);
  dg_iofile_sql_literal(&sql, path);
  dg_buf_puts(&sql, " (FORMAT parquet)");
  duckdb_result res;
  int fd = -1, rc = 0;
  char why[512];
  if (query_prepared(c, t, sql.data, &res, why, sizeof why) == DuckDBError) {
    rc = failed(app, t->name, "exporting", why);
  } else if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
    dg_log_error("export of table '%s': cannot open the file DuckDB wrote: %s", t->name, strerror(errno));
    rc = DG_EINTERNAL;
  }
  unlink(path); /* the open descriptor keeps the bytes until it is closed */
  duckdb_destroy_result(&res);
  dg_buf_dispose(&sql);
  if (rc == 0) *fdp = fd;
  return rc;
}

/* ======================================================================= */
/* Holds and history                                                         */
/* ======================================================================= */

int dg_service_holds(dg_app_t *app, const dg_tabledef_t *t, dg_hold_fn fn, void *arg) {
  duckdb_connection c = dg_db_conn(app->db);
  if (c == NULL) return DG_EUNAVAIL;
  duckdb_prepared_statement st = NULL;
  int rc = prepare(app, c, t,
                   dg_sql_holds_of_table,
                   &st);
  if (rc != 0) return rc;
  duckdb_bind_varchar(st, 1, t->name);
  duckdb_result res;
  if (duckdb_execute_prepared(st, &res) == DuckDBError) {
    rc = failed(app, t->name, "listing holds", duckdb_result_error(&res));
  } else {
    idx_t n = duckdb_row_count(&res);
    for (idx_t i = 0; i < n; i++) {
      char *col = duckdb_value_varchar(&res, 1, i);
      fn(arg, duckdb_value_int64(&res, 0, i), col ? col : "", col ? strlen(col) : 0);
      duckdb_free(col);
    }
  }
  duckdb_destroy_result(&res);
  duckdb_destroy_prepare(&st);
  return rc;
}

/* Who changed the row's cells (or the row itself: insert, move, delete,
 * which carry a NULL column), when, old -> new, by which update, from the
 * audit log (dg.cell_history, see migration 5 in src/store/db.c). The limit
 * counts updates, so one update's changes to the row are never split
 * across pages. */
int dg_service_history(dg_app_t *app, const dg_tabledef_t *t, const dg_history_query_t *q, dg_change_fn fn,
                       void *arg, char **nextp) {
  duckdb_connection c = dg_db_conn(app->db);
  if (c == NULL) return DG_EUNAVAIL;
  duckdb_prepared_statement st = NULL;
  int rc = prepare(app, c, t,
                   dg_sql_row_history,
                   &st);
  if (rc != 0) return rc;
  duckdb_bind_varchar(st, 1, t->name);
  duckdb_bind_int64(st, 2, q->row_id);
  if (q->column) duckdb_bind_varchar(st, 3, q->column);
  else duckdb_bind_null(st, 3);
  duckdb_bind_int64(st, 4, (int64_t)q->before.ms);
  duckdb_bind_int64(st, 5, (int64_t)q->before.seq);
  duckdb_bind_int64(st, 6, q->limit + 1);
  duckdb_result res;
  if (duckdb_execute_prepared(st, &res) == DuckDBError) {
    rc = failed(app, t->name, "reading a row's history", duckdb_result_error(&res));
  } else {
    idx_t n = duckdb_row_count(&res);
    int64_t updates = 0, last_ms = -1, last_seq = -1;
    char *next = NULL;
    for (idx_t i = 0; i < n; i++) {
      int64_t ms = duckdb_value_int64(&res, 0, i), seq = duckdb_value_int64(&res, 1, i);
      if (ms != last_ms || seq != last_seq) {
        if (++updates > q->limit) {
          char *v = duckdb_value_varchar(&res, 2, i - 1);
          next = v ? dg_strdup(v) : NULL;
          duckdb_free(v);
          break;
        }
        last_ms = ms;
        last_seq = seq;
      }
      char *v[7];
      for (idx_t k = 0; k < 7; k++)
        v[k] = duckdb_value_is_null(&res, 2 + k, i) ? NULL : duckdb_value_varchar(&res, 2 + k, i);
      dg_change_t ch = {v[0], v[1], v[2], v[3], v[4], v[5], v[6]};
      fn(arg, &ch);
      for (idx_t k = 0; k < 7; k++) duckdb_free(v[k]);
    }
    *nextp = next;
  }
  duckdb_destroy_result(&res);
  duckdb_destroy_prepare(&st);
  return rc;
}
