/*
 * views.c -- the read side of views:
 *
 *   GET /views                    {"views":[{"name","sql"}…]} in name order
 *   GET /views/{name}             {"columns":[name…],"rows":[[value…]…]}
 *       ?limit=&offset=
 *
 * (POST and DELETE /views go through the manager, in write.c; what SQL a view
 * may hold is decided by dg_view_sql_check, views_check.c.)
 *
 * A view is a real DuckDB view in `main`, so reading one is a SELECT on this
 * thread's connection. Its columns can be of any type DuckDB can produce, and
 * each is written as JSON a client can use without guessing:
 *
 *   BOOLEAN                       true / false
 *   TINYINT … HUGEINT, unsigned   the exact integer
 *   DECIMAL(w,s), any width       the exact value with s decimals (sum() of a
 *                                 DECIMAL(18,2) is a DECIMAL(38,2): 128 bits)
 *   FLOAT, DOUBLE                 shortest text that reads back the same;
 *                                 NaN and infinities as null
 *   VARCHAR                       a string
 *   NULL of any type              null
 *   anything else (DATE,          a string: DuckDB's own VARCHAR cast, which
 *   TIMESTAMP, UUID, LIST …)      for a DATE is ISO 8601 (2024-05-01)
 *
 * The last group is cast in SQL (positional references, "#3::VARCHAR"), so no
 * column name of the view is ever put into SQL text.
 */
#include <duckdb.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dg/buf.h"
#include "dg/qguard.h"
#include "dg/catalog.h"
#include "dg/common.h"
#include "dg/http.h"
#include "dg/jsonw.h"
#include "dg/log.h"
#include "dg/views.h"

/* Rows per page unless the client asks otherwise. */
#define VIEW_LIMIT_DEFAULT 100
/* Most rows per page, as for GET /tables/{t}/rows. */
#define VIEW_LIMIT_MAX 10000

/* ======================================================================= */
/* Parameters                                                                */
/* ======================================================================= */

/* Parses a plain non-negative decimal int64 (no sign, no leading zeros,
 * overflow checked). 0 or DG_EINVAL (*out untouched). */
static int parse_u63(const char *s, int64_t *out) {
  if (s == NULL || *s < '0' || *s > '9' || (s[0] == '0' && s[1] != '\0')) return DG_EINVAL;
  int64_t v = 0;
  for (const char *p = s; *p; p++) {
    if (*p < '0' || *p > '9') return DG_EINVAL;
    int d = *p - '0';
    if (v > (INT64_MAX - d) / 10) return DG_EINVAL;
    v = v * 10 + d;
  }
  *out = v;
  return 0;
}

/* ?name= in 0..max (def when absent); answers 400 otherwise. */
static int query_int_or_problem(dg_req_t *r, const char *name, int64_t def, int64_t max,
                                int64_t *out) {
  const char *s = dg_query(r, name);
  int64_t v = def;
  if (s && (parse_u63(s, &v) != 0 || v > max)) {
    dg_problem(r, 400, NULL, "%s must be an integer from 0 to %lld", name, (long long)max);
    return DG_EINVAL;
  }
  *out = v;
  return 0;
}

static duckdb_connection conn_or_problem(dg_req_t *r) {
  duckdb_connection c = dg_db_conn(r->app->db);
  if (c == NULL) dg_problem(r, 503, NULL, "the database is unavailable");
  return c;
}

/* The first line of a DuckDB message (they continue with hints and carets). */
static const char *first_line(const char *msg, char *buf, size_t cap) {
  snprintf(buf, cap, "%s", msg && *msg ? msg : "unknown error");
  buf[strcspn(buf, "\r\n")] = '\0';
  return buf;
}

/* ======================================================================= */
/* Values                                                                    */
/* ======================================================================= */

__extension__ typedef __int128 i128;
__extension__ typedef unsigned __int128 u128;

/* Writes v / 10^scale with exactly `scale` decimals: 123456, 2 -> 1234.56. */
static void put_scaled(dg_buf_t *b, i128 v, int scale) {
  char digits[48]; /* 2^128 has 39 digits */
  u128 m = v < 0 ? (u128)0 - (u128)v : (u128)v;
  int n = 0;
  do {
    digits[n++] = (char)('0' + (int)(m % 10));
    m /= 10;
  } while (m);
  while (n <= scale) digits[n++] = '0'; /* at least one digit before the point */
  char out[56];
  int k = 0;
  if (v < 0) out[k++] = '-';
  for (int i = n - 1; i >= 0; i--) {
    out[k++] = digits[i];
    if (i == scale && scale > 0) out[k++] = '.';
  }
  dg_buf_append(b, out, (size_t)k);
}

static void put_u128(dg_buf_t *b, u128 v) {
  char digits[48];
  int n = 0;
  do {
    digits[n++] = (char)('0' + (int)(v % 10));
    v /= 10;
  } while (v);
  char out[48];
  for (int i = 0; i < n; i++) out[i] = digits[n - 1 - i];
  dg_buf_append(b, out, (size_t)n);
}

/* The shortest %g text that reads back as the same double (or float). */
static void put_real(dg_buf_t *b, double d, int is_float) {
  char tmp[40];
  int lo = is_float ? 6 : 15, hi = is_float ? 9 : 17;
  for (int p = lo; p <= hi; p++) {
    snprintf(tmp, sizeof tmp, "%.*g", p, d);
    double back = strtod(tmp, NULL);
    if (is_float ? (float)back == (float)d : back == d) break;
  }
  dg_buf_puts(b, tmp);
}

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

/* Appends the value of row i of col as JSON. */
static void put_value(dg_jsonw_t *w, const vcol_t *col, idx_t i) {
  if (col->valid && !duckdb_validity_row_is_valid(col->valid, i)) {
    dg_jsonw_null(w);
    return;
  }
  dg_buf_t tmp; /* scratch for wide numbers */
  dg_buf_init(&tmp);
  char num[64];
  int len = -1;
  const void *d = col->data;
  switch (col->kind) {
    case K_BOOL: dg_jsonw_bool(w, ((const bool *)d)[i]); return;
    case K_I8: dg_jsonw_int(w, ((const int8_t *)d)[i]); return;
    case K_I16: dg_jsonw_int(w, ((const int16_t *)d)[i]); return;
    case K_I32: dg_jsonw_int(w, ((const int32_t *)d)[i]); return;
    case K_I64: dg_jsonw_int(w, ((const int64_t *)d)[i]); return;
    case K_U8: dg_jsonw_int(w, ((const uint8_t *)d)[i]); return;
    case K_U16: dg_jsonw_int(w, ((const uint16_t *)d)[i]); return;
    case K_U32: dg_jsonw_int(w, ((const uint32_t *)d)[i]); return;
    case K_U64: len = snprintf(num, sizeof num, "%llu",
                               (unsigned long long)((const uint64_t *)d)[i]); break;
    case K_VARCHAR:
    case K_CAST: {
      duckdb_string_t *s = &((duckdb_string_t *)d)[i];
      dg_jsonw_strn(w, duckdb_string_t_data(s), duckdb_string_t_length(*s));
      return;
    }
    case K_FLOAT:
    case K_DOUBLE: {
      double v = col->kind == K_FLOAT ? ((const float *)d)[i] : ((const double *)d)[i];
      if (!isfinite(v)) {
        dg_jsonw_null(w); /* JSON has no NaN or infinity */
        return;
      }
      put_real(&tmp, v, col->kind == K_FLOAT);
      break;
    }
    case K_I128:
    case K_U128:
    case K_DECIMAL: {
      if (col->kind == K_U128) {
        const duckdb_uhugeint *h = &((const duckdb_uhugeint *)d)[i];
        put_u128(&tmp, ((u128)h->upper << 64) | h->lower);
        break;
      }
      i128 v;
      duckdb_type st = col->kind == K_I128 ? DUCKDB_TYPE_HUGEINT : col->internal;
      switch (st) {
        case DUCKDB_TYPE_SMALLINT: v = ((const int16_t *)d)[i]; break;
        case DUCKDB_TYPE_INTEGER: v = ((const int32_t *)d)[i]; break;
        case DUCKDB_TYPE_BIGINT: v = ((const int64_t *)d)[i]; break;
        default: {
          const duckdb_hugeint *h = &((const duckdb_hugeint *)d)[i];
          v = (i128)(((u128)(uint64_t)h->upper << 64) | h->lower);
        }
      }
      put_scaled(&tmp, v, col->kind == K_DECIMAL ? col->scale : 0);
      break;
    }
  }
  if (len >= 0) {
    dg_jsonw_raw(w, num, (size_t)len);
  } else {
    dg_jsonw_raw(w, tmp.data, tmp.len);
    dg_buf_dispose(&tmp);
  }
}

/* ======================================================================= */
/* Routes                                                                    */
/* ======================================================================= */

/* The SQL of view name into a fresh string (dg_free), or NULL. */
static char *view_sql(duckdb_connection c, const char *name) {
  duckdb_prepared_statement st = NULL;
  char *out = NULL;
  if (duckdb_prepare(c, "SELECT sql FROM dg.views WHERE name = $1", &st) == DuckDBSuccess) {
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
  for (char *p = reads + 1; ok && *p; ) {
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

static int views_list(dg_req_t *r) {
  if (dg_read_consistent_or_problem(r) != 0) return 0;
  duckdb_connection c = conn_or_problem(r);
  if (c == NULL) return 0;
  duckdb_result res;
  if (duckdb_query(c, "SELECT name, sql FROM dg.views ORDER BY name", &res) == DuckDBError) {
    dg_log_error("listing views failed: %s", duckdb_result_error(&res));
    duckdb_destroy_result(&res);
    dg_problem(r, 500, NULL, "listing views failed");
    return 0;
  }
  dg_buf_t body;
  dg_buf_init(&body);
  dg_jsonw_t w;
  dg_jsonw_init(&w, &body);
  dg_jsonw_obj(&w);
  dg_jsonw_key(&w, "views");
  dg_jsonw_arr(&w);
  duckdb_data_chunk chunk;
  while ((chunk = duckdb_fetch_chunk(res)) != NULL) {
    idx_t n = duckdb_data_chunk_get_size(chunk);
    duckdb_string_t *names = duckdb_vector_get_data(duckdb_data_chunk_get_vector(chunk, 0));
    duckdb_string_t *sqls = duckdb_vector_get_data(duckdb_data_chunk_get_vector(chunk, 1));
    for (idx_t i = 0; i < n; i++) {
      if (r->who.tables[0] != '\0') { /* a scoped key lists the views within its tables */
        char *sql = dg_strndup(duckdb_string_t_data(&sqls[i]), duckdb_string_t_length(sqls[i]));
        int in = view_in_scope(c, &r->who, sql, 0);
        dg_free(sql);
        if (!in) continue;
      }
      dg_jsonw_obj(&w);
      dg_jsonw_key(&w, "name");
      dg_jsonw_strn(&w, duckdb_string_t_data(&names[i]), duckdb_string_t_length(names[i]));
      dg_jsonw_key(&w, "sql");
      dg_jsonw_strn(&w, duckdb_string_t_data(&sqls[i]), duckdb_string_t_length(sqls[i]));
      dg_jsonw_end(&w);
    }
    duckdb_destroy_data_chunk(&chunk);
  }
  dg_jsonw_end(&w);
  dg_jsonw_end(&w);
  duckdb_destroy_result(&res);
  dg_reply_buf(r, 200, &body);
  dg_buf_dispose(&body);
  return 0;
}

/* 1 when dg.views lists name, 0 when not, DG_EIO when DuckDB fails. */
static int view_exists(duckdb_connection c, const char *name) {
  duckdb_prepared_statement st = NULL;
  int rc = DG_EIO;
  if (duckdb_prepare(c, "SELECT count(*) FROM dg.views WHERE name = $1", &st) == DuckDBSuccess) {
    duckdb_bind_varchar(st, 1, name);
    duckdb_result res;
    if (duckdb_execute_prepared(st, &res) == DuckDBSuccess)
      rc = duckdb_value_int64(&res, 0, 0) > 0;
    duckdb_destroy_result(&res);
  }
  duckdb_destroy_prepare(&st);
  return rc;
}

/* Reads the rows of view `name` into body. Answers on failure; returns 0 when
 * the caller should send body. */
static int read_view_or_problem(dg_req_t *r, duckdb_connection c, const char *name,
                                int64_t limit, int64_t offset, dg_buf_t *body) {
  char sql[256], line[512];
  snprintf(sql, sizeof sql, "SELECT * FROM main.\"%s\" LIMIT $1 OFFSET $2", name);
  duckdb_prepared_statement probe = NULL, st = NULL;
  if (duckdb_prepare(c, sql, &probe) == DuckDBError) {
    /* The view exists but no longer binds, e.g. a table it reads was dropped. */
    /* DuckDB's text ("Did you mean …" hints naming tables and columns)
     * goes to the log; a read user gets a plain reason. */
    dg_log_warn("view '%s' cannot be read: %s", name, first_line(duckdb_prepare_error(probe), line, sizeof line));
    dg_problem(r, 409, NULL, "view '%s' cannot be read: a table or column it reads no longer exists", name);
    duckdb_destroy_prepare(&probe);
    return DG_ECONFLICT;
  }
  idx_t ncols = duckdb_prepared_statement_column_count(probe);
  vcol_t *cols = dg_calloc(ncols ? ncols : 1, sizeof *cols);
  int need_cast = 0;
  for (idx_t k = 0; k < ncols; k++) {
    duckdb_logical_type lt = duckdb_prepared_statement_column_logical_type(probe, k);
    cols[k].kind = kind_of(lt, &cols[k]);
    duckdb_destroy_logical_type(&lt);
    need_cast |= cols[k].kind == K_CAST;
  }

  dg_jsonw_t w;
  dg_jsonw_init(&w, body);
  dg_jsonw_obj(&w);
  dg_jsonw_key(&w, "columns");
  dg_jsonw_arr(&w);
  for (idx_t k = 0; k < ncols; k++) {
    const char *cn = duckdb_prepared_statement_column_name(probe, k);
    dg_jsonw_str(&w, cn ? cn : "");
    duckdb_free((void *)cn);
  }
  dg_jsonw_end(&w);

  int rc = 0;
  if (need_cast) {
    /* Same rows, with the columns we do not write natively cast by DuckDB. */
    dg_buf_t q;
    dg_buf_init(&q);
    dg_buf_puts(&q, "SELECT ");
    for (idx_t k = 0; k < ncols; k++)
      dg_buf_printf(&q, "%s#%llu%s", k ? ", " : "", (unsigned long long)(k + 1),
                    cols[k].kind == K_CAST ? "::VARCHAR" : "");
    dg_buf_printf(&q, " FROM main.\"%s\" LIMIT $1 OFFSET $2", name);
    if (duckdb_prepare(c, q.data, &st) == DuckDBError) {
      dg_log_error("view '%s': cannot prepare the cast read: %s", name, duckdb_prepare_error(st));
      dg_problem(r, 500, NULL, "reading view '%s' failed", name);
      rc = DG_EIO;
    }
    dg_buf_dispose(&q);
  } else {
    st = probe;
    probe = NULL;
  }

  duckdb_result res;
  int have_res = 0;
  int slot = -1;
  if (rc == 0) {
    /* The query runs under the guard: a deadline (504), a cap on the
     * caller's queries at once (429), interrupted at shutdown (503). */
    char caller[80];
    dg_principal_id(&r->who, caller, sizeof caller);
    int g = dg_qguard_enter(r->app->qguard, c, caller, &slot);
    if (g == DG_ECONFLICT) {
      dg_set_header(r, "Retry-After", "1");
      dg_problem(r, 429, NULL, "this key already runs %d view queries; retry when one is done",
                 r->app->cfg->view_concurrency);
      rc = g;
    } else if (g != 0) {
      dg_problem(r, 503, NULL, "the server is stopping or busy; retry later");
      rc = g;
    }
  }
  if (rc == 0) {
    duckdb_bind_int64(st, 1, limit);
    duckdb_bind_int64(st, 2, offset);
    have_res = 1;
    duckdb_state qs = duckdb_execute_prepared(st, &res);
    int stopped = dg_qguard_leave(r->app->qguard, slot);
    if (qs == DuckDBError) {
      first_line(duckdb_result_error(&res), line, sizeof line);
      duckdb_error_type et = duckdb_result_error_type(&res);
      dg_log_warn("view '%s' failed: %s", name, line);
      if (stopped == 1) {
        dg_problem(r, 504, NULL, "view '%s' ran longer than %d ms and was stopped", name,
                   r->app->cfg->view_timeout_ms);
      } else if (stopped == 2) {
        dg_problem(r, 503, NULL, "the server is stopping");
      } else if (et == DUCKDB_ERROR_OUT_OF_MEMORY) {
        dg_problem(r, 413, NULL, "view '%s' needs more memory than the server allows", name);
      } else {
        /* DuckDB's text (hints naming tables and columns) goes to the log only. */
        dg_problem(r, 500, NULL, "reading view '%s' failed", name);
      }
      rc = DG_EIO;
    } else if (duckdb_column_count(&res) != ncols) {
      dg_problem(r, 409, NULL, "view '%s' changed while being read", name);
      rc = DG_ECONFLICT;
    }
  }
  if (rc == 0) {
    dg_jsonw_key(&w, "rows");
    dg_jsonw_arr(&w);
    duckdb_data_chunk chunk;
    while ((chunk = duckdb_fetch_chunk(res)) != NULL) {
      idx_t n = duckdb_data_chunk_get_size(chunk);
      for (idx_t k = 0; k < ncols; k++) {
        duckdb_vector v = duckdb_data_chunk_get_vector(chunk, k);
        cols[k].data = duckdb_vector_get_data(v);
        cols[k].valid = duckdb_vector_get_validity(v);
      }
      for (idx_t i = 0; i < n; i++) {
        dg_jsonw_arr(&w);
        for (idx_t k = 0; k < ncols; k++) put_value(&w, &cols[k], i);
        dg_jsonw_end(&w);
      }
      duckdb_destroy_data_chunk(&chunk);
      if (body->len > r->app->cfg->view_max_bytes) {
        rc = DG_ETOOBIG;
        break;
      }
    }
    if (rc == DG_ETOOBIG)
      dg_problem(r, 413, NULL, "view '%s': this page is larger than %zu bytes; ask for fewer rows (limit)",
                 name, r->app->cfg->view_max_bytes);
  }
  if (rc == 0) {
    dg_jsonw_end(&w);
    dg_jsonw_end(&w);
  }
  if (have_res) duckdb_destroy_result(&res);
  dg_free(cols);
  duckdb_destroy_prepare(&st);
  duckdb_destroy_prepare(&probe);
  return rc;
}

static int view_get(dg_req_t *r) {
  if (dg_read_consistent_or_problem(r) != 0) return 0;
  const char *name = r->params[0];
  int64_t limit, offset;
  if (!dg_name_valid(name)) {
    dg_problem(r, 400, NULL, "'%.80s' is not a valid view name", name ? name : "");
    return 0;
  }
  if (query_int_or_problem(r, "limit", VIEW_LIMIT_DEFAULT, VIEW_LIMIT_MAX, &limit) != 0 ||
      query_int_or_problem(r, "offset", 0, INT64_MAX, &offset) != 0)
    return 0;
  duckdb_connection c = conn_or_problem(r);
  if (c == NULL) return 0;
  int exists = view_exists(c, name);
  if (exists < 0) {
    dg_problem(r, 500, NULL, "reading the view catalog failed");
    return 0;
  }
  if (exists && r->who.tables[0] != '\0') { /* outside a key's scope: as if absent */
    char *sql = view_sql(c, name);
    exists = view_in_scope(c, &r->who, sql, 0);
    dg_free(sql);
  }
  if (!exists) {
    dg_problem(r, 404, NULL, "view '%s' does not exist", name);
    return 0;
  }
  dg_buf_t body;
  dg_buf_init(&body);
  if (read_view_or_problem(r, c, name, limit, offset, &body) == 0) dg_reply_buf(r, 200, &body);
  dg_buf_dispose(&body);
  return 0;
}

const dg_route_t dg_routes_views[] = {
    {"GET", "/views", DG_ROLE_READ, views_list, 0},
    {"GET", "/views/:name", DG_ROLE_READ, view_get, 0},
    {NULL, NULL, DG_ROLE_NONE, NULL, 0},
};
