/*
 * write.c -- every write route: validate at once, queue on request_duck,
 * and (unless async) wait for the outcome.
 *
 *   client JSON ──validate (names, types, catalog)──▶ 400/404/409 at once
 *               └─normalise──▶ {"op",…,"request_id","user"} ──XADD──▶ request_duck
 *                                     sync: wait for the outcome by request_id
 *                                     async: 202 {"request_id","stream_id","status":"queued"}
 *
 * Normalised requests carry number values as exact decimal strings at the
 * column's scale ("1000.00"), so nothing on the way to the manager is a
 * double. The API never writes DuckDB: the manager does. A request's
 * envelope and the outcome's members are the wire format's (wire.h).
 */
#include <inttypes.h>
#include <math.h>
#include <openssl/rand.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "dg/buf.h"
#include "dg/catalog.h"
#include "dg/common.h"
#include "dg/entry_mac.h"
#include "dg/decimal.h"
#include "dg/http.h"
#include "dg/idset.h"
#include "dg/jsonw.h"
#include "dg/hub.h"
#include "dg/log.h"
#include "dg/metrics.h"
#include "dg/progress.h"
#include "dg/redis.h"
#include "dg/service.h"
#include "dg/waiters.h"
#include "dg/wire.h"

/* A request_id's longest (wire.h). */
#define MAX_REQUEST_ID DG_WIRE_REQUEST_ID_MAX
/* Rows in one insert: the 100,000-row bulk load with room to spare; the body
 * limit is the real bound. */
#define MAX_ROWS 1000000
/* Updates in one update_cells: a pasted block of a sheet. */
#define MAX_UPDATES 100000
/* View SQL: a long analytical query fits easily. */
#define MAX_VIEW_SQL 65536

/* ---- value parsing --------------------------------------------------------- */

/* A JSON number or decimal string -> scaled int64 at `scale`.
 * Reals are read back through their shortest round-trip text, which is
 * what the client wrote ("120.505" stays 120.505, not 120.50499…). */
static int number_of(const json_t *v, int scale, int64_t *out) {
  char text[64];
  if (json_is_integer(v)) {
    snprintf(text, sizeof text, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
  } else if (json_is_real(v)) {
    double d = json_real_value(v);
    if (!isfinite(d)) return DG_EINVAL;
    for (int p = 1; p <= 17; p++) {
      snprintf(text, sizeof text, "%.*g", p, d);
      if (strtod(text, NULL) == d) break;
    }
  } else if (json_is_string(v)) {
    return dg_decimal_parse(json_string_value(v), json_string_length(v), scale, out);
  } else {
    return DG_EINVAL;
  }
  return dg_decimal_parse(text, strlen(text), scale, out);
}

static json_t *dec_json(int64_t v, int scale) {
  char buf[DG_DECIMAL_FORMAT_MAX + 8];
  size_t n = dg_decimal_format(v, scale, buf, sizeof buf);
  return json_stringn(buf, n);
}

/* A row id: a JSON integer or a string of one (ids beyond 2^53). */
static int row_id_of(const json_t *v, int64_t *out) {
  if (json_is_integer(v)) {
    *out = json_integer_value(v);
    return *out == INT64_MIN ? DG_EINVAL : 0;
  }
  if (!json_is_string(v)) return DG_EINVAL;
  return dg_row_id_parse(json_string_value(v), json_string_length(v), out);
}

/* A row id as text (http.h). */
int dg_row_id_parse(const char *s, size_t n, int64_t *out) {
  if (n == 0 || n > 20) return DG_EINVAL;
  int neg = s[0] == '-';
  if (neg && n == 1) return DG_EINVAL;
  uint64_t acc = 0;
  for (size_t i = neg; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return DG_EINVAL;
    uint64_t d = (uint64_t)(s[i] - '0');
    if (acc > (UINT64_MAX - d) / 10) return DG_EINVAL;
    acc = acc * 10 + d;
  }
  if (acc > (uint64_t)INT64_MAX) return DG_EINVAL;
  *out = neg ? -(int64_t)acc : (int64_t)acc;
  return 0;
}

static int row_id_str(const char *s, int64_t *out) {
  json_t *j = json_string(s);
  int rc = j ? row_id_of(j, out) : DG_EINVAL;
  json_decref(j);
  return rc;
}

/* ---- request building ------------------------------------------------------ */

/* Who scopes a request_id (API v1.1): the key's id, or the JWT's sub. */
static void caller_of(const dg_req_t *r, char *out, size_t cap) {
  if (r->who.key_id > 0) snprintf(out, cap, "key:%lld", (long long)r->who.key_id);
  else snprintf(out, cap, "jwt:%s", r->who.user);
}

/* The caller's tag (entry_mac.h): what its sync writes wait under. */
static void caller_tag_of(const dg_req_t *r, char tag[DG_CALLER_TAG_LEN + 1]) {
  char caller[96];
  caller_of(r, caller, sizeof caller);
  dg_entry_caller_tag(r->app->streams.mac_key, caller, tag);
}

/* A request's envelope (wire.h) on table (NULL: none); the handler adds
 * the op's members. */
static json_t *base_request(dg_req_t *r, const char *op, const char *table) {
  char caller[96], tag[DG_CALLER_TAG_LEN + 1];
  caller_of(r, caller, sizeof caller);
  caller_tag_of(r, tag);
  dg_wire_req_t env = {.op = op, .user = r->who.user, .caller = caller, .caller_tag = tag, .table = table};
  return dg_wire_req_new(&env);
}

/* Finds or makes the request_id: the body's "request_id", else the query's
 * ?request_id=, else an Idempotency-Key header (routes without a body). */
static int request_id_of(dg_req_t *r, char out[MAX_REQUEST_ID + 1], int *client_given) {
  json_t *v = r->body ? json_object_get(r->body, "request_id") : NULL;
  const char *s = NULL;
  size_t n = 0;
  *client_given = 0;
  if (v && !json_is_null(v)) {
    if (!json_is_string(v)) return DG_EINVAL;
    s = json_string_value(v);
    n = json_string_length(v);
  } else if ((s = dg_query(r, "request_id")) != NULL || (s = dg_header(r, "Idempotency-Key")) != NULL) {
    n = strlen(s);
  }
  if (s) {
    if (!dg_wire_request_id_valid(s, n)) return DG_EINVAL;
    memcpy(out, s, n);
    out[n] = '\0';
    *client_given = 1;
    return 0;
  }
  unsigned char raw[12];
  if (RAND_bytes(raw, sizeof raw) != 1) return DG_EIO;
  static const char hex[] = "0123456789abcdef";
  memcpy(out, "r-", 2);
  for (size_t i = 0; i < sizeof raw; i++) {
    out[2 + 2 * i] = hex[raw[i] >> 4];
    out[3 + 2 * i] = hex[raw[i] & 15];
  }
  out[2 + 2 * sizeof raw] = '\0';
  return 0;
}

static int is_async(const dg_req_t *r) {
  const char *a = dg_query(r, "async");
  if (a && (strcmp(a, "true") == 0 || strcmp(a, "1") == 0)) return 1;
  const char *p = dg_header(r, "Prefer");
  return p && strstr(p, "respond-async") != NULL;
}

/* How a successful outcome becomes the HTTP answer. */
typedef enum {
  REPLY_UPDATE,  /* 200, the update object                   */
  REPLY_TABLE,   /* 201, its "table_def"                      */
  REPLY_ROWS,    /* 201, {"rows": its "rows"}                 */
  REPLY_ROW,     /* 200, its "row"                            */
  REPLY_VIEW,    /* 201, {"name","sql"}: its "view_def"       */
  REPLY_EMPTY,   /* 204                                        */
  REPLY_IMPORT,  /* 201, {"table","imported","update_id","request_id"} */
} reply_kind_t;

/* The count of the elements of the raw JSON array a[0..n) (strings skipped
 * whole, so no comma inside one counts). */
static size_t raw_array_count(const char *a, size_t n) {
  size_t i = 0;
  while (i < n && a[i] != '[') i++;
  for (i++; i < n && (a[i] == ' ' || a[i] == '\n' || a[i] == '\r' || a[i] == '\t'); i++) {
  }
  if (i >= n || a[i] == ']') return 0;
  size_t count = 1;
  int depth = 0, in_str = 0;
  for (; i < n; i++) {
    char ch = a[i];
    if (in_str) {
      if (ch == '\\') i++;
      else if (ch == '"') in_str = 0;
    } else if (ch == '"') {
      in_str = 1;
    } else if (ch == '[' || ch == '{') {
      depth++;
    } else if (ch == ']' || ch == '}') {
      if (depth-- == 0) break;
    } else if (ch == ',' && depth == 0) {
      count++;
    }
  }
  return count;
}

/* 201 {"table","imported":<rows>,"update_id","request_id","status":"applied"}:
 * an import's answer names the update, not the rows (a million of them
 * would be a response as big as the file). */
static void reply_import(dg_req_t *r, const char *res, size_t len) {
  const char *v;
  size_t vn;
  json_t *out = json_object();
  static const struct {
    const char *key;    /* in the answer */
    dg_wire_out_t from; /* in the outcome */
  } ids[] = {{"table", DG_WIRE_O_TABLE}, {"update_id", DG_WIRE_O_UPDATE_ID}, {"request_id", DG_WIRE_O_REQUEST_ID}};
  for (size_t i = 0; i < DG_ARRAY_SIZE(ids); i++) {
    json_t *m = dg_wire_out_get(res, len, ids[i].from);
    json_object_set_new(out, ids[i].key, m ? m : json_null());
  }
  /* An import's outcome counts its rows ("echo_rows": false); an outcome
   * with the rows themselves (replayed from before) is counted here. */
  json_t *count = dg_wire_out_get(res, len, DG_WIRE_O_ROWS_INSERTED);
  size_t n = json_is_integer(count) ? (size_t)json_integer_value(count)
             : dg_wire_out_raw(res, len, DG_WIRE_O_ROWS, &v, &vn) == 0 ? raw_array_count(v, vn)
                                                                       : 0;
  json_decref(count);
  json_object_set_new(out, "imported", json_integer((json_int_t)n));
  json_object_set_new(out, "status", json_string("applied"));
  dg_reply_json(r, 201, out);
}

static void reply_outcome(dg_req_t *r, const char *res, size_t len, reply_kind_t kind) {
  if (!dg_wire_out_applied(res, len)) {
    json_t *err = dg_wire_out_get(res, len, DG_WIRE_O_ERROR);
    int code = (int)json_integer_value(json_object_get(err, DG_WIRE_ERR_STATUS));
    const char *detail = json_string_value(json_object_get(err, DG_WIRE_ERR_DETAIL));
    json_t *extra = json_object();
    static const struct {
      const char *key;    /* in the answer */
      dg_wire_out_t from; /* in the outcome */
    } ids[] = {{"request_id", DG_WIRE_O_REQUEST_ID}, {"stream_id", DG_WIRE_O_STREAM_ID},
               {"update_id", DG_WIRE_O_UPDATE_ID}};
    for (size_t i = 0; i < DG_ARRAY_SIZE(ids); i++) {
      json_t *v = dg_wire_out_get(res, len, ids[i].from);
      if (v) json_object_set_new(extra, ids[i].key, v);
    }
    json_t *conflicts = json_object_get(err, DG_WIRE_ERR_CONFLICTS); /* a rejected revert's */
    if (conflicts) json_object_set(extra, "conflicts", conflicts);
    dg_problem(r, code >= 400 && code < 600 ? code : 500, extra, "%s",
               detail ? detail : "the request was rejected");
    json_decref(err);
    return;
  }
  if (kind == REPLY_IMPORT) {
    reply_import(r, res, len);
    return;
  }
  dg_wire_out_t member = kind == REPLY_TABLE ? DG_WIRE_O_TABLE_DEF
                         : kind == REPLY_ROWS  ? DG_WIRE_O_ROWS
                         : kind == REPLY_ROW   ? DG_WIRE_O_ROW
                                               : DG_WIRE_O_VIEW_DEF;
  dg_buf_t out;
  dg_buf_init(&out);
  const char *v;
  size_t vn;
  switch (kind) {
    case REPLY_EMPTY: dg_reply_empty(r, 204); break;
    case REPLY_UPDATE:
      dg_buf_append(&out, res, len);
      dg_reply_buf(r, 200, &out);
      break;
    default:
      if (dg_wire_out_raw(res, len, member, &v, &vn) != 0) {
        dg_problem(r, 500, NULL, "the outcome lacks '%s'", dg_wire_out_name(member));
        break;
      }
      if (kind == REPLY_ROWS) dg_buf_puts(&out, "{\"rows\":");
      dg_buf_append(&out, v, vn);
      if (kind == REPLY_ROWS) dg_buf_putc(&out, '}');
      dg_reply_buf(r, kind == REPLY_ROW ? 200 : 201, &out);
  }
  dg_buf_dispose(&out);
}

enum { REPLAY_NONE = 0, REPLAY_ANSWERED = 1, REPLAY_IN_FLIGHT = 2 };

/* Answers with the first outcome when the client's request_id is known for
 * this caller: a retry gets it before any validation against the state its
 * own first attempt made. REPLAY_IN_FLIGHT: the manager has applied the
 * first request and not yet published it; its outcome will come to a
 * waiter registered under the key. */
static int replay_known(dg_req_t *r, const char *rid, reply_kind_t kind) {
  dg_app_t *app = r->app;
  char caller[96], uid[DG_REDIS_XID_BUFSZ];
  int from_manager;
  caller_of(r, caller, sizeof caller);
  if (!dg_service_first_update(app, caller, rid, uid, sizeof uid, &from_manager)) return REPLAY_NONE;
  size_t len = 0;
  char *prior = dg_service_outcome(app, uid, &len);
  if (prior == NULL && from_manager) {
    /* Applied here and not yet published, or being published: the mark
     * moves before the XADDs, so an outcome at or below it may not have
     * reached the ring or Redis yet (dg_service_outcome_unseen). */
    dg_redis_xid_t x, published;
    dg_progress_get(app->progress, &published, NULL);
    if (dg_redis_xid_parse(uid, strlen(uid), &x) == 0 &&
        (dg_redis_xid_cmp(x, published) > 0 || dg_service_outcome_unseen(app, x)))
      return REPLAY_IN_FLIGHT;
  }
  if (is_async(r) || prior == NULL) {
    /* An outcome no longer retained in response_duck still names its update. */
    json_t *q = json_pack("{s:s,s:s,s:s,s:s}", "request_id", rid, "stream_id", uid, "update_id", uid, "status",
                          "duplicate");
    dg_reply_json(r, is_async(r) ? 202 : 200, q);
  } else {
    reply_outcome(r, prior, len, kind);
  }
  dg_free(prior);
  return REPLAY_ANSWERED;
}

/* At the top of every write handler: 1 when the request was answered
 * (a known request_id replayed, or a malformed one refused). */
static int replayed(dg_req_t *r, reply_kind_t kind) {
  char rid[MAX_REQUEST_ID + 1];
  int given = 0;
  if (request_id_of(r, rid, &given) != 0) {
    dg_problem(r, 400, NULL, "request_id must be 1..%d printable ASCII characters", MAX_REQUEST_ID);
    return 1;
  }
  return given && replay_known(r, rid, kind) == REPLAY_ANSWERED;
}

/* The answer's X-Duckgrid-Replicated header: how the replica wait went
 * (service.h), when replicas are configured. */
static void replicated_header(dg_req_t *r, int ok) {
  if (ok >= 0) dg_set_header(r, "X-Duckgrid-Replicated", ok ? "ok" : "timeout");
}

/* Drops a request not queued: its DOM, or its text (submit_any). */
static void drop_request(json_t *req, dg_buf_t *raw) {
  json_decref(req);
  if (raw) dg_buf_dispose(raw);
}

/*
 * Queues a request and answers: req (stolen), or else raw (disposed here),
 * the text of a request object written without its closing brace, to which
 * "request_id" is added (import.c writes its rows as text: a million-row
 * DOM would be hundreds of megabytes). The waiter is registered before
 * XADD, so an outcome that arrives before we start waiting is not missed.
 */
/* A sync write awaited on the front end's loop (dg_req_await): the waiter
 * and what the answer needs. */
typedef struct {
  dg_waiter_t w; /* first: r->await_w points here */
  reply_kind_t kind;
  char rid[MAX_REQUEST_ID + 1];
  char sid[DG_REDIS_XID_BUFSZ];
  /* Queued from the loop (submit_on_loop): set by the submitter's thread
   * under the waiters' lock (dg_waiters_visit), read after the take. */
  int queued;    /* 0 not yet known, 1 in request_duck, -1 not queued */
} sync_wait_t;

/* The 503 of a write Redis did not take. */
static void not_queued(dg_req_t *r, const char *rid) {
  dg_problem(r, 503, json_pack("{s:s}", "request_id", rid),
             "the request queue (Redis) is unavailable; nothing was queued");
}

/* The continuation, on the loop: the outcome came, or the deadline. */
static void sync_answer(dg_req_t *r) {
  sync_wait_t *sw = (sync_wait_t *)r->await_w;
  r->await_w = NULL;
  size_t len = 0;
  char *res = dg_waiters_take(r->app->waiters, &sw->w, &len);
  if (res) {
    reply_outcome(r, res, len, sw->kind);
  } else if (sw->queued < 0) {
    not_queued(r, sw->rid);
  } else {
    dg_problem(r, 504, json_pack("{s:s,s:s}", "request_id", sw->rid, "stream_id", sw->sid),
               "no outcome within %d ms; the request is queued: look for request_id '%s' in get_updates",
               r->app->cfg->sync_timeout_ms, sw->rid);
  }
  dg_free(res);
  dg_free(sw);
}

/* ---- queued from the loop ---------------------------------------------------- */

/* A write queued from its HTTP loop (submit_on_loop): no worker, and no
 * thread waits for the XADD; the submitter (service.h) sends it with the
 * others of the moment as one pipeline, and tells the request's waiter. */
typedef struct {
  dg_queued_t q;                  /* first: the submitter's item */
  dg_app_t *app;
  dg_waiter_t *w;                 /* the request's waiter, if still there */
  unsigned long long serial;
  int async;
  char key[sizeof ((dg_waiter_t *)0)->request_id];
} loop_queued_t;

typedef struct {
  int rc;
  const char *sid;
  int async;
} queued_news_t;

/* Under the waiters' lock, the request still waiting (dg_waiters_visit). */
static void queued_visit(dg_waiter_t *w, void *arg) {
  const queued_news_t *n = arg;
  sync_wait_t *sw = (sync_wait_t *)w;
  sw->queued = n->rc == 0 ? 1 : -1;
  snprintf(sw->sid, sizeof sw->sid, "%s", n->sid);
  /* A sync write waits on for its outcome; an async one is answered now,
   * and a failed one at once (its outcome will never come). */
  if ((n->async || n->rc != 0) && !w->done && w->notify) w->notify(w->notify_arg);
}

/* The submitter's thread: the XADD went through (sid) or not. */
static void queued_done(dg_queued_t *q, int rc, const char *sid) {
  loop_queued_t *lq = (loop_queued_t *)q;
  dg_redis_xid_t x;
  /* Before the 202 can go out: a read this process answers after it
   * reflects the request (API.md). */
  if (rc == 0 && lq->async && lq->app->progress && dg_redis_xid_parse(sid, strlen(sid), &x) == 0)
    dg_progress_submitted(lq->app->progress, x);
  queued_news_t n = {rc, sid, lq->async};
  dg_waiters_visit(lq->app->waiters, lq->key, lq->w, lq->serial, queued_visit, &n);
  dg_free(lq);
}

/* An async write's continuation, on the loop: queued, refused, or no news
 * from Redis within the sync timeout. */
static void queued_answer(dg_req_t *r) {
  sync_wait_t *sw = (sync_wait_t *)r->await_w;
  r->await_w = NULL;
  dg_free(dg_waiters_take(r->app->waiters, &sw->w, NULL)); /* nothing is delivered under its key */
  if (sw->queued > 0) {
    dg_reply_json(r, 202, json_pack("{s:s,s:s,s:s}", "request_id", sw->rid, "stream_id", sw->sid, "status", "queued"));
  } else if (sw->queued < 0) {
    not_queued(r, sw->rid);
  } else {
    dg_problem(r, 503, json_pack("{s:s}", "request_id", sw->rid),
               "the request queue (Redis) did not answer within %d ms; the request may have been queued: "
               "look for request_id '%s' in get_updates",
               r->app->cfg->sync_timeout_ms, sw->rid);
  }
  dg_free(sw);
}

/*
 * submit_any's way on an HTTP loop, for a request whose request_id the
 * server made (nothing to look up): the waiter first, as ever (an async
 * request's under a key of its own, which no outcome names), then the
 * request to the submitter, and the request parked until its waiter hears:
 * the outcome (sync), the XADD (async), a failure, or the deadline.
 */
static void submit_on_loop(dg_req_t *r, json_t *req, const char *rid, const char *key, int async,
                           reply_kind_t kind) {
  static atomic_ullong unique;
  dg_app_t *app = r->app;
  sync_wait_t *sw = dg_calloc(1, sizeof *sw);
  sw->kind = kind;
  snprintf(sw->rid, sizeof sw->rid, "%s", rid);
  loop_queued_t *lq = dg_calloc(1, sizeof *lq);
  if (async) snprintf(lq->key, sizeof lq->key, "\x1e" "async %llu", atomic_fetch_add(&unique, 1));
  else snprintf(lq->key, sizeof lq->key, "%s", key);
  dg_waiters_add_notify(app->waiters, &sw->w, lq->key, dg_req_await_notify, r);
  lq->app = app;
  lq->w = &sw->w;
  lq->serial = sw->w.serial;
  lq->async = async;
  lq->q.text = json_dumps(req, JSON_COMPACT);
  lq->q.len = strlen(lq->q.text);
  lq->q.done = queued_done;
  json_decref(req);
  dg_req_await(r, app->waiters, &sw->w, dg_mono_us() / 1000 + app->cfg->sync_timeout_ms,
               async ? queued_answer : sync_answer);
  dg_service_queue_async(app->submitter, &lq->q);
  dg_metrics_write_queued(app->metrics, 1);
}

/* Can this write be queued from the loop? A request_id the client gave
 * may need a look at DuckDB (replay_known): a worker's. */
static int loop_submit_ok(dg_req_t *r) {
  dg_app_t *app = r->app;
  if (app->submitter == NULL || app->cfg->redis_wait_replicas > 0 || !r->can_defer) return 0;
  json_t *v = r->body ? json_object_get(r->body, "request_id") : NULL;
  return (v == NULL || json_is_null(v)) && dg_query(r, "request_id") == NULL &&
         dg_header(r, "Idempotency-Key") == NULL;
}

/*
 * A write route's run on its loop (dg_http_dispatch_loop): the cell, row
 * and hold writes validate against the catalog in memory and submit(), so
 * with loop_submit_ok nothing they do blocks. The DDL and the revert stay
 * on workers.
 */
static int write_loop(dg_req_t *r) {
  if (!loop_submit_ok(r)) return 0;
  r->route->fn(r);
  return 1;
}

static void submit_any(dg_req_t *r, json_t *req, dg_buf_t *raw, reply_kind_t kind) {
  dg_app_t *app = r->app;
  char rid[MAX_REQUEST_ID + 1];
  int given = 0;
  if (request_id_of(r, rid, &given) != 0) {
    drop_request(req, raw);
    dg_problem(r, 400, NULL, "request_id must be 1..%d printable ASCII characters", MAX_REQUEST_ID);
    return;
  }
  if (req) dg_wire_req_finish(req, rid);
  else dg_wire_req_close(raw, rid);
  int async = is_async(r);
  if (r->on_loop) {
    /* Only after loop_submit_ok (write_loop): no request_id was given, so
     * there is nothing to replay. */
    DG_ASSERT(req != NULL && !given);
    char key[sizeof ((dg_waiter_t *)0)->request_id], tag[DG_CALLER_TAG_LEN + 1];
    caller_tag_of(r, tag);
    dg_waiters_key(key, sizeof key, tag, rid);
    submit_on_loop(r, req, rid, key, async, kind);
    return;
  }
  /* A sync write on the front end parks its request on the loop while the
   * manager works, instead of holding this worker (issue 13); with
   * DUCKGRID_REDIS_WAIT_REPLICAS the answer waits for a WAIT, which blocks,
   * so it stays on the worker. */
  int parked = !async && r->can_defer && app->cfg->redis_wait_replicas <= 0;
  sync_wait_t *sw = parked ? dg_calloc(1, sizeof *sw) : NULL;
  dg_waiter_t local, *wp = sw ? &sw->w : &local;
  char key[sizeof local.request_id], tag[DG_CALLER_TAG_LEN + 1];
  caller_tag_of(r, tag);
  dg_waiters_key(key, sizeof key, tag, rid);
  /* Registered before the look below even for async requests, in case the
   * first request with this id is in flight. */
  if (sw) dg_waiters_add_notify(app->waiters, wp, key, dg_req_await_notify, r);
  else dg_waiters_add(app->waiters, wp, key);
  /* Again after registering: a request applied since the handler's first
   * look is found here, and one published after this wakes the waiter. */
  int known = given ? replay_known(r, rid, kind) : REPLAY_NONE;
  if (known == REPLAY_ANSWERED) {
    drop_request(req, raw);
    dg_waiters_remove(app->waiters, wp);
    dg_free(sw);
    return;
  }
  if (known == REPLAY_IN_FLIGHT) {
    /* Nothing is queued again: the first request's outcome answers. */
    drop_request(req, raw);
    if (dg_waiters_wait(app->waiters, wp, app->cfg->sync_timeout_ms) == 0) {
      if (async) dg_reply_json(r, 202, json_pack("{s:s,s:s}", "request_id", rid, "status", "duplicate"));
      else reply_outcome(r, wp->res, wp->res_len, kind);
    } else {
      dg_problem(r, 504, json_pack("{s:s}", "request_id", rid),
                 "no outcome within %d ms; look for request_id '%s' in get_updates", app->cfg->sync_timeout_ms, rid);
    }
    dg_waiters_remove(app->waiters, wp);
    dg_free(sw);
    return;
  }
  if (async) dg_waiters_remove(app->waiters, wp);
  /* (an async request never has sw) */
  char *text = req ? json_dumps(req, JSON_COMPACT) : NULL;
  json_decref(req);
  if (raw) text = raw->data;
  char sid[DG_REDIS_XID_BUFSZ] = "";
  size_t tlen = strlen(text);
  int64_t t_xadd = dg_mono_us();
  int repl = -1;
  int rc = dg_service_queue(app, text, tlen, async, sid, sizeof sid, &repl);
  dg_metrics_write_queued(app->metrics, 0);
  if (raw) /* an import: a request of megabytes */
    dg_log_info("import request %s: %zu bytes queued (XADD) in %.0f ms", rid, tlen,
                (double)(dg_mono_us() - t_xadd) / 1000.0);
  if (rc == 0 && async) replicated_header(r, repl);
  if (raw) dg_buf_dispose(raw);
  else free(text);
  if (rc != 0) {
    if (!async) dg_waiters_remove(app->waiters, wp);
    dg_free(sw);
    not_queued(r, rid);
    return;
  }
  if (async) {
    /* A read this process answers after the 202 reflects the request
     * (API.md: a read reflects every write answered before it arrived). */
    dg_redis_xid_t x;
    if (app->progress && dg_redis_xid_parse(sid, strlen(sid), &x) == 0) dg_progress_submitted(app->progress, x);
    dg_reply_json(r, 202, json_pack("{s:s,s:s,s:s}", "request_id", rid, "stream_id", sid,
                                    "status", "queued"));
    return;
  }
  if (sw) {
    sw->kind = kind;
    snprintf(sw->rid, sizeof sw->rid, "%s", rid);
    snprintf(sw->sid, sizeof sw->sid, "%s", sid);
    dg_req_await(r, app->waiters, &sw->w, dg_mono_us() / 1000 + app->cfg->sync_timeout_ms, sync_answer);
    return;
  }
  rc = dg_waiters_wait(app->waiters, wp, app->cfg->sync_timeout_ms);
  if (rc == 0) {
    replicated_header(r, dg_service_replicate(app));
    reply_outcome(r, wp->res, wp->res_len, kind);
  } else {
    dg_problem(r, 504, json_pack("{s:s,s:s}", "request_id", rid, "stream_id", sid),
               "no outcome within %d ms; the request is queued: look for request_id '%s' in "
               "get_updates",
               app->cfg->sync_timeout_ms, rid);
  }
  dg_waiters_remove(app->waiters, wp);
}

static void submit(dg_req_t *r, json_t *req, reply_kind_t kind) { submit_any(r, req, NULL, kind); }

/* ---- shared validation ------------------------------------------------------ */

/* Looks up a table named by the client (http.h). */
dg_tabledef_t *dg_table_or_problem(dg_req_t *r, const char *name) {
  if (!dg_name_valid(name)) {
    dg_problem(r, 400, NULL, "'%.80s' is not a valid table name (^[a-z_][a-z0-9_]{0,62}$)",
               name ? name : "");
    return NULL;
  }
  if (!dg_principal_can(&r->who, name)) {
    /* Decided before the catalog is asked: a scoped key learns nothing of
     * the other tables, not even whether they exist. */
    dg_problem(r, 403, NULL, "this key is limited to other tables than '%s'", name);
    return NULL;
  }
  dg_tabledef_t *t = dg_catalog_table(r->app->catalog, name);
  if (t == NULL) dg_problem(r, 404, NULL, "table '%s' does not exist", name);
  return t;
}

/* Tables and views share one namespace: 1 (and 409 answered) when name is taken. */
static int name_taken_or_problem(dg_req_t *r, const char *name) {
  dg_tabledef_t *t = dg_catalog_table(r->app->catalog, name);
  int taken = t != NULL || dg_catalog_has_view(r->app->catalog, name);
  dg_tabledef_unref(t);
  if (taken) dg_problem(r, 409, NULL, "'%s' exists already", name);
  return taken;
}

/* Checks a mode string for a number column of t; 0 or problem answered. */
static int mode_ok_or_problem(dg_req_t *r, const dg_tabledef_t *t, const char *mode) {
  static const char *const modes[] = {"proportional", "equal", "add", "percent", "repeat_leaves"};
  for (size_t i = 0; i < DG_ARRAY_SIZE(modes); i++)
    if (strcmp(mode, modes[i]) == 0) return 0;
  if (strncmp(mode, "by:", 3) == 0) {
    const dg_coldef_t *c = dg_name_valid(mode + 3) ? dg_tabledef_col(t, mode + 3) : NULL;
    if (c && c->type == DG_COL_NUMBER) return 0;
    dg_problem(r, 400, NULL, "mode '%.80s': '%.70s' is not a number column of table '%s'", mode,
               mode + 3, t->name);
    return -1;
  }
  dg_problem(r, 400, NULL,
             "mode '%.80s' is not one of proportional, equal, add, percent, repeat_leaves, "
             "by:<column>",
             mode);
  return -1;
}

/* A cell value for column c -> normalised JSON (decimal string, text, null). */
static json_t *cell_or_problem(dg_req_t *r, const dg_coldef_t *c, const json_t *v, int scale_override,
                               const char *what) {
  if (c->type == DG_COL_TEXT) {
    if (json_is_string(v)) return json_stringn(json_string_value(v), json_string_length(v));
    if (json_is_null(v)) return json_null();
    dg_problem(r, 400, NULL, "%s: column '%s' is text; give a string or null", what, c->name);
    return NULL;
  }
  int scale = scale_override >= 0 ? scale_override : c->scale;
  int64_t x;
  int rc = v ? number_of(v, scale, &x) : DG_EINVAL;
  if (rc == 0) return dec_json(x, scale);
  if (rc == DG_EOVERFLOW)
    dg_problem(r, 400, NULL, "%s: value out of range for column '%s' (|v| < 10^%d)", what, c->name,
               18 - scale);
  else
    dg_problem(r, 400, NULL, "%s: column '%s' is a number (scale %d); give a JSON number or a "
               "decimal string",
               what, c->name, scale);
  return NULL;
}

/*
 * Validates one update_cell body against the catalog and returns the
 * normalised update (without op/user/request_id), or NULL with the problem
 * answered. `where` prefixes messages for update_cells ("updates[3]").
 */
static json_t *cell_update_or_problem(dg_req_t *r, const json_t *u, const char *where) {
  if (!json_is_object(u)) {
    dg_problem(r, 400, NULL, "%s must be an object", where);
    return NULL;
  }
  const char *tname = json_string_value(json_object_get(u, "table"));
  const char *cname = json_string_value(json_object_get(u, "column"));
  json_t *rid = json_object_get(u, "row_id");
  json_t *value = json_object_get(u, "value");
  if (tname == NULL || cname == NULL || rid == NULL || value == NULL) {
    dg_problem(r, 400, NULL, "%s needs table, row_id, column and value", where);
    return NULL;
  }
  int64_t row;
  if (row_id_of(rid, &row) != 0) {
    dg_problem(r, 400, NULL, "%s: row_id must be a 64-bit integer", where);
    return NULL;
  }
  if (!dg_name_valid(cname)) {
    dg_problem(r, 400, NULL, "%s: '%.80s' is not a valid column name", where, cname);
    return NULL;
  }
  dg_tabledef_t *t = dg_table_or_problem(r, tname);
  if (t == NULL) return NULL;
  json_t *out = NULL;
  const dg_coldef_t *c = dg_tabledef_col(t, cname);
  const char *mode = json_string_value(json_object_get(u, "mode"));
  json_t *mode_j = json_object_get(u, "mode");
  json_t *expected = json_object_get(u, "expected");
  if (c == NULL) {
    dg_problem(r, 404, NULL, "%s: table '%s' has no column '%s'", where, t->name, cname);
  } else if (!dg_catalog_has_row(r->app->catalog, t->name, row)) {
    dg_problem(r, 404, NULL, "%s: table '%s' has no row %" PRId64, where, t->name, row);
  } else if (mode_j && !json_is_null(mode_j) && mode == NULL) {
    dg_problem(r, 400, NULL, "%s: mode must be a string", where);
  } else if (mode && c->type == DG_COL_TEXT) {
    dg_problem(r, 400, NULL, "%s: mode applies to number columns only", where);
  } else if (mode == NULL || mode_ok_or_problem(r, t, mode) == 0) {
    /* percent takes a percentage with up to 6 decimals, whatever the column. */
    int vscale = mode && strcmp(mode, "percent") == 0 ? 6 : -1;
    json_t *v = cell_or_problem(r, c, value, vscale, where);
    json_t *e = NULL;
    int ok = v != NULL;
    if (ok && expected && !json_is_null(expected)) {
      e = cell_or_problem(r, c, expected, -1, where);
      ok = e != NULL;
    }
    if (ok) {
      out = json_pack("{s:s,s:I,s:s,s:o,s:s}", "table", t->name, "row_id", (json_int_t)row,
                      "column", c->name, "value", v, "mode", mode ? mode : "proportional");
      if (e) json_object_set_new(out, "expected", e);
    } else {
      json_decref(v);
    }
  }
  dg_tabledef_unref(t);
  return out;
}

/* ---- routes: cells ------------------------------------------------------------- */

static int update_cell(dg_req_t *r) {
  if (replayed(r, REPLY_UPDATE)) return 0;
  json_t *u = cell_update_or_problem(r, r->body, "update_cell");
  if (u == NULL) return 0;
  json_t *req = base_request(r, DG_OP_UPDATE_CELL, NULL);
  json_object_update(req, u);
  json_decref(u);
  submit(r, req, REPLY_UPDATE);
  return 0;
}

static int update_cells(dg_req_t *r) {
  if (replayed(r, REPLY_UPDATE)) return 0;
  json_t *ups = json_object_get(r->body, "updates");
  if (!json_is_array(ups) || json_array_size(ups) == 0 || json_array_size(ups) > MAX_UPDATES) {
    dg_problem(r, 400, NULL, "updates must be an array of 1..%d update_cell bodies", MAX_UPDATES);
    return 0;
  }
  json_t *list = json_array();
  for (size_t i = 0; i < json_array_size(ups); i++) {
    char where[32];
    snprintf(where, sizeof where, "updates[%zu]", i);
    json_t *u = cell_update_or_problem(r, json_array_get(ups, i), where);
    if (u == NULL) {
      json_decref(list);
      return 0;
    }
    json_array_append_new(list, u);
  }
  json_t *req = base_request(r, DG_OP_UPDATE_CELLS, NULL);
  json_object_set_new(req, "updates", list);
  submit(r, req, REPLY_UPDATE);
  return 0;
}

/* ---- routes: tables ------------------------------------------------------------- */

static int create_table(dg_req_t *r) {
  if (replayed(r, REPLY_TABLE)) return 0;
  const char *name = json_string_value(json_object_get(r->body, "name"));
  json_t *cols = json_object_get(r->body, "columns");
  if (!dg_name_valid(name)) {
    dg_problem(r, 400, NULL, "name must match ^[a-z_][a-z0-9_]{0,62}$ and not be id or parent_id");
    return 0;
  }
  if (!json_is_array(cols) || json_array_size(cols) > DG_MAX_COLUMNS) {
    dg_problem(r, 400, NULL, "columns must be an array of at most %d columns", DG_MAX_COLUMNS);
    return 0;
  }
  if (name_taken_or_problem(r, name)) return 0;
  json_t *norm = json_array();
  for (size_t i = 0; i < json_array_size(cols); i++) {
    json_t *c = json_array_get(cols, i);
    const char *cn = json_string_value(json_object_get(c, "name"));
    const char *ty = json_string_value(json_object_get(c, "type"));
    json_t *sc = json_object_get(c, "scale");
    const char *bad = NULL;
    if (!json_is_object(c)) bad = "must be an object";
    else if (!dg_name_valid(cn)) bad = "has an invalid name (^[a-z_][a-z0-9_]{0,62}$, not id or parent_id)";
    else if (ty == NULL || (strcmp(ty, "text") != 0 && strcmp(ty, "number") != 0))
      bad = "needs type \"text\" or \"number\"";
    else if (sc && !json_is_null(sc) && (strcmp(ty, "text") == 0 || !json_is_integer(sc) ||
                                         json_integer_value(sc) < 0 || json_integer_value(sc) > 6))
      bad = "scale must be an integer 0..6, on number columns only";
    for (size_t k = 0; bad == NULL && k < i; k++)
      if (strcmp(cn, json_string_value(json_object_get(json_array_get(cols, k), "name"))) == 0)
        bad = "repeats a name";
    if (bad) {
      json_decref(norm);
      dg_problem(r, 400, NULL, "columns[%zu] %s", i, bad);
      return 0;
    }
    int scale = strcmp(ty, "number") == 0 ? (sc && json_is_integer(sc) ? (int)json_integer_value(sc) : 2) : 0;
    json_array_append_new(norm, json_pack("{s:s,s:s,s:i}", "name", cn, "type", ty, "scale", scale));
  }
  json_t *req = base_request(r, DG_OP_CREATE_TABLE, name);
  json_object_set_new(req, "columns", norm);
  submit(r, req, REPLY_TABLE);
  return 0;
}

static int delete_table(dg_req_t *r) {
  if (replayed(r, REPLY_EMPTY)) return 0;
  dg_tabledef_t *t = dg_table_or_problem(r, r->params[0]);
  if (t == NULL) return 0;
  json_t *req = base_request(r, DG_OP_DELETE_TABLE, t->name);
  dg_tabledef_unref(t);
  submit(r, req, REPLY_EMPTY);
  return 0;
}

/* ---- routes: rows ----------------------------------------------------------------- */

/* Normalises the cells of a row body (every key but id/parent_id/mode/request_id). */
static json_t *cells_or_problem(dg_req_t *r, const dg_tabledef_t *t, const json_t *row,
                                const char *where) {
  json_t *cells = json_object();
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)row, k, v) {
    if (strcmp(k, "id") == 0 || strcmp(k, "parent_id") == 0 || strcmp(k, "mode") == 0 ||
        strcmp(k, "request_id") == 0 || strcmp(k, "children") == 0)
      continue;
    const dg_coldef_t *c = dg_name_valid(k) ? dg_tabledef_col(t, k) : NULL;
    if (c == NULL) {
      dg_problem(r, 400, NULL, "%s: table '%s' has no column '%.80s'", where, t->name, k);
      json_decref(cells);
      return NULL;
    }
    if (c->type == DG_COL_NUMBER && json_is_null(v)) {
      dg_problem(r, 400, NULL, "%s: number cell '%s' cannot be null", where, k);
      json_decref(cells);
      return NULL;
    }
    json_t *n = cell_or_problem(r, c, v, -1, where);
    if (n == NULL) {
      json_decref(cells);
      return NULL;
    }
    json_object_set_new(cells, k, n);
  }
  return cells;
}

static int insert_rows(dg_req_t *r) {
  if (replayed(r, REPLY_ROWS)) return 0;
  dg_tabledef_t *t = dg_table_or_problem(r, r->params[0]);
  if (t == NULL) return 0;
  json_t *rows = json_object_get(r->body, "rows");
  json_t *single = NULL;
  if (rows == NULL) {
    single = json_array();
    json_array_append(single, r->body);
    rows = single;
  }
  json_t *norm = NULL;
  dg_idset_t seen; /* ids given earlier in this request: duplicates, parents */
  dg_idset_init(&seen);
  if (!json_is_array(rows) || json_array_size(rows) == 0 || json_array_size(rows) > MAX_ROWS) {
    dg_problem(r, 400, NULL, "rows must be an array of 1..%d row objects", MAX_ROWS);
    goto done;
  }
  norm = json_array();
  /* Ids given in this request, to catch duplicates and parents defined earlier. */
  size_t n = json_array_size(rows);
  for (size_t i = 0; i < n; i++) {
    json_t *row = json_array_get(rows, i);
    char where[32];
    snprintf(where, sizeof where, "rows[%zu]", i);
    if (!json_is_object(row)) {
      dg_problem(r, 400, NULL, "%s must be an object", where);
      goto done;
    }
    json_t *o = json_object();
    json_t *idj = json_object_get(row, "id");
    json_t *pj = json_object_get(row, "parent_id");
    int64_t id = 0, parent = 0;
    if (idj && !json_is_null(idj)) {
      if (row_id_of(idj, &id) != 0) {
        json_decref(o);
        dg_problem(r, 400, NULL, "%s: id must be a 64-bit integer", where);
        goto done;
      }
      int dup = dg_catalog_row_known(r->app->catalog, t->name, id);
      dup = dup || dg_idset_has(&seen, id);
      if (dup) {
        json_decref(o);
        dg_problem(r, 409, NULL, "%s: row %" PRId64 " exists already", where, id);
        goto done;
      }
      json_object_set_new(o, "id", json_integer(id));
    }
    if (pj && !json_is_null(pj)) {
      if (row_id_of(pj, &parent) != 0) {
        json_decref(o);
        dg_problem(r, 400, NULL, "%s: parent_id must be a 64-bit integer or null", where);
        goto done;
      }
      /* A parent may be a row made earlier in this same request. */
      int known = dg_catalog_has_row(r->app->catalog, t->name, parent);
      known = known || dg_idset_has(&seen, parent);
      if (!known) {
        json_decref(o);
        dg_problem(r, 404, NULL, "%s: parent %" PRId64 " does not exist in table '%s'", where,
                   parent, t->name);
        goto done;
      }
      json_object_set_new(o, "parent_id", json_integer(parent));
    }
    if (idj && !json_is_null(idj)) dg_idset_add(&seen, id);
    json_t *cells = cells_or_problem(r, t, row, where);
    if (cells == NULL) {
      json_decref(o);
      goto done;
    }
    json_object_set_new(o, "cells", cells);
    json_array_append_new(norm, o);
  }
  {
    json_t *req = base_request(r, DG_OP_INSERT_ROWS, t->name);
    json_object_set_new(req, "rows", norm);
    norm = NULL;
    submit(r, req, REPLY_ROWS);
  }
done:
  dg_idset_dispose(&seen);
  json_decref(norm);
  json_decref(single);
  dg_tabledef_unref(t);
  return 0;
}

static int row_param_or_problem(dg_req_t *r, const dg_tabledef_t *t, int64_t *id) {
  if (row_id_str(r->params[1], id) != 0) {
    dg_problem(r, 400, NULL, "row id '%.40s' is not a 64-bit integer", r->params[1]);
    return -1;
  }
  if (!dg_catalog_has_row(r->app->catalog, t->name, *id)) {
    dg_problem(r, 404, NULL, "table '%s' has no row %" PRId64, t->name, *id);
    return -1;
  }
  return 0;
}

static int update_row(dg_req_t *r) {
  if (replayed(r, REPLY_ROW)) return 0;
  dg_tabledef_t *t = dg_table_or_problem(r, r->params[0]);
  if (t == NULL) return 0;
  int64_t id;
  if (row_param_or_problem(r, t, &id) == 0) {
    json_t *cells = cells_or_problem(r, t, r->body, "row");
    json_t *pj = json_object_get(r->body, "parent_id");
    const char *mode = json_string_value(json_object_get(r->body, "mode"));
    int64_t parent = 0;
    int ok = cells != NULL;
    if (ok && pj && !json_is_null(pj)) {
      if (row_id_of(pj, &parent) != 0) {
        dg_problem(r, 400, NULL, "parent_id must be a 64-bit integer or null");
        ok = 0;
      } else if (!dg_catalog_has_row(r->app->catalog, t->name, parent)) {
        dg_problem(r, 404, NULL, "parent %" PRId64 " does not exist in table '%s'", parent, t->name);
        ok = 0;
      }
    }
    if (ok && mode && mode_ok_or_problem(r, t, mode) != 0) ok = 0;
    if (ok) {
      json_t *req = base_request(r, DG_OP_UPDATE_ROW, t->name);
      json_object_set_new(req, "row_id", json_integer(id));
      json_object_set_new(req, "cells", cells);
      cells = NULL;
      if (pj) json_object_set_new(req, "parent_id", json_is_null(pj) ? json_null() : json_integer(parent));
      json_object_set_new(req, "mode", json_string(mode ? mode : "proportional"));
      submit(r, req, REPLY_ROW);
    }
    json_decref(cells);
  }
  dg_tabledef_unref(t);
  return 0;
}

static int delete_row(dg_req_t *r) {
  if (replayed(r, REPLY_EMPTY)) return 0;
  dg_tabledef_t *t = dg_table_or_problem(r, r->params[0]);
  if (t == NULL) return 0;
  int64_t id;
  const char *cascade = dg_query(r, "cascade");
  if (cascade && strcmp(cascade, "true") != 0 && strcmp(cascade, "false") != 0) {
    dg_problem(r, 400, NULL, "cascade must be true or false");
  } else if (row_param_or_problem(r, t, &id) == 0) {
    json_t *req = base_request(r, DG_OP_DELETE_ROW, t->name);
    json_object_set_new(req, "row_id", json_integer(id));
    json_object_set_new(req, "cascade", json_boolean(cascade && strcmp(cascade, "true") == 0));
    submit(r, req, REPLY_EMPTY);
  }
  dg_tabledef_unref(t);
  return 0;
}

static int holds(dg_req_t *r, const char *op) {
  if (replayed(r, REPLY_UPDATE)) return 0;
  dg_tabledef_t *t = dg_table_or_problem(r, r->params[0]);
  if (t == NULL) return 0;
  json_t *list = json_object_get(r->body, "holds");
  json_t *norm = json_array();
  if (!json_is_array(list) || json_array_size(list) == 0 || json_array_size(list) > MAX_UPDATES) {
    dg_problem(r, 400, NULL, "holds must be an array of 1..%d {row_id, column}", MAX_UPDATES);
    goto done;
  }
  for (size_t i = 0; i < json_array_size(list); i++) {
    json_t *h = json_array_get(list, i);
    const char *cn = json_string_value(json_object_get(h, "column"));
    int64_t id;
    if (row_id_of(json_object_get(h, "row_id"), &id) != 0 || !dg_name_valid(cn)) {
      dg_problem(r, 400, NULL, "holds[%zu] needs an integer row_id and a valid column name", i);
      goto done;
    }
    const dg_coldef_t *c = dg_tabledef_col(t, cn);
    if (c == NULL || !dg_catalog_has_row(r->app->catalog, t->name, id)) {
      dg_problem(r, 404, NULL, "holds[%zu]: table '%s' has no %s", i, t->name,
                 c == NULL ? "such column" : "such row");
      goto done;
    }
    if (c->type != DG_COL_NUMBER) {
      dg_problem(r, 400, NULL, "holds[%zu]: only number cells can be held", i);
      goto done;
    }
    json_array_append_new(norm, json_pack("{s:I,s:s}", "row_id", (json_int_t)id, "column", cn));
  }
  json_t *req = base_request(r, op, t->name);
  json_object_set_new(req, "holds", norm);
  norm = NULL;
  submit(r, req, REPLY_UPDATE);
done:
  json_decref(norm);
  dg_tabledef_unref(t);
  return 0;
}

static int hold_put(dg_req_t *r) { return holds(r, DG_OP_HOLD); }
static int hold_delete(dg_req_t *r) { return holds(r, DG_OP_RELEASE); }

/* ---- routes: views ------------------------------------------------------------------ */

static int create_view(dg_req_t *r) {
  if (replayed(r, REPLY_VIEW)) return 0;
  const char *name = json_string_value(json_object_get(r->body, "name"));
  const char *sql = json_string_value(json_object_get(r->body, "sql"));
  if (!dg_name_valid(name)) {
    dg_problem(r, 400, NULL, "name must match ^[a-z_][a-z0-9_]{0,62}$");
    return 0;
  }
  if (sql == NULL || strlen(sql) == 0 || strlen(sql) > MAX_VIEW_SQL) {
    dg_problem(r, 400, NULL, "sql must be a non-empty string of at most %d bytes", MAX_VIEW_SQL);
    return 0;
  }
  if (name_taken_or_problem(r, name)) return 0;
  char err[512];
  int rc = dg_service_view_check(r->app, sql, err, sizeof err);
  if (rc == DG_EUNAVAIL) {
    dg_problem(r, 503, NULL, "the database is unavailable");
    return 0;
  }
  if (rc == DG_EINVAL) {
    dg_problem(r, 400, NULL, "%s", err);
    return 0;
  }
  if (rc != 0) {
    dg_problem(r, 503, NULL, "the database could not check the view: %s", err);
    return 0;
  }
  json_t *req = base_request(r, DG_OP_CREATE_VIEW, NULL);
  json_object_set_new(req, "view", json_string(name));
  json_object_set_new(req, "sql", json_string(sql));
  submit(r, req, REPLY_VIEW);
  return 0;
}

static int delete_view(dg_req_t *r) {
  if (replayed(r, REPLY_EMPTY)) return 0;
  const char *name = r->params[0];
  if (!dg_name_valid(name)) {
    dg_problem(r, 400, NULL, "'%.80s' is not a valid view name", name);
    return 0;
  }
  if (!dg_catalog_has_view(r->app->catalog, name)) {
    dg_problem(r, 404, NULL, "view '%s' does not exist", name);
    return 0;
  }
  json_t *req = base_request(r, DG_OP_DELETE_VIEW, NULL);
  json_object_set_new(req, "view", json_string(name));
  submit(r, req, REPLY_EMPTY);
  return 0;
}

/* ---- routes: revert (issue 19) ------------------------------------------------- */

/* Most cells one revert carries (a revert of a 1M-leaf spread fits). */
#define MAX_REVERT_CELLS 5000000

/* One cell's net change within an update: the audit log may hold several
 * records for a cell (a parent rolled up once per written or inserted
 * child), chained old -> new in an order the log does not keep. For a chain
 * v0 -> v1 -> ... -> vk the olds are {v0..vk-1} and the news {v1..vk}: as
 * multisets, olds - news = {v0} and news - olds = {vk}, whatever values
 * repeat. So one pass counts each value (+1 as an old, -1 as a new) and the
 * net change runs from the record whose old is the value left positive to
 * the one whose new is the value left negative: O(k) for k records (pairing
 * records with each other was O(k^2): 19 s for the 10,000 roll-ups of a
 * root above a 10,000-row insert). A chain that comes back to its start
 * leaves nothing over: the first old and the last new, which are equal. */
static int text_eq(const char *a, const char *b) { return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0); }

static void net_change(const dg_revert_rec_t *rec, size_t from, size_t to, size_t *old_at, size_t *new_at) {
  *old_at = from;
  *new_at = to - 1;
  if (to - from == 1) return;
  json_t *count = json_object(); /* value -> olds minus news */
  int64_t nulls = 0;             /* the same for null */
  int found_old = 0, found_new = 0;
  for (int pass = 0; pass < 2; pass++) {
    for (size_t i = from; i < to; i++) {
      for (int side = 0; side < 2; side++) { /* 0: old, 1: new */
        const char *v = side == 0 ? rec[i].old_text : rec[i].new_text;
        if (pass == 0) {
          int64_t d = side == 0 ? 1 : -1;
          if (v == NULL) {
            nulls += d;
          } else {
            json_t *c = json_object_get(count, v);
            json_object_set_new_nocheck(count, v, json_integer((c ? json_integer_value(c) : 0) + d));
          }
        } else {
          int64_t left = v == NULL ? nulls : json_integer_value(json_object_get(count, v));
          if (side == 0 && left > 0 && !found_old) {
            *old_at = i;
            found_old = 1;
          }
          if (side == 1 && left < 0 && !found_new) {
            *new_at = i;
            found_new = 1;
          }
        }
      }
    }
  }
  json_decref(count);
  if (found_old) return;
  /* Nothing over: the cell ends as it began; the first record's old and a
   * record whose new is that same value. */
  *old_at = from;
  for (size_t i = from; i < to; i++) {
    if (text_eq(rec[from].old_text, rec[i].new_text)) {
      *new_at = i;
      break;
    }
  }
}

static json_t *value_of(const char *v) { return v ? json_string(v) : json_null(); }

/* A move's row record text: "root" or "parent <id>" (apply.c collect). */
static int parent_text(const char *s, json_t **out) {
  if (s == NULL) return -1;
  if (strcmp(s, "root") == 0) {
    *out = json_null();
    return 0;
  }
  int64_t id;
  if (strncmp(s, "parent ", 7) != 0 || dg_row_id_parse(s + 7, strlen(s + 7), &id) != 0) return -1;
  *out = json_integer(id);
  return 0;
}

static void row_key(char *k, size_t cap, const char *table, int64_t row) {
  snprintf(k, cap, "%s/%" PRId64, table, row);
}

/* The rows update x deleted, as recorded just before (dg.row_images,
 * migration 9; dg_service_revert_images): a map "table/row" -> undo entry,
 * and the entries in an order that puts every parent before its children
 * (depth within the deleted set, then the order they were recorded in). */
static int read_images(dg_app_t *app, dg_redis_xid_t x, json_t *list, json_t *by_key) {
  dg_revert_image_t *img;
  size_t n;
  if (dg_service_revert_images(app, x, &img, &n) != 0) return -1;
  for (size_t i = 0; i < n; i++) {
    json_t *cj = img[i].cells ? json_loads(img[i].cells, JSON_REJECT_DUPLICATES, NULL) : NULL;
    if (img[i].table && json_is_object(cj)) {
      json_t *u = json_pack("{s:s,s:s,s:I,s:o,s:o}", "undo", "delete", "table", img[i].table, "row_id",
                            (json_int_t)img[i].row, "parent_id",
                            img[i].has_parent ? json_integer(img[i].parent) : json_null(), "cells", cj);
      char k[160];
      row_key(k, sizeof k, img[i].table, img[i].row);
      json_object_set(by_key, k, u);
      json_array_append_new(list, u);
    } else {
      json_decref(cj);
    }
  }
  dg_service_revert_images_free(img, n);
  return 0;
}

/* Whether update x can be reverted by the compact form (op_revert_compact
 * in src/manager/apply.c: the manager finds its cells itself): this
 * process saw its outcome (the hub's ring), applied, from a write of cells
 * only (update_cell, update_cells, or a revert of one table that inserted,
 * deleted and moved nothing: the id lists name the outcome's table only),
 * and every table it concerns is one the caller may touch (a key limited
 * to some tables: the outcome's table and those of its listed changes,
 * dg_update_within; a compact outcome of several tables names none and is
 * reverted by the detailed form, checked record by record). *table: the
 * outcome's table, or NULL. */
static int compact_revertible(dg_req_t *r, dg_redis_xid_t x, char *table, size_t tcap) {
  if (r->app->hub == NULL) return 0;
  dg_redis_xid_t before = x;
  if (before.seq > 0) {
    before.seq--;
  } else if (before.ms > 0) {
    before.ms--;
    before.seq = UINT64_MAX;
  } else {
    return 0;
  }
  const dg_event_t *hit = NULL;
  dg_ring_read_t rd = {.cursor = before, .limit = 1, .scan_max = 1, .any_entry = 1, .out = &hit};
  if (dg_ring_read(r->app->hub, &rd, NULL) != DG_RING_COVERED || rd.matched != 1) {
    dg_ring_release(&hit, rd.matched);
    return 0;
  }
  char want[DG_REDIS_XID_BUFSZ];
  dg_redis_xid_format(x, want, sizeof want);
  int ok = 0;
  json_t *o = strcmp(hit->id, want) == 0 ? json_loadb(hit->res, hit->len, 0, NULL) : NULL;
  const char *op = json_string_value(json_object_get(o, DG_WIRE_OP));
  const char *status = json_string_value(json_object_get(o, DG_WIRE_STATUS));
  if (op && status && strcmp(status, DG_WIRE_APPLIED) == 0 && dg_update_within(hit->res, hit->len, r->who.tables) &&
      (strcmp(op, DG_OP_UPDATE_CELL) == 0 || strcmp(op, DG_OP_UPDATE_CELLS) == 0 ||
       (strcmp(op, DG_OP_REVERT) == 0 && json_is_string(json_object_get(o, DG_WIRE_TABLE)) &&
        json_object_get(o, DG_WIRE_INSERTED) == NULL && json_object_get(o, DG_WIRE_DELETED) == NULL &&
        json_object_get(o, DG_WIRE_MOVED) == NULL))) {
    const char *t = json_string_value(json_object_get(o, DG_WIRE_TABLE));
    snprintf(table, tcap, "%s", t && strlen(t) < tcap ? t : "");
    ok = 1;
  }
  json_decref(o);
  dg_ring_release(&hit, rd.matched);
  return ok;
}

/* POST /updates/{update_id}/revert {"force":false,"request_id":…}: reads
 * what the update did from the audit log (after every answered write is
 * persisted) and submits it as one request: the rows it inserted (to delete
 * again, with what they must still be), moved (to move back) and deleted
 * (to insert again, from their images), and every other cell it changed,
 * with the value it must still have and the value to restore. The manager
 * checks and undoes them (op_revert in src/manager/apply.c). */
static int revert_update(dg_req_t *r) {
  if (replayed(r, REPLY_UPDATE)) return 0;
  const char *uid = r->params[0];
  dg_redis_xid_t x;
  if (uid == NULL || dg_redis_xid_parse(uid, strlen(uid), &x) != 0 || x.ms > (uint64_t)INT64_MAX ||
      x.seq > (uint64_t)INT64_MAX) {
    dg_problem(r, 400, NULL, "'%.60s' is not an update id like \"1732870000000-0\"", uid ? uid : "");
    return 0;
  }
  json_t *force = json_object_get(r->body, "force");
  if (force && !json_is_boolean(force)) {
    dg_problem(r, 400, NULL, "force must be true or false");
    return 0;
  }
  const char *k;
  json_t *v;
  json_object_foreach(r->body, k, v) {
    if (strcmp(k, "force") != 0 && strcmp(k, "request_id") != 0) {
      dg_problem(r, 400, NULL, "unknown member '%.40s' (a revert takes force and request_id)", k);
      return 0;
    }
  }
  char table[128];
  if (compact_revertible(r, x, table, sizeof table)) {
    /* The manager reads the cells (its cache of recent writes, or the
     * audit log): nothing to read here, nothing to wait for. */
    json_t *req = base_request(r, DG_OP_REVERT, table[0] ? table : NULL);
    json_object_set_new(req, "reverts", json_string(uid));
    json_object_set_new(req, "force", json_boolean(json_is_true(force)));
    json_object_set_new(req, "compact", json_true());
    submit(r, req, REPLY_UPDATE);
    return 0;
  }
  if (dg_read_consistent_or_problem(r) != 0) return 0;
  dg_revert_rec_t *rec = NULL;
  size_t n = 0;
  int rrc = dg_service_revert_read(r->app, x, MAX_REVERT_CELLS, &rec, &n);
  if (rrc == DG_EUNAVAIL) {
    dg_problem(r, 503, NULL, "the database is unavailable");
    return 0;
  }
  if (rrc != 0 && rrc != DG_ETOOBIG) {
    dg_problem(r, 500, NULL, "reading the audit log failed");
    return 0;
  }
  json_t *cells = NULL, *rows = NULL, *deleted = NULL, *images = NULL, *inserted = NULL;
  if (n == 0) {
    dg_problem(r, 404, NULL, "update %s changed no cells (or does not exist, or was rejected)", uid);
    goto out;
  }
  if (rrc == DG_ETOOBIG) {
    dg_problem(r, 400, NULL, "update %s changed %llu cells, more than a revert takes (%d)", uid,
               (unsigned long long)n, MAX_REVERT_CELLS);
    n = 0; /* nothing was read */
    goto out;
  }
  cells = json_array();
  rows = json_array();          /* undo entries: inserts, moves, then deletes (parents first) */
  deleted = json_array();       /* the deletes, from the images                              */
  images = json_object();       /* "table/row" -> delete entry (borrowed from deleted)       */
  inserted = json_object();     /* "table/row" -> insert entry                               */
  int images_read = 0;
  char *only_table = NULL;
  int one_table = 1;
  for (size_t i = 0; i < n;) {
    const char *tn = rec[i].table, *cn = rec[i].column;
    int64_t row = rec[i].row;
    size_t j = i + 1;
    for (; j < n; j++) {
      int same = rec[j].row == row && rec[j].table && tn && strcmp(rec[j].table, tn) == 0 &&
                 text_eq(rec[j].column, cn);
      if (!same) break;
    }
    const char *type = rec[i].type, *ot = rec[i].old_text, *nt = rec[i].new_text;
    int is_row = cn == NULL;
    int is_hold = !is_row && type && strcmp(type, "number") == 0 &&
                  ((ot && (strcmp(ot, "free") == 0 || strcmp(ot, "held") == 0)) ||
                   (nt && (strcmp(nt, "free") == 0 || strcmp(nt, "held") == 0)));
    const char *why = NULL; /* a 400 */
    int status = 400;
    char key[160];
    row_key(key, sizeof key, tn ? tn : "", row);
    if (tn && !dg_principal_can(&r->who, tn)) {
      /* A key limited to some tables reverts only within them. */
      status = 403;
      why = "changed a table outside this key's scope";
    } else if (is_hold) {
      why = "held or released cells; holds cannot be reverted";
    } else if (!is_row && type == NULL) {
      why = "touched a column that no longer exists";
    } else if (is_row && j - i > 1) {
      why = "changed one row twice (inserted and deleted, or moved twice); it cannot be reverted";
    } else if (is_row && ot && strcmp(ot, "deleted") == 0) {
      if (!images_read) {
        if (read_images(r->app, x, deleted, images) != 0) {
          dg_problem(r, 500, NULL, "reading the audit log failed");
          goto next_fail;
        }
        images_read = 1;
        if (n + json_array_size(deleted) > MAX_REVERT_CELLS) {
          dg_problem(r, 400, NULL, "update %s deleted %zu rows, more than a revert takes with its cells (%d)", uid,
                     json_array_size(deleted), MAX_REVERT_CELLS);
          goto next_fail;
        }
      }
      if (json_object_get(images, key) == NULL) {
        status = 409;
        why = "deleted rows whose values were not recorded (it was made by a version before row images); "
              "it cannot be reverted";
      }
    } else if (is_row && nt && strcmp(nt, "inserted") == 0) {
      json_t *u = json_pack("{s:s,s:s,s:I,s:o}", "undo", "insert", "table", tn, "row_id", (json_int_t)row,
                            "expected", json_object());
      if (rec[i].has_new_num) {
        int64_t p = rec[i].new_num;
        json_object_set_new(u, "parent_id", p == INT64_MIN ? json_null() : json_integer(p));
      }
      json_object_set(inserted, key, u);
      json_array_append_new(rows, u);
    } else if (is_row) {
      json_t *from = NULL, *to = NULL;
      if (parent_text(ot, &from) != 0 || parent_text(nt, &to) != 0) {
        json_decref(from);
        json_decref(to);
        why = "changed a row in a way a revert does not know";
      } else {
        json_array_append_new(rows, json_pack("{s:s,s:s,s:I,s:o,s:o}", "undo", "move", "table", tn, "row_id",
                                              (json_int_t)row, "parent_id", from, "expected_parent", to));
      }
    } else {
      size_t oa, na;
      net_change(rec, i, j, &oa, &na);
      json_t *ins = json_object_get(inserted, key);
      if (ins) {
        /* A cell of a row the update inserted: what the row must still hold. */
        json_object_set_new(json_object_get(ins, "expected"), cn, value_of(rec[na].new_text));
      } else if (json_object_get(images, key) == NULL) {
        json_array_append_new(cells, json_pack("{s:s,s:I,s:s,s:o,s:o}", "table", tn, "row_id", (json_int_t)row,
                                               "column", cn, "expected", value_of(rec[na].new_text), "value",
                                               value_of(rec[oa].old_text)));
      }
    }
    if (why) {
      dg_problem(r, status, NULL, "update %s %s", uid, why);
      goto next_fail;
    }
    if (tn) {
      if (only_table == NULL) only_table = dg_strdup(tn);
      else if (strcmp(only_table, tn) != 0) one_table = 0;
    }
    i = j;
    continue;
  next_fail:
    dg_free(only_table);
    goto out;
  }
  /* Deletes last, in the order read_images gave (parents first). */
  for (size_t i = 0; i < json_array_size(deleted); i++) json_array_append(rows, json_array_get(deleted, i));
  json_t *req = base_request(r, DG_OP_REVERT, one_table && only_table ? only_table : NULL);
  dg_free(only_table);
  json_object_set_new(req, "reverts", json_string(uid));
  json_object_set_new(req, "force", json_boolean(json_is_true(force)));
  json_object_set_new(req, "cells", cells);
  cells = NULL;
  if (json_array_size(rows)) {
    json_object_set_new(req, "rows", rows);
    rows = NULL;
  }
  submit(r, req, REPLY_UPDATE);
out:
  json_decref(cells);
  json_decref(rows);
  json_decref(deleted);
  json_decref(images);
  json_decref(inserted);
  dg_service_revert_free(rec, n);
  return 0;
}

const dg_route_t dg_routes_write[] = {
    {"POST", "/update_cell", DG_ROLE_WRITE, update_cell, 1, write_loop},
    {"POST", "/update_cells", DG_ROLE_WRITE, update_cells, 1, write_loop},
    {"POST", "/tables", DG_ROLE_ADMIN, create_table, 1, NULL},
    {"DELETE", "/tables/:table", DG_ROLE_ADMIN, delete_table, 0, NULL},
    {"POST", "/tables/:table/rows", DG_ROLE_WRITE, insert_rows, 1, write_loop},
    {"PATCH", "/tables/:table/rows/:id", DG_ROLE_WRITE, update_row, 1, write_loop},
    {"DELETE", "/tables/:table/rows/:id", DG_ROLE_WRITE, delete_row, 0, write_loop},
    {"PUT", "/tables/:table/holds", DG_ROLE_WRITE, hold_put, 1, write_loop},
    {"DELETE", "/tables/:table/holds", DG_ROLE_WRITE, hold_delete, 1, write_loop},
    {"POST", "/views", DG_ROLE_ADMIN, create_view, 1, NULL},
    {"DELETE", "/views/:name", DG_ROLE_ADMIN, delete_view, 0, NULL},
    {"POST", "/updates/:update_id/revert", DG_ROLE_WRITE, revert_update, 1, NULL},
    {NULL, NULL, DG_ROLE_NONE, NULL, 0, NULL},
};

/* ---- for other front ends ------------------------------------------------------ */

int dg_write_update_cell(dg_req_t *r) { return update_cell(r); }

int dg_write_import_replayed(dg_req_t *r) { return replayed(r, REPLY_IMPORT); }

void dg_write_import_begin(dg_req_t *r, dg_buf_t *raw, const char *table) {
  char caller[96], tag[DG_CALLER_TAG_LEN + 1];
  caller_of(r, caller, sizeof caller);
  caller_tag_of(r, tag);
  dg_wire_req_t env = {.op = DG_OP_INSERT_ROWS, .user = r->who.user, .caller = caller, .caller_tag = tag, .table = table};
  dg_jsonw_t w;
  dg_wire_req_open(&w, raw, &env);
  dg_jsonw_key(&w, "echo_rows"); /* the outcome counts the rows (apply.c) */
  dg_jsonw_bool(&w, 0);
}

void dg_write_import_submit(dg_req_t *r, dg_buf_t *raw) { submit_any(r, NULL, raw, REPLY_IMPORT); }
