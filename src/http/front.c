/*
 * front.c -- the HTTP front end on h2o's event loop (libh2o-evloop).
 *
 *   loop threads (DUCKGRID_HTTP_THREADS, default: the cores)
 *     accept, TLS, HTTP/1.1 and HTTP/2 parsing, limits, sending answers,
 *     SSE streams and WebSockets: nothing here blocks. A request a route
 *     can answer without blocking (dg_http_dispatch_loop: /health, a row
 *     from the manager's memory, the key in the cache) is answered here
 *         │ else the whole request (copied: method, target, headers, body)
 *         ▼
 *   worker pool (grows with the load, up to DUCKGRID_HTTP_WORKERS)
 *     dg_http_dispatch: routing, auth, the handler (DuckDB, Redis, waits)
 *         │ the answer, posted back through h2o_multithread
 *         ▼
 *   the request's loop sends it, unless the client went away meanwhile
 *
 * Who owns what. A request's state (fr_t) is made on its loop and handed
 * to one worker at a time; everything else about it is touched on its loop
 * only. h2o may dispose the request while a worker has it (an HTTP/2
 * stream reset): a shared slot in the request's pool, disposed with it,
 * cuts the link, and the completion frees the state instead of answering.
 *
 * Streams (dg_stream_t) are pulled on the loop: read() with can_block 0;
 * nothing now -> wait for dg_stream_wake (the hub's notify) or the next
 * tick; DG_STREAM_BLOCK -> one read on a worker. WebSockets (dg_ws_t) are
 * h2o's wslay connections; their callbacks run on the loop.
 *
 * Threads and locks: the loops and the workers share only the pool's queue
 * (its mutex), the per-IP connection counts (their mutex) and h2o's
 * multithread queues; a loop never waits on a worker.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <h2o.h>
#include <h2o/websocket.h>

#include "dg/buf.h"
#include "dg/waiters.h"
#include "dg/common.h"
#include "dg/http.h"
#include "dg/hub.h"
#include "dg/log.h"

/* Bytes of request line and headers accepted; more gets 431. */
#define MAX_HEADER_BYTES 65536
/* Bytes read from a stream per send. */
#define STREAM_CHUNK 16384
/* The loops' housekeeping tick: stream ticks, WebSocket ticks. */
#define TICK_MS 100
/* Workers kept when idle, and how long an idle extra one waits. */
#define MIN_WORKERS 8
#define IDLE_WORKER_MS 5000


typedef struct loop_s loop_t;

/* ---- the worker pool ------------------------------------------------------ */

typedef struct job_s {
  struct job_s *next;
  void (*run)(struct job_s *job);
  int quick;              /* never blocks: no new worker just for it */
} job_t;

typedef struct {
  pthread_mutex_t lock;
  pthread_cond_t cond;    /* work queued, or stopping      */
  pthread_cond_t gone;    /* a worker ended                */
  job_t *head, *tail;
  int threads, idle, max, stopping;
} pool_t;

static void *worker_main(void *arg) {
  pool_t *p = arg;
  pthread_setname_np(pthread_self(), "dg-worker"); /* for top -H and perf --comm */
  pthread_mutex_lock(&p->lock);
  for (;;) {
    while (p->head == NULL && !p->stopping) {
      struct timespec until;
      dg_deadline_after_ms(&until, IDLE_WORKER_MS);
      p->idle++;
      int rc = pthread_cond_timedwait(&p->cond, &p->lock, &until);
      p->idle--;
      if (rc == ETIMEDOUT && p->head == NULL && p->threads > MIN_WORKERS) goto out;
    }
    if (p->head == NULL) break; /* stopping and drained */
    job_t *j = p->head;
    p->head = j->next;
    if (p->head == NULL) p->tail = NULL;
    pthread_mutex_unlock(&p->lock);
    j->run(j);
    pthread_mutex_lock(&p->lock);
  }
out:
  p->threads--;
  pthread_cond_broadcast(&p->gone);
  pthread_mutex_unlock(&p->lock);
  return NULL;
}

static int spawn_worker_locked(pool_t *p) {
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  /* DuckDB plans queries recursively (a view with hundreds of joins goes
   * deep): a full 8 MiB stack, virtual memory until touched. */
  pthread_attr_setstacksize(&attr, 8u << 20);
  pthread_t t;
  int rc = pthread_create(&t, &attr, worker_main, p);
  pthread_attr_destroy(&attr);
  if (rc == 0) p->threads++;
  return rc;
}

static void pool_submit(pool_t *p, job_t *j) {
  j->next = NULL;
  pthread_mutex_lock(&p->lock);
  if (p->tail) p->tail->next = j;
  else p->head = j;
  p->tail = j;
  /* Every job may block (a long poll, a sync write): one that finds no idle
   * worker gets a new one, up to the cap; past it, it waits its turn. */
  if (p->idle == 0 && p->threads < p->max && (!j->quick || p->threads < MIN_WORKERS)) spawn_worker_locked(p);
  pthread_cond_signal(&p->cond);
  pthread_mutex_unlock(&p->lock);
}

/* ---- per-IP connection counts ----------------------------------------------- */

#define IPTAB 4096
typedef struct {
  unsigned char addr[16];
  int used;
  int count;
} ipslot_t;

/* ---- the front ------------------------------------------------------------- */

struct loop_s {
  dg_http_t *f;
  int index;
  pthread_t thread;
  h2o_context_t ctx;
  h2o_accept_ctx_t accept;
  h2o_socket_t *listener;
  h2o_multithread_receiver_t rx; /* completions and wake-ups */
  h2o_timeout_t tick_timeout;
  h2o_timeout_entry_t tick;
  h2o_linklist_t live;            /* streams, WebSockets and parked requests */
  atomic_int rewake_pending;
  struct fmsg_s *rewake;          /* re-run the parked requests */
};

struct dg_http_s {
  dg_app_t *app;
  h2o_globalconf_t config;
  h2o_hostconf_t *host;
  SSL_CTX *ssl;
  int listen_fd;
  int nloops;
  loop_t *loops;
  h2o_multithread_queue_t **queues;
  pool_t pool;
  atomic_int stopping;
  atomic_int conns;
  int max_conns;
  pthread_mutex_t iplock;
  ipslot_t *ips;
  pthread_mutex_t park_lock;
  pthread_cond_t parked;        /* a loop has stopped            */
  pthread_cond_t never;         /* what stopped loops wait for   */
  int nparked, nready;
};


static __thread loop_t *this_loop;

/* What a message to a loop is about. */
enum { MSG_DONE = 1, MSG_WAKE, MSG_STREAM_READ, MSG_WS_WAKE, MSG_WS_DONE, MSG_REWAKE, MSG_AWAKE };

typedef struct fmsg_s {
  h2o_multithread_message_t super;
  int kind;
} fmsg_t;

/* An entry of a loop's list of streams and WebSockets (the tick's). */
typedef struct {
  h2o_linklist_t link;
  int kind;
} live_t;

/* A request's state (see the top). */
typedef struct fr_s {
  h2o_generator_t gen;          /* first: h2o hands it back to proceed/stop */
  dg_req_t r;
  loop_t *loop;
  h2o_req_t *req;               /* NULL once h2o disposed the request      */
  struct fr_s **slot;           /* in req->pool                            */
  job_t job;
  fmsg_t done;                  /* the worker's answer, or a blocking read */
  fmsg_t wake;
  atomic_int wake_pending;
  fmsg_t awake;                 /* an awaited outcome came (dg_req_await)   */
  atomic_int await_fired;       /* its notify ran (once)                    */
  atomic_int awake_pending;     /* ... and its message is not yet taken     */
  int state;                    /* below                                    */
  /* streams */
  dg_stream_t st;
  int streaming, sending, reading_on_worker, ended, freed_stream;
  ssize_t worker_n;
  char *chunk;
  int64_t next_tick_ms;
  live_t live;
} fr_t;

enum { FR_WORKING = 1, FR_ANSWERED, FR_PARKED };
enum { LIVE_STREAM = 1, LIVE_WS, LIVE_PARKED, LIVE_AWAIT };

/* dg_stream_handle_t (http.h) is never defined: a handle is an fr_t seen
 * from outside, converted back in dg_stream_wake. */

/* ---- helpers --------------------------------------------------------------- */

static int64_t now_ms(void) { return dg_mono_us() / 1000; }

static void post(loop_t *l, fmsg_t *m, int kind) {
  memset(&m->super, 0, sizeof m->super);
  m->kind = kind;
  h2o_multithread_send_message(&l->rx, &m->super);
}

static void req_strings_free(dg_req_t *r) {
  for (size_t i = 0; i < r->nheaders; i++) {
    dg_free(r->headers[i].name);
    dg_free(r->headers[i].value);
  }
  dg_free(r->headers);
  for (size_t i = 0; i < r->nquery; i++) {
    dg_free(r->query[i].name);
    dg_free(r->query[i].value);
  }
  dg_free(r->query);
  r->headers = r->query = NULL;
  r->nheaders = r->nquery = 0;
}

void dg_req_dispose(dg_req_t *r) {
  for (size_t i = 0; i < r->nparams; i++) {
    dg_free((char *)r->params[i]);
    r->params[i] = NULL;
  }
  r->nparams = 0;
  json_decref(r->body);
  r->body = NULL;
  req_strings_free(r);
  dg_buf_dispose(&r->out_headers);
  dg_buf_dispose(&r->out_body);
  dg_shared_body_unref(r->out_shared);
  r->out_shared = NULL;
  dg_free(r->stream);
  dg_free(r->ws);
  r->stream = NULL;
  r->ws = NULL;
}

/* An awaited outcome no longer wanted (the client left, the server stops):
 * unregistered, so no notify comes after this. */
static void await_drop(fr_t *fr) {
  if (fr->r.await_w == NULL) return;
  dg_free(dg_waiters_take(fr->r.await_ws, fr->r.await_w, NULL));
  dg_free(fr->r.await_w);
  fr->r.await_w = NULL;
}

static void fr_free(fr_t *fr) {
  await_drop(fr);
  if (fr->streaming && !fr->freed_stream) {
    fr->freed_stream = 1;
    if (fr->st.free) fr->st.free(fr->st.arg); /* unsubscribes: no wake after this */
  }
  if (h2o_linklist_is_linked(&fr->live.link)) h2o_linklist_unlink(&fr->live.link);
  if (atomic_load(&fr->wake_pending) || atomic_load(&fr->awake_pending)) {
    fr->state = -1; /* the wake message frees it */
    return;
  }
  dg_req_dispose(&fr->r);
  dg_free((char *)fr->r.method);
  dg_free((char *)fr->r.target);
  dg_free((char *)fr->r.path);
  dg_free((char *)fr->r.raw_body);
  dg_free(fr->chunk);
  dg_free(fr);
}

/* %XX and '+' decoded, in place. */
static void url_decode(char *s) {
  char *o = s;
  for (char *p = s; *p; p++) {
    if (*p == '+') {
      *o++ = ' ';
    } else if (*p == '%' && dg_pct_byte(p) >= 0) {
      *o++ = (char)dg_pct_byte(p);
      p += 2;
    } else {
      *o++ = *p;
    }
  }
  *o = '\0';
}

static void parse_query(dg_req_t *r, const char *q, size_t n) {
  size_t cap = 0;
  const char *end = q + n;
  while (q < end) {
    const char *amp = memchr(q, '&', (size_t)(end - q));
    const char *stop = amp ? amp : end;
    if (stop > q) {
      const char *eq = memchr(q, '=', (size_t)(stop - q));
      char *name = dg_strndup(q, (size_t)((eq ? eq : stop) - q));
      char *value = eq ? dg_strndup(eq + 1, (size_t)(stop - eq - 1)) : dg_strdup("");
      url_decode(name);
      url_decode(value);
      if (dg_query(r, name) != NULL) { /* the first one counts */
        dg_free(name);
        dg_free(value);
      } else {
        if (r->nquery == cap) {
          cap = cap ? cap * 2 : 8;
          r->query = dg_realloc(r->query, cap * sizeof *r->query);
        }
        r->query[r->nquery].name = name;
        r->query[r->nquery].value = value;
        r->nquery++;
      }
    }
    q = stop + 1;
  }
}

static void add_header(dg_req_t *r, size_t *cap, const char *name, size_t nl, const char *value, size_t vl) {
  if (r->nheaders == *cap) {
    *cap = *cap ? *cap * 2 : 16;
    r->headers = dg_realloc(r->headers, *cap * sizeof *r->headers);
  }
  r->headers[r->nheaders].name = dg_strndup(name, nl);
  r->headers[r->nheaders].value = dg_strndup(value, vl);
  r->nheaders++;
}

/* ---- answering ------------------------------------------------------------- */

static void on_generator_stop(h2o_generator_t *gen, h2o_req_t *req) {
  (void)gen;
  (void)req;
}

static void on_body_proceed(h2o_generator_t *gen, h2o_req_t *req) {
  (void)gen;
  (void)req;
}

static void stream_pump(fr_t *fr);

static void on_stream_proceed(h2o_generator_t *gen, h2o_req_t *req) {
  fr_t *fr = (fr_t *)gen;
  (void)req;
  fr->sending = 0;
  stream_pump(fr);
}

/* A problem answered on the loop itself (before or without a worker). */
static void loop_problem(h2o_req_t *req, int status, const char *detail) {
  const char *title = dg_status_reason(status);
  char *body = h2o_mem_alloc_pool(&req->pool, 512);
  int n = snprintf(body, 512, "{\"status\":%d,\"code\":\"%s\",\"title\":\"%s\",\"detail\":\"%s\"}", status,
                   dg_status_code(status), title, detail);
  req->res.status = status;
  req->res.reason = title;
  h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                 H2O_STRLIT("application/problem+json"));
  h2o_send_inline(req, body, (size_t)n);
}

static void set_headers(fr_t *fr) {
  h2o_req_t *req = fr->req;
  dg_req_t *r = &fr->r;
  req->res.status = r->status ? r->status : 500;
  req->res.reason = dg_status_reason(req->res.status);
  for (size_t i = 0; i < r->out_headers.len;) {
    const char *name = r->out_headers.data + i;
    size_t nl = strlen(name);
    const char *value = name + nl + 1;
    size_t vl = strlen(value);
    i += nl + vl + 2;
    h2o_iovec_t n = h2o_strdup(&req->pool, name, nl);
    h2o_strtolower(n.base, n.len);
    h2o_iovec_t v = h2o_strdup(&req->pool, value, vl);
    h2o_add_header_by_str(&req->pool, &req->res.headers, n.base, n.len, 1, name, v.base, v.len);
  }
  if (r->out_type)
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, r->out_type, strlen(r->out_type));
}

static void ws_start(fr_t *fr);

static void release_shared(void *p) { dg_shared_body_unref(*(dg_shared_body_t **)p); }

static void answer(fr_t *fr) {
  fr->state = FR_ANSWERED;
  h2o_req_t *req = fr->req;
  dg_req_t *r = &fr->r;
  if (r->ws) {
    ws_start(fr);
    return;
  }
  set_headers(fr);
  if (r->stream) {
    fr->st = *r->stream;
    fr->streaming = 1;
    fr->chunk = dg_malloc(STREAM_CHUNK);
    if (fr->st.length >= 0) req->res.content_length = (size_t)fr->st.length;
    fr->live.kind = LIVE_STREAM;
    h2o_linklist_insert(&fr->loop->live, &fr->live.link);
    fr->gen.proceed = on_stream_proceed;
    fr->gen.stop = on_generator_stop;
    h2o_start_response(req, &fr->gen);
    if (fr->st.attach) fr->st.attach(fr->st.arg, (dg_stream_handle_t *)fr);
    fr->next_tick_ms = now_ms() + fr->st.tick_ms;
    stream_pump(fr);
    return;
  }
  fr->gen.proceed = on_body_proceed;
  fr->gen.stop = on_generator_stop;
  if (r->out_shared) {
    /* One body for many requests: the request's pool holds a reference
     * until h2o has sent it (the pool is cleared with the request). */
    dg_shared_body_t *b = r->out_shared;
    dg_shared_body_t **hold = h2o_mem_alloc_shared(&req->pool, sizeof *hold, release_shared);
    *hold = b;
    r->out_shared = NULL; /* the pool's now */
    req->res.content_length = b->len;
    h2o_start_response(req, &fr->gen);
    h2o_iovec_t v = h2o_iovec_init(b->data, b->len);
    h2o_send(req, &v, 1, H2O_SEND_STATE_FINAL);
    return;
  }
  req->res.content_length = r->out_body.len;
  h2o_start_response(req, &fr->gen);
  h2o_iovec_t v = h2o_iovec_init(r->out_body.data ? r->out_body.data : "", r->out_body.len);
  h2o_send(req, &v, 1, H2O_SEND_STATE_FINAL);
}

/* ---- streams ---------------------------------------------------------------- */

static void stream_read_job(job_t *j) {
  fr_t *fr = (fr_t *)((char *)j - offsetof(fr_t, job));
  fr->worker_n = fr->st.read(fr->st.arg, fr->chunk, STREAM_CHUNK, 1);
  post(fr->loop, &fr->done, MSG_STREAM_READ);
}

/* One result of read(): send it, end, or wait. */
static void stream_take(fr_t *fr, ssize_t n) {
  if (n > 0) {
    h2o_iovec_t v = h2o_iovec_init(fr->chunk, (size_t)n);
    fr->sending = 1;
    fr->next_tick_ms = now_ms() + fr->st.tick_ms;
    h2o_send(fr->req, &v, 1, H2O_SEND_STATE_IN_PROGRESS);
  } else if (n == DG_STREAM_END || n == DG_STREAM_ERROR) {
    fr->ended = 1;
    fr->sending = 1;
    h2o_send(fr->req, NULL, 0, n == DG_STREAM_END ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_ERROR);
  } else if (n == DG_STREAM_BLOCK) {
    fr->reading_on_worker = 1;
    fr->job.run = stream_read_job;
    fr->job.quick = 0;
    pool_submit(&fr->loop->f->pool, &fr->job);
  }
  /* 0: nothing now; a wake or the tick calls stream_pump again */
}

static void stream_pump(fr_t *fr) {
  if (fr->req == NULL || fr->sending || fr->ended || fr->reading_on_worker) return;
  stream_take(fr, fr->st.read(fr->st.arg, fr->chunk, STREAM_CHUNK, 0));
}

void dg_stream_wake(dg_stream_handle_t *h) {
  fr_t *fr = (fr_t *)h;
  if (atomic_exchange(&fr->wake_pending, 1) == 0) post(fr->loop, &fr->wake, MSG_WAKE);
}

/* ---- WebSockets ------------------------------------------------------------- */

struct dg_ws_conn_s {
  loop_t *loop;
  h2o_websocket_conn_t *ws;
  dg_ws_t cb;
  int closed;                  /* the callbacks' close() ran            */
  int closing;                 /* a close frame is queued                */
  int jobs;                    /* dg_ws_run jobs not back yet            */
  int in_message;              /* inside wslay_event_recv's callback     */
  atomic_int wake_pending;
  fmsg_t wake;
  live_t live;
  int64_t next_tick_ms;
};

typedef struct wsjob_s {
  job_t job;
  fmsg_t done;
  dg_ws_conn_t *c;
  void (*fn)(void *);
  void (*on_done)(void *, void *);
  void *arg;
} wsjob_t;

static void ws_conn_free_if_done(dg_ws_conn_t *c) {
  if (c->closed && c->jobs == 0 && !atomic_load(&c->wake_pending)) dg_free(c);
}

/* Inside a message callback only the sending half of h2o_websocket_proceed:
 * all of it would call wslay_event_recv again from within itself (its
 * state torn: an assertion in wslay, or the connection freed under it).
 * The proceed that called wslay_event_recv does the rest afterwards. */
static void ws_proceed(dg_ws_conn_t *c) {
  if (c->ws == NULL || c->ws->sock == NULL) return;
  if (!c->in_message) {
    h2o_websocket_proceed(c->ws);
  } else if (!h2o_socket_is_writing(c->ws->sock) && wslay_event_want_write(c->ws->ws_ctx)) {
    wslay_event_send(c->ws->ws_ctx);
  }
}

void dg_ws_send(dg_ws_conn_t *c, const char *text, size_t len) {
  if (c->closed || c->closing || c->ws == NULL) return;
  struct wslay_event_msg m = {WSLAY_TEXT_FRAME, (const uint8_t *)text, len};
  wslay_event_queue_msg(c->ws->ws_ctx, &m);
  ws_proceed(c);
}

void dg_ws_close(dg_ws_conn_t *c, int status, const char *reason) {
  if (c->closed || c->closing || c->ws == NULL) return;
  c->closing = 1;
  wslay_event_queue_close(c->ws->ws_ctx, (uint16_t)status, (const uint8_t *)reason, reason ? strlen(reason) : 0);
  ws_proceed(c);
}

size_t dg_ws_pending(dg_ws_conn_t *c) {
  if (c->ws == NULL) return 0;
  return wslay_event_get_queued_msg_length(c->ws->ws_ctx);
}

void dg_ws_wake(dg_ws_conn_t *c) {
  if (atomic_exchange(&c->wake_pending, 1) == 0) post(c->loop, &c->wake, MSG_WS_WAKE);
}

static void ws_job_run(job_t *j) {
  wsjob_t *w = (wsjob_t *)j;
  w->fn(w->arg);
  post(w->c->loop, &w->done, MSG_WS_DONE);
}

void dg_ws_run(dg_ws_conn_t *c, void (*fn)(void *job), void (*done)(void *arg, void *job), void *job) {
  wsjob_t *w = dg_calloc(1, sizeof *w);
  w->c = c;
  w->fn = fn;
  w->on_done = done;
  w->arg = job;
  w->job.run = ws_job_run;
  c->jobs++;
  pool_submit(&c->loop->f->pool, &w->job);
}

static void ws_closed(dg_ws_conn_t *c) {
  if (c->closed) return;
  c->closed = 1;
  if (h2o_linklist_is_linked(&c->live.link)) h2o_linklist_unlink(&c->live.link);
  if (c->cb.close) c->cb.close(c->cb.arg);
  if (c->ws) h2o_websocket_close(c->ws);
  c->ws = NULL;
  ws_conn_free_if_done(c);
}

static void on_ws_message(h2o_websocket_conn_t *conn, const struct wslay_event_on_msg_recv_arg *arg) {
  dg_ws_conn_t *c = conn->data;
  if (arg == NULL) {
    ws_closed(c);
    return;
  }
  if (c->closed || c->closing) return;
  if (arg->opcode == WSLAY_TEXT_FRAME || arg->opcode == WSLAY_BINARY_FRAME) {
    c->in_message = 1;
    c->cb.message(c->cb.arg, (const char *)arg->msg, arg->msg_length, arg->opcode == WSLAY_TEXT_FRAME);
    c->in_message = 0;
  }
}

static void ws_start(fr_t *fr) {
  h2o_req_t *req = fr->req;
  const char *key = NULL;
  dg_ws_t cb = *fr->r.ws;
  if (req->version >= 0x200 || h2o_is_websocket_handshake(req, &key) != 0 || key == NULL) {
    if (cb.close) cb.close(cb.arg);
    loop_problem(req, 400,
                 "a WebSocket upgrade request over HTTP/1.1 is required (Connection: Upgrade, Upgrade: websocket)");
    return;
  }
  dg_ws_conn_t *c = dg_calloc(1, sizeof *c);
  c->loop = fr->loop;
  c->cb = cb;
  c->next_tick_ms = now_ms() + 1000;
  c->live.kind = LIVE_WS;
  h2o_linklist_insert(&fr->loop->live, &c->live.link);
  c->ws = h2o_upgrade_to_websocket(req, key, c, on_ws_message);
  wslay_event_config_set_max_recv_msg_length(c->ws->ws_ctx, 1u << 20); /* larger: closed with 1009 */
  if (c->cb.open) c->cb.open(c->cb.arg, c);
}

/* ---- parked requests (dg_req_defer) ------------------------------------------------- */

static atomic_ulong wake_gen;

unsigned long dg_req_wake_gen(void) { return atomic_load(&wake_gen); }

void dg_req_defer(dg_req_t *r, int64_t deadline_ms) {
  r->deferred = 1;
  r->defer_deadline_ms = deadline_ms;
}

static void rerun_job(job_t *j) {
  fr_t *fr = (fr_t *)((char *)j - offsetof(fr_t, job));
  dg_http_rerun(&fr->r);
  post(fr->loop, &fr->done, MSG_DONE);
}

static void unpark(fr_t *fr, int expired) {
  if (h2o_linklist_is_linked(&fr->live.link)) h2o_linklist_unlink(&fr->live.link);
  fr->state = FR_WORKING;
  fr->r.defer_expired = expired;
  fr->job.run = rerun_job;
  fr->job.quick = 1; /* a look at the ring (a new worker for each of a thousand would be waste) */
  pool_submit(&fr->loop->f->pool, &fr->job);
}

/* A parked request woken by the ring (on its loop): the handler's own look
 * when it has one (no worker, no hand-off; pass lets the requests of one
 * wake-up share a page), else a rerun on a worker. */
static void look_again(fr_t *fr, dg_defer_pass_t *pass) {
  if (fr->r.defer_try == NULL || fr->req == NULL) {
    unpark(fr, 0);
    return;
  }
  int rc = fr->r.defer_try(&fr->r, pass);
  if (rc == DG_TRY_PARKED) return; /* stays in the live list */
  if (rc == DG_TRY_WORKER) {
    unpark(fr, 0);
    return;
  }
  if (h2o_linklist_is_linked(&fr->live.link)) h2o_linklist_unlink(&fr->live.link);
  fr->state = FR_WORKING;
  dg_http_tried(&fr->r);
  answer(fr);
}

/* ---- awaited outcomes (dg_req_await) ------------------------------------------------- */

void dg_req_await(dg_req_t *r, dg_waiters_t *ws, dg_waiter_t *w, int64_t deadline_ms, void (*fn)(dg_req_t *r)) {
  r->deferred = 1;
  r->defer_deadline_ms = deadline_ms;
  r->await_ws = ws;
  r->await_w = w;
  r->await_fn = fn;
}

/* The waiter's notify: the reader's (or the manager's) thread, under the
 * waiters' lock. Only posts; the loop does the rest. */
void dg_req_await_notify(void *arg) {
  fr_t *fr = (fr_t *)((char *)arg - offsetof(fr_t, r));
  if (atomic_exchange(&fr->await_fired, 1) != 0) return;
  atomic_store(&fr->awake_pending, 1);
  post(fr->loop, &fr->awake, MSG_AWAKE);
}

/* The outcome came, or the deadline: the continuation answers, here. */
static void await_run(fr_t *fr, int expired) {
  if (h2o_linklist_is_linked(&fr->live.link)) h2o_linklist_unlink(&fr->live.link);
  fr->state = FR_WORKING;
  fr->r.defer_expired = expired;
  dg_http_resume(&fr->r);
  answer(fr);
}

/* A handler answered "later": wait on this loop, not on a thread. */
static void park(fr_t *fr) {
  int64_t now = now_ms();
  if (fr->r.await_fn) {
    if (atomic_load(&fr->await_fired) || now >= fr->r.defer_deadline_ms) {
      await_run(fr, !atomic_load(&fr->await_fired));
      return;
    }
    fr->state = FR_PARKED;
    fr->live.kind = LIVE_AWAIT;
    h2o_linklist_insert(&fr->loop->live, &fr->live.link);
    return;
  }
  if (now >= fr->r.defer_deadline_ms) {
    unpark(fr, 1); /* time is up */
    return;
  }
  fr->state = FR_PARKED;
  fr->live.kind = LIVE_PARKED;
  h2o_linklist_insert(&fr->loop->live, &fr->live.link);
  if (atomic_load(&wake_gen) != fr->r.defer_gen) { /* something came meanwhile */
    dg_defer_pass_t pass = {NULL, NULL};
    look_again(fr, &pass);
    if (pass.free) pass.free(pass.items);
  }
}

/* The ring's hook (the reader's thread, after each batch; and at close). */
static void ring_hook(void *arg) {
  dg_http_t *f = arg;
  atomic_fetch_add(&wake_gen, 1);
  for (int i = 0; i < f->nloops; i++) {
    loop_t *l = &f->loops[i];
    if (atomic_exchange(&l->rewake_pending, 1) == 0) post(l, l->rewake, MSG_REWAKE);
  }
}

/* ---- the loop's messages and tick ---------------------------------------------- */

static void on_message(fmsg_t *m);

/* A batch of messages: the streams' wake-ups last. With thousands of SSE
 * clients one outcome wakes every stream, and a sync write's answer (or a
 * worker's) that came in the same batch must not wait behind thousands of
 * sends. */
static void on_messages(h2o_multithread_receiver_t *rx, h2o_linklist_t *messages) {
  (void)rx;
  h2o_linklist_t wakes;
  h2o_linklist_init_anchor(&wakes);
  while (!h2o_linklist_is_empty(messages)) {
    fmsg_t *m = H2O_STRUCT_FROM_MEMBER(fmsg_t, super.link, messages->next);
    h2o_linklist_unlink(&m->super.link);
    if (m->kind == MSG_WAKE) h2o_linklist_insert(&wakes, &m->super.link);
    else on_message(m);
  }
  while (!h2o_linklist_is_empty(&wakes)) {
    fmsg_t *m = H2O_STRUCT_FROM_MEMBER(fmsg_t, super.link, wakes.next);
    h2o_linklist_unlink(&m->super.link);
    on_message(m);
  }
}

static void on_message(fmsg_t *m) {
  {
    switch (m->kind) {
      case MSG_DONE: {
        fr_t *fr = H2O_STRUCT_FROM_MEMBER(fr_t, done, m);
        if (fr->req != NULL && fr->r.deferred) {
          park(fr);
        } else if (fr->req == NULL) {
          /* The client went away meanwhile: a stream never started. */
          if (fr->r.stream && fr->r.stream->free) fr->r.stream->free(fr->r.stream->arg);
          if (fr->r.ws && fr->r.ws->close) fr->r.ws->close(fr->r.ws->arg);
          fr_free(fr);
        } else {
          answer(fr);
        }
        break;
      }
      case MSG_STREAM_READ: {
        fr_t *fr = H2O_STRUCT_FROM_MEMBER(fr_t, done, m);
        fr->reading_on_worker = 0;
        if (fr->req == NULL) fr_free(fr);
        else stream_take(fr, fr->worker_n);
        break;
      }
      case MSG_WAKE: {
        fr_t *fr = H2O_STRUCT_FROM_MEMBER(fr_t, wake, m);
        atomic_store(&fr->wake_pending, 0);
        if (fr->state == -1) fr_free(fr);
        else stream_pump(fr);
        break;
      }
      case MSG_WS_WAKE: {
        dg_ws_conn_t *c = H2O_STRUCT_FROM_MEMBER(dg_ws_conn_t, wake, m);
        atomic_store(&c->wake_pending, 0);
        if (!c->closed && c->cb.wake) c->cb.wake(c->cb.arg);
        ws_conn_free_if_done(c);
        break;
      }
      case MSG_WS_DONE: {
        wsjob_t *w = H2O_STRUCT_FROM_MEMBER(wsjob_t, done, m);
        dg_ws_conn_t *c = w->c;
        c->jobs--;
        w->on_done(c->closed ? NULL : c->cb.arg, w->arg);
        dg_free(w);
        ws_conn_free_if_done(c);
        break;
      }
      case MSG_AWAKE: {
        fr_t *fr = H2O_STRUCT_FROM_MEMBER(fr_t, awake, m);
        atomic_store(&fr->awake_pending, 0);
        if (fr->state == -1) fr_free(fr);
        else if (fr->state == FR_PARKED && fr->live.kind == LIVE_AWAIT && fr->req != NULL) await_run(fr, 0);
        /* else still on its worker: park() sees await_fired */
        break;
      }
      case MSG_REWAKE: {
        loop_t *l = this_loop;
        atomic_store(&l->rewake_pending, 0);
        /* The parked requests taken now: one answered here cannot end a
         * neighbour, but a look may park a request again (at the tail). */
        h2o_linklist_t parked;
        h2o_linklist_init_anchor(&parked);
        h2o_linklist_t *node = l->live.next;
        while (node != &l->live) {
          h2o_linklist_t *next = node->next;
          live_t *lv = H2O_STRUCT_FROM_MEMBER(live_t, link, node);
          if (lv->kind == LIVE_PARKED) {
            h2o_linklist_unlink(node);
            h2o_linklist_insert(&parked, node);
          }
          node = next;
        }
        dg_defer_pass_t pass = {NULL, NULL};
        while (!h2o_linklist_is_empty(&parked)) {
          live_t *lv = H2O_STRUCT_FROM_MEMBER(live_t, link, parked.next);
          fr_t *fr = H2O_STRUCT_FROM_MEMBER(fr_t, live, lv);
          h2o_linklist_unlink(&lv->link);
          h2o_linklist_insert(&l->live, &lv->link); /* parked again unless answered */
          look_again(fr, &pass);
        }
        if (pass.free) pass.free(pass.items);
        break;
      }
    }
  }
}

static void on_tick(h2o_timeout_entry_t *e) {
  loop_t *l = H2O_STRUCT_FROM_MEMBER(loop_t, tick, e);
  int64_t now = now_ms();
  /* The next link is taken first: a visit may end (unlink) its own entry. */
  h2o_linklist_t *node = l->live.next;
  while (node != &l->live) {
    h2o_linklist_t *next = node->next;
    live_t *lv = H2O_STRUCT_FROM_MEMBER(live_t, link, node);
    if (lv->kind == LIVE_PARKED) {
      fr_t *fr = H2O_STRUCT_FROM_MEMBER(fr_t, live, lv);
      if (now >= fr->r.defer_deadline_ms) unpark(fr, 1);
    } else if (lv->kind == LIVE_AWAIT) {
      fr_t *fr = H2O_STRUCT_FROM_MEMBER(fr_t, live, lv);
      if (now >= fr->r.defer_deadline_ms) await_run(fr, 1);
    } else if (lv->kind == LIVE_STREAM) {
      fr_t *fr = H2O_STRUCT_FROM_MEMBER(fr_t, live, lv);
      if (now >= fr->next_tick_ms) {
        fr->next_tick_ms = now + fr->st.tick_ms;
        stream_pump(fr);
      }
    } else {
      dg_ws_conn_t *c = H2O_STRUCT_FROM_MEMBER(dg_ws_conn_t, live, lv);
      if (now >= c->next_tick_ms) {
        c->next_tick_ms = now + 1000;
        if (c->cb.tick) c->cb.tick(c->cb.arg);
      }
    }
    node = next;
  }
  h2o_timeout_link(l->ctx.loop, &l->tick_timeout, &l->tick);
}

/* ---- accepting ----------------------------------------------------------------- */

static unsigned ip_hash(const unsigned char *a) {
  unsigned h = 2166136261u;
  for (int i = 0; i < 16; i++) h = (h ^ a[i]) * 16777619u;
  return h;
}

static void ip_key(h2o_socket_t *sock, unsigned char out[16]) {
  struct sockaddr_storage ss;
  memset(out, 0, 16);
  socklen_t n = h2o_socket_getpeername(sock, (struct sockaddr *)&ss);
  if (n == 0) return;
  if (ss.ss_family == AF_INET) {
    memcpy(out + 12, &((struct sockaddr_in *)&ss)->sin_addr, 4);
    out[10] = out[11] = 0xff;
  } else if (ss.ss_family == AF_INET6) {
    memcpy(out, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
  }
}

/* +1 (or -1) for the address; returns the new count, or -1 when full. */
static int ip_add(dg_http_t *f, const unsigned char *a, int delta) {
  pthread_mutex_lock(&f->iplock);
  unsigned h = ip_hash(a) % IPTAB;
  int out = -1, tomb = -1;
  for (unsigned i = 0; i < IPTAB; i++) {
    ipslot_t *s = &f->ips[(h + i) % IPTAB];
    if (s->used && memcmp(s->addr, a, 16) == 0) {
      s->count += delta;
      out = s->count;
      if (s->count <= 0) {
        s->count = 0; /* keep the slot: probing stays correct */
      }
      break;
    }
    if (!s->used) {
      if (delta > 0) {
        ipslot_t *t = tomb >= 0 ? &f->ips[tomb] : s;
        t->used = 1;
        memcpy(t->addr, a, 16);
        t->count = delta;
        out = delta;
      }
      break;
    }
    if (s->count == 0 && tomb < 0) tomb = (int)((h + i) % IPTAB);
  }
  if (out < 0 && delta > 0 && tomb >= 0) { /* table full of others: reuse an empty slot */
    ipslot_t *t = &f->ips[tomb];
    memcpy(t->addr, a, 16);
    t->count = delta;
    out = delta;
  }
  pthread_mutex_unlock(&f->iplock);
  return out;
}

typedef struct {
  dg_http_t *f;
  unsigned char addr[16];
} sockinfo_t;

static void on_sock_close(void *data) {
  sockinfo_t *si = data;
  if (si->f->app->cfg->ip_connections > 0) ip_add(si->f, si->addr, -1);
  atomic_fetch_sub(&si->f->conns, 1);
  dg_free(si);
}

static void on_accept(h2o_socket_t *listener, const char *err) {
  loop_t *l = listener->data;
  dg_http_t *f = l->f;
  if (err != NULL) return;
  for (int i = 0; i < 64; i++) {
    h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
    if (sock == NULL) return;
    int cap = f->app->cfg->ip_connections;
    sockinfo_t *si = dg_calloc(1, sizeof *si);
    si->f = f;
    ip_key(sock, si->addr);
    if (atomic_fetch_add(&f->conns, 1) >= f->max_conns) {
      atomic_fetch_sub(&f->conns, 1);
      dg_free(si);
      h2o_socket_close(sock);
      continue;
    }
    if (cap > 0 && ip_add(f, si->addr, 1) > cap) {
      /* Refused at accept: before a byte of the request or any key check. */
      ip_add(f, si->addr, -1);
      atomic_fetch_sub(&f->conns, 1);
      dg_free(si);
      h2o_socket_close(sock);
      continue;
    }
    sock->on_close.cb = on_sock_close;
    sock->on_close.data = si;
    h2o_accept(&l->accept, sock);
  }
}

/* ---- requests -------------------------------------------------------------------- */

static void on_req_dispose(void *p) {
  fr_t *fr = *(fr_t **)p;
  if (fr == NULL) return;
  fr->req = NULL;
  fr->slot = NULL;
  if (fr->state == FR_WORKING || fr->reading_on_worker) return; /* the worker's answer frees it */
  fr_free(fr); /* answered, or parked (fr_free unlinks it) */
}

typedef struct {
  job_t job;
  void (*fn)(void *arg);
  void *arg;
} fnjob_t;

static void fn_job_run(job_t *j) {
  fnjob_t *w = (fnjob_t *)j;
  w->fn(w->arg);
  dg_free(w);
}

void dg_http_submit(void (*fn)(void *arg), void *arg) {
  loop_t *l = this_loop;
  DG_ASSERT(l != NULL);
  fnjob_t *w = dg_calloc(1, sizeof *w);
  w->job.run = fn_job_run;
  w->fn = fn;
  w->arg = arg;
  pool_submit(&l->f->pool, &w->job);
}

static void dispatch_job(job_t *j) {
  fr_t *fr = (fr_t *)((char *)j - offsetof(fr_t, job));
  dg_http_dispatch(&fr->r);
  post(fr->loop, &fr->done, MSG_DONE);
}

static int on_req(h2o_handler_t *self, h2o_req_t *req) {
  (void)self;
  loop_t *l = this_loop;
  dg_http_t *f = l->f;
  size_t hbytes = req->input.path.len + req->input.method.len + req->input.authority.len;
  for (size_t i = 0; i < req->headers.size; i++)
    hbytes += req->headers.entries[i].name->len + req->headers.entries[i].value.len + 4;
  if (hbytes > MAX_HEADER_BYTES) {
    loop_problem(req, 431,
                 "the request line and headers are larger than 65536 bytes");
    return 0;
  }
  fr_t *fr = dg_calloc(1, sizeof *fr);
  fr->loop = l;
  fr->req = req;
  fr->state = FR_WORKING;
  dg_req_t *r = &fr->r;
  r->app = f->app;
  r->can_defer = 1;
  dg_buf_init(&r->out_headers);
  dg_buf_init(&r->out_body);
  r->method = dg_strndup(req->input.method.base, req->input.method.len);
  r->target = dg_strndup(req->input.path.base, req->input.path.len);
  size_t plen = req->input.path.len;
  const char *q = memchr(req->input.path.base, '?', req->input.path.len);
  if (q) plen = (size_t)(q - req->input.path.base);
  r->path = dg_strndup(req->input.path.base, plen);
  if (q) parse_query(r, q + 1, req->input.path.len - plen - 1);
  size_t cap = 0;
  for (size_t i = 0; i < req->headers.size; i++) {
    const h2o_header_t *h = &req->headers.entries[i];
    add_header(r, &cap, h->name->base, h->name->len, h->value.base, h->value.len);
  }
  if (req->upgrade.base) add_header(r, &cap, "upgrade", 7, req->upgrade.base, req->upgrade.len);
  if (req->input.authority.base) add_header(r, &cap, "host", 4, req->input.authority.base, req->input.authority.len);
  if (req->entity.base) {
    char *b = dg_malloc(req->entity.len + 1);
    memcpy(b, req->entity.base, req->entity.len);
    b[req->entity.len] = '\0';
    r->raw_body = b;
    r->raw_body_len = req->entity.len;
  }
  req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&r->peer);
  fr->slot = h2o_mem_alloc_shared(&req->pool, sizeof *fr->slot, on_req_dispose);
  *fr->slot = fr;
  /* What can be answered without blocking is answered here, without a
   * worker's hand-off both ways (dg_http_dispatch_loop). */
  if (dg_http_dispatch_loop(r)) {
    if (r->deferred) park(fr); /* a long poll parked from the loop */
    else answer(fr);
    return 0;
  }
  fr->job.run = dispatch_job;
  fr->job.quick = 0;
  pool_submit(&f->pool, &fr->job);
  return 0;
}

/* ---- life cycle ---------------------------------------------------------------- */

/* A loop's h2o objects are made on its own thread: h2o's buffers come from
 * the free lists of the thread that makes a socket (thread-local), so a
 * socket made on another thread would share that thread's lists with this
 * one (TSan saw the loops' wake-up sockets race on the main thread's). */
static void loop_init(loop_t *l) {
  dg_http_t *f = l->f;
  h2o_context_init(&l->ctx, h2o_evloop_create(), &f->config);
  l->accept.ctx = &l->ctx;
  l->accept.hosts = f->config.hosts;
  l->accept.ssl_ctx = f->ssl;
  h2o_linklist_init_anchor(&l->live);
  l->rewake = dg_calloc(1, sizeof *l->rewake);
  h2o_multithread_register_receiver(l->ctx.queue, &l->rx, on_messages);
  h2o_timeout_init(l->ctx.loop, &l->tick_timeout, TICK_MS);
  l->tick.cb = on_tick;
  h2o_timeout_link(l->ctx.loop, &l->tick_timeout, &l->tick);
  int fd = dup(f->listen_fd);
  l->listener = h2o_evloop_socket_create(l->ctx.loop, fd, H2O_SOCKET_FLAG_DONT_READ);
  l->listener->data = l;
  h2o_socket_read_start(l->listener, on_accept);
}

static void *loop_main(void *arg) {
  loop_t *l = arg;
  pthread_setname_np(pthread_self(), "dg-http");
  this_loop = l;
  dg_http_t *f = l->f;
  loop_init(l);
  pthread_mutex_lock(&f->park_lock);
  f->nready++;
  pthread_cond_broadcast(&f->parked);
  pthread_mutex_unlock(&f->park_lock);
  while (!atomic_load(&f->stopping)) h2o_evloop_run(l->ctx.loop, 100);
  /* Parked, not ended: h2o keeps buffers in thread-local free lists, which
   * stay reachable (for LeakSanitizer) while the thread lives; the process
   * is about to end. */
  pthread_mutex_lock(&f->park_lock);
  f->nparked++;
  pthread_cond_broadcast(&f->parked);
  for (;;) pthread_cond_wait(&f->never, &f->park_lock);
  return NULL;
}

/* Checks that the certificate and key parse and belong together, so a bad
 * pair is one clear line at start. */
static const char *tls_pair_problem(const char *cert, size_t cl, const char *key, size_t kl) {
  BIO *cb = BIO_new_mem_buf(cert, (int)cl), *kb = BIO_new_mem_buf(key, (int)kl);
  X509 *x = PEM_read_bio_X509(cb, NULL, NULL, NULL);
  EVP_PKEY *pk = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL);
  const char *why = x == NULL    ? "DUCKGRID_TLS_CERT is not a PEM certificate"
                    : pk == NULL ? "DUCKGRID_TLS_KEY is not an unencrypted PEM private key"
                    : X509_check_private_key(x, pk) != 1 ? "the certificate and the key do not belong together"
                                                         : NULL;
  X509_free(x);
  EVP_PKEY_free(pk);
  BIO_free(cb);
  BIO_free(kb);
  return why;
}

static int make_ssl(dg_http_t *f, char *err, size_t errcap) {
  const dg_config_t *cfg = f->app->cfg;
  size_t kl = 0, cl = 0;
  char *key = dg_read_small_file(cfg->tls_key, &kl), *cert = dg_read_small_file(cfg->tls_cert, &cl);
  if (key == NULL || cert == NULL) {
    snprintf(err, errcap, "cannot read the HTTPS certificate or key");
    dg_free(key);
    dg_free(cert);
    return DG_EINVAL;
  }
  const char *why = tls_pair_problem(cert, cl, key, kl);
  memset(key, 0, kl);
  dg_free(key);
  dg_free(cert);
  if (why) {
    snprintf(err, errcap, "HTTPS: %s", why);
    return DG_EINVAL;
  }
  f->ssl = SSL_CTX_new(TLS_server_method());
  SSL_CTX_set_min_proto_version(f->ssl, TLS1_2_VERSION);
  SSL_CTX_set_options(f->ssl, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  if (SSL_CTX_use_certificate_chain_file(f->ssl, cfg->tls_cert) != 1 ||
      SSL_CTX_use_PrivateKey_file(f->ssl, cfg->tls_key, SSL_FILETYPE_PEM) != 1) {
    snprintf(err, errcap, "HTTPS: the certificate or key cannot be loaded");
    SSL_CTX_free(f->ssl);
    f->ssl = NULL;
    return DG_EINVAL;
  }
  h2o_ssl_register_alpn_protocols(f->ssl, h2o_http2_alpn_protocols);
  return 0;
}

static int open_listener(dg_http_t *f, char *err, size_t errcap) {
  const dg_config_t *cfg = f->app->cfg;
  struct sockaddr_storage ss;
  socklen_t sl;
  memset(&ss, 0, sizeof ss);
  struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
  if (inet_pton(AF_INET, cfg->listen_host, &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)cfg->listen_port);
    sl = sizeof *a4;
  } else if (inet_pton(AF_INET6, cfg->listen_host, &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons((uint16_t)cfg->listen_port);
    sl = sizeof *a6;
  } else {
    snprintf(err, errcap, "listen address '%s' is not an IPv4 or IPv6 address", cfg->listen_host);
    return DG_EINVAL;
  }
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (fd < 0 || bind(fd, (struct sockaddr *)&ss, sl) != 0 || listen(fd, 4096) != 0) {
    snprintf(err, errcap, "cannot listen on %s:%d (in use, or not an address of this machine)", cfg->listen_host,
             cfg->listen_port);
    if (fd >= 0) close(fd);
    return DG_EIO;
  }
  f->listen_fd = fd;
  return 0;
}

int dg_http_start(dg_app_t *app, dg_http_t **out, char *err, size_t errcap) {
  const dg_config_t *cfg = app->cfg;
  dg_http_t *f = dg_calloc(1, sizeof *f);
  f->app = app;
  f->listen_fd = -1;
  dg_docs_load(); /* read /openapi.json and /docs files now, not per request */
  int rc = open_listener(f, err, errcap);
  if (rc == 0 && cfg->tls_cert) rc = make_ssl(f, err, errcap);
  if (rc != 0) {
    if (f->listen_fd >= 0) close(f->listen_fd);
    dg_free(f);
    return rc;
  }
  /* As many connections as descriptors allow, less a reserve for Redis,
   * DuckDB and files: raise the soft limit to the hard one first. */
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    if (rl.rlim_cur < rl.rlim_max) {
      rl.rlim_cur = rl.rlim_max;
      setrlimit(RLIMIT_NOFILE, &rl);
      getrlimit(RLIMIT_NOFILE, &rl);
    }
    f->max_conns = rl.rlim_cur > 1280 ? (int)(rl.rlim_cur > 1000000 ? 1000000 : rl.rlim_cur) - 256 : 1024;
  } else {
    f->max_conns = 1024;
  }
  pthread_mutex_init(&f->iplock, NULL);
  pthread_mutex_init(&f->park_lock, NULL);
  pthread_cond_init(&f->parked, NULL);
  pthread_cond_init(&f->never, NULL);
  f->ips = dg_calloc(IPTAB, sizeof *f->ips);
  pthread_mutex_init(&f->pool.lock, NULL);
  {
    /* dg_deadline_after_ms counts on CLOCK_MONOTONIC: the pool's timed
     * wait must too (with the default clock every deadline is long past,
     * and idle workers spin). */
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&f->pool.cond, &ca);
    pthread_condattr_destroy(&ca);
  }
  pthread_cond_init(&f->pool.gone, NULL);
  f->pool.max = cfg->http_workers > 0 ? cfg->http_workers : 4096;
  pthread_mutex_lock(&f->pool.lock);
  for (int i = 0; i < MIN_WORKERS; i++) spawn_worker_locked(&f->pool);
  pthread_mutex_unlock(&f->pool.lock);

  h2o_config_init(&f->config);
  f->config.server_name = h2o_iovec_init(H2O_STRLIT("duckgrid"));
  /* Bodies up to four times the limit are read, so the handler can answer
   * a problem+json 413 naming the limit; beyond that h2o closes with 413. */
  f->config.max_request_entity_size = cfg->body_limit * 4 + 65536;
  f->config.http1.req_timeout = (uint64_t)cfg->http_timeout_s * 1000;
  f->config.http1.upgrade_to_http2 = 0;
  f->config.http2.idle_timeout = (uint64_t)cfg->http_timeout_s * 1000;
  f->config.http2.max_concurrent_requests_per_connection = 100;
  f->host = h2o_config_register_host(&f->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
  h2o_pathconf_t *path = h2o_config_register_path(f->host, "/", 0);
  h2o_handler_t *handler = h2o_create_handler(path, sizeof *handler);
  handler->on_req = on_req;

  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  f->nloops = cfg->http_threads > 0 ? cfg->http_threads : (cores > 0 ? (int)cores : 2);
  f->loops = dg_calloc((size_t)f->nloops, sizeof *f->loops);
  for (int i = 0; i < f->nloops; i++) {
    f->loops[i].f = f;
    f->loops[i].index = i;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_create(&f->loops[i].thread, &attr, loop_main, &f->loops[i]);
    pthread_attr_destroy(&attr);
  }
  /* Every loop's receiver is registered before anything may send to it. */
  pthread_mutex_lock(&f->park_lock);
  while (f->nready < f->nloops) pthread_cond_wait(&f->parked, &f->park_lock);
  pthread_mutex_unlock(&f->park_lock);
  dg_ring_set_hook(app->hub, ring_hook, f);
  *out = f;
  return 0;
}

/* Kept, reachable, until the process ends: h2o cannot close a context with
 * connections open, and the process is about to end. */
static dg_http_t *volatile kept_at_exit;

void dg_http_stop(dg_http_t *f) {
  if (f == NULL) return;
  dg_ring_set_hook(f->app->hub, NULL, NULL);
  atomic_store(&f->stopping, 1);
  pthread_mutex_lock(&f->park_lock);
  while (f->nparked < f->nloops) pthread_cond_wait(&f->parked, &f->park_lock);
  pthread_mutex_unlock(&f->park_lock);
  /* The loops are still; the workers finish what they have (long polls and
   * streams see the hub closed), then end. */
  pthread_mutex_lock(&f->pool.lock);
  f->pool.stopping = 1;
  pthread_cond_broadcast(&f->pool.cond);
  while (f->pool.threads > 0) pthread_cond_wait(&f->pool.gone, &f->pool.lock);
  pthread_mutex_unlock(&f->pool.lock);
  /* Streams and sockets let go of the hub now, from this thread: no loop runs. */
  for (int i = 0; i < f->nloops; i++) {
    loop_t *l = &f->loops[i];
    while (!h2o_linklist_is_empty(&l->live)) {
      live_t *lv = H2O_STRUCT_FROM_MEMBER(live_t, link, l->live.next);
      h2o_linklist_unlink(&lv->link);
      if (lv->kind == LIVE_PARKED) {
        continue; /* nothing held but memory */
      } else if (lv->kind == LIVE_AWAIT) {
        await_drop(H2O_STRUCT_FROM_MEMBER(fr_t, live, lv)); /* no notify into a stopped loop */
      } else if (lv->kind == LIVE_STREAM) {
        fr_t *fr = H2O_STRUCT_FROM_MEMBER(fr_t, live, lv);
        if (!fr->freed_stream && fr->st.free) fr->st.free(fr->st.arg);
        fr->freed_stream = 1;
      } else {
        dg_ws_conn_t *c = H2O_STRUCT_FROM_MEMBER(dg_ws_conn_t, live, lv);
        if (!c->closed && c->cb.close) c->cb.close(c->cb.arg);
        c->closed = 1;
      }
    }
  }
  close(f->listen_fd);
  kept_at_exit = f;
}
