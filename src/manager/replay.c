/*
 * replay.c -- the manager's apply and persist, driven by a caller instead
 * of the consumer group: no Redis, no lease, nothing published.
 *
 * It holds a dg_manager_t of its own, loaded from DuckDB as a leader loads
 * it (dg__mgr_load), and runs entries the way manager.c runs them: plain
 * requests applied in batches of up to BATCH under state_lock (batch_end,
 * hand-over to the unpersisted tail), the tail persisted by a persister
 * thread of its own in transactions of PERSIST_MAX or more requests while
 * the caller goes on applying -- the manager's own two-thread split, with
 * its invariant: the persister reads the engine under state_lock, which is
 * held from a batch's first apply to its hand-over, so what it writes is
 * exactly the state after the last request of the tail it takes. The tail
 * is bounded (TAIL_MAX: the caller waits for the persister above it).
 *
 * A DDL request is a barrier (the persister drained, the tail persisted,
 * then the DDL applied and persisted alone on the caller's thread; a DDL
 * statement DuckDB refuses undoes it by reloading, and the request stays,
 * rejected, in the log -- as run_ddl_entry does). Apply is a pure function
 * of (state, request) and a persist writes net effects and every audit row
 * whatever the tail's length, so the result is the state the manager wrote
 * for the same log (tests/api/test_snapshots.py compares every table).
 */
#include "dg/replay.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dg/common.h"
#include "dg/redis.h"
#include "internal.h"

#define BATCH 1024
#define PERSIST_MAX_DEFAULT 20000

struct dg_replay_s {
  dg_manager_t m;
  size_t count;
  char at[DG_REDIS_XID_BUFSZ];
  char (*poisoned)[DG_REDIS_XID_BUFSZ]; /* ids the leader rejected as poison */
  int *poison_times;
  size_t npoisoned;
  size_t persist_max;            /* a persist once the tail is this long      */
  size_t tail_max;               /* the caller waits above this               */
  int in_batch;                  /* the caller holds state_lock: a batch is open */
  /* The persister (m.plock guards what follows; m.pcond wakes it, m.dcond
   * says a persist ended). It persists holding conn_lock; the caller's
   * own persists (DDL, flush) take conn_lock too, after draining it. */
  pthread_t pthread;
  int pthread_started;
  int want;                      /* persist the tail now                      */
  int busy;                      /* a persist is under way                    */
  int stop;
  int bg_rc;                     /* the first failed background persist       */
  char bg_err[512];
  int64_t us_apply, us_batch, us_wait, us_persist, us_bg; /* dg_replay_times */
};

void dg_replay_times(const dg_replay_t *r, double *apply_s, double *batch_s, double *persist_s) {
  *apply_s = (double)r->us_apply / 1e6;
  *batch_s = (double)r->us_batch / 1e6;
  *persist_s = (double)(r->us_persist + r->us_wait) / 1e6;
}

double dg_replay_persist_thread_s(const dg_replay_t *r) { return (double)r->us_bg / 1e6; }

void dg_replay_poisoned(dg_replay_t *r, const char *id, int times) {
  r->poisoned = dg_realloc(r->poisoned, (r->npoisoned + 1) * sizeof *r->poisoned);
  r->poison_times = dg_realloc(r->poison_times, (r->npoisoned + 1) * sizeof *r->poison_times);
  snprintf(r->poisoned[r->npoisoned], sizeof r->poisoned[0], "%s", id);
  r->poison_times[r->npoisoned++] = times;
}

/* Few: a poison request is a bug's footprint, not traffic. */
static int poison_of(const dg_replay_t *r, const char *id, size_t idlen) {
  for (size_t i = 0; i < r->npoisoned; i++)
    if (strlen(r->poisoned[i]) == idlen && memcmp(r->poisoned[i], id, idlen) == 0) return r->poison_times[i];
  return 0;
}

static int persist(dg_manager_t *m, char *err, size_t errcap) {
  char (*acked)[DG_REDIS_XID_BUFSZ] = NULL;
  size_t nacked = 0;
  int rc = dg__mgr_persist(m, NULL, NULL, &acked, &nacked, err, errcap);
  dg_free(acked);
  return rc;
}

static void *persister(void *arg) {
  dg_replay_t *r = arg;
  dg_manager_t *m = &r->m;
  pthread_mutex_lock(&m->plock);
  for (;;) {
    while (!r->want && !r->stop) pthread_cond_wait(&m->pcond, &m->plock);
    if (!r->want) break;
    r->want = 0;
    r->busy = 1;
    pthread_mutex_unlock(&m->plock);
    char err[512] = "";
    int64_t t0 = dg_mono_us();
    pthread_mutex_lock(&m->conn_lock);
    int rc = persist(m, err, sizeof err);
    pthread_mutex_unlock(&m->conn_lock);
    pthread_mutex_lock(&m->plock);
    r->us_bg += dg_mono_us() - t0;
    if (rc != 0 && r->bg_rc == 0) {
      r->bg_rc = rc;
      snprintf(r->bg_err, sizeof r->bg_err, "%s", err);
    }
    r->busy = 0;
    pthread_cond_broadcast(&m->dcond);
  }
  pthread_mutex_unlock(&m->plock);
  return NULL;
}

int dg_replay_open(dg_db_t *db, dg_replay_t **out, char *err, size_t errcap) {
  dg_replay_t *r = dg_calloc(1, sizeof *r);
  dg_manager_t *m = &r->m;
  if (dg_db_connect(db, &m->conn) != 0) {
    snprintf(err, errcap, "no DuckDB connection");
    dg_free(r);
    return DG_EIO;
  }
  dg__mgr_apply_settings(m);
  m->changes = dg_changes_create();
  dg_buf_init(&m->json);
  pthread_mutex_init(&m->state_lock, NULL);
  pthread_mutex_init(&m->conn_lock, NULL);
  pthread_mutex_init(&m->idem_lock, NULL);
  pthread_mutex_init(&m->plock, NULL);
  pthread_cond_init(&m->pcond, NULL);
  pthread_cond_init(&m->dcond, NULL);
  snprintf(m->last_applied, sizeof m->last_applied, "0-0");
  r->persist_max = PERSIST_MAX_DEFAULT;
  const char *pm = getenv("DUCKGRID_RESTORE_PERSIST_MAX");
  if (pm && atol(pm) >= 1 && atol(pm) <= 10000000) r->persist_max = (size_t)atol(pm);
  r->tail_max = 4 * r->persist_max;
  pthread_mutex_lock(&m->state_lock);
  int rc = dg__mgr_load(m, err, errcap);
  pthread_mutex_unlock(&m->state_lock);
  memcpy(r->at, m->last_applied, sizeof r->at);
  if (rc == 0) {
    if (pthread_create(&r->pthread, NULL, persister, r) != 0) {
      snprintf(err, errcap, "cannot start the persister thread");
      rc = DG_EIO;
    } else {
      r->pthread_started = 1;
    }
  }
  *out = r;
  return rc;
}

const char *dg_replay_at(const dg_replay_t *r) { return r->at; }
size_t dg_replay_count(const dg_replay_t *r) { return r->count; }

/* Ends the batch in hand, if one is open: it joins the tail and state_lock
 * is let go. Returns the tail's length. */
static size_t batch_done(dg_replay_t *r) {
  dg_manager_t *m = &r->m;
  if (!r->in_batch) return atomic_load(&m->npend_atomic);
  dg__mgr_batch_end(m, 1);
  dg__mgr_hand_over(m);
  size_t n = m->npend;
  r->in_batch = 0;
  pthread_mutex_unlock(&m->state_lock);
  dg__mgr_batch_clear(m);
  return n;
}

/* Waits until the persister is idle and has nothing asked of it; its
 * failure, if any, becomes ours. */
static int drain(dg_replay_t *r, char *err, size_t errcap) {
  dg_manager_t *m = &r->m;
  int64_t t0 = dg_mono_us();
  pthread_mutex_lock(&m->plock);
  while (r->busy || r->want) pthread_cond_wait(&m->dcond, &m->plock);
  int rc = r->bg_rc;
  if (rc) snprintf(err, errcap, "%s", r->bg_err);
  pthread_mutex_unlock(&m->plock);
  r->us_wait += dg_mono_us() - t0;
  return rc;
}

/* Persists on the caller's thread, the persister drained first. */
static int persist_here(dg_replay_t *r, char *err, size_t errcap) {
  int rc = drain(r, err, errcap);
  if (rc != 0) return rc;
  int64_t t0 = dg_mono_us();
  pthread_mutex_lock(&r->m.conn_lock);
  rc = persist(&r->m, err, errcap);
  pthread_mutex_unlock(&r->m.conn_lock);
  r->us_persist += dg_mono_us() - t0;
  return rc;
}

int dg_replay_flush(dg_replay_t *r, char *err, size_t errcap) {
  int64_t t0 = dg_mono_us();
  batch_done(r);
  r->us_batch += dg_mono_us() - t0;
  return persist_here(r, err, errcap);
}

int dg_replay_apply(dg_replay_t *r, const char *id, size_t idlen, const char *req, size_t reqlen, char *err,
                    size_t errcap) {
  dg_manager_t *m = &r->m;
  dg_redis_xid_t x, at;
  if (dg_redis_xid_parse(id, idlen, &x) != 0 || dg_redis_xid_parse(r->at, strlen(r->at), &at) != 0 ||
      dg_redis_xid_cmp(x, at) <= 0) {
    snprintf(err, errcap, "entry %.*s is not after %s: the log is applied in order, once", (int)(idlen < 40 ? idlen : 40),
             id, r->at);
    return DG_EINVAL;
  }
  if (req == NULL) {
    req = "{}";
    reqlen = 2;
  }
  int ddl = dg__mgr_is_ddl(req, reqlen);
  int rc = 0;
  dg_redis_xid_t reverts;
  if (ddl) {
    /* A barrier: everything before it is in DuckDB first, and the
     * persister idle, so the DDL (which may ask DuckDB while it applies)
     * has the connection to itself. */
    rc = dg_replay_flush(r, err, errcap);
    if (rc != 0) return rc;
    pthread_mutex_lock(&m->conn_lock);
  } else if (dg__mgr_revert_target(req, reqlen, &reverts) && poison_of(r, id, idlen) == 0 &&
             dg__mgr_undo_find(m, reverts) == NULL) {
    /* A compact revert of an update no longer in the undo cache: the
     * same barrier, then its records from the audit log (manager.c
     * revert_records), the persister idle. */
    rc = dg_replay_flush(r, err, errcap);
    if (rc == 0) {
      pthread_mutex_lock(&m->conn_lock);
      rc = dg__mgr_undo_load(m, reverts, err, errcap);
      pthread_mutex_unlock(&m->conn_lock);
    }
    if (rc != 0) return rc;
  }
  int64_t t0 = dg_mono_us();
  if (!r->in_batch) {
    pthread_mutex_lock(&m->state_lock);
    r->in_batch = 1;
  }
  mreq_t *q = dg__mgr_req_add(m, id, idlen);
  q->poison = poison_of(r, id, idlen);
  dg__mgr_apply(m, q, req, reqlen);
  r->us_apply += dg_mono_us() - t0;
  dg_redis_xid_format(x, r->at, sizeof r->at);
  r->count++;
  if (ddl) {
    dg__mgr_batch_end(m, 1);
    dg__mgr_hand_over(m);
    r->in_batch = 0;
    pthread_mutex_unlock(&m->state_lock);
    rc = persist(m, err, errcap);
    if (rc == DG_EIO) {
      /* DuckDB refused the DDL: the manager reloads (undoing it) and
       * publishes a rejection, which joins the tail like any request. */
      mreq_t kept = m->reqs[0];
      pthread_mutex_lock(&m->state_lock);
      dg__mgr_pend_drop(m);
      char lerr[256];
      rc = dg__mgr_load(m, lerr, sizeof lerr);
      if (rc != 0) snprintf(err, errcap, "reload after a refused DDL request: %s", lerr);
      if (rc == 0 && kept.idem) {
        pthread_mutex_lock(&m->idem_lock);
        dg__mgr_idem_add(&m->idem, dg__mgr_idem_key(kept.caller, kept.request_id), x);
        pthread_mutex_unlock(&m->idem_lock);
      }
      if (rc == 0) dg__mgr_hand_over(m);
      pthread_mutex_unlock(&m->state_lock);
      if (rc == 0) rc = persist(m, err, errcap);
    }
    pthread_mutex_unlock(&m->conn_lock);
    dg__mgr_batch_clear(m);
    return rc;
  }
  if (m->nreqs < BATCH && m->nreqs < r->persist_max) return 0;
  int64_t t1 = dg_mono_us();
  size_t n = batch_done(r);
  r->us_batch += dg_mono_us() - t1;
  if (n >= r->persist_max) {
    pthread_mutex_lock(&m->plock);
    rc = r->bg_rc;
    if (rc) snprintf(err, errcap, "%s", r->bg_err);
    if (!r->want && !r->busy) {
      r->want = 1;
      pthread_cond_signal(&m->pcond);
    }
    pthread_mutex_unlock(&m->plock);
    /* The persister falls behind: wait for it rather than grow the tail. */
    if (rc == 0 && n >= r->tail_max) rc = drain(r, err, errcap);
  }
  return rc;
}

void dg_replay_close(dg_replay_t *r) {
  if (r == NULL) return;
  dg_manager_t *m = &r->m;
  if (r->in_batch) {
    r->in_batch = 0;
    pthread_mutex_unlock(&m->state_lock);
  }
  if (r->pthread_started) {
    pthread_mutex_lock(&m->plock);
    r->stop = 1;
    r->want = 0;
    pthread_cond_signal(&m->pcond);
    pthread_mutex_unlock(&m->plock);
    pthread_join(r->pthread, NULL);
  }
  dg__mgr_release(m);
  pthread_cond_destroy(&m->pcond);
  pthread_cond_destroy(&m->dcond);
  dg_free(r->poisoned);
  dg_free(r->poison_times);
  dg_free(r);
}
