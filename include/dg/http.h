/*
 * http.h -- the HTTP layer on ulfius: our own router (so 404 and 405 are
 * told apart), the auth check, body limits, JSON parsing, problem+json
 * errors and one access-log line per request.
 *
 * Each resource file (src/http/<resource>.c) exports a route table; the
 * server concatenates them. A handler gets a dg_req_t with the caller, the
 * path parameters and the parsed JSON body, and answers with dg_reply_json
 * or dg_problem.
 */
#ifndef DG_HTTP_H
#define DG_HTTP_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdint.h>

#include "dg/app.h"
#include "dg/auth.h"
#include "dg/catalog.h"

#include <sys/socket.h>
#include <sys/types.h>

#include "dg/buf.h"

#define DG_HTTP_MAX_PARAMS 4

typedef struct dg_front_req_s dg_front_req_t; /* front.c's side of a request */
struct dg_defer_pass_s;
struct dg_shared_body_s;

/** One request header or query parameter (name lowercased for headers). */
typedef struct dg_kv_s {
  char *name;
  char *value;
} dg_kv_t;

typedef struct dg_req_s {
  dg_app_t *app;               /* the process (borrowed)                  */
  dg_principal_t who;          /* the caller, when the route needs a key  */
  const char *params[DG_HTTP_MAX_PARAMS]; /* path parameters, in order    */
  size_t nparams;
  json_t *body;                /* parsed JSON body or NULL (owned here)   */
  int status;                  /* status answered, for the access log    */
  /* The request as the client sent it (owned by the request). */
  const char *method;          /* "GET", ...                              */
  const char *target;          /* path and query, raw                     */
  const char *path;            /* path, raw (no query)                    */
  const char *raw_body;        /* the body bytes (may hold NULs)          */
  size_t raw_body_len;
  struct sockaddr_storage peer;
  dg_kv_t *headers;
  size_t nheaders;
  dg_kv_t *query;              /* decoded                                 */
  size_t nquery;
  /* The answer (front.c sends it): status, headers, body or stream. */
  dg_buf_t out_headers;        /* name\0value\0 pairs                     */
  const char *out_type;        /* Content-Type (static or in out_headers) */
  dg_buf_t out_body;
  struct dg_shared_body_s *out_shared; /* instead of out_body: dg_reply_shared */
  struct dg_stream_s *stream;  /* set by dg_reply_stream                   */
  struct dg_ws_s *ws;          /* set by dg_reply_websocket                */
  dg_front_req_t *front;       /* private                                  */
  /* Parking instead of waiting (long polls, dg_req_defer). */
  const struct dg_route_s *route; /* the route matched                      */
  int limits_taken;            /* the loop took the rate limits' tokens    */
  int64_t t0_us;               /* when dispatch began (the access log)     */
  int can_defer;               /* the front end can park this request      */
  int on_loop;                 /* the handler runs on an HTTP loop (on_loop):
                                * nothing it calls may block               */
  int deferred;                /* set by dg_req_defer                       */
  int defer_runs;              /* times the handler ran again               */
  int defer_expired;           /* this run is at the deadline: answer       */
  int64_t defer_deadline_ms;   /* monotonic ms                              */
  unsigned long defer_gen;     /* dg_req_wake_gen() before the last look    */
  unsigned char defer_state[64]; /* the handler's own, kept across runs     */
  /* The handler's look on the loop when the ring wakes a parked request
   * (dg_req_defer_try), or NULL: a worker reruns the handler. */
  int (*defer_try)(struct dg_req_s *r, struct dg_defer_pass_s *pass);
  /* Awaiting an outcome on the loop (dg_req_await). */
  struct dg_waiters_s *await_ws;
  struct dg_waiter_s *await_w;    /* heap; the continuation frees it        */
  void (*await_fn)(struct dg_req_s *r);
} dg_req_t;

/**
 * Parking a request instead of blocking a thread: a handler that finds
 * nothing to answer yet records dg_req_wake_gen() before it looks (in
 * r->defer_gen), keeps what it needs in r->defer_state, calls
 * dg_req_defer and returns without answering. The front end runs the
 * handler again on a worker after the next batch of outcomes reaches the
 * ring (at once if one came since defer_gen), or at the deadline with
 * r->defer_expired set; r->defer_runs counts the runs. Only when
 * r->can_defer.
 */
unsigned long dg_req_wake_gen(void);
void dg_req_defer(dg_req_t *r, int64_t deadline_ms);
/** Runs a parked request's handler again (server.c; a worker thread). */
void dg_http_rerun(dg_req_t *r);

/**
 * A look on the loop instead of a worker's rerun (issue 13's fan-out: a
 * thousand parked long polls woken by one batch cost no thread hand-off).
 * A handler that parks may set r->defer_try (after dg_req_defer); when the
 * ring wakes the request, the front end calls it on the request's loop,
 * where it must not block:
 *   DG_TRY_ANSWERED  it answered (dg_reply_shared or any dg_reply_*)
 *   DG_TRY_PARKED    nothing yet: it set r->defer_gen before its look and
 *                    the request stays parked
 *   DG_TRY_WORKER    the handler must run on a worker (dg_http_rerun)
 * pass is one wake-up's pass over a loop's parked requests: what the
 * handler keeps there (requests at the same cursor share one page) is
 * freed by pass->free(pass->items) at the end of the pass.
 */
typedef struct dg_defer_pass_s {
  void *items;
  void (*free)(void *items);
} dg_defer_pass_t;
enum { DG_TRY_ANSWERED = 0, DG_TRY_PARKED = 1, DG_TRY_WORKER = 2 };
/** Counts and logs a request dg_req_t.defer_try answered (server.c; the loop). */
void dg_http_tried(dg_req_t *r);

/**
 * A reference-counted response body that many requests send without a copy
 * each (the same page of updates for every long poll at one cursor). The
 * count is atomic: any thread may take or drop a reference.
 */
typedef struct dg_shared_body_s {
  atomic_uint refs;
  size_t len;
  char data[];  /* len bytes and a NUL */
} dg_shared_body_t;
/** A body of len bytes (uninitialised), one reference. */
dg_shared_body_t *dg_shared_body_new(size_t len);
void dg_shared_body_ref(dg_shared_body_t *b);
void dg_shared_body_unref(dg_shared_body_t *b);
/** Answers with b (takes a reference of its own), Content-Type JSON. */
void dg_reply_shared(dg_req_t *r, int status, dg_shared_body_t *b);

/**
 * Awaiting an outcome without a thread (a sync write, issue 13): the
 * handler registers w (heap-allocated) with
 * dg_waiters_add_notify(ws, w, key, dg_req_await_notify, r) before it
 * queues the request, then calls dg_req_await and returns without
 * answering. The front end parks r on its loop, and runs fn(r) there once
 * w is delivered, or at deadline_ms with r->defer_expired set; fn answers
 * (it must not block: it runs on the loop), takes w (dg_waiters_take) and
 * frees it, and sets r->await_w to NULL. A client that goes away first:
 * the front end takes and frees w itself. Only when r->can_defer.
 */
void dg_req_await(dg_req_t *r, struct dg_waiters_s *ws, struct dg_waiter_s *w, int64_t deadline_ms,
                  void (*fn)(dg_req_t *r));
/** The notify of such a waiter (waiters.h); arg is the dg_req_t. */
void dg_req_await_notify(void *arg);
/** Runs the continuation of an awaited request and logs it (server.c; the loop). */
void dg_http_resume(dg_req_t *r);

typedef int (*dg_handler_fn)(dg_req_t *r);

typedef struct dg_route_s {
  const char *method;          /* "GET", "POST", ...                      */
  const char *pattern;         /* "/tables/:table/rows/:id"               */
  dg_role_t role;              /* DG_ROLE_NONE: open without a key        */
  dg_handler_fn fn;
  int json_body;               /* 1: the body must be a JSON object        */
  /* Optional: the handler's run on an HTTP loop, for a request it can
   * answer without blocking (dg_http_dispatch_loop). 1: answered, or
   * parked (dg_req_defer with a defer_try); 0: it answered nothing and fn
   * runs on a worker instead. */
  int (*on_loop)(struct dg_req_s *r);
} dg_route_t;

typedef struct dg_http_s dg_http_t;

/**
 * The pipeline's fast way, on an HTTP loop (front.c, before a worker is
 * asked): for a route with an on_loop handler, a request without a body
 * whose key the cache knows (dg_auth_peek), the same checks in the same
 * order as dg_http_dispatch, then on_loop. 1: answered (the access log and
 * metrics taken); 0: nothing answered, the request goes to a worker as
 * before (the rate-limit tokens taken here are not taken twice).
 */
int dg_http_dispatch_loop(dg_req_t *r);

/**
 * Runs fn(arg) on a worker of the pool (it may block); only from an HTTP
 * loop's thread, for work an on_loop handler hands off without a request
 * (a long poll's shared XINFO).
 */
void dg_http_submit(void (*fn)(void *arg), void *arg);

/**
 * The request pipeline (server.c): routes, authenticates, parses the body
 * and runs the handler, on a worker thread; r is filled by front.c.
 */
void dg_http_dispatch(dg_req_t *r);
/** Frees what dg_http_dispatch and the handler left in r (not r). */
void dg_req_dispose(dg_req_t *r);

/**
 * Starts serving cfg->listen_host:port with every route. DG_EIO with a
 * reason in err when the address cannot be bound.
 */
int dg_http_start(dg_app_t *app, dg_http_t **out, char *err, size_t errcap);
/** Stops accepting, waits for requests in flight, frees everything. */
void dg_http_stop(dg_http_t *h);

/** Answers status with a JSON body (steals body). */
void dg_reply_json(dg_req_t *r, int status, json_t *body);
/** Answers status with len bytes of type (copied; type must outlive the
 *  request: a literal or static data). */
void dg_reply_bytes(dg_req_t *r, int status, const char *type, const char *data, size_t len);
/** Answers 204 No Content. */
void dg_reply_empty(dg_req_t *r, int status);
/**
 * Answers an RFC 9457 problem: {"status","code","title","detail"} plus the
 * fields of extra (stolen, may be NULL), as application/problem+json.
 */
void dg_problem(dg_req_t *r, int status, json_t *extra, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Statuses, problem codes and DG_E* codes map through common.h's
 * DG_STATUS_MAP and DG_ERRNO_MAP (dg_status_reason, dg_status_code,
 * dg_err_status). */

/** Adds a response header (name and value copied). */
void dg_set_header(dg_req_t *r, const char *name, const char *value);

/*
 * A streamed answer (SSE, a file): read() is called on the event loop with
 * can_block 0, and returns the bytes it put in buf (> 0), 0 when it has
 * nothing now (it is called again after dg_stream_wake or at the next tick,
 * every second), DG_STREAM_END when done, or DG_STREAM_BLOCK when the next
 * bytes need blocking work (Redis, a file): then it is called again on a
 * worker thread with can_block 1. free() runs once, when the stream ends
 * or the client goes. attach() (optional) runs on the loop once the stream
 * starts, with the handle to wake it from any thread.
 */
typedef struct dg_stream_handle_s dg_stream_handle_t;
enum { DG_STREAM_END = -1, DG_STREAM_BLOCK = -2, DG_STREAM_ERROR = -3 };
typedef struct dg_stream_s {
  ssize_t (*read)(void *arg, char *buf, size_t max, int can_block);
  void (*free)(void *arg);
  void (*attach)(void *arg, dg_stream_handle_t *h);
  void *arg;
  int64_t length;              /* bytes, or -1 when unknown (chunked)     */
  int tick_ms;                 /* how often read() runs unwoken (1000)    */
} dg_stream_t;
/** Answers status with a stream of type (copies *st). */
void dg_reply_stream(dg_req_t *r, int status, const char *type, const dg_stream_t *st);
/** Makes the stream's read() run soon on its loop; any thread, any time
 *  until the stream's free() has started. */
void dg_stream_wake(dg_stream_handle_t *h);

/*
 * A WebSocket (ws.c): the handler answers with dg_reply_websocket; after
 * the upgrade the callbacks run on the connection's event loop:
 *   open(arg, conn)           once, first
 *   message(arg, data, len)   a text message (binary: text == 0)
 *   wake(arg)                 after dg_ws_wake, from any thread
 *   tick(arg)                 every second
 *   close(arg)                once, last: free arg
 * dg_ws_send queues a text message (loop thread only); dg_ws_close sends
 * a close frame with status and reason once the queue is written.
 * dg_ws_run runs fn(job) on a worker (blocking allowed), then done(arg,
 * job) back on the loop, unless the socket closed in between; then
 * done(NULL, job) runs to free job.
 */
typedef struct dg_ws_conn_s dg_ws_conn_t;
typedef struct dg_ws_s {
  void (*open)(void *arg, dg_ws_conn_t *c);
  void (*message)(void *arg, const char *data, size_t len, int text);
  void (*wake)(void *arg);
  void (*tick)(void *arg);
  void (*close)(void *arg);
  void *arg;
} dg_ws_t;
void dg_reply_websocket(dg_req_t *r, const dg_ws_t *ws);
void dg_ws_send(dg_ws_conn_t *c, const char *text, size_t len);
void dg_ws_close(dg_ws_conn_t *c, int status, const char *reason);
void dg_ws_wake(dg_ws_conn_t *c);
/** Bytes queued and not yet written to the socket. */
size_t dg_ws_pending(dg_ws_conn_t *c);
void dg_ws_run(dg_ws_conn_t *c, void (*fn)(void *job), void (*done)(void *arg, void *job), void *job);

/** Query-string parameter or NULL (borrowed). */
const char *dg_query(const dg_req_t *r, const char *name);

/** The byte a percent escape at p ("%41...") stands for, 0..255; -1 when p
 *  is no '%' followed by two hex digits (the decoder and the target check
 *  share it). */
static inline int dg_pct_byte(const char *p) {
  if (p[0] != '%') return -1;
  int v = 0;
  for (int i = 1; i <= 2; i++) {
    int c = p[i], d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if ((c | 32) >= 'a' && (c | 32) <= 'f') d = (c | 32) - 'a' + 10;
    else return -1; /* also the end of the string */
    v = v * 16 + d;
  }
  return v;
}
/** Request header or NULL (borrowed). */
const char *dg_header(const dg_req_t *r, const char *name);

/* Route tables, one per resource file, each ending with a {NULL} row. */
extern const dg_route_t dg_routes_health[];  /* health.c                     */
extern const dg_route_t dg_routes_read[];    /* read.c: GET tables, rows     */
extern const dg_route_t dg_routes_views[];   /* views.c                      */
extern const dg_route_t dg_routes_updates[]; /* updates.c: GET /get_updates  */
extern const dg_route_t dg_routes_write[];   /* write.c: every write          */
extern const dg_route_t dg_routes_import[];  /* import.c: POST …/import       */
extern const dg_route_t dg_routes_keys[];    /* keys.c: /admin/keys          */
extern const dg_route_t dg_routes_events[];  /* events.c: GET /events (SSE)  */
extern const dg_route_t dg_routes_metrics[]; /* metrics_route.c: /metrics    */
extern const dg_route_t dg_routes_ws[];      /* ws.c: GET /ws (WebSocket)     */
/**
 * The table `name` names (write.c): a counted reference, or NULL after
 * answering 400 (not a valid name), 403 (outside the key's scope: decided
 * before the catalog is asked, so a scoped key learns nothing of the other
 * tables) or 404 (no such table).
 */
dg_tabledef_t *dg_table_or_problem(dg_req_t *r, const char *name);
/** A row id as text: optional '-', 1..19 digits, within int64 and not
 *  INT64_MIN (write.c). 0 or DG_EINVAL. */
int dg_row_id_parse(const char *s, size_t n, int64_t *out);
extern const dg_route_t dg_routes_snapshots[]; /* snapshots.c: /admin/snapshots */
extern const dg_route_t dg_routes_webhooks[];  /* webhooks.c: /admin/webhooks */

/** POST /update_cell's handler, for the WebSocket front end: the same
 *  validation, queueing and answers. r->body must be set. */
int dg_write_update_cell(dg_req_t *r);

/*
 * For import.c: a CSV or Parquet import is an insert_rows request written
 * as text. dg_write_import_replayed answers (1) a known request_id or a
 * malformed one, as every write does first. dg_write_import_begin writes
 * into raw the opening of the request ({"op":"insert_rows","user",
 * "caller","table") for the caller to append ,"rows":[…] to;
 * dg_write_import_submit adds request_id, queues it and answers like every
 * write (sync outcome, ?async=true 202, request_id replay), a success as
 * 201 {"table","imported","update_id","request_id","status"}. raw is
 * disposed.
 */
struct dg_buf_s;
int dg_write_import_replayed(dg_req_t *r);
void dg_write_import_begin(dg_req_t *r, struct dg_buf_s *raw, const char *table);
void dg_write_import_submit(dg_req_t *r, struct dg_buf_s *raw);

/** Appends to the admin audit log (dg.admin_audit, GET /admin/audit, and the
 *  log): who (r->who) did action ("key.create", "admin.denied" ...), detail. */
void dg_audit(dg_req_t *r, const char *action, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/**
 * The consistency parameters alone (consistency.c): ?min_update= into *min
 * (*has_min 1 when given) and ?wait_ms= (into *wait_ms when not NULL)
 * checked. 0, or nonzero with 400 answered. For a read that may be
 * answered without waiting (from memory: dg_service_row_memory).
 */
struct dg_redis_xid_s;
int dg_read_params_or_problem(dg_req_t *r, struct dg_redis_xid_s *min, int *has_min, int *wait_ms);

/**
 * For every read from DuckDB (consistency.c): waits until the read reflects
 * every write answered before it arrived and ?min_update=, and sets
 * X-Duckgrid-Applied. 0 to go on, or nonzero with 400/504 answered.
 */
int dg_read_consistent_or_problem(dg_req_t *r);

/** Every route, flattened in dispatch order, into out[0..cap); returns the count. */
size_t dg_http_routes_flat(const dg_route_t **out, size_t cap);
extern const dg_route_t dg_routes_docs[];    /* docs.c: /openapi.json, /docs  */

/** Every route table the server serves, in matching order; *n = their count. */
const dg_route_t *const *dg_http_route_tables(size_t *n);
/** Reads the OpenAPI document and Swagger UI files into memory, once (docs.c). */
void dg_docs_load(void);

/** Writes the body of a buffer as the reply (application/json). */
struct dg_buf_s;
void dg_reply_buf(dg_req_t *r, int status, const struct dg_buf_s *body);
/**
 * Sets an application/json reply of exactly len bytes and returns the buffer
 * for the caller to fill before the handler returns: the response owns it
 * (freed with the response), so the body is not copied once more, as
 * dg_reply_buf copies it. NULL when it cannot be allocated; nothing is set.
 */
char *dg_reply_body_alloc(dg_req_t *r, int status, size_t len);

#endif
