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
 * The views service (service_read.h, src/service/views.c) lists the views
 * within a caller's scope and reads a page of one under the query guard,
 * handing on each value as a dg_value_t. This file parses the parameters,
 * maps the service's codes to problems, and writes each value as JSON a
 * client can use without guessing:
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
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dg/buf.h"
#include "dg/catalog.h"
#include "dg/common.h"
#include "dg/http.h"
#include "dg/jsonw.h"
#include "dg/service_read.h"

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

/* Appends v as JSON. */
static void put_value(dg_jsonw_t *w, const dg_value_t *v) {
  dg_buf_t tmp; /* scratch for wide numbers */
  switch (v->kind) {
    case DG_VALUE_NULL: dg_jsonw_null(w); return;
    case DG_VALUE_BOOL: dg_jsonw_bool(w, v->i != 0); return;
    case DG_VALUE_INT: dg_jsonw_int(w, v->i); return;
    case DG_VALUE_UINT: {
      char num[64];
      int len = snprintf(num, sizeof num, "%llu", (unsigned long long)v->u);
      dg_jsonw_raw(w, num, (size_t)len);
      return;
    }
    case DG_VALUE_TEXT: dg_jsonw_strn(w, v->str, v->len); return;
    case DG_VALUE_FLOAT:
    case DG_VALUE_DOUBLE:
      if (!isfinite(v->d)) {
        dg_jsonw_null(w); /* JSON has no NaN or infinity */
        return;
      }
      dg_buf_init(&tmp);
      put_real(&tmp, v->d, v->kind == DG_VALUE_FLOAT);
      break;
    case DG_VALUE_UWIDE:
      dg_buf_init(&tmp);
      put_u128(&tmp, ((u128)v->hi << 64) | v->lo);
      break;
    case DG_VALUE_WIDE:
    default:
      dg_buf_init(&tmp);
      put_scaled(&tmp, (i128)(((u128)v->hi << 64) | v->lo), v->scale);
      break;
  }
  dg_jsonw_raw(w, tmp.data, tmp.len);
  dg_buf_dispose(&tmp);
}

/* ======================================================================= */
/* Routes                                                                    */
/* ======================================================================= */

static void view_listed(void *arg, const char *name, size_t nlen, const char *sql, size_t slen) {
  dg_jsonw_t *w = arg;
  dg_jsonw_obj(w);
  dg_jsonw_key(w, "name");
  dg_jsonw_strn(w, name, nlen);
  dg_jsonw_key(w, "sql");
  dg_jsonw_strn(w, sql, slen);
  dg_jsonw_end(w);
}

static int views_list(dg_req_t *r) {
  if (dg_read_consistent_or_problem(r) != 0) return 0;
  dg_buf_t body;
  dg_buf_init(&body);
  dg_jsonw_t w;
  dg_jsonw_init(&w, &body);
  dg_jsonw_obj(&w);
  dg_jsonw_key(&w, "views");
  dg_jsonw_arr(&w);
  int rc = dg_service_views(r->app, &r->who, view_listed, &w);
  if (rc == DG_EUNAVAIL) {
    dg_problem(r, 503, NULL, "the database is unavailable");
  } else if (rc != 0) {
    dg_problem(r, 500, NULL, "listing views failed");
  } else {
    dg_jsonw_end(&w);
    dg_jsonw_end(&w);
    dg_reply_buf(r, 200, &body);
  }
  dg_buf_dispose(&body);
  return 0;
}

/* A page of a view being written: its writer, and the page's byte cap. */
typedef struct {
  dg_jsonw_t *w;
  const dg_buf_t *body;
  size_t max_bytes;
} view_out_t;

/* One row as a JSON array; DG_ETOOBIG stops a page grown past its cap. */
static int view_row(void *arg, const dg_value_t *values, size_t ncols) {
  view_out_t *o = arg;
  dg_jsonw_arr(o->w);
  for (size_t k = 0; k < ncols; k++) put_value(o->w, &values[k]);
  dg_jsonw_end(o->w);
  return o->body->len > o->max_bytes ? DG_ETOOBIG : 0;
}

/* Reads the rows of view `name` into body. Answers on failure; returns 0 when
 * the caller should send body. */
static int read_view_or_problem(dg_req_t *r, const char *name, int64_t limit, int64_t offset, dg_buf_t *body) {
  dg_view_read_t *v = NULL;
  int rc = dg_service_view_open(r->app, name, &v);
  if (rc == DG_ENOTFOUND) {
    dg_problem(r, 409, NULL, "view '%s' cannot be read: a table or column it reads no longer exists", name);
    return rc;
  }
  if (rc == DG_EUNAVAIL) {
    dg_problem(r, 503, NULL, "the database is unavailable");
    return rc;
  }
  if (rc != 0) {
    dg_problem(r, 500, NULL, "reading view '%s' failed", name);
    return rc;
  }
  dg_jsonw_t w;
  dg_jsonw_init(&w, body);
  dg_jsonw_obj(&w);
  dg_jsonw_key(&w, "columns");
  dg_jsonw_arr(&w);
  size_t ncols = dg_service_view_ncols(v);
  for (size_t k = 0; k < ncols; k++) dg_jsonw_str(&w, dg_service_view_colname(v, k));
  dg_jsonw_end(&w);

  /* The query runs under the guard: a deadline (504), a cap on the
   * caller's queries at once (429), interrupted at shutdown (503). */
  char caller[80];
  dg_principal_id(&r->who, caller, sizeof caller);
  rc = dg_service_view_enter(v, caller);
  if (rc == DG_ECONFLICT) {
    dg_set_header(r, "Retry-After", "1");
    dg_problem(r, 429, NULL, "this key already runs %d view queries; retry when one is done",
               r->app->cfg->view_concurrency);
  } else if (rc != 0) {
    dg_problem(r, 503, NULL, "the server is stopping or busy; retry later");
  } else {
    dg_jsonw_key(&w, "rows");
    dg_jsonw_arr(&w);
    view_out_t o = {&w, body, r->app->cfg->view_max_bytes};
    rc = dg_service_view_run(v, limit, offset, view_row, &o);
    switch (rc) {
      case 0:
        dg_jsonw_end(&w);
        dg_jsonw_end(&w);
        break;
      case DG_ETIMEOUT:
        dg_problem(r, 504, NULL, "view '%s' ran longer than %d ms and was stopped", name,
                   r->app->cfg->view_timeout_ms);
        break;
      case DG_EUNAVAIL: dg_problem(r, 503, NULL, "the server is stopping"); break;
      case DG_ENOMEM: dg_problem(r, 413, NULL, "view '%s' needs more memory than the server allows", name); break;
      case DG_ECONFLICT: dg_problem(r, 409, NULL, "view '%s' changed while being read", name); break;
      case DG_ETOOBIG:
        dg_problem(r, 413, NULL, "view '%s': this page is larger than %zu bytes; ask for fewer rows (limit)", name,
                   r->app->cfg->view_max_bytes);
        break;
      default: dg_problem(r, 500, NULL, "reading view '%s' failed", name); break;
    }
  }
  dg_service_view_close(v);
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
  int visible = dg_service_view_visible(r->app, &r->who, name);
  if (visible == DG_EUNAVAIL) {
    dg_problem(r, 503, NULL, "the database is unavailable");
    return 0;
  }
  if (visible < 0) {
    dg_problem(r, 500, NULL, "reading the view catalog failed");
    return 0;
  }
  if (!visible) {
    dg_problem(r, 404, NULL, "view '%s' does not exist", name);
    return 0;
  }
  dg_buf_t body;
  dg_buf_init(&body);
  if (read_view_or_problem(r, name, limit, offset, &body) == 0) dg_reply_buf(r, 200, &body);
  dg_buf_dispose(&body);
  return 0;
}

const dg_route_t dg_routes_views[] = {
    {"GET", "/views", DG_ROLE_READ, views_list, 0, NULL},
    {"GET", "/views/:name", DG_ROLE_READ, view_get, 0, NULL},
    {NULL, NULL, DG_ROLE_NONE, NULL, 0, NULL},
};
