/*
 * submit.c -- the write path as a handler sees it (service.h): queue a
 * request, wait for replicas, find a request seen before and its outcome.
 * The only place the API's write routes speak Redis or DuckDB.
 */
#include "dg/service.h"

#include <duckdb.h>
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

int dg_service_queue(dg_app_t *app, const char *text, size_t len, int replicas, char *sid, size_t sidcap,
                     int *replicated) {
  char t[24], mac[DG_ENTRY_MAC_HEX + 1];
  dg_entry_sign_req(app, text, len, t, mac);
  const char *argv[] = {"XADD", app->streams.req, "*", "req", text, "t", t, "mac", mac};
  size_t argvlen[] = {4, strlen(app->streams.req), 1, 3, len, 1, strlen(t), 3, DG_ENTRY_MAC_HEX};
  dg_redis_t *c = dg_redis_pool_get(app->redis);
  redisReply *rep = NULL;
  int rc = dg_redis_command(c, 9, argv, argvlen, &rep);
  if (rc == 0 && rep->type == REDIS_REPLY_STRING && rep->len < sidcap) {
    memcpy(sid, rep->str, rep->len);
    sid[rep->len] = '\0';
    int want = app->cfg->redis_wait_replicas;
    if (replicas && want > 0) {
      /* The request this connection just queued: WAIT on it. */
      int acked = 0;
      int ok = dg_redis_wait_replicas(c, want, app->cfg->redis_wait_ms, &acked) == 0 && acked >= want;
      atomic_fetch_add(ok ? &app->status.repl_ok : &app->status.repl_timeout, 1);
      if (replicated) *replicated = ok;
    }
  } else {
    if (rc == 0) dg_log_error("XADD %s: %s", app->streams.req, rep->type == REDIS_REPLY_ERROR ? rep->str : "?");
    rc = DG_EUNAVAIL;
  }
  dg_redis_pool_put(app->redis, c);
  if (rep) freeReplyObject(rep);
  return rc;
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
