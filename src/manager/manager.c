/*
 * manager.c -- the one writer: lease, batches, recovery, publishing.
 *
 * DESIGN
 *
 *   request_duck ──XREADGROUP (group "managers", consumer "manager")──▶ batch
 *        │                                                               │
 *        │          apply each request in stream order (apply.c) ◀───────┘
 *        │                 │ in memory, under engine savepoints
 *        │                 ▼
 *        │          one DuckDB transaction (persist.c): effects, audit rows,
 *        │          outcomes, dg.applied = last stream id ── COMMIT
 *        │                 │
 *        │                 ▼
 *        └──── XACK ◀── XADD response_duck <stream id> res <outcome>  (pipelined)
 *
 * Exactly one outcome per request. The outcome of request S is published
 * under the explicit id S in response_duck (update_id == stream_id). Ids in
 * a stream only grow, so publishing the same outcome twice is impossible:
 * Redis refuses an XADD whose id is not above the stream's top ("equal or
 * smaller"), and we take that refusal as "already published".
 *
 * Crash anywhere, then restart:
 *   - before COMMIT: nothing of the batch is in DuckDB; the entries are still
 *     pending in the group, are read again from the PEL and applied.
 *   - after COMMIT, before or during publishing: dg.applied says the batch
 *     is applied; its entries are pending; recovery republishes each stored
 *     outcome (dg.outcomes) -- those already published are refused as above
 *     -- and XACKs them. Nothing applies twice, nothing is lost.
 * The consumer group starts at dg.applied's id when it is first created, so
 * a fresh database replays whatever request_duck still holds.
 *
 * Batches: as many waiting requests as there are, up to batch_max. A DDL
 * request (create/delete table or view) runs alone in its batch: it changes
 * what later statements of a batch would be written against. A batch whose
 * transaction fails is rolled back in DuckDB and in the engine, and its
 * requests run again one by one, so one bad request cannot sink the others;
 * one that fails alone gets a rejected outcome (500) that is stored and
 * published like any other.
 *
 * Leadership: a lease key (SET NX PX), renewed every LEASE_RENEW_MS by a
 * compare-and-extend script; a manager that cannot renew stops writing and
 * becomes a standby. DuckDB itself allows one writing process per file, so
 * the lease mostly guards against a second process on another copy.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dg/common.h"
#include "dg/db.h"
#include "dg/jsonw.h"
#include "dg/log.h"
#include "dg/metrics.h"
#include "internal.h"

/* The lease outlives a renewal gap of several missed renewals. */
#define LEASE_MS 10000
#define LEASE_RENEW_MS 2000
/* How long XREADGROUP blocks: bounds how late a stop is noticed. */
#define BLOCK_MS 500
/* request_duck keeps applied requests for this long (replay, audit). */
#define REQUEST_RETENTION_MS (3600 * 1000)
/* An idle manager checkpoints after this long without requests. */
#define CHECKPOINT_IDLE_MS 1000
#define GROUP "managers"
#define CONSUMER "manager"

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int xid_le(const char *a, const char *b) {
  dg_redis_xid_t x, y;
  if (dg_redis_xid_parse(a, strlen(a), &x) != 0 || dg_redis_xid_parse(b, strlen(b), &y) != 0) return 0;
  return dg_redis_xid_cmp(x, y) <= 0;
}

static redisReply *cmd(dg_manager_t *m, int argc, const char **argv) {
  redisReply *rep = NULL;
  if (dg_redis_command(m->redis, argc, argv, NULL, &rep) != 0) return NULL;
  return rep;
}

/* ---- lease -------------------------------------------------------------------- */

static const char *RENEW_LUA =
    "if redis.call('get', KEYS[1]) == ARGV[1] then "
    "return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";
static const char *RELEASE_LUA =
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

static int lease_acquire(dg_manager_t *m) {
  char ms[16];
  snprintf(ms, sizeof ms, "%d", LEASE_MS);
  const char *argv[] = {"SET", m->app->lease_key, m->lease_value, "NX", "PX", ms};
  redisReply *rep = cmd(m, 6, argv);
  int ok = rep && rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "OK") == 0;
  if (rep) freeReplyObject(rep);
  if (ok) m->lease_renewed_ms = now_ms();
  return ok;
}

/* 1 renewed, 0 lost, -1 Redis unreachable (keep going until the lease would lapse). */
static int lease_renew(dg_manager_t *m) {
  char ms[16];
  snprintf(ms, sizeof ms, "%d", LEASE_MS);
  const char *argv[] = {"EVAL", RENEW_LUA, "1", m->app->lease_key, m->lease_value, ms};
  redisReply *rep = cmd(m, 6, argv);
  if (rep == NULL) return -1;
  int ok = rep->type == REDIS_REPLY_INTEGER && rep->integer == 1;
  freeReplyObject(rep);
  if (ok) m->lease_renewed_ms = now_ms();
  return ok;
}

static void lease_release(dg_manager_t *m) {
  const char *argv[] = {"EVAL", RELEASE_LUA, "1", m->app->lease_key, m->lease_value};
  redisReply *rep = cmd(m, 5, argv);
  if (rep) freeReplyObject(rep);
}

/* ---- batch bookkeeping -------------------------------------------------------------- */

static mreq_t *req_add(dg_manager_t *m, const char *sid, size_t len) {
  if (m->nreqs == m->reqs_cap) {
    m->reqs_cap = m->reqs_cap ? m->reqs_cap * 2 : 64;
    m->reqs = dg_realloc(m->reqs, m->reqs_cap * sizeof *m->reqs);
  }
  mreq_t *r = &m->reqs[m->nreqs++];
  memset(r, 0, sizeof *r);
  snprintf(r->stream_id, sizeof r->stream_id, "%.*s", (int)len, sid);
  return r;
}

/* Undoes a batch's in-memory effects after its transaction failed. */
static void batch_undo(dg_manager_t *m, int had_ddl) {
  dg__mgr_batch_end(m, 0);
  for (size_t i = 0; i < m->batch_seen.cap; i++)
    if (m->batch_seen.state[i] == 1) dg_idset_remove(&m->seen_requests, m->batch_seen.keys[i]);
  dg__mgr_batch_clear(m);
  if (had_ddl) {
    /* DDL changed the manager's table list itself: start again from DuckDB. */
    char err[256];
    if (dg__mgr_load(m, err, sizeof err) != 0) dg_log_error("manager: reload failed: %s", err);
  }
}

/* ---- publishing -------------------------------------------------------------------- */

static char maxlen_arg[24];

/* XADDs each outcome under its request's id, then XACKs every entry. */
static int publish(dg_manager_t *m, const char *const *acks, size_t nacks) {
  dg_app_t *app = m->app;
  size_t sent = 0;
  for (size_t i = 0; i < m->nreqs; i++) {
    mreq_t *r = &m->reqs[i];
    if (r->duplicate || r->res == NULL) continue;
    const char *argv[] = {"XADD", app->res_stream, "MAXLEN", "~", maxlen_arg, r->stream_id, "res", r->res};
    size_t lens[] = {4, strlen(app->res_stream), 6, 1, strlen(maxlen_arg), strlen(r->stream_id), 3, r->res_len};
    if (dg_redis_append(m->redis, 8, argv, lens) != 0) return DG_EIO;
    sent++;
  }
  if (nacks) {
    const char **argv = dg_malloc((nacks + 3) * sizeof *argv);
    argv[0] = "XACK";
    argv[1] = app->req_stream;
    argv[2] = GROUP;
    for (size_t i = 0; i < nacks; i++) argv[3 + i] = acks[i];
    int rc = dg_redis_append(m->redis, (int)nacks + 3, argv, NULL);
    dg_free(argv);
    if (rc != 0) return DG_EIO;
    sent++;
  }
  int rc = 0;
  for (size_t i = 0; i < sent; i++) {
    redisReply *rep;
    if (dg_redis_get_reply(m->redis, &rep) != 0) {
      rc = DG_EIO;
      continue;
    }
    if (rep->type == REDIS_REPLY_ERROR && strstr(rep->str, "equal or smaller") == NULL)
      dg_log_error("manager: publishing: %s", rep->str);
    freeReplyObject(rep);
  }
  return rc;
}

/* ---- running batches --------------------------------------------------------------- */

typedef struct {
  const char *id;
  size_t id_len;
  const char *req;   /* the entry's "req" field, or NULL */
  size_t req_len;
  int ddl;           /* the request is DDL: it runs alone in its batch */
} entry_t;

static int run_batch(dg_manager_t *m, const entry_t *e, size_t n);

/* Stores and publishes a rejected outcome for a request whose own
 * transaction failed, so it still gets exactly one outcome. */
static int reject_alone(dg_manager_t *m, const entry_t *e, const char *why) {
  mreq_t *r = req_add(m, e->id, e->id_len);
  dg_buf_t b;
  dg_buf_init(&b);
  dg_jsonw_t w;
  dg_jsonw_init(&w, &b);
  dg_jsonw_obj(&w);
  dg_jsonw_key(&w, "update_id");
  dg_jsonw_str(&w, r->stream_id);
  dg_jsonw_key(&w, "stream_id");
  dg_jsonw_str(&w, r->stream_id);
  const char *rid = NULL;
  size_t rn = 0;
  json_t *o = e->req ? json_loadb(e->req, e->req_len, 0, NULL) : NULL;
  rid = json_string_value(json_object_get(o, "request_id"));
  rn = rid ? strlen(rid) : 0;
  snprintf(r->request_id, sizeof r->request_id, "%.*s", (int)rn, rid ? rid : r->stream_id);
  dg_jsonw_key(&w, "request_id");
  dg_jsonw_str(&w, r->request_id);
  dg_jsonw_key(&w, "user");
  dg_jsonw_str(&w, json_string_value(json_object_get(o, "user")));
  dg_jsonw_key(&w, "op");
  dg_jsonw_str(&w, json_string_value(json_object_get(o, "op")));
  dg_jsonw_key(&w, "table");
  dg_jsonw_str(&w, json_string_value(json_object_get(o, "table")));
  dg_jsonw_key(&w, "changes");
  dg_jsonw_arr(&w);
  dg_jsonw_end(&w);
  dg_jsonw_key(&w, "status");
  dg_jsonw_str(&w, "rejected");
  dg_jsonw_key(&w, "error");
  dg_jsonw_obj(&w);
  dg_jsonw_key(&w, "status");
  dg_jsonw_int(&w, 500);
  dg_jsonw_key(&w, "code");
  dg_jsonw_str(&w, "internal");
  dg_jsonw_key(&w, "title");
  dg_jsonw_str(&w, "Internal Server Error");
  dg_jsonw_key(&w, "detail");
  dg_jsonw_str(&w, why);
  dg_jsonw_end(&w);
  char ts[64];
  dg_time_iso(ts, sizeof ts);
  dg_jsonw_key(&w, "ts");
  dg_jsonw_str(&w, ts);
  dg_jsonw_end(&w);
  json_decref(o);
  r->res_len = b.len;
  r->res = dg_buf_steal(&b);
  char err[512];
  int rc = dg__mgr_persist(m, err, sizeof err);
  if (rc != 0) {
    dg_log_error("manager: cannot even record a rejection: %s", err);
    dg__mgr_batch_clear(m);
    return rc;
  }
  const char *ack = r->stream_id;
  publish(m, &ack, 1);
  dg__mgr_batch_clear(m);
  return 0;
}

/* A batch slower than this logs where its time went (a huge spread, a
 * checkpoint inside the commit, a slow disk). */
#define SLOW_BATCH_MS 500

static int run_batch(dg_manager_t *m, const entry_t *e, size_t n) {
  int64_t start = dg_mono_us();
  int had_ddl = 0;
  for (size_t i = 0; i < n; i++) {
    mreq_t *r = req_add(m, e[i].id, e[i].id_len);
    if (e[i].req == NULL) {
      dg__mgr_apply(m, r, "{}", 2);
      continue;
    }
    had_ddl |= e[i].ddl;
    dg__mgr_apply(m, r, e[i].req, e[i].req_len);
  }
  char err[512];
  int64_t t0 = dg_mono_us();
  int rc = dg__mgr_persist(m, err, sizeof err);
  int64_t persist_us = dg_mono_us() - t0;
  if (rc == 0) {
    size_t rejected = 0, published = 0;
    for (size_t i = 0; i < m->nreqs; i++) {
      rejected += !m->reqs[i].duplicate && m->reqs[i].rejected;
      published += !m->reqs[i].duplicate;
    }
    dg_metrics_batch(m->app->metrics, m->nreqs, persist_us);
    dg_metrics_outcomes(m->app->metrics, published - rejected, rejected);
  }
  if (rc != 0) {
    dg_log_error("manager: batch of %zu failed to commit (%s); retrying one by one", n, err);
    batch_undo(m, had_ddl);
    if (n == 1) return reject_alone(m, e, err);
    for (size_t i = 0; i < n; i++) {
      rc = run_batch(m, &e[i], 1);
      if (rc != 0) return rc;
    }
    return 0;
  }
  dg__mgr_batch_end(m, 1);
  const char **acks = dg_malloc(n * sizeof *acks);
  for (size_t i = 0; i < m->nreqs; i++) acks[i] = m->reqs[i].stream_id;
  int64_t published = dg_mono_us();
  rc = publish(m, acks, m->nreqs);
  dg_free(acks);
  int64_t end = dg_mono_us();
  if (end - start >= SLOW_BATCH_MS * 1000) {
    const double *st = m->persist_ms;
    dg_log_warn("manager: slow batch: %zu requests, %zu audit rows, %lld ms: apply %lld, persist %lld "
                "(rows %.0f, audit %.0f, outcomes %.0f, commit %.0f), publish %lld",
                m->nreqs, m->nhist, (long long)(end - start) / 1000,
                (long long)(published - start - persist_us) / 1000, (long long)persist_us / 1000, st[0], st[1],
                st[2], st[3], (long long)(end - published) / 1000);
  }
  dg__mgr_batch_clear(m);
  if (rc != 0) {
    /* Stored but maybe not published: recovery republishes from DuckDB. */
    m->leader = 0;
    return rc;
  }
  return 0;
}

/* Splits entries into batches, each DDL request alone. */
static int run_entries(dg_manager_t *m, const entry_t *e, size_t n) {
  size_t i = 0;
  while (i < n) {
    size_t j = i + 1;
    if (!e[i].ddl)
      while (j < n && !e[j].ddl) j++;
    int rc = run_batch(m, &e[i], j - i);
    if (rc != 0) return rc;
    i = j;
  }
  return 0;
}

/* Reads an XREADGROUP reply into entries (borrowing from the reply). */
static size_t entries_of(redisReply *rep, entry_t **out) {
  dg_redis_xiter_t it;
  size_t n = 0, cap = 0;
  entry_t *e = NULL;
  if (dg_redis_xiter_init_xread(&it, rep) != 0) {
    *out = NULL;
    return 0;
  }
  dg_redis_xentry_t x;
  while (dg_redis_xiter_next(&it, &x)) {
    if (n == cap) {
      cap = cap ? cap * 2 : 64;
      e = dg_realloc(e, cap * sizeof *e);
    }
    dg_redis_str_t v;
    int has = !x.deleted && dg_redis_xentry_get(&x, "req", 3, &v) == 0;
    e[n] = (entry_t){x.id.ptr, x.id.len, has ? v.ptr : NULL, has ? v.len : 0, 0};
    e[n].ddl = has && dg__mgr_is_ddl(v.ptr, v.len);
    n++;
  }
  *out = e;
  return n;
}

/* ---- recovery ------------------------------------------------------------------------ */

/* Republishes the outcomes of the leading entries that DuckDB says are
 * applied already (their stored outcome, or nothing for a duplicate) and
 * XACKs them; *done receives how many there were. */
static int republish_applied(dg_manager_t *m, const entry_t *e, size_t n, size_t *done) {
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    char sid[DG_REDIS_XID_BUFSZ];
    snprintf(sid, sizeof sid, "%.*s", (int)e[i].id_len, e[i].id);
    if (!xid_le(sid, m->last_applied)) break;
    char *res = e[i].req ? dg__mgr_stored_outcome(m, sid) : NULL;
    mreq_t *r = req_add(m, sid, strlen(sid));
    if (res) {
      r->res = res;
      r->res_len = strlen(res);
    } else {
      r->duplicate = 1; /* applied as a duplicate, or trimmed: nothing to publish */
    }
    k++;
  }
  *done = k;
  if (k == 0) return 0;
  const char **acks = dg_malloc(k * sizeof *acks);
  for (size_t i = 0; i < k; i++) acks[i] = m->reqs[i].stream_id;
  int rc = publish(m, acks, k);
  dg_free(acks);
  dg__mgr_batch_clear(m);
  if (rc == 0) dg_log_info("manager: republished %zu applied request(s)", k);
  return rc;
}

/* Re-reads this consumer's pending entries: republishes what DuckDB says is
 * applied, applies the rest. */
static int recover(dg_manager_t *m) {
  char cursor[DG_REDIS_XID_BUFSZ] = "0";
  for (;;) {
    const char *argv[] = {"XREADGROUP", "GROUP", GROUP, CONSUMER, "COUNT", "1000", "STREAMS",
                          m->app->req_stream, cursor};
    redisReply *rep = cmd(m, 9, argv);
    if (rep == NULL) return DG_EUNAVAIL;
    entry_t *e;
    size_t n = entries_of(rep, &e);
    if (n == 0) {
      freeReplyObject(rep);
      dg_free(e);
      return 0;
    }
    size_t done = 0;
    int rc = republish_applied(m, e, n, &done);
    if (rc != 0) {
      freeReplyObject(rep);
      dg_free(e);
      return rc;
    }
    rc = n > done ? run_entries(m, e + done, n - done) : 0;
    snprintf(cursor, sizeof cursor, "%.*s", (int)e[n - 1].id_len, e[n - 1].id);
    freeReplyObject(rep);
    dg_free(e);
    if (rc != 0) return rc;
  }
}

static int become_leader(dg_manager_t *m) {
  char err[512];
  if (dg__mgr_load(m, err, sizeof err) != 0) {
    dg_log_error("manager: cannot load the database: %s", err);
    return DG_EIO;
  }
  const char *argv[] = {"XGROUP", "CREATE", m->app->req_stream, GROUP, m->last_applied, "MKSTREAM"};
  redisReply *rep = cmd(m, 6, argv);
  if (rep == NULL) return DG_EUNAVAIL;
  if (rep->type == REDIS_REPLY_ERROR && strstr(rep->str, "BUSYGROUP") == NULL) {
    dg_log_error("manager: XGROUP CREATE: %s", rep->str);
    freeReplyObject(rep);
    return DG_EIO;
  }
  freeReplyObject(rep);
  int rc = recover(m);
  if (rc != 0) return rc;
  dg_redis_status_t st;
  dg_redis_status(m->redis, &st);
  m->connects_recovered = st.connects;
  m->leader = 1;
  atomic_store(&m->app->manager_state, DG_MANAGER_LEADER);
  dg_log_info("manager: leader (last applied %s, %u tables)", m->last_applied, m->ntables);
  return 0;
}

/* ---- housekeeping ------------------------------------------------------------------- */

static void update_lag(dg_manager_t *m) {
  dg_redis_status_t st;
  dg_redis_status(m->redis, &st);
  /* Every connect after the first is a reconnect. */
  if (m->connects_seen > 0 && st.connects > m->connects_seen)
    atomic_fetch_add(&m->app->redis_reconnects, (long)(st.connects - m->connects_seen));
  if (st.connects > m->connects_seen) m->connects_seen = st.connects;
  const char *argv[] = {"XINFO", "GROUPS", m->app->req_stream};
  redisReply *rep = cmd(m, 3, argv);
  if (rep == NULL) return;
  if (rep->type == REDIS_REPLY_ARRAY) {
    for (size_t g = 0; g < rep->elements; g++) {
      redisReply *grp = rep->element[g];
      if (grp->type != REDIS_REPLY_ARRAY) continue;
      int ours = 0;
      long long lag = -1, pending = 0;
      for (size_t k = 0; k + 1 < grp->elements; k += 2) {
        redisReply *key = grp->element[k], *val = grp->element[k + 1];
        if (key->type != REDIS_REPLY_STRING) continue;
        if (strcmp(key->str, "name") == 0 && val->type == REDIS_REPLY_STRING) ours = strcmp(val->str, GROUP) == 0;
        if (strcmp(key->str, "lag") == 0 && val->type == REDIS_REPLY_INTEGER) lag = val->integer;
        if (strcmp(key->str, "pending") == 0 && val->type == REDIS_REPLY_INTEGER) pending = val->integer;
      }
      if (ours) atomic_store(&m->app->lag, (long)((lag > 0 ? lag : 0) + pending));
    }
  }
  freeReplyObject(rep);
}

static void trim_requests(dg_manager_t *m) {
  dg_redis_xid_t applied;
  if (dg_redis_xid_parse(m->last_applied, strlen(m->last_applied), &applied) != 0) return;
  uint64_t keep_from = (uint64_t)(now_ms() - REQUEST_RETENTION_MS);
  if (keep_from > applied.ms) keep_from = applied.ms; /* never beyond what is applied */
  char minid[32];
  snprintf(minid, sizeof minid, "%" PRIu64 "-0", keep_from);
  const char *argv[] = {"XTRIM", m->app->req_stream, "MINID", "~", minid};
  redisReply *rep = cmd(m, 5, argv);
  if (rep) freeReplyObject(rep);
}

/* Idempotency holds "within retention": outcomes older than the oldest entry
 * response_duck still holds are dropped from dg.outcomes, and the set of
 * applied request ids is rebuilt to match. */
static void trim_outcomes(dg_manager_t *m) {
  const char *argv[] = {"XRANGE", m->app->res_stream, "-", "+", "COUNT", "1"};
  redisReply *rep = cmd(m, 6, argv);
  if (rep == NULL) return;
  dg_redis_xiter_t it;
  dg_redis_xentry_t e;
  dg_redis_xid_t first;
  int have = dg_redis_xiter_init_xrange(&it, rep) == 0 && dg_redis_xiter_next(&it, &e) &&
             dg_redis_xid_parse(e.id.ptr, e.id.len, &first) == 0;
  freeReplyObject(rep);
  if (!have) return;
  duckdb_prepared_statement st;
  if (duckdb_prepare(m->conn, "DELETE FROM dg.outcomes WHERE ms < $1", &st) == DuckDBError) {
    duckdb_destroy_prepare(&st);
    return;
  }
  duckdb_bind_int64(st, 1, (int64_t)first.ms);
  duckdb_result res;
  idx_t gone = 0;
  if (duckdb_execute_prepared(st, &res) == DuckDBSuccess) gone = duckdb_rows_changed(&res);
  duckdb_destroy_result(&res);
  duckdb_destroy_prepare(&st);
  if (gone) {
    dg__mgr_load_seen(m);
    dg_log_info("manager: dropped %llu outcomes no longer retained in %s", (unsigned long long)gone,
                m->app->res_stream);
  }
}

/* ---- the thread ------------------------------------------------------------------------- */

static void *run(void *arg) {
  dg_manager_t *m = arg;
  pthread_setname_np(pthread_self(), "dg-manager"); /* for top -H and perf --comm */
  dg_app_t *app = m->app;
  char bmax[16];
  snprintf(bmax, sizeof bmax, "%d", app->cfg->batch_max);
  snprintf(maxlen_arg, sizeof maxlen_arg, "%ld", app->cfg->response_maxlen);
  atomic_store(&app->manager_state, DG_MANAGER_STANDBY);
  while (!atomic_load(&m->stop)) {
    if (!m->leader) {
      if (!lease_acquire(m) && lease_renew(m) != 1) {
        atomic_store(&app->manager_state, DG_MANAGER_STANDBY);
        usleep(300 * 1000);
        continue;
      }
      if (become_leader(m) != 0) {
        usleep(300 * 1000);
        continue;
      }
    }
    int64_t now = now_ms();
    if (now - m->lease_renewed_ms >= LEASE_RENEW_MS) {
      int r = lease_renew(m);
      if (r == 0 || (r < 0 && now - m->lease_renewed_ms >= LEASE_MS)) {
        dg_log_warn("manager: lost the lease; standing by");
        m->leader = 0;
        atomic_store(&app->manager_state, DG_MANAGER_STANDBY);
        continue;
      }
    }
    if (now - m->lag_checked_ms >= 1000) {
      update_lag(m);
      m->lag_checked_ms = now;
    }
    if (now - m->trimmed_ms >= 10000) {
      trim_requests(m);
      m->trimmed_ms = now;
    }
    if (now - m->outcomes_trimmed_ms >= 60000) {
      trim_outcomes(m);
      m->outcomes_trimmed_ms = now;
    }
    {
      /* A new connection may be to a new master (failover, resharding) that
       * lacks the last deliveries or outcomes: look at the pending entries
       * again (cheap: normally there are none). */
      dg_redis_status_t st;
      dg_redis_status(m->redis, &st);
      if (st.connects != m->connects_recovered) {
        m->connects_recovered = st.connects;
        if (recover(m) != 0) {
          m->leader = 0;
          continue;
        }
      }
    }
    const char *argv[] = {"XREADGROUP", "GROUP", GROUP, CONSUMER, "COUNT", bmax, "BLOCK", "500",
                          "STREAMS", app->req_stream, ">"};
    redisReply *rep = NULL;
    int rc = dg_redis_command_timeout(m->redis, BLOCK_MS + 2000, 11, argv, NULL, &rep);
    if (rc != 0) {
      usleep(50 * 1000);
      continue;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
      /* NOGROUP: the stream was deleted under us; make the group again. */
      dg_log_warn("manager: %s", rep->str);
      freeReplyObject(rep);
      m->leader = 0;
      usleep(100 * 1000);
      continue;
    }
    entry_t *e;
    size_t n = entries_of(rep, &e);
    /* Entries applied already can come again after a Redis failover (the
     * new master had not received their delivery): republish, not reapply. */
    size_t done = 0;
    if (n && republish_applied(m, e, n, &done) != 0) m->leader = 0;
    else if (n > done && run_entries(m, e + done, n - done) != 0) m->leader = 0; /* re-run recovery */
    if (n) {
      m->dirty = 1;
    } else if (m->dirty && now - m->checkpointed_ms >= CHECKPOINT_IDLE_MS) {
      /* Quiet now: fold the WAL into the database here, not inside a
       * commit under load (see the checkpoint_threshold in db.c). */
      dg_db_exec(m->conn, "CHECKPOINT", NULL, 0);
      m->dirty = 0;
      m->checkpointed_ms = now_ms();
    }
    dg_free(e);
    freeReplyObject(rep);
  }
  if (m->leader) lease_release(m);
  atomic_store(&app->manager_state, DG_MANAGER_OFF);
  return NULL;
}

int dg_manager_start(dg_app_t *app, const dg_redis_url_t *url, const dg_redis_opts_t *opts,
                     dg_manager_t **out) {
  dg_manager_t *m = dg_calloc(1, sizeof *m);
  m->app = app;
  char err[200];
  if (dg_redis_create(url, opts, &m->redis, err, sizeof err) != 0 || dg_db_connect(app->db, &m->conn) != 0) {
    dg_redis_destroy(m->redis);
    dg_free(m);
    return DG_EIO;
  }
  char host[64] = "host";
  gethostname(host, sizeof host - 1);
  snprintf(m->lease_value, sizeof m->lease_value, "%.40s:%d:%lld", host, (int)getpid(), (long long)now_ms());
  snprintf(m->consumer, sizeof m->consumer, CONSUMER);
  snprintf(m->last_applied, sizeof m->last_applied, "0-0");
  m->changes = dg_changes_create();
  dg_buf_init(&m->json);
  if (pthread_create(&m->thread, NULL, run, m) != 0) {
    dg_changes_destroy(m->changes);
    dg_db_disconnect(&m->conn);
    dg_redis_destroy(m->redis);
    dg_free(m);
    return DG_EIO;
  }
  *out = m;
  return 0;
}

void dg_manager_stop(dg_manager_t *m) {
  if (m == NULL) return;
  atomic_store(&m->stop, 1);
  pthread_join(m->thread, NULL);
  dg__mgr_batch_clear(m);
  for (uint32_t i = 0; i < m->ntables; i++) dg__mgr_table_free(m->tables[i]);
  dg_free(m->tables);
  for (size_t i = 0; i < m->nviews; i++) dg_free(m->views[i]);
  dg_free(m->views);
  dg_idset_dispose(&m->seen_requests);
  dg_free(m->reqs);
  dg_free(m->hist);
  dg_free(m->ddl);
  dg_changes_destroy(m->changes);
  dg_buf_dispose(&m->json);
  dg__mgr_persist_dispose(m);
  dg_db_disconnect(&m->conn);
  dg_redis_destroy(m->redis);
  dg_free(m);
}
