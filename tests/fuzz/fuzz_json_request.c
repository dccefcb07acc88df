/*
 * fuzz_json_request.c -- libFuzzer harness for the API's JSON request
 * decoding: every write route of src/http/write.c (update_cell,
 * update_cells, insert_rows, update_row, delete_row, holds, tables, views)
 * with its real validators (number_of, row_id_of, cell_update_or_problem,
 * cells_or_problem, ...), which are static, so write.c is compiled into this
 * file. HTTP, Redis, DuckDB and the waiters are replaced by stubs that
 * record the answer and capture the normalised request the route would XADD
 * to request_duck; the catalog is the real one (src/catalog/catalog.c) with
 * a fixed set of tables, rows and a view.
 *
 * Input: byte 0 picks the route, byte 1 flags (async, cascade, Idempotency-
 * Key, Redis down, how the outcome comes back), bytes 2 and 3 the path
 * parameters (table or view name, row id); the rest is the body, parsed as
 * server.c does (JSON_REJECT_DUPLICATES, must be an object).
 * Checks:
 *   - every request gets exactly one answer, problems with status 400..599;
 *   - a request that is queued is normalised: the op of its route, the
 *     caller as user, a printable request_id of at most 128 bytes, and only
 *     names, ids and rows the catalog knows; numbers are canonical decimal
 *     strings at the column's scale (6 for percent) whose value is what
 *     the client sent (a decimal string, an integer, or a real read back
 *     through its shortest round-trip text); texts are strings or null;
 *   - the pure helpers on every part of the body: dg_name_valid() on every
 *     key agrees with ^[a-z_][a-z0-9_]{0,62}$ minus id/parent_id, and
 *     dg_decimal_parse() on every number and string leaf at every scale
 *     stays in range and round-trips through dg_decimal_format().
 */
#include "../../src/http/write.c"
#include "../../src/service/submit.c"
#include "../../src/service/revert.c"

#include <stdlib.h>

#include "fuzz_check.h"

/* ---- the world the routes see ----------------------------------------------- */

static struct {
  int answers;        /* replies + problems for the current request */
  int status;         /* the last one's status */
  char *queued;       /* the normalised request XADDed, or NULL */
  int redis_down;     /* dg_redis_command fails */
  int outcome;        /* 0: wait times out, 1: applied outcome, 2: rejected */
  const char *query_async, *query_cascade, *query_rid, *header_prefer, *header_idem;
} W;

void dg_problem(dg_req_t *r, int status, json_t *extra, const char *fmt, ...) {
  (void)fmt;
  W.answers++;
  W.status = status;
  r->status = status;
  json_decref(extra);
}
void dg_reply_json(dg_req_t *r, int status, json_t *body) {
  W.answers++;
  W.status = status;
  r->status = status;
  CHECK(body != NULL, "dg_reply_json(%d) with a NULL body (json_pack failed?)", status);
  json_decref(body);
}
void dg_reply_empty(dg_req_t *r, int status) {
  W.answers++;
  W.status = status;
  r->status = status;
}
void dg_reply_buf(dg_req_t *r, int status, const struct dg_buf_s *body) {
  W.answers++;
  W.status = status;
  r->status = status;
  json_error_t e;
  json_t *j = json_loadb(body->data, body->len, JSON_DECODE_ANY, &e);
  CHECK(j != NULL, "reply body is not JSON: %.*s", (int)body->len, body->data);
  json_decref(j);
}
const char *dg_query(const dg_req_t *r, const char *name) {
  (void)r;
  if (strcmp(name, "async") == 0) return W.query_async;
  if (strcmp(name, "cascade") == 0) return W.query_cascade;
  if (strcmp(name, "request_id") == 0) return W.query_rid;
  return NULL;
}
const char *dg_header(const dg_req_t *r, const char *name) {
  (void)r;
  if (strcmp(name, "Prefer") == 0) return W.header_prefer;
  if (strcmp(name, "Idempotency-Key") == 0) return W.header_idem;
  return NULL;
}
int RAND_bytes(unsigned char *buf, int num) {
  for (int i = 0; i < num; i++) buf[i] = (unsigned char)(i * 37 + 11);
  return 1;
}

/* DuckDB: a fake connection; stored outcomes are never found. */
static int fake_db;
duckdb_connection dg_db_conn(dg_db_t *db) {
  (void)db;
  return (duckdb_connection)&fake_db;
}
duckdb_state duckdb_prepare(duckdb_connection c, const char *q, duckdb_prepared_statement *st) {
  (void)c, (void)q;
  *st = NULL;
  return DuckDBError;
}
void duckdb_destroy_prepare(duckdb_prepared_statement *st) { *st = NULL; }
/* The revert route reads the audit log: its statement never prepares here,
 * so these are linked, never called. */
const char *duckdb_prepare_error(duckdb_prepared_statement st) { (void)st; return "fuzz"; }
duckdb_state duckdb_bind_int64(duckdb_prepared_statement st, idx_t i, int64_t v) { (void)st, (void)i, (void)v; return DuckDBError; }
duckdb_state duckdb_execute_prepared(duckdb_prepared_statement st, duckdb_result *res) {
  (void)st;
  memset(res, 0, sizeof *res);
  return DuckDBError;
}
const char *duckdb_result_error(duckdb_result *res) { (void)res; return "fuzz"; }
void duckdb_destroy_result(duckdb_result *res) { (void)res; }
idx_t duckdb_row_count(duckdb_result *res) { (void)res; return 0; }
char *duckdb_value_varchar(duckdb_result *res, idx_t c, idx_t r) { (void)res, (void)c, (void)r; return NULL; }
int64_t duckdb_value_int64(duckdb_result *res, idx_t c, idx_t r) { (void)res, (void)c, (void)r; return 0; }
bool duckdb_value_is_null(duckdb_result *res, idx_t c, idx_t r) { (void)res, (void)c, (void)r; return true; }
void duckdb_free(void *p) { (void)p; }
int dg_read_consistent_or_problem(dg_req_t *r) { (void)r; return 0; }
/* The fuzzed caller is an unscoped key (key scopes: src/auth/keys.c). */
int dg_principal_can(const dg_principal_t *p, const char *table) { (void)table; return p->tables[0] == '\0'; }
int dg_view_sql_check(duckdb_connection c, const char *sql, char *err, size_t errcap) {
  (void)c;
  if (strncmp(sql, "SELECT ", 7) == 0) return 0;
  snprintf(err, errcap, "only a single read-only SELECT is accepted");
  return DG_EINVAL;
}

/* Redis: XADD captures the request. */
static dg_app_t APP;
static int fake_redis;
dg_redis_t *dg_redis_pool_get(dg_redis_pool_t *p) {
  (void)p;
  return (dg_redis_t *)&fake_redis;
}
void dg_redis_pool_put(dg_redis_pool_t *p, dg_redis_t *r) { (void)p, (void)r; }
int dg_redis_command(dg_redis_t *r, int argc, const char **argv, const size_t *argvlen,
                     redisReply **reply) {
  (void)r;
  CHECK(argc == 9 && strcmp(argv[0], "XADD") == 0 && strcmp(argv[3], "req") == 0 && strcmp(argv[5], "t") == 0 &&
            strcmp(argv[7], "mac") == 0,
        "not a signed XADD");
  char want[DG_ENTRY_MAC_HEX + 1]; /* the entry is signed over its t and req (entry_mac.h) */
  dg_entry_mac_req(APP.streams.mac_key, argv[6], argvlen[6], argv[4], argvlen[4], want);
  CHECK(argvlen[8] == DG_ENTRY_MAC_HEX && memcmp(argv[8], want, DG_ENTRY_MAC_HEX) == 0, "request entry MAC wrong");
  CHECK(W.queued == NULL, "two XADDs for one request");
  W.queued = strndup(argv[4], argvlen[4]);
  if (W.redis_down) return DG_EUNAVAIL;
  redisReply *rep = calloc(1, sizeof *rep);
  rep->type = REDIS_REPLY_STRING;
  rep->str = strdup("1700000000000-0");
  rep->len = strlen(rep->str);
  *reply = rep;
  return 0;
}

/* Waiters: the outcome is made up from the queued request. */
void dg_waiters_add(dg_waiters_t *ws, dg_waiter_t *w, const char *request_id) {
  (void)ws;
  memset(w, 0, sizeof *w);
  snprintf(w->request_id, sizeof w->request_id, "%s", request_id);
}
int dg_waiters_wait(dg_waiters_t *ws, dg_waiter_t *w, int timeout_ms) {
  (void)ws, (void)timeout_ms;
  if (W.outcome == 0) return DG_ETIMEOUT;
  const char *res =
      W.outcome == 1
          ? "{\"status\":\"applied\",\"changes\":[],\"table_def\":{\"name\":\"x\",\"columns\":[]},"
            "\"rows\":[{\"id\":1}],\"row\":{\"id\":1},\"view_def\":{\"name\":\"v\",\"sql\":\"SELECT 1\"}}"
          : "{\"status\":\"rejected\",\"error\":{\"status\":409,\"detail\":\"held\"},\"request_id\":\"x\"}";
  w->res = strdup(res);
  w->res_len = strlen(res);
  w->done = 1;
  return 0;
}
void dg_waiters_remove(dg_waiters_t *ws, dg_waiter_t *w) {
  (void)ws;
  free(w->res);
  w->res = NULL;
}
/* Parking on a front end's loop: never here (r->can_defer is 0, so a sync
 * write waits above); linked only. */
void dg_waiters_add_notify(dg_waiters_t *ws, dg_waiter_t *w, const char *request_id, void (*notify)(void *),
                           void *arg) {
  (void)notify, (void)arg;
  dg_waiters_add(ws, w, request_id);
}
char *dg_waiters_take(dg_waiters_t *ws, dg_waiter_t *w, size_t *len) {
  (void)ws;
  char *res = w->res;
  if (len) *len = res ? w->res_len : 0;
  w->res = NULL;
  return res;
}
void dg_req_await(dg_req_t *r, dg_waiters_t *ws, dg_waiter_t *w, int64_t deadline_ms, void (*fn)(dg_req_t *r)) {
  (void)r, (void)ws, (void)w, (void)deadline_ms, (void)fn;
  abort();
}
void dg_req_await_notify(void *arg) { (void)arg; }

/* Writes queued from a front end's loop (r->on_loop is never set here, and
 * APP.submitter is NULL): linked only. */
int dg_waiters_visit(dg_waiters_t *ws, const char *request_id, dg_waiter_t *w, unsigned long long serial,
                     void (*fn)(dg_waiter_t *w, void *arg), void *arg) {
  (void)ws, (void)request_id, (void)w, (void)serial, (void)fn, (void)arg;
  abort();
}
int dg_redis_append(dg_redis_t *r, int argc, const char **argv, const size_t *argvlen) {
  (void)r, (void)argc, (void)argv, (void)argvlen;
  abort();
}
int dg_redis_get_reply(dg_redis_t *r, redisReply **reply) {
  (void)r, (void)reply;
  abort();
}
const char *dg_redis_last_error(const dg_redis_t *r) {
  (void)r;
  abort();
}
void dg_metrics_write_queued(dg_metrics_t *m, int on_loop) { (void)m, (void)on_loop; }

/* The waiters' key: (caller, request_id), as src/api/waiters.c builds it. */
void dg_waiters_key(char *out, size_t cap, const char *user, const char *request_id) {
  snprintf(out, cap, "%s\x1f%s", user ? user : "", request_id ? request_id : "");
}

/* No ring of recent outcomes, no manager in this process, no replicas
 * (CFG.redis_wait_replicas is 0, so no replication header is ever set). */
void dg_set_header(dg_req_t *r, const char *name, const char *value) {
  (void)r, (void)name, (void)value;
}
int dg_ring_read(dg_hub_t *h, dg_ring_read_t *rd, const struct timespec *until) {
  (void)h, (void)rd, (void)until;
  return DG_RING_NOT_COVERED;
}
void dg_ring_release(const dg_event_t *const *evs, size_t n) { (void)evs, (void)n; }
int dg_update_within(const char *res, size_t len, const char *scope) {
  (void)res, (void)len, (void)scope;
  return 1;
}
void dg_progress_get(dg_progress_t *p, dg_redis_xid_t *published, dg_redis_xid_t *persisted) {
  (void)p;
  if (published) *published = (dg_redis_xid_t){0, 0};
  if (persisted) *persisted = (dg_redis_xid_t){0, 0};
}
void dg_progress_submitted(dg_progress_t *p, dg_redis_xid_t id) { (void)p, (void)id; }
int dg_redis_wait_replicas(dg_redis_t *r, int numreplicas, int timeout_ms, int *acked) {
  (void)r, (void)timeout_ms;
  *acked = numreplicas;
  return 0;
}
int dg_redis_replicate_fence(dg_redis_t *r, const char *fence_key, int numreplicas, int timeout_ms, int *acked) {
  (void)r, (void)fence_key, (void)timeout_ms;
  *acked = numreplicas;
  return 0;
}

/* ---- the catalog --------------------------------------------------------------- */

static dg_catalog_t *CAT;
static dg_config_t CFG;

static void add_table(const char *name, int ncols, const char *const *cols, const int *types,
                      const int *scales, const int64_t *ids, size_t nids) {
  dg_tabledef_t *t = dg_tabledef_new(name, ncols);
  for (int i = 0; i < ncols; i++) {
    snprintf(t->cols[i].name, sizeof t->cols[i].name, "%s", cols[i]);
    t->cols[i].type = types[i] ? DG_COL_NUMBER : DG_COL_TEXT;
    t->cols[i].scale = scales[i];
  }
  dg_tabledef_finish(t);
  dg_catalog_put_table(CAT, t);
  dg_catalog_rows_add(CAT, name, ids, nids, (dg_redis_xid_t){0, 0});
}

static void world_init(void) {
  if (CAT) return;
  CAT = dg_catalog_create();
  static const char *const sc[] = {"name", "sales", "qty", "note"};
  static const int st[] = {0, 1, 1, 0}, ss[] = {0, 2, 0, 0};
  static const int64_t sids[] = {1, 2, 3, 4, 5, 6, INT64_C(9007199254740993), -7};
  add_table("sales", 4, sc, st, ss, sids, DG_ARRAY_SIZE(sids));
  static const char *const tc[] = {"v"};
  static const int tt[] = {1}, ts[] = {6};
  static const int64_t tids[] = {1, 2};
  add_table("t2", 1, tc, tt, ts, tids, 2);
  dg_catalog_put_view(CAT, "v1");
  CFG.sync_timeout_ms = 10;
  APP.cfg = &CFG;
  APP.catalog = CAT;
  snprintf(APP.streams.req, sizeof APP.streams.req, "request_duck");
}

/* ---- reference checks ---------------------------------------------------------- */

static int ref_name_valid(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 63 || strcmp(s, "id") == 0 || strcmp(s, "parent_id") == 0) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || c == '_' || (i > 0 && c >= '0' && c <= '9'))) return 0;
  }
  return 1;
}

/* The text number_of() parses: integers as is, reals via shortest round trip. */
static int number_text(const json_t *v, char *text, size_t cap) {
  if (json_is_integer(v)) {
    snprintf(text, cap, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    return 1;
  }
  if (json_is_real(v)) {
    double d = json_real_value(v);
    if (!isfinite(d)) return 0;
    for (int p = 1; p <= 17; p++) {
      snprintf(text, cap, "%.*g", p, d);
      if (strtod(text, NULL) == d) break;
    }
    return 1;
  }
  if (json_is_string(v)) {
    size_t n = json_string_length(v);
    if (n >= cap) return 0;
    memcpy(text, json_string_value(v), n);
    text[n] = '\0';
    return 1;
  }
  return 0;
}

static void check_leaf_decimal(const char *s, size_t n) {
  for (int scale = 0; scale <= DG_DECIMAL_MAX_SCALE; scale++) {
    int64_t v;
    if (dg_decimal_parse(s, n, scale, &v) != 0) continue;
    CHECK(v > -DG_DECIMAL_LIMIT && v < DG_DECIMAL_LIMIT, "'%.*s' at %d: %" PRId64, (int)n, s, scale, v);
    char buf[DG_DECIMAL_FORMAT_MAX];
    size_t k = dg_decimal_format(v, scale, buf, sizeof buf);
    int64_t back;
    CHECK(dg_decimal_parse(buf, k, scale, &back) == 0 && back == v, "'%.*s' at %d: round trip via %s",
          (int)n, s, scale, buf);
  }
}

static void walk(const json_t *j, int depth) {
  if (depth > 64) return;
  if (json_is_object(j)) {
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)j, k, v) {
      CHECK(dg_name_valid(k) == ref_name_valid(k), "dg_name_valid('%s') = %d", k, dg_name_valid(k));
      walk(v, depth + 1);
    }
  } else if (json_is_array(j)) {
    for (size_t i = 0; i < json_array_size(j); i++) walk(json_array_get(j, i), depth + 1);
  } else if (json_is_string(j)) {
    CHECK(dg_name_valid(json_string_value(j)) == ref_name_valid(json_string_value(j)), "name value");
    check_leaf_decimal(json_string_value(j), json_string_length(j));
  } else if (json_is_number(j)) {
    char text[64];
    if (number_text(j, text, sizeof text)) check_leaf_decimal(text, strlen(text));
  }
}

/* ---- checking a queued request ---------------------------------------------------- */

static const dg_coldef_t *col_of(const char *table, const char *col) {
  dg_tabledef_t *t = dg_catalog_table(CAT, table);
  const dg_coldef_t *c = t && col ? dg_tabledef_col(t, col) : NULL;
  dg_tabledef_unref(t); /* the catalog keeps its reference */
  return c;
}

static int64_t id_of(const json_t *v) {
  CHECK(json_is_integer(v), "an id that is not an integer");
  return json_integer_value(v);
}

/* A normalised cell: canonical decimal at the scale, equal to what the
 * client sent; text: a string (the same) or null. */
static void check_cell(const dg_coldef_t *c, const json_t *norm, const json_t *given, int vscale) {
  if (c->type == DG_COL_TEXT) {
    CHECK(json_is_null(norm) || json_is_string(norm), "text cell '%s' normalised to a non-string",
          c->name);
    if (given) CHECK(json_equal(norm, given), "text cell '%s' changed on the way", c->name);
    return;
  }
  int scale = vscale >= 0 ? vscale : c->scale;
  CHECK(json_is_string(norm), "number cell '%s' is not a decimal string", c->name);
  const char *s = json_string_value(norm);
  size_t n = json_string_length(norm);
  int64_t v;
  CHECK(dg_decimal_parse(s, n, scale, &v) == 0, "'%s' does not parse at scale %d", s, scale);
  char buf[DG_DECIMAL_FORMAT_MAX];
  dg_decimal_format(v, scale, buf, sizeof buf);
  CHECK(strcmp(buf, s) == 0, "'%s' is not canonical at scale %d ('%s')", s, scale, buf);
  if (given) {
    char text[64] = "";
    int64_t w = 0;
    int rc = json_is_string(given)
                 ? dg_decimal_parse(json_string_value(given), json_string_length(given), scale, &w)
             : number_text(given, text, sizeof text) ? dg_decimal_parse(text, strlen(text), scale, &w)
                                                     : DG_EINVAL;
    CHECK(rc == 0 && w == v, "cell '%s': client sent '%s', queued '%s'", c->name,
          json_is_string(given) ? json_string_value(given) : text, s);
  }
}

static void check_update(const json_t *u, const json_t *given) {
  const char *table = json_string_value(json_object_get(u, "table"));
  const char *col = json_string_value(json_object_get(u, "column"));
  int64_t row = id_of(json_object_get(u, "row_id"));
  CHECK(table && dg_catalog_has_row(CAT, table, row), "update of an unknown row");
  const dg_coldef_t *c = col_of(table, col);
  CHECK(c != NULL, "update of an unknown column");
  const char *mode = json_string_value(json_object_get(u, "mode"));
  CHECK(mode != NULL, "update without mode");
  if (strncmp(mode, "by:", 3) == 0) {
    const dg_coldef_t *by = col_of(table, mode + 3);
    CHECK(by && by->type == DG_COL_NUMBER, "mode '%s'", mode);
  } else {
    CHECK(strcmp(mode, "proportional") == 0 || strcmp(mode, "equal") == 0 || strcmp(mode, "add") == 0 ||
              strcmp(mode, "percent") == 0 || strcmp(mode, "repeat_leaves") == 0,
          "mode '%s'", mode);
  }
  CHECK(c->type == DG_COL_NUMBER || json_object_get(given, "mode") == NULL ||
            json_is_null(json_object_get(given, "mode")),
        "text column with a mode");
  check_cell(c, json_object_get(u, "value"), json_object_get(given, "value"),
             strcmp(mode, "percent") == 0 ? 6 : -1);
  json_t *e = json_object_get(u, "expected");
  if (e) check_cell(c, e, json_object_get(given, "expected"), -1);
}

static void check_cells(const char *table, const json_t *cells, const json_t *given) {
  CHECK(json_is_object(cells), "cells is not an object");
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)cells, k, v) {
    const dg_coldef_t *c = col_of(table, k);
    CHECK(c != NULL && ref_name_valid(k), "cell of unknown column '%s'", k);
    CHECK(!(c->type == DG_COL_NUMBER && json_is_null(v)), "null number cell");
    check_cell(c, v, json_object_get(given, k), -1);
  }
}

static void check_queued(int route, const dg_req_t *r, const json_t *body) {
  static const char *const ops[] = {"update_cell", "update_cells", "create_table", "delete_table",
                                    "insert_rows", "update_row",   "delete_row",   "hold",
                                    "release",     "create_view",  "delete_view"};
  json_error_t err;
  json_t *q = json_loads(W.queued, 0, &err);
  CHECK(json_is_object(q), "queued request is not a JSON object: %s", W.queued);
  const char *op = json_string_value(json_object_get(q, "op"));
  CHECK(op && strcmp(op, ops[route]) == 0, "route %d queued op %s", route, op ? op : "(none)");
  const char *user = json_string_value(json_object_get(q, "user"));
  CHECK(user && strcmp(user, r->who.user) == 0, "user");
  const char *rid = json_string_value(json_object_get(q, "request_id"));
  CHECK(rid && strlen(rid) >= 1 && strlen(rid) <= MAX_REQUEST_ID, "request_id");
  for (const char *p = rid; *p; p++) CHECK(*p >= 0x21 && *p <= 0x7e, "request_id byte %02x", *p);
  const char *table = json_string_value(json_object_get(q, "table"));
  switch (route) {
    case 0: check_update(q, body); break;
    case 1: {
      json_t *ups = json_object_get(q, "updates"), *given = json_object_get(body, "updates");
      CHECK(json_array_size(ups) >= 1 && json_array_size(ups) == json_array_size(given), "updates");
      for (size_t i = 0; i < json_array_size(ups); i++)
        check_update(json_array_get(ups, i), json_array_get(given, i));
      break;
    }
    case 2: {
      CHECK(table && ref_name_valid(table) && !dg_catalog_has_view(CAT, table), "create_table name");
      dg_tabledef_t *t = dg_catalog_table(CAT, table);
      CHECK(t == NULL, "create_table of an existing table");
      json_t *cols = json_object_get(q, "columns");
      CHECK(json_is_array(cols) && json_array_size(cols) <= DG_MAX_COLUMNS, "columns");
      for (size_t i = 0; i < json_array_size(cols); i++) {
        json_t *c = json_array_get(cols, i);
        const char *cn = json_string_value(json_object_get(c, "name"));
        const char *ty = json_string_value(json_object_get(c, "type"));
        json_int_t sc = json_integer_value(json_object_get(c, "scale"));
        CHECK(cn && ref_name_valid(cn), "column name");
        CHECK(ty && (strcmp(ty, "text") == 0 || strcmp(ty, "number") == 0), "column type");
        CHECK(sc >= 0 && sc <= 6, "column scale %" JSON_INTEGER_FORMAT, sc);
        for (size_t k = 0; k < i; k++)
          CHECK(strcmp(cn, json_string_value(json_object_get(json_array_get(cols, k), "name"))) != 0,
                "repeated column '%s'", cn);
      }
      break;
    }
    case 3: {
      dg_tabledef_t *t = table ? dg_catalog_table(CAT, table) : NULL;
      CHECK(t != NULL, "delete_table of unknown '%s'", table ? table : "");
      dg_tabledef_unref(t);
      break;
    }
    case 4: {
      json_t *rows = json_object_get(q, "rows");
      json_t *given = json_object_get(body, "rows"); /* NULL: the body is the one row */
      CHECK(table && json_array_size(rows) >= 1, "insert_rows");
      for (size_t i = 0; i < json_array_size(rows); i++) {
        json_t *row = json_array_get(rows, i);
        json_t *g = given ? json_array_get(given, i) : (json_t *)body;
        json_t *idj = json_object_get(row, "id"), *pj = json_object_get(row, "parent_id");
        if (idj) {
          int64_t id = id_of(idj);
          CHECK(id != INT64_MIN && !dg_catalog_has_row(CAT, table, id), "insert of existing row");
          for (size_t k = 0; k < i; k++) {
            json_t *o = json_object_get(json_array_get(rows, k), "id");
            CHECK(!o || json_integer_value(o) != id, "id %" PRId64 " twice", id);
          }
        }
        if (pj) {
          int64_t p = id_of(pj);
          int known = dg_catalog_has_row(CAT, table, p);
          for (size_t k = 0; k < i && !known; k++) {
            json_t *o = json_object_get(json_array_get(rows, k), "id");
            known = o && json_integer_value(o) == p;
          }
          CHECK(known, "parent %" PRId64 " unknown", p);
        }
        check_cells(table, json_object_get(row, "cells"), g);
      }
      break;
    }
    case 5: {
      int64_t id = id_of(json_object_get(q, "row_id"));
      CHECK(table && dg_catalog_has_row(CAT, table, id), "update_row of an unknown row");
      check_cells(table, json_object_get(q, "cells"), body);
      json_t *pj = json_object_get(q, "parent_id");
      if (pj && !json_is_null(pj)) CHECK(dg_catalog_has_row(CAT, table, id_of(pj)), "unknown parent");
      break;
    }
    case 6: {
      int64_t id = id_of(json_object_get(q, "row_id"));
      CHECK(table && dg_catalog_has_row(CAT, table, id), "delete_row of an unknown row");
      CHECK(json_is_boolean(json_object_get(q, "cascade")), "cascade");
      break;
    }
    case 7:
    case 8: {
      json_t *hs = json_object_get(q, "holds");
      CHECK(table && json_array_size(hs) >= 1, "holds");
      for (size_t i = 0; i < json_array_size(hs); i++) {
        json_t *h = json_array_get(hs, i);
        const dg_coldef_t *c = col_of(table, json_string_value(json_object_get(h, "column")));
        CHECK(c && c->type == DG_COL_NUMBER, "hold of a non-number column");
        CHECK(dg_catalog_has_row(CAT, table, id_of(json_object_get(h, "row_id"))), "hold of unknown row");
      }
      break;
    }
    case 9: {
      const char *v = json_string_value(json_object_get(q, "view"));
      CHECK(v && ref_name_valid(v) && !dg_catalog_has_view(CAT, v), "create_view name");
      const char *sql = json_string_value(json_object_get(q, "sql"));
      CHECK(sql && sql[0], "create_view sql");
      break;
    }
    case 10: {
      const char *v = json_string_value(json_object_get(q, "view"));
      CHECK(v && dg_catalog_has_view(CAT, v), "delete_view of an unknown view");
      break;
    }
  }
  json_decref(q);
}

/* ---- the driver ------------------------------------------------------------------- */

static const dg_handler_fn routes[] = {update_cell, update_cells, create_table, delete_table,
                                       insert_rows, update_row,   delete_row,   hold_put,
                                       hold_delete, create_view,  delete_view};
static const int json_body[] = {1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 0};
static const char *const tables[] = {"sales", "t2", "nope", "Sales", "v1", "", "id",
                                     "a_very_long_name_that_is_exactly_sixty_four_characters_long_abcd"};
static const char *const rowids[] = {"1", "4", "99", "abc", "-7", "9007199254740993", "",
                                     "9223372036854775808", "-", "-9223372036854775808", "01", "6"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  world_init();
  if (size < 4) return 0;
  int route = data[0] % DG_ARRAY_SIZE(routes);
  uint8_t f = data[1];
  memset(&W, 0, sizeof W);
  W.query_async = f & 1 ? "true" : NULL;
  W.header_prefer = f & 2 ? "respond-async" : NULL;
  W.query_cascade = (f >> 2) % 4 == 1 ? "true" : (f >> 2) % 4 == 2 ? "false" : (f >> 2) % 4 == 3 ? "yes" : NULL;
  W.header_idem = f & 16 ? "key-1" : NULL;
  W.redis_down = (f & 0xe0) == 0xe0;
  W.outcome = (f >> 5) % 3;

  dg_req_t r;
  memset(&r, 0, sizeof r);
  r.app = &APP;
  r.who.role = DG_ROLE_ADMIN;
  snprintf(r.who.user, sizeof r.who.user, "alice");
  r.params[0] = tables[data[2] % DG_ARRAY_SIZE(tables)];
  r.params[1] = rowids[data[3] % DG_ARRAY_SIZE(rowids)];
  r.nparams = 2;

  const char *text = (const char *)data + 4;
  size_t len = size - 4;
  json_t *body = NULL;
  if (len > 0) {
    json_error_t err;
    body = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    if (body) walk(body, 0);
  }
  if (json_body[route] && !json_is_object(body)) {
    json_decref(body); /* server.c answers 400 before the route runs */
    return 0;
  }
  r.body = json_body[route] ? body : NULL;

  routes[route](&r);

  CHECK(W.answers == 1, "route %d answered %d times", route, W.answers);
  CHECK(W.status >= 200 && W.status <= 599, "status %d", W.status);
  if (W.queued) {
    check_queued(route, &r, r.body);
    free(W.queued);
  } else {
    CHECK(W.status >= 400, "answered %d without queueing anything", W.status);
  }
  json_decref(body);
  return 0;
}
