/*
 * manager.c -- the one writer: lease, batches, publishing, the persister,
 * recovery.
 *
 * DESIGN: the stream is the log, DuckDB its materialisation
 *
 *   request_duck ──XREADGROUP (group "managers")──▶ batch
 *        │                                            │ manager thread, state_lock held:
 *        │                                            │  apply each request in memory (apply.c),
 *        │                                            │  a pure function of (state, request)
 *        │                                            ▼
 *        │                          XADD response_duck <stream id> res <outcome>  (pipelined)
 *        │                                            │ hand-over: the batch joins the
 *        │                                            │ unpersisted tail (pend)
 *        │                                            ▼
 *        │                          feed: catalog, ring, sync waiters, live clients
 *        │                          of this process (the reader's pipeline, no round trip)
 *        │
 *        │     persister thread, every PERSIST_INTERVAL or PERSIST_MAX requests or
 *        │     when a read asks (progress.h): one DuckDB transaction for the whole
 *        │     tail -- rows from the engine, audit, holds, dg.idem, dg.applied
 *        └──── XACK ◀── COMMIT
 *
 * A write is acknowledged when its outcome is in Redis; DuckDB is written
 * behind, in large transactions. The consumer group's pending list is the
 * unpersisted tail. Invariants:
 *
 *   persisted => published   the tail joins pend only after its XADDs have
 *                            returned, and the persister takes only pend.
 *   DuckDB = state at dg.applied   the persister reads the engine under
 *                            state_lock, which the manager holds from the
 *                            first apply of a batch to its hand-over, so the
 *                            engine it reads is exactly the state after the
 *                            last request in pend.
 *   one outcome per request  an outcome is published under the request's own
 *                            stream id (update_id == stream_id); Redis refuses
 *                            an XADD whose id is not above the top ("equal or
 *                            smaller"), taken as "already published".
 *
 * Apply is deterministic: the outcome's and the audit log's time come from
 * the stream id, the next automatic row id is stored with the state
 * (dg.applied), and the idempotency window is measured in stream time over
 * a map kept in the state (dg.idem), per caller. So applying the same log
 * from the same DuckDB state gives the same outcomes, byte for byte.
 *
 * Crash anywhere, then restart: load DuckDB (its state is that at
 * dg.applied), re-read this consumer's pending entries, XACK those at or
 * below dg.applied (committed, not yet acknowledged) and apply the rest in
 * order. Their outcomes are the ones already published, if they were:
 * Redis refuses them. Nothing is lost, nothing applies twice.
 *
 * DDL (create/delete table or view) is a barrier: the persister is drained,
 * the request applied, its statements and everything else run in one
 * transaction on this thread, the outcome is published between the last
 * statement and COMMIT (a statement that fails makes a 500 rejection before
 * anything is published, and the state is reloaded).
 *
 * DuckDB failing after publishing cannot turn into a rejected outcome: the
 * persister retries with backoff; after PERSIST_GIVE_UP attempts the manager
 * stops leading (lease released, /health degraded), drops its in-memory
 * state and tries again later from DuckDB and the log. Redis failing while
 * publishing: the same, without waiting (the state may hold effects that
 * were never published).
 *
 * The tail kept in memory is capped (tail_max requests): over it, the
 * manager stops reading request_duck until the persister catches up.
 *
 * Leadership: a lease key (SET NX PX), renewed every LEASE_RENEW_MS by a
 * compare-and-extend script; a manager that cannot renew stops writing and
 * becomes a standby. DuckDB itself allows one writing process per file, so
 * the lease mostly guards against a second process on another copy.
 *
 * Threads and locks: see internal.h.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dg/archive.h"
#include "dg/common.h"
#include "dg/db.h"
#include "dg/entry_mac.h"
#include "dg/jsonw.h"
#include "dg/log.h"
#include "dg/metrics.h"
#include "dg/progress.h"
#include "internal.h"

/* The lease outlives a renewal gap of several missed renewals. */
#define LEASE_MS 10000
#define LEASE_RENEW_MS 2000
/* How long XREADGROUP blocks: bounds how late a stop is noticed. */
#define BLOCK_MS 500
/* request_duck keeps applied requests for this long (replay, audit). */
#define REQUEST_RETENTION_MS (3600 * 1000)
/* An idle persister checkpoints after this long without requests. */
#define CHECKPOINT_IDLE_MS 1000
/* Persist at least every 50 ms under load: a read waits at most about this
 * long for a flush it did not ask for, and the transaction is large enough
 * (hundreds to tens of thousands of requests) that DuckDB's per-commit
 * cost (~1.5 ms) is spread thin. */
#define PERSIST_INTERVAL_MS_DEFAULT 50
/* ...or once this many requests wait: bounds a transaction's size. */
#define PERSIST_MAX_DEFAULT 20000
/* The unpersisted tail kept in memory: about 200-400 bytes a request of
 * bookkeeping plus its audit rows; the engine holds the state anyway. */
#define TAIL_MAX_DEFAULT 250000
/* A request_id repeats (is answered with the first outcome) within this
 * much stream time: a day of retries. */
#define IDEM_WINDOW_MS_DEFAULT (24LL * 3600 * 1000)
/* Persist attempts before the manager stops leading: with the backoff
 * below, about 12 s of a broken DuckDB. */
#define PERSIST_GIVE_UP 8
#define PERSIST_BACKOFF_MAX_MS 3000
/* How long a standby that stepped down because DuckDB broke waits before
 * it tries to lead again. */
#define BROKEN_PAUSE_MS 3000
/* Stream ids per XACK command. */
#define XACK_CHUNK 10000
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

static long env_long(const char *name, long def, long lo, long hi) {
  const char *v = getenv(name);
  if (v == NULL || *v == '\0') return def;
  char *end;
  long n = strtol(v, &end, 10);
  if (*end != '\0' || n < lo || n > hi) {
    dg_log_warn("manager: %s=%s is not in %ld..%ld; using %ld", name, v, lo, hi, def);
    return def;
  }
  return n;
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

mreq_t *dg__mgr_req_add(dg_manager_t *m, const char *sid, size_t len) {
  if (m->nreqs == m->reqs_cap) {
    m->reqs_cap = m->reqs_cap ? m->reqs_cap * 2 : 64;
    m->reqs = dg_realloc(m->reqs, m->reqs_cap * sizeof *m->reqs);
  }
  mreq_t *r = &m->reqs[m->nreqs++];
  memset(r, 0, sizeof *r);
  snprintf(r->stream_id, sizeof r->stream_id, "%.*s", (int)len, sid);
  return r;
}

/* The batch joins the unpersisted tail (state_lock held), after its
 * outcomes are in Redis. */
void dg__mgr_hand_over(dg_manager_t *m) {
  if (m->nreqs == 0) return;
  if (m->npend + m->nreqs > m->pend_cap) {
    m->pend_cap = m->pend_cap ? m->pend_cap : 256;
    while (m->pend_cap < m->npend + m->nreqs) m->pend_cap *= 2;
    m->pend = dg_realloc(m->pend, m->pend_cap * sizeof *m->pend);
  }
  for (size_t i = 0; i < m->nreqs; i++) {
    const mreq_t *r = &m->reqs[i];
    mpend_t *p = &m->pend[m->npend++];
    memcpy(p->stream_id, r->stream_id, sizeof p->stream_id);
    memcpy(p->request_id, r->request_id, sizeof p->request_id);
    memcpy(p->user, r->user, sizeof p->user);
    memcpy(p->table_name, r->table_name, sizeof p->table_name);
    memcpy(p->caller, r->caller, sizeof p->caller);
    p->idem = r->idem;
  }
  if (atomic_load(&m->pend_since_us) == 0) atomic_store(&m->pend_since_us, dg_mono_us());
  atomic_store(&m->npend_atomic, m->npend);
}

/* ---- the persister ------------------------------------------------------------------ */

static void persister_kick(void *arg) {
  dg_manager_t *m = arg;
  pthread_mutex_lock(&m->plock);
  m->flush_req = 1;
  pthread_cond_signal(&m->pcond);
  pthread_mutex_unlock(&m->plock);
}

/* XACKs persisted requests, in chunks, on the connection `r`. A failure
 * leaves them pending: recovery acknowledges them (they are at or below
 * dg.applied). */
static void xack(dg_manager_t *m, dg_redis_t *r, char (*ids)[DG_REDIS_XID_BUFSZ], size_t n) {
  for (size_t at = 0; at < n; at += XACK_CHUNK) {
    size_t k = n - at < XACK_CHUNK ? n - at : XACK_CHUNK;
    const char **argv = dg_malloc((k + 3) * sizeof *argv);
    argv[0] = "XACK";
    argv[1] = m->app->req_stream;
    argv[2] = GROUP;
    for (size_t i = 0; i < k; i++) argv[3 + i] = ids[at + i];
    redisReply *rep = NULL;
    if (dg_redis_command(r, (int)k + 3, argv, NULL, &rep) == 0) freeReplyObject(rep);
    dg_free(argv);
  }
}

/* After a commit: acknowledge, move the persisted mark, log slow ones. */
static void persisted(dg_manager_t *m, dg_redis_t *r, char (*ids)[DG_REDIS_XID_BUFSZ], size_t n,
                      int64_t took_us) {
  if (n == 0) return;
  xack(m, r, ids, n);
  dg_redis_xid_t last;
  if (dg_redis_xid_parse(ids[n - 1], strlen(ids[n - 1]), &last) == 0) dg_progress_persisted(m->app->progress, last);
  dg_metrics_batch(m->app->metrics, n, took_us);
  if (took_us >= 500 * 1000) {
    const double *st = m->persist_ms;
    dg_log_warn("persister: slow persist: %zu requests, %lld ms (rows %.0f, audit %.0f, idem %.0f, commit %.0f)", n,
                (long long)took_us / 1000, st[0], st[1], st[2], st[3]);
  }
}

static void *persister_run(void *arg) {
  dg_manager_t *m = arg;
  pthread_setname_np(pthread_self(), "dg-persister");
  int fails = 0, dirty = 0;
  int64_t last_work_us = dg_mono_us();
  for (;;) {
    pthread_mutex_lock(&m->plock);
    for (;;) {
      if (m->pstop) break;
      size_t n = atomic_load(&m->npend_atomic);
      int64_t since = atomic_load(&m->pend_since_us), now = dg_mono_us();
      int due = n > 0 && (m->flush_req || n >= m->persist_max || now - since >= m->persist_interval_us);
      /* A DDL persist on the manager thread leaves nothing in pend. */
      if (due || (m->flush_req && n == 0)) break;
      if (dirty && n == 0 && now - last_work_us >= CHECKPOINT_IDLE_MS * 1000) break;
      struct timespec until;
      int64_t wait_us = n > 0 ? m->persist_interval_us - (now - since) : 100 * 1000;
      if (wait_us < 1000) wait_us = 1000;
      dg_deadline_after_ms(&until, (int)(wait_us / 1000));
      pthread_cond_timedwait(&m->pcond, &m->plock, &until);
    }
    if (m->pstop) {
      pthread_mutex_unlock(&m->plock);
      break;
    }
    m->flush_req = 0;
    m->pwork = 1;
    pthread_mutex_unlock(&m->plock);

    char (*acked)[DG_REDIS_XID_BUFSZ] = NULL;
    size_t nacked = 0;
    char err[512] = "";
    int rc = 0;
    int64_t t0 = dg_mono_us();
    pthread_mutex_lock(&m->conn_lock);
    if (atomic_load(&m->npend_atomic) > 0) {
      rc = dg__mgr_persist(m, NULL, NULL, &acked, &nacked, err, sizeof err);
      if (rc == 0) dirty = 1;
    } else if (dirty) {
      /* Quiet now: fold the WAL into the database here, not inside a
       * commit under load (see the checkpoint_threshold in db.c). */
      dg_db_exec(m->conn, "CHECKPOINT", NULL, 0);
      dirty = 0;
    }
    pthread_mutex_unlock(&m->conn_lock);
    if (rc == 0) {
      persisted(m, m->predis, acked, nacked, dg_mono_us() - t0);
      fails = 0;
    } else {
      fails++;
      dg_log_error("persister: persisting failed (attempt %d of %d): %s", fails, PERSIST_GIVE_UP, err);
      if (fails >= PERSIST_GIVE_UP) {
        /* The manager stops leading; its tail is replayed from the log. */
        atomic_store(&m->broken, 1);
        fails = 0;
      } else {
        int backoff = 100 << (fails < 5 ? fails : 5);
        if (backoff > PERSIST_BACKOFF_MAX_MS) backoff = PERSIST_BACKOFF_MAX_MS;
        struct timespec until;
        dg_deadline_after_ms(&until, backoff);
        pthread_mutex_lock(&m->plock);
        if (!m->pstop) pthread_cond_timedwait(&m->pcond, &m->plock, &until);
        pthread_mutex_unlock(&m->plock);
      }
    }
    dg_free(acked);
    last_work_us = dg_mono_us();
    pthread_mutex_lock(&m->plock);
    m->pwork = 0;
    m->pdone++;
    pthread_cond_broadcast(&m->dcond);
    pthread_mutex_unlock(&m->plock);
  }
  return NULL;
}

/* Waits until the persister holds nothing: 0, or DG_EIO when DuckDB broke
 * (or we stop) first. */
static int drain(dg_manager_t *m) {
  pthread_mutex_lock(&m->plock);
  while ((atomic_load(&m->npend_atomic) > 0 || m->pwork) && !atomic_load(&m->broken) && !atomic_load(&m->stop)) {
    m->flush_req = 1;
    pthread_cond_signal(&m->pcond);
    struct timespec until;
    dg_deadline_after_ms(&until, 100);
    pthread_cond_timedwait(&m->dcond, &m->plock, &until);
  }
  int ok = atomic_load(&m->npend_atomic) == 0 && !m->pwork;
  pthread_mutex_unlock(&m->plock);
  return ok ? 0 : DG_EIO;
}

/* Stops leading: the in-memory state may be ahead of DuckDB and of what
 * was published, so it is dropped; become_leader loads it again and the
 * log's pending entries are applied on top. */
static void step_down(dg_manager_t *m, const char *why) {
  dg_log_warn("manager: standing by: %s", why);
  m->leader = 0;
  atomic_store(&m->app->manager_state, DG_MANAGER_STANDBY);
  pthread_mutex_lock(&m->conn_lock); /* waits out a persist under way */
  pthread_mutex_lock(&m->state_lock);
  dg__mgr_pend_drop(m);
  pthread_mutex_unlock(&m->state_lock);
  pthread_mutex_unlock(&m->conn_lock);
  dg__mgr_batch_clear(m);
}

/* ---- publishing -------------------------------------------------------------------- */

static char maxlen_arg[24];

/* XADDs each outcome under its request's id (pipelined). r->published is
 * set for each XADD Redis took (a refusal as "equal or smaller" means an
 * earlier run published it). DG_EIO when Redis failed. */
static int publish(dg_manager_t *m) {
  dg_app_t *app = m->app;
  size_t sent = 0;
  /* The published mark moves before the XADDs, not after: this process's
   * reader may read an outcome from Redis, wake its waiter and its live
   * clients while this thread is still collecting the replies (a loaded
   * machine deschedules it for many milliseconds there), and a read sent by
   * a client that saw the outcome must wait for it to be persisted. Were the
   * XADDs to fail, the manager steps down and the new leader's recovery
   * moves the persisted mark past it. */
  for (size_t i = m->nreqs; i-- > 0;) {
    dg_redis_xid_t x;
    if (m->reqs[i].duplicate || m->reqs[i].res == NULL) continue;
    if (dg_redis_xid_parse(m->reqs[i].stream_id, strlen(m->reqs[i].stream_id), &x) == 0)
      dg_progress_published(app->progress, x);
    break;
  }
  for (size_t i = 0; i < m->nreqs; i++) {
    mreq_t *r = &m->reqs[i];
    r->published = 0;
    if (r->duplicate || r->res == NULL) continue;
    char mac[DG_ENTRY_MAC_HEX + 1]; /* signed under its stream id: entry_mac.h */
    dg_entry_mac_res(app->stream_key, r->stream_id, strlen(r->stream_id), r->res, r->res_len, mac);
    const char *argv[] = {"XADD", app->res_stream, "MAXLEN", "~", maxlen_arg, r->stream_id, "res", r->res, "mac", mac};
    size_t lens[] = {4, strlen(app->res_stream), 6, 1, strlen(maxlen_arg), strlen(r->stream_id), 3, r->res_len, 3, 64};
    if (dg_redis_append(m->redis, 10, argv, lens) != 0) return DG_EIO;
    sent++;
  }
  int rc = 0;
  size_t k = 0;
  for (size_t i = 0; i < sent; i++) {
    redisReply *rep;
    while (k < m->nreqs && (m->reqs[k].duplicate || m->reqs[k].res == NULL)) k++;
    mreq_t *r = k < m->nreqs ? &m->reqs[k++] : NULL;
    if (dg_redis_get_reply(m->redis, &rep) != 0) {
      rc = DG_EIO;
      continue;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
      if (strstr(rep->str, "equal or smaller") == NULL) {
        dg_log_error("manager: publishing: %s", rep->str);
        rc = DG_EIO;
      } else if (r) {
        r->published = 2; /* there already */
      }
    } else if (r) {
      r->published = 1;
    }
    freeReplyObject(rep);
  }
  /* Test hook, honoured only with DUCKGRID_TEST_HOOKS=1: the manager pauses
   * here, after Redis took the outcomes, as a loaded machine may pause it
   * (tests/api/test_writebehind.py::test_read_after_write_while_the_manager_is_paused). */
  static long pause_ms = -1; /* only the manager thread publishes */
  if (pause_ms < 0)
    pause_ms = env_long("DUCKGRID_TEST_HOOKS", 0, 0, 1) == 1
                   ? env_long("DUCKGRID_TEST_PUBLISH_PAUSE_MS", 0, 0, 10000) : 0;
  if (pause_ms > 0 && sent > 0) usleep((useconds_t)pause_ms * 1000);
  return rc;
}

/* Raises the published mark to the batch's last outcome in Redis, before
 * any client is answered: a read that arrives after an answer waits for it. */
static void published_mark(dg_manager_t *m) {
  for (size_t i = m->nreqs; i-- > 0;) {
    dg_redis_xid_t x;
    if (m->reqs[i].published && dg_redis_xid_parse(m->reqs[i].stream_id, strlen(m->reqs[i].stream_id), &x) == 0) {
      dg_progress_published(m->app->progress, x);
      return;
    }
  }
}

/* Hands the batch's fresh outcomes to this process's reader pipeline and
 * moves the published mark. Outside state_lock. */
static void feed(dg_manager_t *m) {
  dg_app_t *app = m->app;
  size_t applied = 0, rejected = 0;
  dg_redis_xid_t top = {0, 0};
  int any = 0;
  for (size_t i = 0; i < m->nreqs; i++) {
    mreq_t *r = &m->reqs[i];
    if (!r->published) continue;
    dg_redis_xid_t x;
    if (dg_redis_xid_parse(r->stream_id, strlen(r->stream_id), &x) != 0) continue;
    top = x;
    any = 1;
    if (r->published != 1) continue;
    applied += !r->rejected;
    rejected += r->rejected;
    char prev[DG_REDIS_XID_BUFSZ] = "";
    if (m->res_top_known) dg_redis_xid_format(m->res_top, prev, sizeof prev);
    if (app->feed) app->feed(app->feed_arg, prev, r->stream_id, r->res, r->res_len);
    m->res_top = x;
    m->res_top_known = 1;
  }
  (void)any;
  (void)top;
  if (applied + rejected && app->feed_done) app->feed_done(app->feed_arg);
  dg_metrics_outcomes(app->metrics, applied, rejected);
}

/* ---- running batches --------------------------------------------------------------- */

typedef struct {
  const char *id;
  size_t id_len;
  const char *req;   /* NULL: entry without a usable `req` */
  size_t req_len;
  int ddl;           /* the request is DDL: it runs alone in its batch */
  int poison;        /* >0: reject with 500 instead of applying (poison) */
} entry_t;

/* A batch slower than this logs where its time went (a huge spread, a
 * slow Redis). */
#define SLOW_BATCH_MS 500

static void apply_entry(dg_manager_t *m, const entry_t *e) {
  mreq_t *r = dg__mgr_req_add(m, e->id, e->id_len);
  r->poison = e->poison;
  if (e->req == NULL) dg__mgr_apply(m, r, "{}", 2);
  else dg__mgr_apply(m, r, e->req, e->req_len);
}

static int run_batch(dg_manager_t *m, const entry_t *e, size_t n) {
  int64_t start = dg_mono_us();
  pthread_mutex_lock(&m->state_lock);
  for (size_t i = 0; i < n; i++) apply_entry(m, &e[i]);
  dg__mgr_batch_end(m, 1);
  int64_t applied = dg_mono_us();
  int rc = publish(m);
  if (rc != 0) {
    pthread_mutex_unlock(&m->state_lock);
    /* Some outcomes may be missing from Redis while the engine holds
     * their effects: start again from DuckDB and the log. */
    step_down(m, "publishing to Redis failed");
    return rc;
  }
  published_mark(m);
  dg__mgr_hand_over(m);
  pthread_mutex_unlock(&m->state_lock);
  int64_t published = dg_mono_us();
  feed(m);
  if (atomic_load(&m->npend_atomic) >= m->persist_max) persister_kick(m);
  int64_t end = dg_mono_us();
  if (end - start >= SLOW_BATCH_MS * 1000)
    dg_log_warn("manager: slow batch: %zu requests, %lld ms: apply %lld, publish %lld, feed %lld", m->nreqs,
                (long long)(end - start) / 1000, (long long)(applied - start) / 1000,
                (long long)(published - applied) / 1000, (long long)(end - published) / 1000);
  dg__mgr_batch_clear(m);
  return 0;
}

/* Replaces the outcome of the batch's one request by a 500 rejection. */
static void reject_with(mreq_t *r, const entry_t *e, const char *why) {
  dg_redis_xid_t x = {0, 0};
  dg_redis_xid_parse(r->stream_id, strlen(r->stream_id), &x);
  dg_buf_t b;
  dg_buf_init(&b);
  dg_jsonw_t w;
  dg_jsonw_init(&w, &b);
  json_t *o = e->req ? json_loadb(e->req, e->req_len, 0, NULL) : NULL;
  dg_jsonw_obj(&w);
  dg_jsonw_key(&w, "update_id");
  dg_jsonw_str(&w, r->stream_id);
  dg_jsonw_key(&w, "stream_id");
  dg_jsonw_str(&w, r->stream_id);
  dg_jsonw_key(&w, "request_id");
  dg_jsonw_str(&w, r->request_id);
  dg_jsonw_key(&w, "user");
  dg_jsonw_str(&w, json_string_value(json_object_get(o, "user")));
  dg_jsonw_key(&w, "op");
  dg_jsonw_str(&w, json_string_value(json_object_get(o, "op")));
  dg_jsonw_key(&w, "table");
  dg_jsonw_str(&w, json_string_value(json_object_get(o, "table")));
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
  dg__mgr_time_iso(x.ms, ts, sizeof ts);
  dg_jsonw_key(&w, "ts");
  dg_jsonw_str(&w, ts);
  dg_jsonw_key(&w, "changes");
  dg_jsonw_raw(&w, "[]", 2);
  dg_jsonw_end(&w);
  json_decref(o);
  dg_free(r->res);
  r->res_len = b.len;
  r->res = dg_buf_steal(&b);
  r->rejected = 1;
}

static int publish_hook(dg_manager_t *m, void *arg) {
  int *published = arg;
  int rc = publish(m);
  *published = rc == 0;
  if (rc == 0) published_mark(m);
  return rc;
}

/* A DDL request: a barrier (see the design note). */
static int run_ddl_entry(dg_manager_t *m, const entry_t *e) {
  if (drain(m) != 0) {
    step_down(m, "DuckDB does not take the tail before a DDL request");
    return DG_EIO;
  }
  pthread_mutex_lock(&m->conn_lock);
  pthread_mutex_lock(&m->state_lock);
  apply_entry(m, e);
  dg__mgr_batch_end(m, 1);
  mreq_t *r = &m->reqs[0];
  dg__mgr_hand_over(m);
  pthread_mutex_unlock(&m->state_lock);
  char (*acked)[DG_REDIS_XID_BUFSZ] = NULL;
  size_t nacked = 0;
  char err[512] = "";
  int published = 0;
  int64_t t0 = dg_mono_us();
  int rc = dg__mgr_persist(m, publish_hook, &published, &acked, &nacked, err, sizeof err);
  if (rc == DG_EIO) {
    /* A statement failed before anything was published: undo the
     * request (reload from DuckDB, which holds everything before it) and
     * publish a rejection instead. */
    dg_log_error("manager: DDL request %s failed in DuckDB: %s", r->stream_id, err);
    pthread_mutex_lock(&m->state_lock);
    dg__mgr_pend_drop(m);
    char lerr[256];
    if (dg__mgr_load(m, lerr, sizeof lerr) != 0) dg_log_error("manager: reload failed: %s", lerr);
    reject_with(r, e, err);
    if (r->idem) {
      pthread_mutex_lock(&m->idem_lock);
      dg_redis_xid_t x = {0, 0};
      dg_redis_xid_parse(r->stream_id, strlen(r->stream_id), &x);
      dg__mgr_idem_add(&m->idem, dg__mgr_idem_key(r->caller, r->request_id), x);
      pthread_mutex_unlock(&m->idem_lock);
    }
    rc = publish(m);
    if (rc == 0) {
      published_mark(m);
      dg__mgr_hand_over(m);
    }
    pthread_mutex_unlock(&m->state_lock);
    pthread_mutex_unlock(&m->conn_lock);
    if (rc != 0) {
      step_down(m, "publishing to Redis failed");
      return rc;
    }
    feed(m);
    dg__mgr_batch_clear(m);
    return 0;
  }
  if (rc != 0 && !published) {
    pthread_mutex_unlock(&m->conn_lock);
    step_down(m, "publishing to Redis failed");
    return rc;
  }
  /* Published; COMMIT failed: retry the transaction (the outcome stands). */
  for (int attempt = 1; rc != 0 && attempt < PERSIST_GIVE_UP && !atomic_load(&m->stop); attempt++) {
    dg_log_error("manager: committing DDL %s failed (attempt %d): %s", r->stream_id, attempt, err);
    usleep((useconds_t)(100 * 1000) << (attempt < 4 ? attempt : 4));
    rc = dg__mgr_persist(m, NULL, NULL, &acked, &nacked, err, sizeof err);
  }
  pthread_mutex_unlock(&m->conn_lock);
  if (rc != 0) {
    atomic_store(&m->broken, 1);
    step_down(m, "DuckDB does not commit a DDL request");
    return rc;
  }
  persisted(m, m->redis, acked, nacked, dg_mono_us() - t0);
  dg_free(acked);
  feed(m);
  dg__mgr_batch_clear(m);
  return 0;
}

/* Splits entries into batches, each DDL request alone. */
static int run_entries(dg_manager_t *m, const entry_t *e, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (e[i].ddl) {
      int rc = run_ddl_entry(m, &e[i]);
      if (rc != 0) return rc;
      i++;
      continue;
    }
    size_t j = i + 1;
    while (j < n && !e[j].ddl) j++;
    int rc = run_batch(m, &e[i], j - i);
    if (rc != 0) return rc;
    i = j;
  }
  return 0;
}

/* Reads an XREADGROUP reply into entries (borrowing from the reply). */
static size_t entries_of(dg_manager_t *m, redisReply *rep, entry_t **out) {
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
    int has = !x.deleted && dg_entry_open_req(m->app, &x, &v) == 0; /* MAC checked: entry_mac.h */
    e[n] = (entry_t){x.id.ptr, x.id.len, has ? v.ptr : NULL, has ? v.len : 0, 0, 0};
    e[n].ddl = has && dg__mgr_is_ddl(v.ptr, v.len);
    n++;
  }
  *out = e;
  return n;
}

/* ---- recovery ------------------------------------------------------------------------ */

/* ---- poison requests --------------------------------------------------------------
 *
 * A request whose apply crashes the process would crash every start at
 * recovery. The consumer group counts deliveries: an entry delivered live
 * (1) and again by a recovery (2) that still comes back (3 or more) was in
 * the tail when a recovery died. Such entries are applied one at a time,
 * each after counting the attempt in a Redis hash (poison_key, stream id ->
 * attempts, removed once the outcome is published). An entry whose count
 * exceeds poison_attempts is not applied again: it gets a 500 rejection
 * and the log goes on. The count lives in Redis, not in the process, so it
 * survives the crash it counts. */
#define POISON_SUSPECT_DELIVERIES 3

/* Delivery counts of the pending entries ids[0..n-1] (0 when unknown). */
static void delivery_counts(dg_manager_t *m, char (*ids)[DG_REDIS_XID_BUFSZ], size_t n, long long *out) {
  memset(out, 0, n * sizeof *out);
  if (n == 0) return;
  char count[24];
  snprintf(count, sizeof count, "%zu", n);
  const char *argv[] = {"XPENDING", m->app->req_stream, GROUP, ids[0], ids[n - 1], count};
  redisReply *rep = cmd(m, 6, argv);
  if (rep == NULL) return;
  size_t k = 0;
  for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++) {
    redisReply *p = rep->element[i];
    if (p->type != REDIS_REPLY_ARRAY || p->elements < 4 || p->element[0]->type != REDIS_REPLY_STRING ||
        p->element[3]->type != REDIS_REPLY_INTEGER)
      continue;
    while (k < n && strcmp(ids[k], p->element[0]->str) != 0) k++;
    if (k < n) out[k++] = p->element[3]->integer;
  }
  freeReplyObject(rep);
}

static long long poison_count(dg_manager_t *m, const char *field, int incr) {
  const char *argv[] = {incr ? "HINCRBY" : "HDEL", m->poison_key, field, "1"};
  redisReply *rep = cmd(m, incr ? 4 : 3, argv);
  if (rep == NULL) return -1;
  long long v = rep->type == REDIS_REPLY_INTEGER ? rep->integer : -1;
  freeReplyObject(rep);
  return v;
}

/* Applies one suspect entry, counting the attempt first. */
static int run_suspect(dg_manager_t *m, const entry_t *e0) {
  entry_t e = *e0;
  char id[DG_REDIS_XID_BUFSZ];
  snprintf(id, sizeof id, "%.*s", (int)e.id_len, e.id);
  long long attempts = poison_count(m, id, 1);
  if (attempts < 0) return DG_EUNAVAIL;
  if (attempts > m->poison_attempts) {
    e.poison = (int)(attempts - 1);
    dg_log_error("manager: request %s stopped the manager %lld time(s): rejected with 500 (poison)", id,
                 attempts - 1);
  }
  int rc = run_entries(m, &e, 1);
  if (rc == 0) poison_count(m, id, 0);
  return rc;
}

/* Re-reads this consumer's pending entries: acknowledges what DuckDB holds
 * (committed, not acknowledged), applies the rest in order. */
static int recover(dg_manager_t *m) {
  char cursor[DG_REDIS_XID_BUFSZ] = "0";
  size_t reapplied = 0, acked = 0;
  for (;;) {
    const char *argv[] = {"XREADGROUP", "GROUP", GROUP, CONSUMER, "COUNT", "1000", "STREAMS",
                          m->app->req_stream, cursor};
    redisReply *rep = cmd(m, 9, argv);
    if (rep == NULL) return DG_EUNAVAIL;
    entry_t *e;
    size_t n = entries_of(m, rep, &e);
    if (n == 0) {
      freeReplyObject(rep);
      dg_free(e);
      break;
    }
    size_t done = 0;
    char (*ids)[DG_REDIS_XID_BUFSZ] = dg_malloc(n * sizeof *ids);
    for (size_t i = 0; i < n; i++) {
      snprintf(ids[done], sizeof ids[done], "%.*s", (int)e[i].id_len, e[i].id);
      if (!xid_le(ids[done], m->last_applied)) break;
      done++;
    }
    if (done) xack(m, m->redis, ids, done);
    for (size_t i = done; i < n; i++) snprintf(ids[i], sizeof ids[i], "%.*s", (int)e[i].id_len, e[i].id);
    long long *deliveries = dg_malloc((n - done + 1) * sizeof *deliveries);
    delivery_counts(m, ids + done, n - done, deliveries);
    dg_free(ids);
    acked += done;
    reapplied += n - done;
    int rc = 0;
    /* Entries before the first suspect run in batches, the rest one by one. */
    size_t first = done;
    while (first < n && deliveries[first - done] < POISON_SUSPECT_DELIVERIES) first++;
    if (first > done) rc = run_entries(m, e + done, first - done);
    for (size_t i = first; rc == 0 && i < n; i++) rc = run_suspect(m, &e[i]);
    dg_free(deliveries);
    snprintf(cursor, sizeof cursor, "%.*s", (int)e[n - 1].id_len, e[n - 1].id);
    freeReplyObject(rep);
    dg_free(e);
    if (rc != 0) return rc;
  }
  if (acked || reapplied)
    dg_log_info("manager: recovery acknowledged %zu persisted request(s), applied %zu again", acked, reapplied);
  return 0;
}

/* The newest entry of response_duck, so the manager's own outcomes can go
 * to the reader directly once it has read up to there. */
static void res_top_read(dg_manager_t *m) {
  const char *argv[] = {"XREVRANGE", m->app->res_stream, "+", "-", "COUNT", "1"};
  redisReply *rep = cmd(m, 6, argv);
  m->res_top_known = 0;
  if (rep == NULL) return;
  dg_redis_xiter_t it;
  dg_redis_xentry_t e;
  m->res_top = (dg_redis_xid_t){0, 0};
  if (dg_redis_xiter_init_xrange(&it, rep) == 0 && dg_redis_xiter_next(&it, &e))
    dg_redis_xid_parse(e.id.ptr, e.id.len, &m->res_top);
  m->res_top_known = 1;
  freeReplyObject(rep);
}

static int become_leader(dg_manager_t *m) {
  char err[512];
  pthread_mutex_lock(&m->conn_lock);
  pthread_mutex_lock(&m->state_lock);
  dg__mgr_pend_drop(m);
  int rc = dg__mgr_load(m, err, sizeof err);
  pthread_mutex_unlock(&m->state_lock);
  pthread_mutex_unlock(&m->conn_lock);
  if (rc != 0) {
    dg_log_error("manager: cannot load the database: %s", err);
    return DG_EIO;
  }
  dg_redis_xid_t applied;
  if (dg_redis_xid_parse(m->last_applied, strlen(m->last_applied), &applied) == 0)
    dg_progress_persisted(m->app->progress, applied);
  atomic_store(&m->broken, 0);
  atomic_store(&m->app->manager_broken, 0);
  const char *argv[] = {"XGROUP", "CREATE", m->app->req_stream, GROUP, m->last_applied, "MKSTREAM"};
  redisReply *rep = cmd(m, 6, argv);
  if (rep == NULL) return DG_EUNAVAIL;
  if (rep->type == REDIS_REPLY_ERROR && strstr(rep->str, "BUSYGROUP") == NULL) {
    dg_log_error("manager: XGROUP CREATE: %s", rep->str);
    freeReplyObject(rep);
    return DG_EIO;
  }
  freeReplyObject(rep);
  res_top_read(m);
  m->leader = 1; /* recovery runs batches as a leader does */
  rc = recover(m);
  if (rc != 0) {
    if (m->leader) step_down(m, "recovery failed");
    return rc;
  }
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
  char last[DG_REDIS_XID_BUFSZ];
  pthread_mutex_lock(&m->state_lock);
  memcpy(last, m->last_applied, sizeof last);
  pthread_mutex_unlock(&m->state_lock);
  dg_archive_clamp(m->app->archive, last, sizeof last); /* trim only what is archived */
  dg_redis_xid_t applied;
  if (dg_redis_xid_parse(last, strlen(last), &applied) != 0) return;
  uint64_t keep_from = (uint64_t)(now_ms() - REQUEST_RETENTION_MS);
  if (keep_from > applied.ms) keep_from = applied.ms; /* never beyond what is persisted */
  char minid[32];
  snprintf(minid, sizeof minid, "%" PRIu64 "-0", keep_from);
  const char *argv[] = {"XTRIM", m->app->req_stream, "MINID", "~", minid};
  redisReply *rep = cmd(m, 5, argv);
  if (rep) freeReplyObject(rep);
}

/* Bounds request_duck by count as well: the oldest entries beyond
 * request_maxlen go, but only those at or below the persisted watermark
 * (ARGV[2]), at most ARGV[3] per call (the script reads their ids with
 * XRANGE, so one call stays short). Atomic, so entries added meanwhile
 * cannot shift the cut above what is persisted. Returns entries removed. */
static const char *TRIM_COUNT_LUA =
    "local len = redis.call('XLEN', KEYS[1]) "
    "local excess = len - tonumber(ARGV[1]) "
    "if excess <= 0 then return 0 end "
    "if excess > tonumber(ARGV[3]) then excess = tonumber(ARGV[3]) end "
    "local r = redis.call('XRANGE', KEYS[1], '-', ARGV[2], 'COUNT', excess) "
    "if #r == 0 then return 0 end "
    "local ms, seq = string.match(r[#r][1], '^(%d+)-(%d+)$') "
    "return redis.call('XTRIM', KEYS[1], 'MINID', ms .. '-' .. string.format('%d', tonumber(seq) + 1))";
#define TRIM_COUNT_STEP 20000

static void trim_requests_count(dg_manager_t *m) {
  char last[DG_REDIS_XID_BUFSZ], maxlen[24], step[24];
  pthread_mutex_lock(&m->state_lock);
  memcpy(last, m->last_applied, sizeof last);
  pthread_mutex_unlock(&m->state_lock);
  dg_archive_clamp(m->app->archive, last, sizeof last); /* trim only what is archived */
  if (strcmp(last, "0-0") == 0) return;
  snprintf(maxlen, sizeof maxlen, "%ld", m->request_maxlen);
  snprintf(step, sizeof step, "%d", TRIM_COUNT_STEP);
  const char *argv[] = {"EVAL", TRIM_COUNT_LUA, "1", m->app->req_stream, maxlen, last, step};
  redisReply *rep = cmd(m, 7, argv);
  if (rep && rep->type == REDIS_REPLY_ERROR) dg_log_warn("manager: trimming request_duck by count: %s", rep->str);
  if (rep) freeReplyObject(rep);
}

/* Idempotency records older than the window (stream time, from the last
 * persisted request) can no longer match: dropped from dg.idem and from the
 * map. Which ones are dropped does not change what apply decides. */
static void trim_idem(dg_manager_t *m) {
  pthread_mutex_lock(&m->conn_lock);
  pthread_mutex_lock(&m->state_lock);
  dg_redis_xid_t applied = {0, 0};
  dg_redis_xid_parse(m->last_applied, strlen(m->last_applied), &applied);
  int64_t from = (int64_t)applied.ms - m->idem_window_ms;
  if (from > 0) {
    pthread_mutex_lock(&m->idem_lock);
    dg__mgr_idem_prune(&m->idem, (uint64_t)from);
    pthread_mutex_unlock(&m->idem_lock);
  }
  pthread_mutex_unlock(&m->state_lock);
  if (from > 0) {
    duckdb_prepared_statement st;
    if (duckdb_prepare(m->conn, "DELETE FROM dg.idem WHERE ms < $1", &st) == DuckDBSuccess) {
      duckdb_bind_int64(st, 1, from);
      duckdb_result res;
      duckdb_execute_prepared(st, &res);
      duckdb_destroy_result(&res);
    }
    duckdb_destroy_prepare(&st);
  }
  pthread_mutex_unlock(&m->conn_lock);
}

static int idem_lookup(void *arg, const char *caller, const char *request_id, char *out, size_t cap) {
  dg_manager_t *m = arg;
  if (atomic_load(&m->app->manager_state) != DG_MANAGER_LEADER) return 0;
  dg_redis_xid_t id;
  pthread_mutex_lock(&m->idem_lock);
  int found = dg__mgr_idem_find(&m->idem, dg__mgr_idem_key(caller, request_id), 0, 0, &id);
  pthread_mutex_unlock(&m->idem_lock);
  if (found) dg_redis_xid_format(id, out, cap);
  return found;
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
  int64_t broken_at = 0;
  while (!atomic_load(&m->stop)) {
    if (atomic_load(&m->broken)) {
      /* DuckDB kept failing: let another node lead, say so in /health,
       * and try again after a pause. */
      atomic_store(&app->manager_broken, 1);
      if (m->leader) {
        step_down(m, "DuckDB keeps failing to persist");
        lease_release(m);
      }
      atomic_store(&m->broken, 0);
      broken_at = now_ms();
    }
    if (!m->leader) {
      if (broken_at && now_ms() - broken_at < BROKEN_PAUSE_MS) {
        usleep(100 * 1000);
        continue;
      }
      if (!lease_acquire(m) && lease_renew(m) != 1) {
        atomic_store(&app->manager_state, DG_MANAGER_STANDBY);
        usleep(300 * 1000);
        continue;
      }
      if (become_leader(m) != 0) {
        usleep(300 * 1000);
        continue;
      }
      broken_at = 0;
    }
    int64_t now = now_ms();
    if (now - m->lease_renewed_ms >= LEASE_RENEW_MS) {
      int r = lease_renew(m);
      if (r == 0 || (r < 0 && now - m->lease_renewed_ms >= LEASE_MS)) {
        step_down(m, "lost the lease");
        continue;
      }
    }
    if (now - m->lag_checked_ms >= 1000) {
      update_lag(m);
      trim_requests_count(m);
      m->lag_checked_ms = now;
    }
    if (now - m->trimmed_ms >= 10000) {
      trim_requests(m);
      m->trimmed_ms = now;
    }
    if (now - m->idem_pruned_ms >= 60000) {
      trim_idem(m);
      m->idem_pruned_ms = now;
    }
    /* The tail in memory is capped: wait for the persister. */
    if (atomic_load(&m->npend_atomic) >= m->tail_max) {
      persister_kick(m);
      pthread_mutex_lock(&m->plock);
      struct timespec until;
      dg_deadline_after_ms(&until, 100);
      if (atomic_load(&m->npend_atomic) >= m->tail_max) pthread_cond_timedwait(&m->dcond, &m->plock, &until);
      pthread_mutex_unlock(&m->plock);
      continue;
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
      step_down(m, "request_duck has no consumer group");
      usleep(100 * 1000);
      continue;
    }
    entry_t *e;
    size_t n = entries_of(m, rep, &e);
    /* After a Redis failover the new master may deliver again entries this
     * manager has applied and published already (it had not received their
     * delivery): they are in the unpersisted tail or in DuckDB, and stay
     * pending until the persister acknowledges them. Skip them: never apply
     * a request twice. */
    size_t skip = 0;
    if (n) {
      dg_redis_xid_t pub, per, x;
      dg_progress_get(app->progress, &pub, &per);
      while (skip < n && dg_redis_xid_parse(e[skip].id, e[skip].id_len, &x) == 0 && dg_redis_xid_cmp(x, pub) <= 0)
        skip++;
      if (skip) dg_log_warn("manager: %zu entries delivered again (Redis failover?) skipped: applied already", skip);
    }
    if (n > skip && run_entries(m, e + skip, n - skip) != 0 && m->leader) step_down(m, "a batch failed");
    dg_free(e);
    freeReplyObject(rep);
  }
  if (m->leader) {
    /* A clean stop persists the tail first, so a restart replays nothing. */
    persister_kick(m);
    drain(m);
    lease_release(m);
  }
  atomic_store(&app->manager_state, DG_MANAGER_OFF);
  return NULL;
}

/* The settings apply depends on: a replay (replay.c) must use the same. */
void dg__mgr_apply_settings(dg_manager_t *m) {
  m->idem_window_ms = (int64_t)env_long("DUCKGRID_IDEMPOTENCY_WINDOW_MS", (long)IDEM_WINDOW_MS_DEFAULT, 1000,
                                        366L * 24 * 3600 * 1000);
  /* API v1.1: outcomes list at most 10,000 changes (a larger one is paged
   * from the audit log); a request may change at most 5,000,000 cells. */
  m->outcome_changes_max = (size_t)env_long("DUCKGRID_OUTCOME_CHANGES_MAX", 10000, 1, 1000000000);
  m->request_changes_max = (size_t)env_long("DUCKGRID_REQUEST_CHANGES_MAX", 5000000, 1, 1000000000);
}

int dg_manager_start(dg_app_t *app, const dg_redis_url_t *url, const dg_redis_opts_t *opts,
                     dg_manager_t **out) {
  dg_manager_t *m = dg_calloc(1, sizeof *m);
  m->app = app;
  char err[200];
  if (dg_redis_create(url, opts, &m->redis, err, sizeof err) != 0 ||
      dg_redis_create(url, opts, &m->predis, err, sizeof err) != 0 || dg_db_connect(app->db, &m->conn) != 0) {
    dg_redis_destroy(m->redis);
    dg_redis_destroy(m->predis);
    dg_free(m);
    return DG_EIO;
  }
  char host[64] = "host";
  gethostname(host, sizeof host - 1);
  snprintf(m->lease_value, sizeof m->lease_value, "%.40s:%d:%lld", host, (int)getpid(), (long long)now_ms());
  snprintf(m->consumer, sizeof m->consumer, CONSUMER);
  snprintf(m->last_applied, sizeof m->last_applied, "0-0");
  m->persist_interval_us = env_long("DUCKGRID_PERSIST_INTERVAL_MS", PERSIST_INTERVAL_MS_DEFAULT, 1, 60000) * 1000;
  m->persist_max = (size_t)env_long("DUCKGRID_PERSIST_MAX", PERSIST_MAX_DEFAULT, 1, 10000000);
  m->tail_max = (size_t)env_long("DUCKGRID_TAIL_MAX", TAIL_MAX_DEFAULT, 1, 100000000);
  dg__mgr_apply_settings(m);
  m->request_maxlen = env_long("DUCKGRID_REQUEST_MAXLEN", 1000000, 1, 1000000000);
  m->poison_attempts = env_long("DUCKGRID_POISON_ATTEMPTS", 3, 1, 1000);
  snprintf(m->poison_key, sizeof m->poison_key, "%spoison", app->req_stream);
  /* Test-only (documented as such in the README): abort while applying the
   * request with this request_id, to test poison handling. Never set it in
   * a deployment; without DUCKGRID_TEST_HOOKS=1 it is ignored. */
  const char *hooks = getenv("DUCKGRID_TEST_HOOKS");
  const char *crash = getenv("DUCKGRID_TEST_CRASH_ON");
  if (hooks && strcmp(hooks, "1") == 0 && crash && *crash) {
    m->test_crash_on = dg_strdup(crash);
    dg_log_warn("manager: test hook: a request with request_id %s aborts the process", crash);
  }
  m->changes = dg_changes_create();
  dg_buf_init(&m->json);
  pthread_mutex_init(&m->state_lock, NULL);
  pthread_mutex_init(&m->conn_lock, NULL);
  pthread_mutex_init(&m->idem_lock, NULL);
  pthread_mutex_init(&m->plock, NULL);
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_cond_init(&m->pcond, &attr);
  pthread_cond_init(&m->dcond, &attr);
  pthread_condattr_destroy(&attr);
  app->idem_lookup = idem_lookup;
  app->idem_arg = m;
  dg_progress_set_kick(app->progress, persister_kick, m);
  if (pthread_create(&m->pthread, NULL, persister_run, m) != 0) {
    dg_changes_destroy(m->changes);
    dg_db_disconnect(&m->conn);
    dg_redis_destroy(m->redis);
    dg_redis_destroy(m->predis);
    dg_free(m);
    return DG_EIO;
  }
  if (pthread_create(&m->thread, NULL, run, m) != 0) {
    pthread_mutex_lock(&m->plock);
    m->pstop = 1;
    pthread_cond_signal(&m->pcond);
    pthread_mutex_unlock(&m->plock);
    pthread_join(m->pthread, NULL);
    dg_changes_destroy(m->changes);
    dg_db_disconnect(&m->conn);
    dg_redis_destroy(m->redis);
    dg_redis_destroy(m->predis);
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
  dg_progress_set_kick(m->app->progress, NULL, NULL);
  m->app->idem_lookup = NULL;
  pthread_mutex_lock(&m->plock);
  m->pstop = 1;
  pthread_cond_signal(&m->pcond);
  pthread_mutex_unlock(&m->plock);
  pthread_join(m->pthread, NULL);
  dg_free(m->test_crash_on);
  dg__mgr_release(m);
  dg_redis_destroy(m->redis);
  dg_redis_destroy(m->predis);
  pthread_cond_destroy(&m->pcond);
  pthread_cond_destroy(&m->dcond);
  dg_free(m);
}

/* Frees the state, the batch, the tail, the DuckDB connection and the
 * locks (not the threads, Redis or conditions: dg_manager_stop). */
void dg__mgr_release(dg_manager_t *m) {
  dg__mgr_batch_clear(m);
  pthread_mutex_lock(&m->state_lock);
  dg__mgr_pend_drop(m);
  pthread_mutex_unlock(&m->state_lock);
  for (uint32_t i = 0; i < m->ntables; i++) dg__mgr_table_free(m->tables[i]);
  dg_free(m->tables);
  for (size_t i = 0; i < m->nviews; i++) dg_free(m->views[i]);
  dg_free(m->views);
  dg__mgr_idem_dispose(&m->idem);
  dg_free(m->reqs);
  dg_free(m->hist);
  dg_free(m->pend);
  dg_free(m->ddl);
  dg_changes_destroy(m->changes);
  dg_buf_dispose(&m->json);
  dg__mgr_persist_dispose(m);
  dg_db_disconnect(&m->conn);
  pthread_mutex_destroy(&m->plock);
  pthread_mutex_destroy(&m->idem_lock);
  pthread_mutex_destroy(&m->conn_lock);
  pthread_mutex_destroy(&m->state_lock);
}
