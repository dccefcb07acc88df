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
 * API's validated copy); the rows come from DuckDB, the system of record,
 * through the read service (dg/service_read.h), which owns the SQL and the
 * decoding of the results. Each response is one service call, so it reads
 * one consistent snapshot. This file parses parameters, writes JSON and CSV
 * and maps the service's error codes to problem responses (read_failed).
 *
 * Number cells arrive as the raw scaled integers DuckDB stores with their
 * scale and are printed with exactly `scale` decimals by the JSON writer, so
 * no double ever touches a value.
 *
 * Paging is by id (keyset): "next" is set exactly when another row follows
 * (the service reads one row more than the page), and a row inserted or
 * deleted between pages never shifts the ones the client has yet to see.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dg/buf.h"
#include "dg/catalog.h"
#include "dg/common.h"
#include "dg/decimal.h"
#include "dg/http.h"
#include "dg/jsonw.h"
#include "dg/log.h"
#include "dg/redis.h" /* dg_redis_xid_parse: the update-id format, no connection */
#include "dg/service_read.h"

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

/* Answers a failed service read (service_read.h's codes): 503 without a
 * connection, 404 when the table was dropped meanwhile, else 500. */
static void read_failed(dg_req_t *r, const char *table, int err) {
  if (err == DG_EUNAVAIL) dg_problem(r, 503, NULL, "the database is unavailable");
  else if (err == DG_ENOTFOUND) dg_problem(r, 404, NULL, "table '%s' does not exist", table);
  else dg_problem(r, 500, NULL, "reading table '%s' failed", table);
}

/* ======================================================================= */
/* Tables                                                                    */
/* ======================================================================= */

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

/* GET /tables as it is written: the request (whose key picks the tables)
 * and the body's writer. */
typedef struct {
  dg_req_t *r;
  dg_jsonw_t *w;
} tables_out_t;

/* A scoped key sees its tables. */
static int table_visible(void *arg, const char *name) {
  tables_out_t *o = arg;
  return dg_principal_can(&o->r->who, name);
}

static void table_listed(void *arg, const dg_tabledef_t *t, int64_t count) {
  tables_out_t *o = arg;
  write_table(o->w, t, count);
}

static int tables_list(dg_req_t *r) {
  if (dg_read_consistent_or_problem(r) != 0) return 0;
  dg_buf_t buf;
  dg_buf_init(&buf);
  dg_jsonw_t w;
  dg_jsonw_init(&w, &buf);
  dg_jsonw_obj(&w);
  dg_jsonw_key(&w, "tables");
  dg_jsonw_arr(&w);
  tables_out_t o = {r, &w};
  int rc = dg_service_tables(r->app, table_visible, table_listed, &o);
  if (rc != 0) {
    read_failed(r, "", rc); /* only DG_EUNAVAIL: no table involved */
  } else {
    dg_jsonw_end(&w);
    dg_jsonw_end(&w);
    dg_reply_buf(r, 200, &buf);
  }
  dg_buf_dispose(&buf);
  return 0;
}

static int table_get(dg_req_t *r) {
  if (dg_read_consistent_or_problem(r) != 0) return 0;
  dg_tabledef_t *t = dg_table_or_problem(r, r->params[0]);
  if (t == NULL) return 0;
  int64_t count;
  int rc = dg_service_table_count(r->app, t, &count);
  if (rc != 0) {
    read_failed(r, t->name, rc);
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

/* {"id","parent_id",<cells>[,"children"]} */
static void write_row(dg_jsonw_t *w, const dg_tabledef_t *t, const dg_row_t *row, int with_children) {
  dg_jsonw_obj(w);
  dg_jsonw_key(w, "id");
  dg_jsonw_id(w, row->id);
  dg_jsonw_key(w, "parent_id");
  if (row->has_parent) dg_jsonw_id(w, row->parent_id);
  else dg_jsonw_null(w);
  for (int c = 0; c < t->ncols; c++) {
    const dg_cell_t *cell = &row->cells[c];
    dg_jsonw_key(w, t->cols[c].name);
    if (cell->null) dg_jsonw_null(w);
    else if (t->cols[c].type == DG_COL_NUMBER) dg_jsonw_dec(w, cell->num, cell->scale);
    else dg_jsonw_strn(w, cell->str, cell->len);
  }
  if (with_children) {
    dg_jsonw_key(w, "children");
    dg_jsonw_int(w, row->children);
  }
  dg_jsonw_end(w);
}

/* Rows being written as JSON: the table, whether child counts come along,
 * the id of the last row written and how many were. */
typedef struct {
  dg_jsonw_t *w;
  const dg_tabledef_t *t;
  int children;
  int64_t last;
  int64_t n;
} rows_out_t;

static void row_written(void *arg, const dg_row_t *row) {
  rows_out_t *o = arg;
  write_row(o->w, o->t, row, o->children);
  o->last = row->id;
  o->n++;
}

/* A page written on an HTTP loop holds the manager's lock while it is
 * written: up to this many rows; a longer one goes to a worker. */
#define LOOP_PAGE_MAX 1000

/* The table a read from memory may use: r's table when the name is valid,
 * the key may see it and the catalog has it (a counted reference); else
 * NULL, nothing answered (the DuckDB way answers the problem, in its
 * order). */
static dg_tabledef_t *memory_table(dg_req_t *r) {
  const char *name = r->params[0];
  if (!dg_name_valid(name) || !dg_principal_can(&r->who, name)) return NULL;
  return dg_catalog_table(r->app->catalog, name);
}

/* Opens a page's body: {"rows":[ */
static void page_open(dg_jsonw_t *w, dg_buf_t *body) {
  dg_buf_init(body);
  dg_jsonw_init(w, body);
  dg_jsonw_obj(w);
  dg_jsonw_key(w, "rows");
  dg_jsonw_arr(w);
}

/* Ends a page: "next", the object, the answer. */
static void page_reply(dg_req_t *r, dg_jsonw_t *w, dg_buf_t *body, int more, int64_t last) {
  dg_jsonw_end(w);
  dg_jsonw_key(w, "next");
  if (more) dg_jsonw_id(w, last);
  else dg_jsonw_null(w);
  dg_jsonw_end(w);
  dg_reply_buf(r, 200, body);
}

/* GET /tables/{table}/rows. A page of one parent's children or of the
 * roots comes from the manager's memory when it can (dg_service_rows_memory:
 * no statement, no wait for the persister); anything else, and whatever
 * the memory cannot answer, from DuckDB after the consistency wait. On a
 * loop (on_loop 1) only the memory is tried: 0 sends the request to a
 * worker, nothing answered. */
static int rows_list_run(dg_req_t *r, int on_loop) {
  dg_redis_xid_t min;
  int has_min;
  if (dg_read_params_or_problem(r, &min, &has_min, NULL) != 0) return 1;
  const char *parent_s = dg_query(r, "parent_id");
  const char *after_s = dg_query(r, "after");
  const char *children_s = dg_query(r, "children");
  dg_rows_query_t q = {0};
  /* Parameters first: a malformed request is 400 whatever the table. */
  if (limit_or_problem(r, &q.limit) != 0) return 1;
  if (children_s) {
    q.children = strcmp(children_s, "true") == 0;
    if (!q.children && strcmp(children_s, "false") != 0) {
      dg_problem(r, 400, NULL, "children must be true or false");
      return 1;
    }
  }
  if (parent_s) {
    q.roots = strcmp(parent_s, "null") == 0;
    if (!q.roots && parse_i64(parent_s, &q.parent) != 0) {
      dg_problem(r, 400, NULL, "parent_id must be a 64-bit integer or null");
      return 1;
    }
    q.by_parent = !q.roots;
  }
  if (after_s && parse_i64(after_s, &q.after) != 0) {
    dg_problem(r, 400, NULL, "after must be a 64-bit integer row id");
    return 1;
  }
  q.has_after = after_s != NULL;

  dg_tabledef_t *t = NULL;
  if ((q.roots || q.by_parent) && (!on_loop || q.limit <= LOOP_PAGE_MAX) && (t = memory_table(r)) != NULL) {
    dg_buf_t body;
    dg_jsonw_t w;
    page_open(&w, &body);
    rows_out_t o = {&w, t, q.children, 0, 0};
    int more = 0;
    char applied[DG_REDIS_XID_BUFSZ];
    int rc = dg_service_rows_memory(r->app, t, &q, has_min ? &min : NULL, on_loop, row_written, &o, &more, applied,
                                    sizeof applied);
    if (rc == 0) {
      dg_set_header(r, "X-Duckgrid-Applied", applied);
      page_reply(r, &w, &body, more, o.last);
    }
    dg_buf_dispose(&body);
    dg_tabledef_unref(t);
    if (rc == 0) return 1;
  }
  if (on_loop) return 0;

  if (dg_read_consistent_or_problem(r) != 0) return 1;
  t = dg_table_or_problem(r, r->params[0]);
  if (t == NULL) return 1;
  dg_buf_t body;
  dg_jsonw_t w;
  page_open(&w, &body);
  rows_out_t o = {&w, t, q.children, 0, 0};
  int more = 0;
  int rc = dg_service_rows(r->app, t, &q, row_written, &o, &more);
  if (rc != 0) read_failed(r, t->name, rc);
  else page_reply(r, &w, &body, more, o.last);
  dg_buf_dispose(&body);
  dg_tabledef_unref(t);
  return 1;
}

static int rows_list(dg_req_t *r) {
  rows_list_run(r, 0);
  return 0;
}

static int rows_list_loop(dg_req_t *r) { return rows_list_run(r, 1); }

/* GET /tables/{table}/rows/{id} from the manager's state in memory, when
 * this process runs the manager and its state reflects what the read must
 * (dg_service_row_memory): no DuckDB statement, no wait for the persister.
 * 1 answered; 0 when the memory cannot answer or the request is not a
 * plain good one (its problem is for the DuckDB way to answer, in the
 * order it always has). */
static int row_get_memory(dg_req_t *r, const dg_redis_xid_t *min, int nowait) {
  int64_t id;
  if (parse_i64(r->params[1], &id) != 0) return 0;
  dg_tabledef_t *t = memory_table(r);
  if (t == NULL) return 0;
  dg_buf_t body;
  dg_buf_init(&body);
  dg_jsonw_t w;
  dg_jsonw_init(&w, &body);
  rows_out_t o = {&w, t, 1, 0, 0};
  char applied[DG_REDIS_XID_BUFSZ];
  int rc = dg_service_row_memory(r->app, t, id, min, nowait, row_written, &o, applied, sizeof applied);
  if (rc >= 0) {
    dg_set_header(r, "X-Duckgrid-Applied", applied);
    if (o.n == 0) dg_problem(r, 404, NULL, "row %" PRId64 " does not exist in table '%s'", id, t->name);
    else dg_reply_buf(r, 200, &body);
  }
  dg_buf_dispose(&body);
  dg_tabledef_unref(t);
  return rc >= 0;
}

/* row_get's run on an HTTP loop (dg_route_t.on_loop): from memory when
 * the manager's lock is free, else (0) row_get on a worker. */
static int row_get_loop(dg_req_t *r) {
  dg_redis_xid_t min;
  int has_min;
  if (dg_read_params_or_problem(r, &min, &has_min, NULL) != 0) return 1;
  return row_get_memory(r, has_min ? &min : NULL, 1);
}

static int row_get(dg_req_t *r) {
  dg_redis_xid_t min;
  int has_min;
  if (dg_read_params_or_problem(r, &min, &has_min, NULL) != 0) return 0;
  if (row_get_memory(r, has_min ? &min : NULL, 0)) return 0;
  if (dg_read_consistent_or_problem(r) != 0) return 0;
  int64_t id;
  dg_tabledef_t *t = dg_table_or_problem(r, r->params[0]);
  if (t == NULL) return 0;
  if (parse_i64(r->params[1], &id) != 0) {
    dg_problem(r, 400, NULL, "'%.40s' is not a 64-bit integer row id", r->params[1]);
    dg_tabledef_unref(t);
    return 0;
  }
  dg_buf_t body;
  dg_buf_init(&body);
  dg_jsonw_t w;
  dg_jsonw_init(&w, &body);
  rows_out_t o = {&w, t, 1, 0, 0};
  int rc = dg_service_row(r->app, t, id, row_written, &o);
  if (rc != 0) read_failed(r, t->name, rc);
  else if (o.n == 0) dg_problem(r, 404, NULL, "row %" PRId64 " does not exist in table '%s'", id, t->name);
  else dg_reply_buf(r, 200, &body);
  dg_buf_dispose(&body);
  dg_tabledef_unref(t);
  return 0;
}

/* ======================================================================= */
/* Holds and history                                                         */
/* ======================================================================= */

static void hold_written(void *arg, int64_t row_id, const char *column, size_t column_len) {
  dg_jsonw_t *w = arg;
  dg_jsonw_obj(w);
  dg_jsonw_key(w, "row_id");
  dg_jsonw_id(w, row_id);
  dg_jsonw_key(w, "column");
  dg_jsonw_strn(w, column, column_len);
  dg_jsonw_end(w);
}

/* GET /tables/{table}/holds: the held cells, as dg.holds has them once
 * every answered write is persisted (a web grid draws their lock icons from
 * it). */
static int holds_list(dg_req_t *r) {
  if (dg_read_consistent_or_problem(r) != 0) return 0;
  dg_tabledef_t *t = dg_table_or_problem(r, r->params[0]);
  if (t == NULL) return 0;
  dg_buf_t body;
  dg_buf_init(&body);
  dg_jsonw_t w;
  dg_jsonw_init(&w, &body);
  dg_jsonw_obj(&w);
  dg_jsonw_key(&w, "holds");
  dg_jsonw_arr(&w);
  int rc = dg_service_holds(r->app, t, hold_written, &w);
  if (rc != 0) {
    read_failed(r, t->name, rc);
  } else {
    dg_jsonw_end(&w);
    dg_jsonw_end(&w);
    dg_reply_buf(r, 200, &body);
  }
  dg_buf_dispose(&body);
  dg_tabledef_unref(t);
  return 0;
}

static void change_written(void *arg, const dg_change_t *c) {
  dg_jsonw_t *w = arg;
  const char *const v[] = {c->update_id, c->request_id, c->user, c->ts, c->column, c->old, c->new_};
  static const char *const keys[] = {"update_id", "request_id", "user", "ts", "column", "old", "new"};
  dg_jsonw_obj(w);
  for (size_t k = 0; k < DG_ARRAY_SIZE(keys); k++) {
    dg_jsonw_key(w, keys[k]);
    if (v[k]) dg_jsonw_str(w, v[k]);
    else dg_jsonw_null(w);
  }
  dg_jsonw_end(w);
}

/* GET /tables/{table}/rows/{id}/history: who changed the row's cells (or the
 * row itself: insert, move, delete, which carry "column": null), when, old ->
 * new, by which update, from the audit log, newest update first.
 * ?column= keeps one column's changes; ?limit= counts updates, so one
 * update's changes to the row are never split across pages; ?before=<update
 * id> continues from "next". One service call: one snapshot. */
static int row_history(dg_req_t *r) {
  if (dg_read_consistent_or_problem(r) != 0) return 0;
  dg_history_query_t q = {.before = {(uint64_t)INT64_MAX, 0}};
  dg_tabledef_t *t = dg_table_or_problem(r, r->params[0]);
  if (t == NULL) return 0;
  if (parse_i64(r->params[1], &q.row_id) != 0) {
    dg_problem(r, 400, NULL, "'%.40s' is not a 64-bit integer row id", r->params[1]);
    goto out_t;
  }
  if (limit_or_problem(r, &q.limit) != 0) goto out_t;
  q.column = dg_query(r, "column");
  if (q.column && dg_tabledef_col(t, q.column) == NULL) {
    dg_problem(r, 400, NULL, "table '%s' has no column '%.80s'", t->name, q.column);
    goto out_t;
  }
  const char *bs = dg_query(r, "before");
  if (bs && (dg_redis_xid_parse(bs, strlen(bs), &q.before) != 0 || q.before.ms > (uint64_t)INT64_MAX ||
             q.before.seq > (uint64_t)INT64_MAX)) {
    dg_problem(r, 400, NULL, "before must be an update id like \"1732870000000-0\"; got '%.60s'", bs);
    goto out_t;
  }
  dg_buf_t body;
  dg_buf_init(&body);
  dg_jsonw_t w;
  dg_jsonw_init(&w, &body);
  dg_jsonw_obj(&w);
  dg_jsonw_key(&w, "history");
  dg_jsonw_arr(&w);
  char *next = NULL;
  int rc = dg_service_history(r->app, t, &q, change_written, &w, &next);
  if (rc != 0) {
    read_failed(r, t->name, rc);
  } else {
    dg_jsonw_end(&w);
    dg_jsonw_key(&w, "next");
    if (next) dg_jsonw_str(&w, next);
    else dg_jsonw_null(&w);
    dg_jsonw_end(&w);
    dg_reply_buf(r, 200, &body);
  }
  dg_free(next);
  dg_buf_dispose(&body);
out_t:
  dg_tabledef_unref(t);
  return 0;
}

/* ======================================================================= */
/* Export                                                                    */
/* ======================================================================= */

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

/* Room for one number or id as text. */
#define NUM_TEXT_MAX (DG_DECIMAL_FORMAT_MAX + 8)

/* v with scale decimals written at p (room for NUM_TEXT_MAX): the end. */
static char *num_put(char *p, int64_t v, int scale) {
  char tmp[NUM_TEXT_MAX];
  size_t n = dg_decimal_format(v, scale, tmp, sizeof tmp);
  memcpy(p, tmp, n);
  return p + n;
}

/* One CSV record (with its CRLF), written into space reserved once for the
 * whole record. */
static void csv_row(dg_buf_t *b, const dg_tabledef_t *t, const dg_row_t *row) {
  size_t need = 2 + 2 * (1 + NUM_TEXT_MAX);
  for (int c = 0; c < t->ncols; c++) {
    const dg_cell_t *cell = &row->cells[c];
    need += 1 + (t->cols[c].type == DG_COL_TEXT && !cell->null ? 2 * cell->len + 2 : NUM_TEXT_MAX);
  }
  dg_buf_reserve(b, need);
  char *p = b->data + b->len;
  p = num_put(p, row->id, 0);
  *p++ = ',';
  if (row->has_parent) p = num_put(p, row->parent_id, 0);
  for (int c = 0; c < t->ncols; c++) {
    const dg_cell_t *cell = &row->cells[c];
    *p++ = ',';
    if (cell->null) continue; /* null: an empty field */
    if (t->cols[c].type == DG_COL_NUMBER) p = num_put(p, cell->num, cell->scale);
    else p = csv_put(p, cell->str, cell->len);
  }
  *p++ = '\r';
  *p++ = '\n';
  *p = '\0';
  b->len = (size_t)(p - b->data);
}

/* A number or id as a JSON number. */
static void json_num(dg_jsonw_t *w, int64_t v, int scale) {
  char tmp[NUM_TEXT_MAX];
  dg_jsonw_raw(w, tmp, dg_decimal_format(v, scale, tmp, sizeof tmp));
}

/* One {"id","parent_id",<columns>} of the JSON export: ids and numbers as
 * JSON numbers. */
static void json_row(dg_jsonw_t *w, const dg_tabledef_t *t, const dg_row_t *row) {
  dg_jsonw_obj(w);
  dg_jsonw_key(w, "id");
  json_num(w, row->id, 0);
  dg_jsonw_key(w, "parent_id");
  if (row->has_parent) json_num(w, row->parent_id, 0);
  else dg_jsonw_null(w);
  for (int c = 0; c < t->ncols; c++) {
    const dg_cell_t *cell = &row->cells[c];
    dg_jsonw_key(w, t->cols[c].name);
    if (cell->null) dg_jsonw_null(w);
    else if (t->cols[c].type == DG_COL_TEXT) dg_jsonw_strn(w, cell->str, cell->len);
    else json_num(w, cell->num, cell->scale);
  }
  dg_jsonw_end(w);
}

/* An export being written: CSV into body, or JSON through w; t_query is
 * when the first row arrived (the query's end, for the log). */
typedef struct {
  const dg_tabledef_t *t;
  int csv;
  dg_buf_t *body;
  dg_jsonw_t *w;
  int64_t t_query;
} export_out_t;

static void export_row(void *arg, const dg_row_t *row) {
  export_out_t *o = arg;
  if (o->t_query == 0) o->t_query = dg_mono_us();
  if (o->csv) csv_row(o->body, o->t, row);
  else json_row(o->w, o->t, row);
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

/* The parquet half of table_export: DuckDB's own file (the service writes,
 * opens and unlinks it), streamed from the open descriptor. */
static void export_parquet(dg_req_t *r, const dg_tabledef_t *t) {
  int fd = -1;
  int rc = dg_service_export_parquet(r->app, t, &fd);
  if (rc == DG_EINTERNAL) {
    dg_problem(r, 500, NULL, "exporting table '%s' failed", t->name);
    return;
  }
  if (rc != 0) {
    read_failed(r, t->name, rc);
    return;
  }
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
  if (parquet) {
    export_parquet(r, t);
    dg_tabledef_unref(t);
    return 0;
  }
  int64_t t0 = dg_mono_us();
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
  export_out_t o = {t, csv, &body, csv ? NULL : &w, 0};
  int rc = dg_service_export_rows(r->app, t, export_row, &o);
  if (rc == DG_EINTERNAL) {
    dg_problem(r, 500, NULL, "exporting table '%s' failed", t->name);
  } else if (rc != 0) {
    read_failed(r, t->name, rc);
  } else {
    if (!csv) {
      dg_jsonw_end(&w);
      dg_jsonw_end(&w);
    }
    int64_t t_text = dg_mono_us();
    if (o.t_query == 0) o.t_query = t_text; /* no rows */
    dg_reply_buf(r, 200, &body);
    dg_log_info("export of '%s' (%s): %zu bytes: query %.0f ms, text %.0f ms, handed over %.0f ms", t->name,
                csv ? "csv" : "json", body.len, (double)(o.t_query - t0) / 1000.0,
                (double)(t_text - o.t_query) / 1000.0, (double)(dg_mono_us() - t_text) / 1000.0);
    if (csv) r->out_type = "text/csv; charset=utf-8";
    char disp[DG_NAME_MAX + 64];
    snprintf(disp, sizeof disp, "attachment; filename=\"%s.%s\"", t->name, csv ? "csv" : "json");
    dg_set_header(r, "Content-Disposition", disp);
  }
  dg_buf_dispose(&body);
  dg_tabledef_unref(t);
  return 0;
}

const dg_route_t dg_routes_read[] = {
    {"GET", "/tables", DG_ROLE_READ, tables_list, 0, NULL},
    {"GET", "/tables/:table", DG_ROLE_READ, table_get, 0, NULL},
    {"GET", "/tables/:table/rows", DG_ROLE_READ, rows_list, 0, rows_list_loop},
    {"GET", "/tables/:table/rows/:id", DG_ROLE_READ, row_get, 0, row_get_loop},
    {"GET", "/tables/:table/holds", DG_ROLE_READ, holds_list, 0, NULL},
    {"GET", "/tables/:table/rows/:id/history", DG_ROLE_READ, row_history, 0, NULL},
    {"GET", "/tables/:table/export", DG_ROLE_READ, table_export, 0, NULL},
    {NULL, NULL, DG_ROLE_NONE, NULL, 0, NULL},
};
