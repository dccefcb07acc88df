/*
 * replay.c -- the manager's apply and persist, driven by a caller instead
 * of the consumer group: no Redis, no lease, nothing published.
 *
 * It holds a dg_manager_t of its own, loaded from DuckDB as a leader loads
 * it (dg__mgr_load), and runs entries the way manager.c runs them: plain
 * requests applied in batches of up to BATCH (batch_end, hand-over to the
 * unpersisted tail), persisted in transactions of up to PERSIST_MAX; a DDL
 * request is a barrier (tail persisted, then the DDL applied and persisted
 * alone; a DDL statement DuckDB refuses undoes it by reloading, and the
 * request stays, rejected, in the log -- as run_ddl_entry does). Apply is a
 * pure function of (state, request), so the result is the state the
 * manager wrote for the same log.
 */
#include "dg/replay.h"

#include <stdio.h>
#include <string.h>

#include "dg/common.h"
#include "dg/redis.h"
#include "internal.h"

#define BATCH 1024
#define PERSIST_MAX 20000

struct dg_replay_s {
  dg_manager_t m;
  size_t count;
  char at[DG_REDIS_XID_BUFSZ];
  char (*poisoned)[DG_REDIS_XID_BUFSZ]; /* ids the leader rejected as poison */
  int *poison_times;
  size_t npoisoned;
};

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
  snprintf(m->last_applied, sizeof m->last_applied, "0-0");
  pthread_mutex_lock(&m->state_lock);
  int rc = dg__mgr_load(m, err, errcap);
  pthread_mutex_unlock(&m->state_lock);
  memcpy(r->at, m->last_applied, sizeof r->at);
  *out = r;
  return rc;
}

const char *dg_replay_at(const dg_replay_t *r) { return r->at; }
size_t dg_replay_count(const dg_replay_t *r) { return r->count; }

/* Ends the batch in hand: it joins the tail. */
static void batch_done(dg_manager_t *m) {
  pthread_mutex_lock(&m->state_lock);
  dg__mgr_batch_end(m, 1);
  dg__mgr_hand_over(m);
  pthread_mutex_unlock(&m->state_lock);
  dg__mgr_batch_clear(m);
}

static int persist(dg_manager_t *m, char *err, size_t errcap) {
  char (*acked)[DG_REDIS_XID_BUFSZ] = NULL;
  size_t nacked = 0;
  int rc = dg__mgr_persist(m, NULL, NULL, &acked, &nacked, err, errcap);
  dg_free(acked);
  return rc;
}

int dg_replay_flush(dg_replay_t *r, char *err, size_t errcap) {
  batch_done(&r->m);
  return persist(&r->m, err, errcap);
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
    /* A barrier: everything before it is in DuckDB first. */
    rc = dg_replay_flush(r, err, errcap);
    if (rc != 0) return rc;
  } else if (dg__mgr_revert_target(req, reqlen, &reverts) && poison_of(r, id, idlen) == 0 &&
             dg__mgr_undo_find(m, reverts) == NULL) {
    /* A compact revert of an update no longer in the undo cache: the
     * same barrier, then its records from the audit log (manager.c
     * revert_records). */
    rc = dg_replay_flush(r, err, errcap);
    if (rc == 0) rc = dg__mgr_undo_load(m, reverts, err, errcap);
    if (rc != 0) return rc;
  }
  pthread_mutex_lock(&m->state_lock);
  mreq_t *q = dg__mgr_req_add(m, id, idlen);
  q->poison = poison_of(r, id, idlen);
  dg__mgr_apply(m, q, req, reqlen);
  pthread_mutex_unlock(&m->state_lock);
  dg_redis_xid_format(x, r->at, sizeof r->at);
  r->count++;
  if (ddl) {
    pthread_mutex_lock(&m->state_lock);
    dg__mgr_batch_end(m, 1);
    dg__mgr_hand_over(m);
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
    dg__mgr_batch_clear(m);
    return rc;
  }
  if (m->nreqs >= BATCH) batch_done(m);
  if (m->npend >= PERSIST_MAX) rc = persist(m, err, errcap);
  return rc;
}

void dg_replay_close(dg_replay_t *r) {
  if (r == NULL) return;
  dg__mgr_release(&r->m);
  dg_free(r->poisoned);
  dg_free(r->poison_times);
  dg_free(r);
}
