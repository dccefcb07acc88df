/*
 * submit.c -- the write path as a handler sees it (service.h): queue a
 * request, wait for replicas, find a request seen before and its outcome.
 * The only place the API's write routes speak Redis or DuckDB.
 */
#include "dg/service.h"

#include <duckdb.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "dg/common.h"
#include "dg/dgsql.h"
#include "dg/entry_mac.h"
#include "dg/hub.h"
#include "dg/log.h"
#include "dg/redis.h"
#include "dg/redis_pool.h"

/* A request's signed XADD to request_duck: the arguments point into x and
 * text, which must outlive the call. */
typedef struct {
  const char *argv[9];
  size_t argvlen[9];
  char t[24];
  char mac[DG_ENTRY_MAC_HEX + 1];
} xadd_t;

static void xadd_signed(dg_app_t *app, const char *text, size_t len, xadd_t *x) {
  dg_entry_sign_req(app, text, len, x->t, x->mac);
  const char *argv[] = {"XADD", app->streams.req, "*", "req", text, "t", x->t, "mac", x->mac};
  size_t argvlen[] = {4, strlen(app->streams.req), 1, 3, len, 1, strlen(x->t), 3, DG_ENTRY_MAC_HEX};
  memcpy(x->argv, argv, sizeof argv);
  memcpy(x->argvlen, argvlen, sizeof argvlen);
}

/* The stream id an XADD answered into sid: 0, or DG_EUNAVAIL (logged). */
static int xadd_sid(dg_app_t *app, const redisReply *rep, char *sid, size_t sidcap) {
  if (rep->type == REDIS_REPLY_STRING && rep->len < sidcap) {
    memcpy(sid, rep->str, rep->len);
    sid[rep->len] = '\0';
    return 0;
  }
  dg_log_error("XADD %s: %s", app->streams.req, rep->type == REDIS_REPLY_ERROR ? rep->str : "?");
  return DG_EUNAVAIL;
}

int dg_service_queue(dg_app_t *app, const char *text, size_t len, int replicas, char *sid, size_t sidcap,
                     int *replicated) {
  xadd_t x;
  xadd_signed(app, text, len, &x);
  dg_redis_t *c = dg_redis_pool_get(app->redis);
  redisReply *rep = NULL;
  int rc = dg_redis_command(c, 9, x.argv, x.argvlen, &rep);
  if (rc == 0) rc = xadd_sid(app, rep, sid, sidcap);
  else rc = DG_EUNAVAIL;
  int want = app->cfg->redis_wait_replicas;
  if (rc == 0 && replicas && want > 0) {
    /* The request this connection just queued: WAIT on it. */
    int acked = 0;
    int ok = dg_redis_wait_replicas(c, want, app->cfg->redis_wait_ms, &acked) == 0 && acked >= want;
    atomic_fetch_add(ok ? &app->status.repl_ok : &app->status.repl_timeout, 1);
    if (replicated) *replicated = ok;
  }
  dg_redis_pool_put(app->redis, c);
  if (rep) freeReplyObject(rep);
  return rc;
}

/* ---- the submitter ------------------------------------------------------------ */

/* Requests one batch holds at most: a pipeline of this many XADDs is one
 * write of some hundred KiB and one read. */
#define SUBMIT_BATCH_MAX 512

struct dg_submitter_s {
  dg_app_t *app;
  pthread_mutex_t lock;
  pthread_cond_t cond;        /* something queued, or stopping */
  dg_queued_t *head, *tail;
  int stopping;
  pthread_t thread;
};

/* One batch: every XADD appended, then every reply read, then every done
 * called (after the connection went back to the pool). */
static void submit_batch(dg_submitter_t *s, dg_queued_t *list, size_t n) {
  dg_app_t *app = s->app;
  dg_queued_t *items[SUBMIT_BATCH_MAX];
  int rcs[SUBMIT_BATCH_MAX];
  char sids[SUBMIT_BATCH_MAX][DG_REDIS_XID_BUFSZ];
  size_t i = 0;
  for (dg_queued_t *q = list; q; q = q->next) items[i++] = q;
  DG_ASSERT(i == n);
  dg_redis_t *c = dg_redis_pool_get(app->redis);
  size_t appended = 0;
  for (; appended < n; appended++) {
    xadd_t x;
    xadd_signed(app, items[appended]->text, items[appended]->len, &x);
    if (dg_redis_append(c, 9, x.argv, x.argvlen) != 0) break;
  }
  size_t lost = n - appended;
  for (i = 0; i < n; i++) {
    rcs[i] = DG_EUNAVAIL;
    sids[i][0] = '\0';
    if (i >= appended) continue;
    redisReply *rep = NULL;
    if (dg_redis_get_reply(c, &rep) != 0) {
      lost++;
      continue;
    }
    rcs[i] = xadd_sid(app, rep, sids[i], sizeof sids[i]);
    freeReplyObject(rep);
  }
  if (lost > 0)
    dg_log_error("XADD %s: %zu of %zu requests not queued: %s", app->streams.req, lost, n, dg_redis_last_error(c));
  dg_redis_pool_put(app->redis, c);
  for (i = 0; i < n; i++) {
    char *text = items[i]->text;
    items[i]->done(items[i], rcs[i], sids[i]);
    free(text); /* json_dumps' */
  }
}

static void *submitter_main(void *arg) {
  dg_submitter_t *s = arg;
  pthread_setname_np(pthread_self(), "dg-submit");
  pthread_mutex_lock(&s->lock);
  for (;;) {
    while (s->head == NULL && !s->stopping) pthread_cond_wait(&s->cond, &s->lock);
    if (s->head == NULL) break; /* stopping, and everything sent */
    dg_queued_t *list = s->head, *last = list;
    size_t n = 1;
    while (last->next && n < SUBMIT_BATCH_MAX) {
      last = last->next;
      n++;
    }
    s->head = last->next;
    if (s->head == NULL) s->tail = NULL;
    last->next = NULL;
    pthread_mutex_unlock(&s->lock);
    submit_batch(s, list, n);
    pthread_mutex_lock(&s->lock);
  }
  pthread_mutex_unlock(&s->lock);
  return NULL;
}

dg_submitter_t *dg_submitter_start(dg_app_t *app) {
  dg_submitter_t *s = dg_calloc(1, sizeof *s);
  s->app = app;
  pthread_mutex_init(&s->lock, NULL);
  pthread_cond_init(&s->cond, NULL);
  if (pthread_create(&s->thread, NULL, submitter_main, s) != 0) {
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    dg_free(s);
    return NULL;
  }
  return s;
}

void dg_submitter_stop(dg_submitter_t *s) {
  if (s == NULL) return;
  pthread_mutex_lock(&s->lock);
  s->stopping = 1;
  pthread_cond_signal(&s->cond);
  pthread_mutex_unlock(&s->lock);
  pthread_join(s->thread, NULL);
  pthread_cond_destroy(&s->cond);
  pthread_mutex_destroy(&s->lock);
  dg_free(s);
}

void dg_service_queue_async(dg_submitter_t *s, dg_queued_t *q) {
  q->next = NULL;
  pthread_mutex_lock(&s->lock);
  if (s->tail) s->tail->next = q;
  else s->head = q;
  s->tail = q;
  pthread_cond_signal(&s->cond);
  pthread_mutex_unlock(&s->lock);
}

/*
 * Durability on a replicated Redis: the outcome the manager published must
 * be on that many replicas before the answer goes out, so a master failover
 * cannot take an acknowledged write back (a fence write, then WAIT: see
 * dg_redis_replicate_fence).
 */
int dg_service_replicate(dg_app_t *app) {
  int want = app->cfg->redis_wait_replicas;
  if (want <= 0) return -1;
  int acked = 0;
  dg_redis_t *f = dg_redis_pool_get(app->redis);
  int rc = dg_redis_replicate_fence(f, app->streams.fence, want, app->cfg->redis_wait_ms, &acked);
  dg_redis_pool_put(app->redis, f);
  int ok = rc == 0 && acked >= want;
  atomic_fetch_add(ok ? &app->status.repl_ok : &app->status.repl_timeout, 1);
  return ok;
}

int dg_service_first_update(dg_app_t *app, const char *caller, const char *request_id, char *out, size_t cap,
                            int *from_manager) {
  *from_manager = 0;
  if (app->links.idem_lookup && app->links.idem_lookup(app->links.idem_arg, caller, request_id, out, cap)) {
    *from_manager = 1;
    return 1;
  }
  duckdb_connection c = dg_db_conn(app->db);
  duckdb_prepared_statement st;
  int found = 0;
  if (c == NULL) return 0;
  if (duckdb_prepare(c, dg_sql_idem_lookup, &st) == DuckDBSuccess) {
    duckdb_bind_varchar(st, 1, caller);
    duckdb_bind_varchar(st, 2, request_id);
    duckdb_result q;
    if (duckdb_execute_prepared(st, &q) == DuckDBSuccess && duckdb_row_count(&q) == 1) {
      dg_redis_xid_t x = {(uint64_t)duckdb_value_int64(&q, 0, 0), (uint64_t)duckdb_value_int64(&q, 1, 0)};
      dg_redis_xid_format(x, out, cap);
      found = 1;
    }
    duckdb_destroy_result(&q);
  }
  duckdb_destroy_prepare(&st);
  return found;
}

/* The id just before x in stream order (x.ms > 0). */
static dg_redis_xid_t xid_before(dg_redis_xid_t x) {
  return x.seq > 0 ? (dg_redis_xid_t){x.ms, x.seq - 1} : (dg_redis_xid_t){x.ms - 1, UINT64_MAX};
}

int dg_service_outcome_unseen(dg_app_t *app, dg_redis_xid_t x) {
  if (x.ms == 0) return 0;
  dg_redis_xid_t before = xid_before(x);
  const dg_event_t *ev[1];
  dg_ring_read_t rd = {.cursor = before, .limit = 1, .scan_max = 1, .any_entry = 1, .out = ev};
  int rc = dg_ring_read(app->hub, &rd, NULL);
  dg_ring_release(ev, rd.matched);
  return rc == DG_RING_COVERED && rd.scanned == 0;
}

char *dg_service_outcome(dg_app_t *app, const char *uid, size_t *len) {
  dg_redis_xid_t x;
  if (dg_redis_xid_parse(uid, strlen(uid), &x) != 0) return NULL;
  dg_redis_xid_t before = xid_before(x);
  const dg_event_t *ev[1];
  dg_ring_read_t rd = {.cursor = before, .limit = 1, .scan_max = 1, .any_entry = 1, .out = ev};
  char *res = NULL;
  if (x.ms > 0 && dg_ring_read(app->hub, &rd, NULL) == DG_RING_COVERED && rd.matched == 1 &&
      strcmp(ev[0]->id, uid) == 0) {
    res = dg_strndup(ev[0]->res, ev[0]->len);
    *len = ev[0]->len;
  }
  dg_ring_release(ev, rd.matched);
  if (res) return res;
  const char *argv[] = {"XRANGE", app->streams.res, uid, uid};
  dg_redis_t *c = dg_redis_pool_get(app->redis);
  redisReply *rep = NULL;
  if (dg_redis_command(c, 4, argv, NULL, &rep) == 0) {
    dg_redis_xiter_t it;
    dg_redis_xentry_t e;
    dg_redis_str_t v;
    if (dg_redis_xiter_init_xrange(&it, rep) == 0 && dg_redis_xiter_next(&it, &e) &&
        dg_entry_open_res(app, &e, &v) == 0) { /* MAC checked: entry_mac.h */
      res = dg_strndup(v.ptr, v.len);
      *len = v.len;
    }
    freeReplyObject(rep);
  }
  dg_redis_pool_put(app->redis, c);
  return res;
}
