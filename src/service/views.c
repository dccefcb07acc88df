/*
 * views.c (service) -- the read side of views as a handler sees it
 * (service_read.h): listing them within a caller's scope, and reading a
 * page of one under the query guard, its values decoded from DuckDB's
 * result chunks into dg_value_t. The only place GET /views speaks DuckDB.
 *
 * A view is a real DuckDB view in `main`, so reading one is a SELECT on this
 * thread's connection. Its columns can be of any type DuckDB can produce;
 * each is handed on in a kind a JSON writer can print without guessing:
 *
 *   BOOLEAN                       BOOL
 *   TINYINT … UINTEGER            INT (int64); UBIGINT: UINT
 *   HUGEINT, UHUGEINT             WIDE / UWIDE (128 bits)
 *   DECIMAL(w,s), any width       WIDE with scale s (sum() of a
 *                                 DECIMAL(18,2) is a DECIMAL(38,2): 128 bits)
 *   FLOAT, DOUBLE                 FLOAT / DOUBLE
 *   VARCHAR                       TEXT
 *   NULL of any type              NULL
 *   anything else (DATE,          TEXT: DuckDB's own VARCHAR cast, which
 *   TIMESTAMP, UUID, LIST …)      for a DATE is ISO 8601 (2024-05-01)
 *
 * The last group is cast in SQL (positional references, "#3::VARCHAR"), so no
 * column name of the view is ever put into SQL text.
 */
#include "dg/dgsql.h"
#include "dg/service_read.h"

#include <duckdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "dg/buf.h"
#include "dg/common.h"
#include "dg/db.h"
#include "dg/log.h"
#include "dg/qguard.h"
#include "dg/views.h"

/* ======================================================================= */
/* Listing and scope                                                         */
/* ======================================================================= */

/* The first line of a DuckDB message (they continue with hints and carets). */
static const char *first_line(const char *msg, char *buf, size_t cap) {
  snprintf(buf, cap, "%s", msg && *msg ? msg : "unknown error");
  buf[strcspn(buf, "\r\n")] = '\0';
  return buf;
}

/* The SQL of view name into a fresh string (dg_free), or NULL. */
static char *view_sql(duckdb_connection c, const char *name) {
  duckdb_prepared_statement st = NULL;
  char *out = NULL;
  if (duckdb_prepare(c, dg_sql_view_sql, &st) == DuckDBSuccess) {
    duckdb_bind_varchar(st, 1, name);
    duckdb_result res;
    if (duckdb_execute_prepared(st, &res) == DuckDBSuccess && duckdb_row_count(&res) == 1) {
      char *v = duckdb_value_varchar(&res, 0, 0);
      out = v ? dg_strdup(v) : NULL;
      duckdb_free(v);
    }
    duckdb_destroy_result(&res);
  }
  duckdb_destroy_prepare(&st);
  return out;
}

/* Key scopes: may this caller see a view whose SQL is sql? Yes when every
 * table it reads is in the caller's scope, a view it reads counting by the
 * tables that view reads in turn (views nest a few levels at most; past
 * VIEW_SCOPE_DEPTH the answer is no). An unscoped caller sees every view. */
#define VIEW_SCOPE_DEPTH 8
static int view_in_scope(duckdb_connection c, const dg_principal_t *who, const char *sql, int depth) {
  if (who->tables[0] == '\0') return 1;
  char reads[DG_SCOPE_MAX];
  if (sql == NULL || depth > VIEW_SCOPE_DEPTH || dg_view_sql_reads(c, sql, reads, sizeof reads) != 0) return 0;
  int ok = 1;
  for (char *p = reads + 1; ok && *p;) {
    char *end = strchr(p, ',');
    if (end == NULL) break;
    *end = '\0';
    if (!dg_principal_can(who, p)) {
      char *inner = view_sql(c, p); /* not a table in scope: a view within it? */
      ok = inner != NULL && view_in_scope(c, who, inner, depth + 1);
      dg_free(inner);
    }
    p = end + 1;
  }
  return ok;
}

int dg_service_views(dg_app_t *app, const dg_principal_t *who, dg_view_fn fn, void *arg) {
  duckdb_connection c = dg_db_conn(app->db);
  if (c == NULL) return DG_EUNAVAIL;
  duckdb_result res;
  if (duckdb_query(c, dg_sql_view_list, &res) == DuckDBError) {
    dg_log_error("listing views failed: %s", duckdb_result_error(&res));
    duckdb_destroy_result(&res);
    return DG_EIO;
  }
  duckdb_data_chunk chunk;
  while ((chunk = duckdb_fetch_chunk(res)) != NULL) {
    idx_t n = duckdb_data_chunk_get_size(chunk);
    duckdb_string_t *names = duckdb_vector_get_data(duckdb_data_chunk_get_vector(chunk, 0));
    duckdb_string_t *sqls = duckdb_vector_get_data(duckdb_data_chunk_get_vector(chunk, 1));
    for (idx_t i = 0; i < n; i++) {
      if (who->tables[0] != '\0') { /* a scoped key lists the views within its tables */
        char *sql = dg_strndup(duckdb_string_t_data(&sqls[i]), duckdb_string_t_length(sqls[i]));
        int in = view_in_scope(c, who, sql, 0);
        dg_free(sql);
        if (!in) continue;
      }
      fn(arg, duckdb_string_t_data(&names[i]), duckdb_string_t_length(names[i]), duckdb_string_t_data(&sqls[i]),
         duckdb_string_t_length(sqls[i]));
    }
    duckdb_destroy_data_chunk(&chunk);
  }
  duckdb_destroy_result(&res);
  return 0;
}

/* 1 when dg.views lists name, 0 when not, DG_EIO when DuckDB fails. */
static int view_exists(duckdb_connection c, const char *name) {
  duckdb_prepared_statement st = NULL;
  int rc = DG_EIO;
  if (duckdb_prepare(c, dg_sql_view_exists, &st) == DuckDBSuccess) {
    duckdb_bind_varchar(st, 1, name);
    duckdb_result res;
    if (duckdb_execute_prepared(st, &res) == DuckDBSuccess) rc = duckdb_value_int64(&res, 0, 0) > 0;
    duckdb_destroy_result(&res);
  }
  duckdb_destroy_prepare(&st);
  return rc;
}

int dg_service_view_visible(dg_app_t *app, const dg_principal_t *who, const char *name) {
  duckdb_connection c = dg_db_conn(app->db);
  if (c == NULL) return DG_EUNAVAIL;
  int exists = view_exists(c, name);
  if (exists < 0) return exists;
  if (exists && who->tables[0] != '\0') { /* outside a key's scope: as if absent */
    char *sql = view_sql(c, name);
    exists = view_in_scope(c, who, sql, 0);
    dg_free(sql);
  }
  return exists;
}

/* ======================================================================= */
/* Reading a view                                                            */
/* ======================================================================= */

/* How one column is read from the chunks. */
typedef enum {
  K_BOOL, K_I8, K_I16, K_I32, K_I64, K_U8, K_U16, K_U32, K_U64, K_I128, K_U128,
  K_FLOAT, K_DOUBLE, K_DECIMAL, K_VARCHAR, K_CAST, /* K_CAST: cast to VARCHAR in SQL */
} kind_t;

typedef struct {
  kind_t kind;
  duckdb_type internal; /* DECIMAL: its storage type                   */
  int scale;            /* DECIMAL: its scale                          */
  const void *data;     /* the current chunk's values                  */
  uint64_t *valid;      /* the current chunk's validity (NULL: all)     */
} vcol_t;

struct dg_view_read_s {
  dg_app_t *app;
  duckdb_connection conn;        /* this thread's                          */
  char name[DG_NAME_MAX + 1];
  duckdb_prepared_statement st;  /* the read, casts included               */
  size_t ncols;
  vcol_t *cols;                  /* ncols                                  */
  char **colnames;               /* ncols, owned                           */
  dg_value_t *values;            /* ncols: the row being handed on         */
  int slot;                      /* the guard's slot while entered, or -1  */
};

static kind_t kind_of(duckdb_logical_type lt, vcol_t *col) {
  switch (duckdb_get_type_id(lt)) {
    case DUCKDB_TYPE_BOOLEAN: return K_BOOL;
    case DUCKDB_TYPE_TINYINT: return K_I8;
    case DUCKDB_TYPE_SMALLINT: return K_I16;
    case DUCKDB_TYPE_INTEGER: return K_I32;
    case DUCKDB_TYPE_BIGINT: return K_I64;
    case DUCKDB_TYPE_UTINYINT: return K_U8;
    case DUCKDB_TYPE_USMALLINT: return K_U16;
    case DUCKDB_TYPE_UINTEGER: return K_U32;
    case DUCKDB_TYPE_UBIGINT: return K_U64;
    case DUCKDB_TYPE_HUGEINT: return K_I128;
    case DUCKDB_TYPE_UHUGEINT: return K_U128;
    case DUCKDB_TYPE_FLOAT: return K_FLOAT;
    case DUCKDB_TYPE_DOUBLE: return K_DOUBLE;
    case DUCKDB_TYPE_VARCHAR: return K_VARCHAR;
    case DUCKDB_TYPE_DECIMAL:
      col->internal = duckdb_decimal_internal_type(lt);
      col->scale = duckdb_decimal_scale(lt);
      switch (col->internal) {
        case DUCKDB_TYPE_SMALLINT:
        case DUCKDB_TYPE_INTEGER:
        case DUCKDB_TYPE_BIGINT:
        case DUCKDB_TYPE_HUGEINT: return K_DECIMAL;
        default: return K_CAST;
      }
    default: return K_CAST;
  }
}

/* A BOOL or INT value. */
static void int_of(dg_value_t *v, dg_value_kind_t kind, int64_t x) {
  v->kind = kind;
  v->i = x;
}

/* A signed integer as WIDE's two halves (sign extended). */
static void wide_of(dg_value_t *v, int64_t x) {
  v->kind = DG_VALUE_WIDE;
  v->hi = x < 0 ? UINT64_MAX : 0;
  v->lo = (uint64_t)x;
}

/* Row i of col into *v. */
static void decode_value(const vcol_t *col, idx_t i, dg_value_t *v) {
  if (col->valid && !duckdb_validity_row_is_valid(col->valid, i)) {
    v->kind = DG_VALUE_NULL;
    return;
  }
  const void *d = col->data;
  v->scale = 0;
  switch (col->kind) {
    case K_BOOL: int_of(v, DG_VALUE_BOOL, ((const bool *)d)[i]); return;
    case K_I8: int_of(v, DG_VALUE_INT, ((const int8_t *)d)[i]); return;
    case K_I16: int_of(v, DG_VALUE_INT, ((const int16_t *)d)[i]); return;
    case K_I32: int_of(v, DG_VALUE_INT, ((const int32_t *)d)[i]); return;
    case K_I64: int_of(v, DG_VALUE_INT, ((const int64_t *)d)[i]); return;
    case K_U8: int_of(v, DG_VALUE_INT, ((const uint8_t *)d)[i]); return;
    case K_U16: int_of(v, DG_VALUE_INT, ((const uint16_t *)d)[i]); return;
    case K_U32: int_of(v, DG_VALUE_INT, ((const uint32_t *)d)[i]); return;
    case K_U64:
      v->kind = DG_VALUE_UINT;
      v->u = ((const uint64_t *)d)[i];
      return;
    case K_VARCHAR:
    case K_CAST: {
      duckdb_string_t *s = &((duckdb_string_t *)d)[i];
      v->kind = DG_VALUE_TEXT;
      v->str = duckdb_string_t_data(s);
      v->len = duckdb_string_t_length(*s);
      return;
    }
    case K_FLOAT:
      v->kind = DG_VALUE_FLOAT;
      v->d = ((const float *)d)[i];
      return;
    case K_DOUBLE:
      v->kind = DG_VALUE_DOUBLE;
      v->d = ((const double *)d)[i];
      return;
    case K_U128: {
      const duckdb_uhugeint *h = &((const duckdb_uhugeint *)d)[i];
      v->kind = DG_VALUE_UWIDE;
      v->hi = h->upper;
      v->lo = h->lower;
      return;
    }
    case K_I128:
    case K_DECIMAL: {
      duckdb_type st = col->kind == K_I128 ? DUCKDB_TYPE_HUGEINT : col->internal;
      switch (st) {
        case DUCKDB_TYPE_SMALLINT: wide_of(v, ((const int16_t *)d)[i]); break;
        case DUCKDB_TYPE_INTEGER: wide_of(v, ((const int32_t *)d)[i]); break;
        case DUCKDB_TYPE_BIGINT: wide_of(v, ((const int64_t *)d)[i]); break;
        default: {
          const duckdb_hugeint *h = &((const duckdb_hugeint *)d)[i];
          v->kind = DG_VALUE_WIDE;
          v->hi = (uint64_t)h->upper;
          v->lo = h->lower;
        }
      }
      v->scale = col->kind == K_DECIMAL ? col->scale : 0;
      return;
    }
  }
}

int dg_service_view_open(dg_app_t *app, const char *name, dg_view_read_t **out) {
  duckdb_connection c = dg_db_conn(app->db);
  if (c == NULL) return DG_EUNAVAIL;
  if (!dg_name_valid(name)) return DG_EINVAL; /* callers check it first */
  char sql[256], line[512];
  snprintf(sql, sizeof sql, "SELECT * FROM main.\"%s\" LIMIT $1 OFFSET $2", name);
  duckdb_prepared_statement probe = NULL;
  if (duckdb_prepare(c, sql, &probe) == DuckDBError) {
    /* The view exists but no longer binds, e.g. a table it reads was
     * dropped. DuckDB's text ("Did you mean …" hints naming tables and
     * columns) goes to the log only. */
    dg_log_warn("view '%s' cannot be read: %s", name, first_line(duckdb_prepare_error(probe), line, sizeof line));
    duckdb_destroy_prepare(&probe);
    return DG_ENOTFOUND;
  }
  dg_view_read_t *v = dg_calloc(1, sizeof *v);
  v->app = app;
  v->conn = c;
  v->slot = -1;
  snprintf(v->name, sizeof v->name, "%s", name);
  v->ncols = duckdb_prepared_statement_column_count(probe);
  size_t n = v->ncols ? v->ncols : 1;
  v->cols = dg_calloc(n, sizeof *v->cols);
  v->colnames = dg_calloc(n, sizeof *v->colnames);
  v->values = dg_calloc(n, sizeof *v->values);
  int need_cast = 0;
  for (size_t k = 0; k < v->ncols; k++) {
    duckdb_logical_type lt = duckdb_prepared_statement_column_logical_type(probe, k);
    v->cols[k].kind = kind_of(lt, &v->cols[k]);
    duckdb_destroy_logical_type(&lt);
    need_cast |= v->cols[k].kind == K_CAST;
    const char *cn = duckdb_prepared_statement_column_name(probe, k);
    v->colnames[k] = dg_strdup(cn ? cn : "");
    duckdb_free((void *)cn);
  }
  if (!need_cast) {
    v->st = probe;
    *out = v;
    return 0;
  }
  /* Same rows, with the columns we do not hand on natively cast by DuckDB. */
  duckdb_destroy_prepare(&probe);
  dg_buf_t q;
  dg_buf_init(&q);
  dg_buf_puts(&q, "SELECT ");
  for (size_t k = 0; k < v->ncols; k++)
    dg_buf_printf(&q, "%s#%llu%s", k ? ", " : "", (unsigned long long)(k + 1),
                  v->cols[k].kind == K_CAST ? "::VARCHAR" : "");
  dg_buf_printf(&q, " FROM main.\"%s\" LIMIT $1 OFFSET $2", name);
  int rc = 0;
  if (duckdb_prepare(c, q.data, &v->st) == DuckDBError) {
    dg_log_error("view '%s': cannot prepare the cast read: %s", name, duckdb_prepare_error(v->st));
    rc = DG_EIO;
  }
  dg_buf_dispose(&q);
  if (rc != 0) {
    dg_service_view_close(v);
    return rc;
  }
  *out = v;
  return 0;
}

size_t dg_service_view_ncols(const dg_view_read_t *v) { return v->ncols; }

const char *dg_service_view_colname(const dg_view_read_t *v, size_t k) { return v->colnames[k]; }

int dg_service_view_enter(dg_view_read_t *v, const char *caller) {
  int slot = -1;
  int rc = dg_qguard_enter(v->app->qguard, v->conn, caller, &slot);
  if (rc == 0) v->slot = slot;
  return rc;
}

int dg_service_view_run(dg_view_read_t *v, int64_t limit, int64_t offset, dg_value_row_fn fn, void *arg) {
  DG_ASSERT(v->slot >= 0);
  duckdb_bind_int64(v->st, 1, limit);
  duckdb_bind_int64(v->st, 2, offset);
  duckdb_result res;
  duckdb_state qs = duckdb_execute_prepared(v->st, &res);
  int stopped = dg_qguard_leave(v->app->qguard, v->slot);
  v->slot = -1;
  int rc = 0;
  if (qs == DuckDBError) {
    char line[512];
    first_line(duckdb_result_error(&res), line, sizeof line);
    duckdb_error_type et = duckdb_result_error_type(&res);
    dg_log_warn("view '%s' failed: %s", v->name, line);
    if (stopped == 1) rc = DG_ETIMEOUT;
    else if (stopped == 2) rc = DG_EUNAVAIL;
    else if (et == DUCKDB_ERROR_OUT_OF_MEMORY) rc = DG_ENOMEM;
    else rc = DG_EIO; /* DuckDB's text (hints naming tables and columns) goes to the log only */
  } else if (duckdb_column_count(&res) != v->ncols) {
    rc = DG_ECONFLICT;
  }
  duckdb_data_chunk chunk;
  while (rc == 0 && (chunk = duckdb_fetch_chunk(res)) != NULL) {
    idx_t n = duckdb_data_chunk_get_size(chunk);
    for (size_t k = 0; k < v->ncols; k++) {
      duckdb_vector vec = duckdb_data_chunk_get_vector(chunk, k);
      v->cols[k].data = duckdb_vector_get_data(vec);
      v->cols[k].valid = duckdb_vector_get_validity(vec);
    }
    for (idx_t i = 0; rc == 0 && i < n; i++) {
      for (size_t k = 0; k < v->ncols; k++) decode_value(&v->cols[k], i, &v->values[k]);
      rc = fn(arg, v->values, v->ncols);
    }
    duckdb_destroy_data_chunk(&chunk);
  }
  duckdb_destroy_result(&res);
  return rc;
}

void dg_service_view_close(dg_view_read_t *v) {
  if (v == NULL) return;
  if (v->slot >= 0) dg_qguard_leave(v->app->qguard, v->slot);
  duckdb_destroy_prepare(&v->st);
  for (size_t k = 0; k < v->ncols; k++) dg_free(v->colnames[k]);
  dg_free(v->colnames);
  dg_free(v->cols);
  dg_free(v->values);
  dg_free(v);
}
