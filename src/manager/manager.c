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
 * Leadership: a lease key (SET NX PX) with an epoch (see lease_acquire),
 * renewed every quarter of DUCKGRID_LEASE_MS by the lease thread with a
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
#include "dg/replay.h"
#include "dg/streamlog.h"
#include "dg/common.h"
#include "dg/db.h"
#include "dg/dgsql.h"
#include "dg/entry_mac.h"
#include "dg/hash.h"
#include "dg/jsonw.h"
#include "dg/wire.h"
#include "dg/log.h"
#include "dg/metrics.h"
#include "dg/progress.h"
#include "internal.h"

/* The lease (DUCKGRID_LEASE_MS) outlives three missed renewals; a
 * follower takes it over about this long after the leader died. */
#define LEASE_MS_DEFAULT 1500
/* How long a follower's XREAD blocks: bounds how late it sees the lease
 * lapse. */
#define FOLLOW_BLOCK_MS 200
/* Outcomes a follower keeps to compare with the leader's (a ring): past
 * it the oldest go uncompared (the leader is far behind or gone). */
#define VERIFY_MAX 200000
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
/* A node whose database is older than the log looks again this often. */
#define STUCK_RETRY_MS 5000
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

/* Sleeps ms, waking early when the manager stops. */
static void nap(dg_manager_t *m, int ms) {
  for (int t = 0; t < ms && !atomic_load(&m->stop); t += 100) usleep((useconds_t)(ms - t < 100 ? ms - t : 100) * 1000);
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

/* The lease value carries an epoch (INCR of <lease>:epoch at each
 * acquisition): a fencing token. Publishing and claiming requests run in
 * scripts that first compare the lease with our value, so a leader that was
 * paused past its lease (SIGSTOP, a long GC-like stall, a partition) and
 * resumes cannot write a single outcome: Redis refuses it (NOTLEADER). */
static int lease_acquire(dg_manager_t *m) {
  char ms[24], ekey[160];
  snprintf(ms, sizeof ms, "%lld", (long long)m->lease_ms);
  /* Cheap check first: a follower polls this every FOLLOW_BLOCK_MS. */
  const char *get[] = {"GET", m->deps.streams->lease};
  redisReply *cur = cmd(m, 2, get);
  if (cur == NULL) return 0;
  int held = cur->type == REDIS_REPLY_STRING;
  int ours = held && strcmp(cur->str, m->lease_value) == 0;
  freeReplyObject(cur);
  if (ours) {
    atomic_store(&m->lease_lost, 0);
    atomic_store(&m->holding, 1);
    return 1;
  }
  if (held) return 0;
  snprintf(ekey, sizeof ekey, "%s:epoch", m->deps.streams->lease);
  const char *incr[] = {"INCR", ekey};
  redisReply *e = cmd(m, 2, incr);
  if (e == NULL) return 0;
  long long epoch = e->type == REDIS_REPLY_INTEGER ? e->integer : 0;
  freeReplyObject(e);
  char value[sizeof m->lease_value];
  snprintf(value, sizeof value, "e%lld:%s", epoch, m->lease_base);
  const char *argv[] = {"SET", m->deps.streams->lease, value, "NX", "PX", ms};
  redisReply *rep = cmd(m, 6, argv);
  int ok = rep && rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "OK") == 0;
  if (rep) freeReplyObject(rep);
  if (ok) {
    pthread_mutex_lock(&m->lease_lock);
    memcpy(m->lease_value, value, sizeof value);
    pthread_mutex_unlock(&m->lease_lock);
    atomic_store(&m->lease_lost, 0);
    atomic_store(&m->holding, 1);
  }
  return ok;
}

/* 1 renewed, 0 lost, -1 Redis unreachable (keep going until the lease would lapse). */
static int lease_renew(dg_manager_t *m, dg_redis_t *conn, const char *value) {
  char ms[24];
  snprintf(ms, sizeof ms, "%lld", (long long)m->lease_ms);
  const char *argv[] = {"EVAL", RENEW_LUA, "1", m->deps.streams->lease, value, ms};
  redisReply *rep = NULL;
  if (dg_redis_command(conn, 6, argv, NULL, &rep) != 0) return -1;
  int ok = rep->type == REDIS_REPLY_INTEGER && rep->integer == 1;
  freeReplyObject(rep);
  return ok;
}

static void lease_release(dg_manager_t *m) {
  atomic_store(&m->holding, 0);
  const char *argv[] = {"EVAL", RELEASE_LUA, "1", m->deps.streams->lease, m->lease_value};
  redisReply *rep = cmd(m, 5, argv);
  if (rep) freeReplyObject(rep);
}

/* The lease thread: renews every lease/4 while the manager holds it, on
 * its own connection, so a long batch (a million-cell spread) never lets
 * the lease lapse. It only raises lease_lost; the manager steps down. */
/* Sleeps ms, in slices of at most 50 ms, so a stop is not kept waiting
 * for a quarter of a long lease (DUCKGRID_LEASE_MS=60000: 15 s). */
static void lease_nap(dg_manager_t *m, int64_t ms) {
  int64_t until = now_ms() + ms;
  while (!atomic_load(&m->lstop)) {
    int64_t left = until - now_ms();
    if (left <= 0) break;
    usleep((useconds_t)(left < 50 ? left : 50) * 1000);
  }
}

static void *lease_run(void *arg) {
  dg_manager_t *m = arg;
  pthread_setname_np(pthread_self(), "dg-lease");
  int64_t renewed = now_ms();
  while (!atomic_load(&m->lstop)) {
    lease_nap(m, m->lease_ms / 4);
    if (atomic_load(&m->lstop)) break;
    if (!atomic_load(&m->holding)) {
      renewed = now_ms();
      continue;
    }
    char value[sizeof m->lease_value];
    pthread_mutex_lock(&m->lease_lock);
    memcpy(value, m->lease_value, sizeof value);
    pthread_mutex_unlock(&m->lease_lock);
    int r = lease_renew(m, m->lredis, value);
    if (r == 1) renewed = now_ms();
    if (atomic_load(&m->holding) && (r == 0 || (r < 0 && now_ms() - renewed >= m->lease_ms)))
      atomic_store(&m->lease_lost, 1);
  }
  return NULL;
}

/* Requests for the leader, fenced: the claim (a non-blocking XREADGROUP)
 * runs only while the lease is ours. */
static const char *CLAIM_LUA =
    "if redis.call('get', KEYS[1]) ~= ARGV[1] then "
    "return redis.error_reply('NOTLEADER this node no longer holds the manager lease') end "
    "return redis.call('XREADGROUP', 'GROUP', ARGV[2], ARGV[3], 'COUNT', ARGV[4], 'STREAMS', KEYS[2], '>')";

/* Outcomes, fenced: ARGV = lease value, maxlen, then (id, res, mac) per
 * outcome. Answers per outcome 1 (added), 2 (there already: "equal or
 * smaller") or the error text. */
static const char *PUBLISH_LUA =
    "if redis.call('get', KEYS[1]) ~= ARGV[1] then "
    "return redis.error_reply('NOTLEADER this node no longer holds the manager lease') end "
    "local out = {} "
    "for i = 3, #ARGV, 3 do "
    "local r = redis.pcall('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], ARGV[i], 'res', ARGV[i + 1], 'mac', ARGV[i + 2]) "
    "if type(r) == 'table' and r.err then "
    "if string.find(r.err, 'equal or smaller', 1, true) then out[#out + 1] = 2 else out[#out + 1] = r.err end "
    "else out[#out + 1] = 1 end "
    "end "
    "return out";

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

/* Reads from memory (rows.c) may answer from the state as it is now: the
 * log up to stream id sid, every outcome published (state_lock held). */
static void readable_at(dg_manager_t *m, const char *sid) {
  dg_redis_xid_t x;
  m->rd_ok = dg_redis_xid_parse(sid, strlen(sid), &x) == 0;
  if (m->rd_ok) m->rd_at = x;
  pthread_cond_broadcast(&m->rd_cond); /* reads waiting for it (rows.c) */
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
    argv[1] = m->deps.streams->req;
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
  /* A follower is not in the consumer group's business: the pending list
   * is the leader's unpersisted tail. */
  if (!atomic_load(&m->following)) xack(m, r, ids, n);
  dg_redis_xid_t last;
  if (dg_redis_xid_parse(ids[n - 1], strlen(ids[n - 1]), &last) == 0) dg_progress_persisted(m->deps.progress, last);
  dg_metrics_batch(m->deps.metrics, n, took_us);
  if (took_us >= 500 * 1000) {
    const double *st = m->persist_ms;
    dg_log_warn("persister: slow persist: %zu requests, %lld ms (rows %.0f, audit %.0f, idem %.0f, commit %.0f; "
                "the manager held off %.0f)",
                n, (long long)took_us / 1000, st[0], st[1], st[2], st[3], st[4]);
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
  atomic_store(&m->following, 0);
  atomic_store(&m->holding, 0);
  atomic_store(&m->deps.status->manager_state, DG_MANAGER_STANDBY);
  pthread_mutex_lock(&m->conn_lock); /* waits out a persist under way */
  pthread_mutex_lock(&m->state_lock);
  dg__mgr_pend_drop(m);
  m->rd_ok = 0; /* ahead of DuckDB, maybe of what was published */
  pthread_cond_broadcast(&m->rd_cond);
  pthread_mutex_unlock(&m->state_lock);
  pthread_mutex_unlock(&m->conn_lock);
  dg__mgr_batch_clear(m);
}

/* ---- publishing -------------------------------------------------------------------- */

static char maxlen_arg[24];

/* A ring of outcome digests (a follower's own, and the leader's). Past
 * VERIFY_MAX the oldest goes uncompared (the other side is far behind). */
static void vq_push(mverify_t **q, size_t *head, size_t *n, size_t *cap, dg_redis_xid_t id, const char *res,
                    size_t len) {
  if (*cap == 0) {
    *cap = 1024;
    *q = dg_calloc(*cap, sizeof **q);
  }
  if (*n == *cap) {
    if (*cap < VERIFY_MAX) {
      size_t ncap = *cap * 2;
      mverify_t *nq = dg_calloc(ncap, sizeof *nq);
      for (size_t i = 0; i < *n; i++) nq[i] = (*q)[(*head + i) % *cap];
      dg_free(*q);
      *q = nq;
      *cap = ncap;
      *head = 0;
    } else {
      *head = (*head + 1) % *cap;
      (*n)--;
    }
  }
  mverify_t *v = &(*q)[(*head + *n) % *cap];
  memset(v, 0, sizeof *v);
  v->id = id;
  v->duplicate = res == NULL;
  if (res) v->hash = dg_fnv1a64(res, len);
  (*n)++;
}

/* A follower does not publish: it keeps each outcome's digest to compare
 * with the leader's (verify). */
static void verify_push(dg_manager_t *m, const mreq_t *r) {
  dg_redis_xid_t id = {0, 0};
  dg_redis_xid_parse(r->stream_id, strlen(r->stream_id), &id);
  int dup = r->duplicate || r->res == NULL;
  vq_push(&m->vq, &m->vq_head, &m->vq_n, &m->vq_cap, id, dup ? NULL : r->res, dup ? 0 : r->res_len);
}

/* Publishes the batch's outcomes, each under its request's id, in one
 * fenced script (PUBLISH_LUA). r->published is set for each outcome Redis
 * took (1) or had already (2: an earlier run published it). DG_EIO when
 * Redis failed, DG_EAUTH when the lease is no longer ours. A follower
 * publishes nothing: it queues its outcomes for comparison. */
static int publish(dg_manager_t *m) {
  const dg_manager_deps_t *d = &m->deps;
  if (atomic_load(&m->following)) {
    for (size_t i = 0; i < m->nreqs; i++) {
      mreq_t *r = &m->reqs[i];
      verify_push(m, r);
      r->published = r->duplicate || r->res == NULL ? 0 : 1;
    }
    return 0;
  }
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
      dg_progress_published(d->progress, x);
    break;
  }
  size_t sent = 0;
  for (size_t i = 0; i < m->nreqs; i++) {
    m->reqs[i].published = 0;
    if (!m->reqs[i].duplicate && m->reqs[i].res != NULL) sent++;
  }
  if (sent == 0) return 0;
  /* Test hook, honoured only with DUCKGRID_TEST_HOOKS=1: the manager pauses
   * here, the mark moved and the outcomes not yet in Redis nor in the ring
   * (tests/api/test_writebehind.py::test_retry_while_its_first_outcome_is_being_published). */
  static long prepause_ms = -1; /* only the manager thread publishes */
  if (prepause_ms < 0)
    prepause_ms = env_long("DUCKGRID_TEST_HOOKS", 0, 0, 1) == 1
                      ? env_long("DUCKGRID_TEST_PREPUBLISH_PAUSE_MS", 0, 0, 10000) : 0;
  if (prepause_ms > 0) usleep((useconds_t)prepause_ms * 1000);
  size_t argc = 7 + 3 * sent; /* EVAL script 2 lease res_stream | value maxlen (id res mac)* */
  const char **argv = dg_malloc(argc * sizeof *argv);
  size_t *lens = dg_malloc(argc * sizeof *lens);
  char (*macs)[DG_ENTRY_MAC_HEX + 1] = dg_malloc(sent * sizeof *macs);
  char value[sizeof m->lease_value];
  memcpy(value, m->lease_value, sizeof value); /* only this thread writes it */
  size_t k = 0;
  argv[k] = "EVAL", lens[k++] = 4;
  argv[k] = PUBLISH_LUA, lens[k++] = strlen(PUBLISH_LUA);
  argv[k] = "2", lens[k++] = 1;
  argv[k] = d->streams->lease, lens[k++] = strlen(d->streams->lease);
  argv[k] = d->streams->res, lens[k++] = strlen(d->streams->res);
  argv[k] = value, lens[k++] = strlen(value);
  argv[k] = maxlen_arg, lens[k++] = strlen(maxlen_arg);
  size_t j = 0;
  for (size_t i = 0; i < m->nreqs; i++) {
    mreq_t *r = &m->reqs[i];
    if (r->duplicate || r->res == NULL) continue;
    /* signed under its stream id: entry_mac.h */
    dg_entry_mac_res(d->streams->mac_key, r->stream_id, strlen(r->stream_id), r->res, r->res_len, macs[j]);
    argv[k] = r->stream_id, lens[k++] = strlen(r->stream_id);
    argv[k] = r->res, lens[k++] = r->res_len;
    argv[k] = macs[j], lens[k++] = DG_ENTRY_MAC_HEX;
    j++;
  }
  redisReply *rep = NULL;
  int rc = dg_redis_command(m->redis, (int)k, argv, lens, &rep);
  dg_free(argv);
  dg_free(lens);
  dg_free(macs);
  if (rc != 0) return DG_EIO;
  if (rep->type == REDIS_REPLY_ERROR) {
    int fenced = strncmp(rep->str, "NOTLEADER", 9) == 0;
    dg_log_error("manager: publishing: %s", rep->str);
    freeReplyObject(rep);
    return fenced ? DG_EAUTH : DG_EIO;
  }
  if (rep->type != REDIS_REPLY_ARRAY || rep->elements != sent) {
    freeReplyObject(rep);
    return DG_EIO;
  }
  j = 0;
  for (size_t i = 0; i < m->nreqs; i++) {
    mreq_t *r = &m->reqs[i];
    if (r->duplicate || r->res == NULL) continue;
    redisReply *e = rep->element[j++];
    if (e->type == REDIS_REPLY_INTEGER) {
      r->published = (int)e->integer;
    } else {
      dg_log_error("manager: publishing %s: %s", r->stream_id, e->type == REDIS_REPLY_STRING ? e->str : "?");
      rc = DG_EIO;
    }
  }
  freeReplyObject(rep);
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
  if (atomic_load(&m->following)) return; /* the reader raises it from the leader's outcomes */
  for (size_t i = m->nreqs; i-- > 0;) {
    dg_redis_xid_t x;
    if (m->reqs[i].published && dg_redis_xid_parse(m->reqs[i].stream_id, strlen(m->reqs[i].stream_id), &x) == 0) {
      dg_progress_published(m->deps.progress, x);
      return;
    }
  }
}

/* Hands the batch's fresh outcomes to this process's reader pipeline and
 * moves the published mark. Outside state_lock. */
static void feed(dg_manager_t *m) {
  const dg_manager_deps_t *d = &m->deps;
  if (atomic_load(&m->following)) return; /* the reader reads the leader's outcomes */
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
    if (d->links->feed) d->links->feed(d->links->feed_arg, prev, r->stream_id, r->res, r->res_len);
    m->res_top = x;
    m->res_top_known = 1;
  }
  (void)any;
  (void)top;
  if (applied + rejected && d->links->feed_done) d->links->feed_done(d->links->feed_arg);
  dg_metrics_outcomes(d->metrics, applied, rejected);
}

/* ---- running batches --------------------------------------------------------------- */

typedef struct {
  const char *id;
  size_t id_len;
  const char *req;   /* NULL: entry without a usable `req` */
  size_t req_len;
  int ddl;           /* the request is DDL: it runs alone in its batch */
  int poison;        /* >0: reject with 500 instead of applying (poison) */
  int revert;        /* a compact revert: it starts a batch (see run_entries) */
  dg_redis_xid_t reverts; /* ... of this update */
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
    m->rd_ok = 0;
    pthread_mutex_unlock(&m->state_lock);
    /* Some outcomes may be missing from Redis while the engine holds
     * their effects: start again from DuckDB and the log. */
    step_down(m, rc == DG_EAUTH ? "fenced: the lease is no longer ours" : "publishing to Redis failed");
    return rc;
  }
  published_mark(m);
  dg__mgr_hand_over(m);
  if (m->nreqs > 0) readable_at(m, m->reqs[m->nreqs - 1].stream_id);
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
  /* Read leniently (repeated members allowed): whatever user and op the
   * text names go into the rejection. */
  dg_wire_req_t rq;
  (void)dg_wire_req_decode(e->req, e->req_len, DG_WIRE_DUPLICATES_OK, &rq);
  dg_jsonw_t w;
  dg_wire_out_open(&w, &b, r->stream_id, r->request_id, rq.user, rq.caller_tag, rq.op, rq.table);
  char ts[64];
  dg__mgr_time_iso(x.ms, ts, sizeof ts);
  dg_wire_out_rejected(&w, 500, why, NULL, ts);
  dg_jsonw_end(&w);
  dg_wire_req_dispose(&rq);
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
  m->rd_ok = 0; /* until the request is committed (or rejected) */
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
      readable_at(m, r->stream_id);
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
  pthread_mutex_lock(&m->state_lock);
  readable_at(m, r->stream_id);
  pthread_mutex_unlock(&m->state_lock);
  feed(m);
  dg__mgr_batch_clear(m);
  return 0;
}

/* A compact revert whose update is not in the undo cache reads the audit
 * log: a barrier first (every request before it persisted), then the read,
 * on this thread while the persister is held off. 0, or DG_EIO (the
 * manager stands down: the log stays, it is applied again later). */
static int revert_records(dg_manager_t *m, const entry_t *e) {
  if (dg__mgr_undo_find(m, e->reverts) != NULL) return 0;
  if (drain(m) != 0) {
    step_down(m, "DuckDB does not take the tail before a revert that reads the audit log");
    return DG_EIO;
  }
  char err[300];
  pthread_mutex_lock(&m->conn_lock);
  int rc = dg__mgr_undo_load(m, e->reverts, err, sizeof err);
  pthread_mutex_unlock(&m->conn_lock);
  if (rc != 0) {
    dg_log_error("manager: revert %.*s: %s", (int)e->id_len, e->id, err);
    step_down(m, "reading the audit log for a revert failed");
  }
  return rc;
}

/* Splits entries into batches, each DDL request alone, each compact revert
 * first in its own (so nothing applied in the same batch before it can
 * evict from the undo cache what revert_records found there). */
static int run_entries(dg_manager_t *m, const entry_t *e, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (e[i].ddl) {
      int rc = run_ddl_entry(m, &e[i]);
      if (rc != 0) return rc;
      snprintf(m->fpos, sizeof m->fpos, "%.*s", (int)e[i].id_len, e[i].id);
      i++;
      continue;
    }
    if (e[i].revert && e[i].poison == 0) {
      int rc = revert_records(m, &e[i]);
      if (rc != 0) return rc;
    }
    size_t j = i + 1;
    while (j < n && !e[j].ddl && !e[j].revert) j++;
    int rc = run_batch(m, &e[i], j - i);
    if (rc != 0) return rc;
    snprintf(m->fpos, sizeof m->fpos, "%.*s", (int)e[j - 1].id_len, e[j - 1].id);
    i = j;
  }
  return 0;
}

/* Reads an XREADGROUP reply into entries (borrowing from the reply). */
static size_t entries_of(dg_manager_t *m, redisReply *rep, entry_t **out, int xrange) {
  dg_redis_xiter_t it;
  size_t n = 0, cap = 0;
  entry_t *e = NULL;
  if ((xrange ? dg_redis_xiter_init_xrange(&it, rep) : dg_redis_xiter_init_xread(&it, rep)) != 0) {
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
    int has = !x.deleted &&
              dg_entry_open_req_with(m->deps.streams, m->deps.status, &x, &v) == 0; /* MAC checked: entry_mac.h */
    e[n] = (entry_t){x.id.ptr, x.id.len, has ? v.ptr : NULL, has ? v.len : 0, 0, 0, 0, {0, 0}};
    e[n].ddl = has && dg__mgr_is_ddl(v.ptr, v.len);
    e[n].revert = has && dg__mgr_revert_target(v.ptr, v.len, &e[n].reverts);
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
  const char *argv[] = {"XPENDING", m->deps.streams->req, GROUP, ids[0], ids[n - 1], count};
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

/* Entries a leader rejected as poison (its hash): rejected the same way
 * here, never applied -- applying one stopped that leader, it would stop
 * this node too. One HMGET per batch. */
static void mark_poisoned(dg_manager_t *m, entry_t *e, size_t n) {
  if (n == 0) return;
  const char **argv = dg_malloc((n + 2) * sizeof *argv);
  size_t *lens = dg_malloc((n + 2) * sizeof *lens);
  argv[0] = "HMGET", lens[0] = 5;
  argv[1] = m->poisoned_key, lens[1] = strlen(m->poisoned_key);
  for (size_t i = 0; i < n; i++) argv[2 + i] = e[i].id, lens[2 + i] = e[i].id_len;
  redisReply *rep = NULL;
  if (dg_redis_command(m->redis, (int)n + 2, argv, lens, &rep) == 0) {
    for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY && i < rep->elements && i < n; i++)
      if (rep->element[i]->type == REDIS_REPLY_STRING) e[i].poison = atoi(rep->element[i]->str);
    freeReplyObject(rep);
  }
  dg_free(argv);
  dg_free(lens);
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
    /* Recorded before the outcome is published: a follower applies the
     * entry only after that, and rejects it the same way (mark_poisoned). */
    char times[24];
    snprintf(times, sizeof times, "%d", e.poison);
    const char *argv[] = {"HSET", m->poisoned_key, id, times};
    redisReply *rep = cmd(m, 4, argv);
    int ok = rep && rep->type == REDIS_REPLY_INTEGER;
    if (rep) freeReplyObject(rep);
    if (!ok) return DG_EUNAVAIL;
  }
  int rc = run_entries(m, &e, 1);
  if (rc == 0) poison_count(m, id, 0);
  return rc;
}

/* The consumer group's last-delivered-id: how far any leader has claimed
 * request_duck. 0, or DG_EUNAVAIL. */
static int group_delivered(dg_manager_t *m, char *out, size_t cap) {
  const char *argv[] = {"XINFO", "GROUPS", m->deps.streams->req};
  redisReply *rep = cmd(m, 3, argv);
  if (rep == NULL) return DG_EUNAVAIL;
  snprintf(out, cap, "0-0");
  for (size_t g = 0; rep->type == REDIS_REPLY_ARRAY && g < rep->elements; g++) {
    redisReply *grp = rep->element[g];
    if (grp->type != REDIS_REPLY_ARRAY) continue;
    int ours = 0;
    const char *last = NULL;
    for (size_t k = 0; k + 1 < grp->elements; k += 2) {
      redisReply *key = grp->element[k], *val = grp->element[k + 1];
      if (key->type != REDIS_REPLY_STRING || val->type != REDIS_REPLY_STRING) continue;
      if (strcmp(key->str, "name") == 0) ours = strcmp(val->str, GROUP) == 0;
      if (strcmp(key->str, "last-delivered-id") == 0) last = val->str;
    }
    if (ours && last) snprintf(out, cap, "%s", last);
  }
  freeReplyObject(rep);
  return 0;
}

/* Catches up with the log up to what a leader has claimed (the group's
 * last-delivered-id), from the newest request applied here (fpos): what a
 * previous leader -- this process before a crash, or another node -- read,
 * and maybe published, and maybe persisted in its own database. Applied in
 * order; outcomes already in response_duck are refused by Redis and stand.
 * Entries on the pending list are claimed again (counting a delivery, for
 * the poison check); at the end the pending entries at or below what this
 * node's DuckDB holds are acknowledged. */
static int recover(dg_manager_t *m) {
  char until[DG_REDIS_XID_BUFSZ], persisted_id[DG_REDIS_XID_BUFSZ];
  if (group_delivered(m, until, sizeof until) != 0) return DG_EUNAVAIL;
  pthread_mutex_lock(&m->state_lock);
  memcpy(persisted_id, m->last_applied, sizeof persisted_id);
  pthread_mutex_unlock(&m->state_lock);
  size_t reapplied = 0, acked = 0;
  while (!xid_le(until, m->fpos)) {
    char from[DG_REDIS_XID_BUFSZ + 1];
    snprintf(from, sizeof from, "(%s", m->fpos);
    const char *argv[] = {"XRANGE", m->deps.streams->req, from, until, "COUNT", "1000"};
    redisReply *rep = cmd(m, 6, argv);
    if (rep == NULL) return DG_EUNAVAIL;
    entry_t *e;
    size_t n = entries_of(m, rep, &e, 1);
    if (n == 0) {
      freeReplyObject(rep);
      dg_free(e);
      break;
    }
    char (*ids)[DG_REDIS_XID_BUFSZ] = dg_malloc(n * sizeof *ids);
    for (size_t i = 0; i < n; i++) snprintf(ids[i], sizeof ids[i], "%.*s", (int)e[i].id_len, e[i].id);
    long long *deliveries = dg_malloc(n * sizeof *deliveries);
    delivery_counts(m, ids, n, deliveries);
    /* Claim the pending ones again: their delivery count goes up by one,
     * as a re-read of the pending list would. */
    size_t np = 0;
    const char **cargv = dg_malloc((n + 5) * sizeof *cargv);
    cargv[0] = "XCLAIM", cargv[1] = m->deps.streams->req, cargv[2] = GROUP, cargv[3] = CONSUMER, cargv[4] = "0";
    for (size_t i = 0; i < n; i++)
      if (deliveries[i] > 0) cargv[5 + np++] = ids[i], deliveries[i]++;
    if (np) {
      redisReply *c = cmd(m, (int)(np + 5), cargv);
      if (c) freeReplyObject(c);
    }
    dg_free(cargv);
    dg_free(ids);
    reapplied += n;
    mark_poisoned(m, e, n);
    int rc = 0;
    /* Entries before the first suspect run in batches, the rest one by one. */
    size_t first = 0;
    while (first < n && deliveries[first] < POISON_SUSPECT_DELIVERIES) first++;
    if (first > 0) rc = run_entries(m, e, first);
    for (size_t i = first; rc == 0 && i < n; i++) rc = run_suspect(m, &e[i]);
    dg_free(deliveries);
    freeReplyObject(rep);
    dg_free(e);
    if (rc != 0) return rc;
  }
  /* Pending entries this node's DuckDB holds: acknowledged. */
  for (int round = 0; round < 10000; round++) {
    const char *argv[] = {"XPENDING", m->deps.streams->req, GROUP, "-", persisted_id, "1000"};
    redisReply *rep = cmd(m, 6, argv);
    if (rep == NULL) break;
    size_t n = 0;
    char (*ids)[DG_REDIS_XID_BUFSZ] = dg_malloc(((rep->type == REDIS_REPLY_ARRAY ? rep->elements : 0) + 1) * sizeof *ids);
    for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++) {
      redisReply *p = rep->element[i];
      if (p->type == REDIS_REPLY_ARRAY && p->elements >= 1 && p->element[0]->type == REDIS_REPLY_STRING)
        snprintf(ids[n++], sizeof ids[0], "%s", p->element[0]->str);
    }
    freeReplyObject(rep);
    if (n) xack(m, m->redis, ids, n);
    dg_free(ids);
    acked += n;
    if (n < 1000) break;
  }
  if (acked || reapplied)
    dg_log_info("manager: recovery acknowledged %zu persisted request(s), applied %zu (up to %s)", acked, reapplied,
                until);
  return 0;
}

/* The newest entry of response_duck, so the manager's own outcomes can go
 * to the reader directly once it has read up to there. */
static void res_top_read(dg_manager_t *m) {
  const char *argv[] = {"XREVRANGE", m->deps.streams->res, "+", "-", "COUNT", "1"};
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

/* Loads the state from this node's DuckDB; fpos = what it holds. */
static int load_state(dg_manager_t *m) {
  char err[512];
  pthread_mutex_lock(&m->conn_lock);
  pthread_mutex_lock(&m->state_lock);
  dg__mgr_pend_drop(m);
  int rc = dg__mgr_load(m, err, sizeof err);
  memcpy(m->fpos, m->last_applied, sizeof m->fpos);
  m->rd_ok = 0;
  if (rc == 0) readable_at(m, m->last_applied); /* the state is DuckDB's */
  pthread_mutex_unlock(&m->state_lock);
  pthread_mutex_unlock(&m->conn_lock);
  if (rc != 0) {
    dg_log_error("manager: cannot load the database: %s", err);
    return DG_EIO;
  }
  dg_redis_xid_t applied;
  if (dg_redis_xid_parse(m->fpos, strlen(m->fpos), &applied) == 0) dg_progress_persisted(m->deps.progress, applied);
  return 0;
}

/* 1 when request_duck lost entries right after pos (trimmed past it): this
 * node's database is too old to follow or lead from the log (why: the
 * reason). Redis not answering is no gap: the next steps fail anyway. */
static int log_gap(dg_manager_t *m, const char *pos, char *why, size_t cap) {
  dg_redis_xid_t x;
  if (dg_redis_xid_parse(pos, strlen(pos), &x) != 0) return 0;
  return dg_streamlog_covers(m->redis, m->deps.streams->req, x, why, cap) == DG_EGONE;
}

/* ---- Redis lost its data ------------------------------------------------------------
 *
 * Redis may lose everything (FLUSHALL, a restart without its files, a new
 * empty server). This node's DuckDB holds the log up to fpos, and the
 * archive (DUCKGRID_ARCHIVE_DIR) may hold requests after it. A leader that
 * finds request_duck without the entries its database came from:
 *   - persists the requests it applied in memory first (a running leader:
 *     they were published, perhaps answered, and are nowhere else now);
 *   - applies the archived requests after fpos, publishing their outcomes
 *     under their own ids (the archive keeps entries and MACs as stored);
 *   - moves both streams' last ids up to what it holds (XSETID), so new
 *     ids, update ids and client cursors never go backwards, and records it
 *     as deleted: a follower behind it sees a gap (log_gap) and a client
 *     whose get_updates cursor is older gets 410 and reloads. */

typedef struct {
  int exists;
  char last[DG_REDIS_XID_BUFSZ];  /* last-generated-id */
  char first[DG_REDIS_XID_BUFSZ]; /* first entry, "" when empty */
  long long length, added;        /* added: entries-added, -1 unknown */
} stream_info_t;

static int stream_info(dg_manager_t *m, const char *key, stream_info_t *out) {
  memset(out, 0, sizeof *out);
  out->added = -1;
  const char *argv[] = {"XINFO", "STREAM", key};
  redisReply *rep = cmd(m, 3, argv);
  if (rep == NULL) return DG_EUNAVAIL;
  if (rep->type != REDIS_REPLY_ARRAY) { /* no such key */
    freeReplyObject(rep);
    snprintf(out->last, sizeof out->last, "0-0");
    return 0;
  }
  out->exists = 1;
  for (size_t i = 0; i + 1 < rep->elements; i += 2) {
    redisReply *k = rep->element[i], *v = rep->element[i + 1];
    if (k->type != REDIS_REPLY_STRING) continue;
    if (strcmp(k->str, "last-generated-id") == 0 && v->type == REDIS_REPLY_STRING)
      snprintf(out->last, sizeof out->last, "%s", v->str);
    else if (strcmp(k->str, "length") == 0 && v->type == REDIS_REPLY_INTEGER)
      out->length = v->integer;
    else if (strcmp(k->str, "entries-added") == 0 && v->type == REDIS_REPLY_INTEGER)
      out->added = v->integer;
    else if (strcmp(k->str, "first-entry") == 0 && v->type == REDIS_REPLY_ARRAY && v->elements >= 1 &&
             v->element[0]->type == REDIS_REPLY_STRING)
      snprintf(out->first, sizeof out->first, "%s", v->element[0]->str);
  }
  freeReplyObject(rep);
  return 0;
}

/* 1 when request_duck no longer holds the log this node holds up to fpos,
 * though nothing was trimmed from it: Redis lost its data. */
static int log_wiped(dg_manager_t *m) {
  if (strcmp(m->fpos, "0-0") == 0) return 0;
  stream_info_t si;
  if (stream_info(m, m->deps.streams->req, &si) != 0) return 0;
  if (!xid_le(m->fpos, si.last)) return 1; /* its ids begin below ours */
  /* Ids above ours (clients queued after the loss) and nothing ever
   * trimmed, yet the entry we applied last is not there. */
  return si.added >= 0 && si.added == si.length && (si.length == 0 || !xid_le(si.first, m->fpos));
}

/* A leader that stops: when Redis lost the log, the requests it applied
 * and published are only in its memory -- persist them before dropping. */
static void step_down_keeping(dg_manager_t *m, const char *why) {
  if (m->leader && !atomic_load(&m->following) && log_wiped(m)) {
    dg_log_error("manager: %s no longer holds the requests this node applied (up to %s): Redis lost its data; "
                 "persisting the %zu requests applied in memory before leading again",
                 m->deps.streams->req, m->fpos, (size_t)atomic_load(&m->npend_atomic));
    if (drain(m) != 0) dg_log_error("manager: persisting them failed; they are lost");
  }
  step_down(m, why);
}

typedef struct {
  dg_manager_t *m;
  entry_t *e;
  char (*ids)[DG_REDIS_XID_BUFSZ];
  char **reqs;
  size_t *lens;
  size_t n, cap, total, bad;
  int rc;
} arch_replay_t;

static void arch_flush(arch_replay_t *a) {
  if (a->n == 0 || a->rc != 0) return;
  for (size_t i = 0; i < a->n; i++) {
    a->e[i] = (entry_t){a->ids[i], strlen(a->ids[i]), a->reqs[i], a->lens[i], 0, 0, 0, {0, 0}};
    a->e[i].ddl = a->reqs[i] && dg__mgr_is_ddl(a->reqs[i], a->lens[i]);
    a->e[i].revert = a->reqs[i] && dg__mgr_revert_target(a->reqs[i], a->lens[i], &a->e[i].reverts);
  }
  mark_poisoned(a->m, a->e, a->n);
  a->rc = run_entries(a->m, a->e, a->n);
  a->total += a->n;
  for (size_t i = 0; i < a->n; i++) dg_free(a->reqs[i]);
  a->n = 0;
}

static int arch_entry(void *arg, const dg_redis_xentry_t *x) {
  arch_replay_t *a = arg;
  char id[DG_REDIS_XID_BUFSZ];
  snprintf(id, sizeof id, "%.*s", (int)x->id.len, x->id.ptr);
  if (xid_le(id, a->m->fpos)) return 0;
  if (a->n == a->cap) {
    a->cap = a->cap ? a->cap * 2 : 256;
    a->e = dg_realloc(a->e, a->cap * sizeof *a->e);
    a->ids = dg_realloc(a->ids, a->cap * sizeof *a->ids);
    a->reqs = dg_realloc(a->reqs, a->cap * sizeof *a->reqs);
    a->lens = dg_realloc(a->lens, a->cap * sizeof *a->lens);
  }
  dg_redis_str_t v;
  /* The MAC checked, as for a live entry. */
  int has = dg_entry_open_req_with(a->m->deps.streams, a->m->deps.status, x, &v) == 0;
  if (!has) a->bad++;
  memcpy(a->ids[a->n], id, sizeof id);
  a->reqs[a->n] = has ? dg_strndup(v.ptr, v.len) : NULL;
  a->lens[a->n] = has ? v.len : 0;
  a->n++;
  if (a->n >= 1000) arch_flush(a);
  return a->rc;
}

/* Applies the archived requests after fpos (leader, after a loss). */
static int archive_catch_up(dg_manager_t *m) {
  const char *dir = dg_archive_dir();
  if (dir == NULL) return 0;
  dg_segment_t *segs = NULL;
  size_t nseg = 0;
  if (dg_archive_segments(dir, &segs, &nseg) != 0) return 0;
  arch_replay_t a = {.m = m};
  char err[512] = "";
  for (size_t i = 0; i < nseg && a.rc == 0; i++) {
    char last[DG_REDIS_XID_BUFSZ];
    dg_redis_xid_format(segs[i].last, last, sizeof last);
    if (xid_le(last, m->fpos)) continue;
    int rc = dg_archive_read(dir, &segs[i], arch_entry, &a, err, sizeof err);
    if (rc != 0 && a.rc == 0) {
      dg_log_error("manager: the archive cannot be read past %s: %s", m->fpos, err);
      break;
    }
  }
  arch_flush(&a);
  for (size_t i = 0; i < a.n; i++) dg_free(a.reqs[i]);
  dg_free(a.e);
  dg_free(a.ids);
  dg_free(a.reqs);
  dg_free(a.lens);
  dg_free(segs);
  if (a.total)
    dg_log_warn("manager: applied %zu archived requests Redis no longer held (%zu without a valid MAC), up to %s",
                a.total, a.bad, m->fpos);
  return a.rc;
}

/* XSETID `key` up to `id` (never down), recorded as trimmed up to `deleted`. */
static void stream_floor(dg_manager_t *m, const char *key, const char *id, const char *deleted) {
  stream_info_t si;
  if (stream_info(m, key, &si) != 0) return;
  if (!si.exists) {
    /* XSETID needs the key: an empty stream is made with a group, dropped. */
    const char *mk[] = {"XGROUP", "CREATE", key, "dg-floor", "$", "MKSTREAM"};
    const char *rm[] = {"XGROUP", "DESTROY", key, "dg-floor"};
    redisReply *r = cmd(m, 6, mk);
    if (r) freeReplyObject(r);
    r = cmd(m, 4, rm);
    if (r) freeReplyObject(r);
  }
  const char *last = xid_le(id, si.last) ? si.last : id;
  char added[24];
  /* entries-added above length: something was trimmed (updates.c's 410 rule). */
  snprintf(added, sizeof added, "%lld", (si.added > si.length ? si.added : si.length) + 1);
  const char *argv[] = {"XSETID", key, last, "ENTRIESADDED", added, "MAXDELETEDID", deleted};
  redisReply *rep = cmd(m, 7, argv);
  if (rep && rep->type == REDIS_REPLY_ERROR) dg_log_error("manager: XSETID %s %s: %s", key, last, rep->str);
  if (rep) freeReplyObject(rep);
}

/* become_leader, after the group exists: the loss, handled as above. */
static int after_loss(dg_manager_t *m) {
  if (!log_wiped(m)) return 0;
  char was[DG_REDIS_XID_BUFSZ];
  memcpy(was, m->fpos, sizeof was);
  dg_log_error("manager: %s does not hold the log this node's database holds (up to %s): Redis lost its data; "
               "going on from the database%s", m->deps.streams->req, was, dg_archive_dir() ? " and the archive" : "");
  stream_floor(m, m->deps.streams->res, was, was);
  int rc = archive_catch_up(m);
  if (rc != 0) return rc;
  stream_floor(m, m->deps.streams->req, m->fpos, m->fpos);
  atomic_fetch_add(&m->deps.status->log_losses, 1);
  return 0;
}

static int become_leader(dg_manager_t *m) {
  /* A follower's state is the log applied up to fpos (in memory, the tail
   * on its way to DuckDB): it leads from there without reloading, which
   * is what makes a failover fast. */
  int from_follower = atomic_load(&m->following);
  atomic_store(&m->following, 0);
  m->vq_n = m->lq_n = 0;
  if (!from_follower && load_state(m) != 0) return DG_EIO;
  atomic_store(&m->broken, 0);
  atomic_store(&m->deps.status->manager_broken, 0);
  const char *argv[] = {"XGROUP", "CREATE", m->deps.streams->req, GROUP, m->fpos, "MKSTREAM"};
  redisReply *rep = cmd(m, 6, argv);
  if (rep == NULL) return DG_EUNAVAIL;
  if (rep->type == REDIS_REPLY_ERROR && strstr(rep->str, "BUSYGROUP") == NULL) {
    dg_log_error("manager: XGROUP CREATE: %s", rep->str);
    freeReplyObject(rep);
    return DG_EIO;
  }
  freeReplyObject(rep);
  m->leader = 1; /* recovery runs batches as a leader does */
  int64_t t0 = dg_mono_us();
  int rc = after_loss(m);
  if (rc != 0) {
    if (m->leader) step_down(m, "applying the archive failed");
    return rc;
  }
  char why[320];
  if (log_gap(m, m->fpos, why, sizeof why)) {
    /* Recovery would skip what was trimmed: a wrong state, published. */
    if (now_ms() - m->gap_logged_ms >= 30000) {
      dg_log_error("manager: cannot lead: %s, which this node's database is at; start it from a snapshot "
                   "(duckgrid restore) or a copy of another node's database", why);
      m->gap_logged_ms = now_ms();
    }
    step_down(m, "this node's database is older than the log");
    lease_release(m);
    atomic_store(&m->deps.status->cannot_follow, 1);
    return DG_EGONE;
  }
  res_top_read(m);
  rc = recover(m);
  if (rc != 0) {
    if (m->leader) step_down(m, "recovery failed");
    return rc;
  }
  atomic_store(&m->deps.status->lag_ms, 0);
  atomic_store(&m->deps.status->cannot_follow, 0);
  atomic_store(&m->deps.status->manager_state, DG_MANAGER_LEADER);
  dg_log_info("manager: leader%s (applied %s, %u tables, caught up in %lld ms)",
              from_follower ? ", was a follower" : "", m->fpos, m->ntables, (long long)(dg_mono_us() - t0) / 1000);
  return 0;
}

/* ---- followers -------------------------------------------------------------------------
 *
 * Every node that does not hold the lease follows: it loads its own DuckDB,
 * then applies request_duck from there with the same engine (plain XREAD,
 * not the consumer group), only as far as the leader has published
 * (response_duck's top), persists to its own DuckDB, and compares each of
 * its outcomes with the leader's (FNV-1a of the bytes). A difference stops
 * it loudly: the two states have diverged, which must never happen since
 * apply is a pure function of (state, request).
 *
 * Never running ahead of the leader's outcomes keeps failover simple: the
 * follower that takes the lease has applied nothing the old leader did not
 * publish, so recovery from fpos up to the group's last-delivered-id
 * publishes exactly what is missing.
 *
 * Reads on a follower: this process's reader raises the published mark as
 * it reads the leader's outcomes, so a read waits until this node has
 * applied and persisted everything answered before it (consistency.c). */

static int become_follower(dg_manager_t *m) {
  if (load_state(m) != 0) return DG_EIO;
  char why[320];
  if (log_gap(m, m->fpos, why, sizeof why)) {
    if (now_ms() - m->gap_logged_ms >= 30000) {
      dg_log_error("manager: cannot follow: %s, which this node's database is at; start it from a snapshot "
                   "(duckgrid restore) or a copy of the leader's database", why);
      m->gap_logged_ms = now_ms();
    }
    atomic_store(&m->deps.status->manager_state, DG_MANAGER_STANDBY);
    atomic_store(&m->deps.status->cannot_follow, 1);
    return DG_EGONE;
  }
  m->vq_n = m->lq_n = 0;
  memcpy(m->rtop, m->fpos, sizeof m->rtop);
  /* Reads wait until this node has caught up with what the leader had
   * published when it started following (the reader raises the mark from
   * here on). */
  res_top_read(m);
  if (m->res_top_known) dg_progress_published(m->deps.progress, m->res_top);
  atomic_store(&m->following, 1);
  atomic_store(&m->deps.status->cannot_follow, 0);
  atomic_store(&m->deps.status->manager_state, DG_MANAGER_FOLLOWER);
  dg_log_info("manager: following from %s (%u tables)", m->fpos, m->ntables);
  return 0;
}

/* Compares our outcomes with the leader's, in id order. */
static void verify(dg_manager_t *m) {
  while (m->vq_n > 0 && m->lq_n > 0) {
    mverify_t *ours = &m->vq[m->vq_head], *theirs = &m->lq[m->lq_head];
    int c = dg_redis_xid_cmp(ours->id, theirs->id);
    if (c < 0) {
      /* The leader published nothing for it although it published a later
       * one: a repeated request_id there. */
      if (!ours->duplicate) goto diverged;
      m->vq_head = (m->vq_head + 1) % m->vq_cap, m->vq_n--;
    } else if (c > 0) {
      m->lq_head = (m->lq_head + 1) % m->lq_cap, m->lq_n--; /* before we started */
    } else {
      if (ours->duplicate || ours->hash != theirs->hash) goto diverged;
      m->verified++;
      m->vq_head = (m->vq_head + 1) % m->vq_cap, m->vq_n--;
      m->lq_head = (m->lq_head + 1) % m->lq_cap, m->lq_n--;
    }
  }
  return;
diverged:;
  char id[DG_REDIS_XID_BUFSZ];
  dg_redis_xid_format(m->vq[m->vq_head].id, id, sizeof id);
  dg_log_error("manager: FOLLOWER DIVERGED at request %s: this node's outcome differs from the leader's "
               "(%s). It stops applying and will not lead; rebuild its database from the leader's "
               "(a copy or a snapshot) and restart it.",
               id, m->vq[m->vq_head].duplicate ? "none here, one there" : "different bytes");
  atomic_store(&m->deps.status->diverged, 1);
  atomic_store(&m->deps.status->manager_state, DG_MANAGER_STANDBY);
}

/* One step of following: read the leader's new outcomes, apply the
 * requests up to the newest of them, compare. */
static void follow_step(dg_manager_t *m, const char *bmax) {
  const dg_manager_deps_t *d = &m->deps;
  if (atomic_load(&d->status->diverged)) {
    usleep(FOLLOW_BLOCK_MS * 1000);
    return;
  }
  if (!atomic_load(&m->following) && become_follower(m) != 0) {
    /* A database older than the log stays so: look again now and then
     * (each look reloads it). */
    nap(m, atomic_load(&d->status->cannot_follow) ? STUCK_RETRY_MS : 1000);
    return;
  }
  if (atomic_load(&m->npend_atomic) >= m->tail_max) {
    persister_kick(m);
    usleep(10 * 1000);
    return;
  }
  /* Block for new outcomes only when every request they cover is applied. */
  int behind = !xid_le(m->rtop, m->fpos);
  const char *rargv[] = {"XREAD", "COUNT", "1000", "BLOCK", "200", "STREAMS", d->streams->res, m->rtop};
  const char *nargv[] = {"XREAD", "COUNT", "1000", "STREAMS", d->streams->res, m->rtop};
  redisReply *rep = NULL;
  int rc = behind ? dg_redis_command(m->redis, 6, nargv, NULL, &rep)
                  : dg_redis_command_timeout(m->redis, FOLLOW_BLOCK_MS + 2000, 8, rargv, NULL, &rep);
  if (rc != 0) {
    usleep(50 * 1000);
    return;
  }
  dg_redis_xiter_t it;
  dg_redis_xentry_t x;
  if (dg_redis_xiter_init_xread(&it, rep) == 0) {
    while (dg_redis_xiter_next(&it, &x)) {
      dg_redis_xid_t id;
      dg_redis_str_t v;
      if (dg_redis_xid_parse(x.id.ptr, x.id.len, &id) != 0) continue;
      snprintf(m->rtop, sizeof m->rtop, "%.*s", (int)x.id.len, x.id.ptr);
      if (dg_entry_open_res_with(d->streams, d->status, &x, &v) == 0)
        vq_push(&m->lq, &m->lq_head, &m->lq_n, &m->lq_cap, id, v.ptr, v.len);
    }
  }
  freeReplyObject(rep);
  if (xid_le(m->rtop, m->fpos)) {
    verify(m);
    return;
  }
  /* From fpos itself: its presence shows that nothing after it was
   * trimmed while this node lagged (no extra round trip). */
  int from_start = strcmp(m->fpos, "0-0") == 0;
  char from[DG_REDIS_XID_BUFSZ + 1];
  snprintf(from, sizeof from, "%s%s", from_start ? "(" : "", m->fpos);
  const char *argv[] = {"XRANGE", d->streams->req, from, m->rtop, "COUNT", bmax};
  rep = cmd(m, 6, argv);
  if (rep == NULL) return;
  entry_t *e;
  size_t n = entries_of(m, rep, &e, 1);
  size_t skip = 0;
  if (!from_start) {
    char why[320];
    if (n > 0 && e[0].id_len == strlen(m->fpos) && memcmp(e[0].id, m->fpos, e[0].id_len) == 0) {
      skip = 1;
    } else if (log_gap(m, m->fpos, why, sizeof why)) {
      dg_log_error("manager: stopped following: %s, which this node has applied; start it from a snapshot "
                   "(duckgrid restore) or a copy of the leader's database", why);
      m->gap_logged_ms = now_ms();
      dg_free(e);
      freeReplyObject(rep);
      step_down(m, "the log lost entries this node had not applied");
      atomic_store(&d->status->cannot_follow, 1);
      return;
    }
  }
  mark_poisoned(m, e + skip, n - skip);
  if (n > skip && run_entries(m, e + skip, n - skip) != 0) step_down(m, "applying the log as a follower failed");
  dg_free(e);
  freeReplyObject(rep);
  if (atomic_load(&m->following)) verify(m);
}

/* A follower's lag: stream time and entries between what it applied and
 * the newest request. */
static const char *COUNT_AFTER_LUA =
    "return #redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])";

static void follower_lag(dg_manager_t *m) {
  const char *argv[] = {"XINFO", "STREAM", m->deps.streams->req};
  redisReply *rep = cmd(m, 3, argv);
  if (rep == NULL) return;
  char top[DG_REDIS_XID_BUFSZ] = "0-0";
  for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY && i + 1 < rep->elements; i += 2) {
    redisReply *k = rep->element[i], *v = rep->element[i + 1];
    if (k->type == REDIS_REPLY_STRING && strcmp(k->str, "last-generated-id") == 0 && v->type == REDIS_REPLY_STRING)
      snprintf(top, sizeof top, "%s", v->str);
  }
  freeReplyObject(rep);
  if (xid_le(top, m->fpos)) {
    atomic_store(&m->deps.status->lag, 0);
    atomic_store(&m->deps.status->lag_ms, 0);
    return;
  }
  dg_redis_xid_t a, b;
  if (dg_redis_xid_parse(top, strlen(top), &a) == 0 && dg_redis_xid_parse(m->fpos, strlen(m->fpos), &b) == 0)
    atomic_store(&m->deps.status->lag_ms, (long)(a.ms - b.ms));
  char from[DG_REDIS_XID_BUFSZ + 1];
  snprintf(from, sizeof from, "(%s", m->fpos);
  const char *cargv[] = {"EVAL", COUNT_AFTER_LUA, "1", m->deps.streams->req, from, "100000"};
  rep = cmd(m, 6, cargv);
  if (rep && rep->type == REDIS_REPLY_INTEGER) atomic_store(&m->deps.status->lag, (long)rep->integer);
  if (rep) freeReplyObject(rep);
}

/* ---- housekeeping ------------------------------------------------------------------- */

static void update_lag(dg_manager_t *m) {
  dg_redis_status_t st;
  dg_redis_status(m->redis, &st);
  /* Every connect after the first is a reconnect. */
  if (m->connects_seen > 0 && st.connects > m->connects_seen)
    atomic_fetch_add(&m->deps.status->redis_reconnects, (long)(st.connects - m->connects_seen));
  if (st.connects > m->connects_seen) m->connects_seen = st.connects;
  const char *argv[] = {"XINFO", "GROUPS", m->deps.streams->req};
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
      if (ours) atomic_store(&m->deps.status->lag, (long)((lag > 0 ? lag : 0) + pending));
    }
  }
  freeReplyObject(rep);
}

static void trim_requests(dg_manager_t *m) {
  char last[DG_REDIS_XID_BUFSZ];
  pthread_mutex_lock(&m->state_lock);
  memcpy(last, m->last_applied, sizeof last);
  pthread_mutex_unlock(&m->state_lock);
  dg_archive_clamp(m->deps.archive, last, sizeof last); /* trim only what is archived */
  dg_redis_xid_t applied;
  if (dg_redis_xid_parse(last, strlen(last), &applied) != 0) return;
  uint64_t keep_from = (uint64_t)(now_ms() - REQUEST_RETENTION_MS);
  if (keep_from > applied.ms) keep_from = applied.ms; /* never beyond what is persisted */
  char minid[32];
  snprintf(minid, sizeof minid, "%" PRIu64 "-0", keep_from);
  const char *argv[] = {"XTRIM", m->deps.streams->req, "MINID", "~", minid};
  redisReply *rep = cmd(m, 5, argv);
  if (rep) freeReplyObject(rep);
}

/* Bounds request_duck by count as well: the oldest entries beyond
 * request_maxlen go, but only those below the persisted watermark
 * (ARGV[2]; its own entry stays, so a restart finds the entry its database
 * is at and knows nothing after it was trimmed: streamlog.h), at most
 * ARGV[3] per call (the script reads their ids with
 * XRANGE, so one call stays short). Atomic, so entries added meanwhile
 * cannot shift the cut above what is persisted. Returns entries removed. */
static const char *TRIM_COUNT_LUA =
    "local len = redis.call('XLEN', KEYS[1]) "
    "local excess = len - tonumber(ARGV[1]) "
    "if excess <= 0 then return 0 end "
    "if excess > tonumber(ARGV[3]) then excess = tonumber(ARGV[3]) end "
    "local r = redis.call('XRANGE', KEYS[1], '-', ARGV[2], 'COUNT', excess + 1) "
    "if #r < 2 then return 0 end "
    "return redis.call('XTRIM', KEYS[1], 'MINID', r[#r][1])";
#define TRIM_COUNT_STEP 20000

static void trim_requests_count(dg_manager_t *m) {
  char last[DG_REDIS_XID_BUFSZ], maxlen[24], step[24];
  pthread_mutex_lock(&m->state_lock);
  memcpy(last, m->last_applied, sizeof last);
  pthread_mutex_unlock(&m->state_lock);
  dg_archive_clamp(m->deps.archive, last, sizeof last); /* trim only what is archived */
  if (strcmp(last, "0-0") == 0) return;
  snprintf(maxlen, sizeof maxlen, "%ld", m->request_maxlen);
  snprintf(step, sizeof step, "%d", TRIM_COUNT_STEP);
  const char *argv[] = {"EVAL", TRIM_COUNT_LUA, "1", m->deps.streams->req, maxlen, last, step};
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
    if (duckdb_prepare(m->conn, dg_sql_idem_prune, &st) == DuckDBSuccess) {
      duckdb_bind_int64(st, 1, from);
      duckdb_result res;
      /* A failed prune only leaves old records (they no longer match); the
       * next one, a minute on, tries again. */
      if (duckdb_execute_prepared(st, &res) == DuckDBError)
        dg_log_warn("manager: pruning dg.idem failed: %s", duckdb_result_error(&res));
      duckdb_destroy_result(&res);
    } else {
      dg_log_warn("manager: pruning dg.idem failed: %s", duckdb_prepare_error(st));
    }
    duckdb_destroy_prepare(&st);
  }
  pthread_mutex_unlock(&m->conn_lock);
}

static int idem_lookup(void *arg, const char *caller, const char *request_id, char *out, size_t cap) {
  dg_manager_t *m = arg;
  int st = atomic_load(&m->deps.status->manager_state);
  if (st != DG_MANAGER_LEADER && st != DG_MANAGER_FOLLOWER) return 0;
  if (st == DG_MANAGER_FOLLOWER && m->deps.progress) {
    /* A retry on a follower: its map holds what it has applied, which may
     * be behind the outcome the first try was answered with. Catch up
     * with what this node has seen published first (bounded). */
    dg_redis_xid_t pub, reached;
    dg_progress_get(m->deps.progress, &pub, NULL);
    dg_progress_wait(m->deps.progress, pub, 5000, &reached);
  }
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
  const dg_manager_deps_t *d = &m->deps;
  char bmax[16];
  snprintf(bmax, sizeof bmax, "%d", d->batch_max);
  snprintf(maxlen_arg, sizeof maxlen_arg, "%ld", d->response_maxlen);
  atomic_store(&d->status->manager_state, DG_MANAGER_STANDBY);
  /* Test hook, honoured only with DUCKGRID_TEST_HOOKS=1: the manager starts
   * late, as on a loaded machine or before a long recovery, while HTTP
   * already answers (tests/api/test_writebehind.py::test_reads_right_after_a_restart). */
  long start_delay_ms = env_long("DUCKGRID_TEST_HOOKS", 0, 0, 1) == 1
                            ? env_long("DUCKGRID_TEST_MANAGER_START_DELAY_MS", 0, 0, 10000) : 0;
  if (start_delay_ms > 0) usleep((useconds_t)start_delay_ms * 1000);
  int64_t broken_at = 0;
  while (!atomic_load(&m->stop)) {
    if (atomic_load(&m->broken)) {
      /* DuckDB kept failing: let another node lead, say so in /health,
       * and try again after a pause. */
      atomic_store(&d->status->manager_broken, 1);
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
      /* Lead when the lease is free (DUCKGRID_ROLE=auto), else follow. */
      int may_lead = !m->role_follower && !atomic_load(&d->status->diverged);
      if (!may_lead || !lease_acquire(m)) {
        follow_step(m, bmax);
        int64_t t = now_ms();
        if (t - m->lag_checked_ms >= 1000) {
          if (atomic_load(&m->following)) follower_lag(m);
          m->lag_checked_ms = t;
        }
        continue;
      }
      if (become_leader(m) != 0) {
        nap(m, atomic_load(&d->status->cannot_follow) ? STUCK_RETRY_MS : 300);
        continue;
      }
      broken_at = 0;
    }
    int64_t now = now_ms();
    if (atomic_load(&m->lease_lost)) {
      step_down_keeping(m, "lost the lease");
      continue;
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
    /* Claim new requests (fenced: only while the lease is ours); when
     * there are none, wait for one with a plain XREAD, which claims
     * nothing -- so a leader paused inside the wait and resumed after
     * another took over has taken no request from it. */
    /* Test hook, honoured only with DUCKGRID_TEST_HOOKS=1: the manager is
     * slow to take new requests, as a loaded machine may make it
     * (tests/api/test_writebehind.py::test_read_after_async_write_while_the_manager_is_slow). */
    static long claim_delay_ms = -1; /* only the manager thread claims */
    if (claim_delay_ms < 0)
      claim_delay_ms = env_long("DUCKGRID_TEST_HOOKS", 0, 0, 1) == 1
                           ? env_long("DUCKGRID_TEST_CLAIM_DELAY_MS", 0, 0, 10000) : 0;
    if (claim_delay_ms > 0) usleep((useconds_t)claim_delay_ms * 1000);
    char value[sizeof m->lease_value];
    memcpy(value, m->lease_value, sizeof value);
    const char *argv[] = {"EVAL", CLAIM_LUA, "2", d->streams->lease, d->streams->req, value, GROUP, CONSUMER, bmax};
    redisReply *rep = NULL;
    int64_t claim_t0 = dg_mono_us();
    int rc = dg_redis_command(m->redis, 9, argv, NULL, &rep);
    int64_t claim_t1 = dg_mono_us();
    if (rc != 0) {
      usleep(50 * 1000);
      continue;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
      /* NOTLEADER: fenced. NOGROUP: the stream was deleted under us; make
       * the group again. */
      dg_log_warn("manager: %s", rep->str);
      int fenced = strncmp(rep->str, "NOTLEADER", 9) == 0;
      freeReplyObject(rep);
      step_down_keeping(m, fenced ? "fenced: the lease is no longer ours" : "request_duck has no consumer group");
      usleep(100 * 1000);
      continue;
    }
    if (rep->type == REDIS_REPLY_NIL) {
      freeReplyObject(rep);
      const char *wargv[] = {"XREAD", "COUNT", "1", "BLOCK", "500", "STREAMS", d->streams->req, m->fpos};
      redisReply *w = NULL;
      if (dg_redis_command_timeout(m->redis, BLOCK_MS + 2000, 8, wargv, NULL, &w) != 0) {
        usleep(50 * 1000);
        continue;
      }
      int more = w->type == REDIS_REPLY_ARRAY;
      freeReplyObject(w);
      if (more && ++m->claim_misses >= 3) {
        /* Requests after ours, none to claim: someone claimed them (a
         * leader before us that we did not catch up with). */
        m->claim_misses = 0;
        if (recover(m) != 0 && m->leader) step_down(m, "catching up with the log failed");
      }
      continue;
    }
    m->claim_misses = 0;
    entry_t *e;
    size_t n = entries_of(m, rep, &e, 0);
    int64_t claim_t2 = dg_mono_us();
    if (claim_t2 - claim_t0 >= SLOW_BATCH_MS * 1000)
      dg_log_warn("manager: slow claim: %zu requests, %lld ms: claimed (XREADGROUP) %lld, opened %lld", n,
                  (long long)(claim_t2 - claim_t0) / 1000, (long long)(claim_t1 - claim_t0) / 1000,
                  (long long)(claim_t2 - claim_t1) / 1000);
    /* After a Redis failover the new master may deliver again entries this
     * manager has applied and published already (it had not received their
     * delivery): they are in the unpersisted tail or in DuckDB, and stay
     * pending until the persister acknowledges them. Skip them: never apply
     * a request twice. */
    size_t skip = 0;
    if (n) {
      dg_redis_xid_t pub, per, x;
      dg_progress_get(d->progress, &pub, &per);
      while (skip < n && dg_redis_xid_parse(e[skip].id, e[skip].id_len, &x) == 0 && dg_redis_xid_cmp(x, pub) <= 0)
        skip++;
      if (skip) dg_log_warn("manager: %zu entries delivered again (Redis failover?) skipped: applied already", skip);
    }
    if (n > skip && run_entries(m, e + skip, n - skip) != 0 && m->leader) step_down(m, "a batch failed");
    dg_free(e);
    freeReplyObject(rep);
  }
  if (m->leader || atomic_load(&m->following)) {
    /* A clean stop persists the tail first, so a restart replays nothing. */
    persister_kick(m);
    drain(m);
    if (m->leader) lease_release(m);
  }
  atomic_store(&d->status->manager_state, DG_MANAGER_OFF);
  return NULL;
}

/* The settings apply depends on: a replay (replay.c) must use the same. */
void dg__mgr_apply_settings(dg_manager_t *m) {
  m->idem_window_ms = (int64_t)env_long("DUCKGRID_IDEMPOTENCY_WINDOW_MS", (long)IDEM_WINDOW_MS_DEFAULT, 1000,
                                        366L * 24 * 3600 * 1000);
  /* API v1.1: outcomes list at most 10,000 changes (a larger one is paged
   * from the audit log); a request may change at most 5,000,000 cells. */
  m->outcome_changes_max = (size_t)env_long("DUCKGRID_OUTCOME_CHANGES_MAX", 10000, 1, 1000000000);
  /* Its inserted / deleted ids likewise: above this many, ranges (apply.c). */
  m->outcome_ids_max = (size_t)env_long("DUCKGRID_OUTCOME_IDS_MAX", 10000, 1, 1000000000);
  m->request_changes_max = (size_t)env_long("DUCKGRID_REQUEST_CHANGES_MAX", 5000000, 1, 1000000000);
  dg__mgr_undo_settings(m);
}

int dg_manager_start(const dg_manager_deps_t *deps, const dg_redis_url_t *url, const dg_redis_opts_t *opts,
                     dg_manager_t **out) {
  dg_manager_t *m = dg_calloc(1, sizeof *m);
  m->deps = *deps;
  char err[200];
  if (dg_redis_create(url, opts, &m->redis, err, sizeof err) != 0 ||
      dg_redis_create(url, opts, &m->predis, err, sizeof err) != 0 ||
      dg_redis_create(url, opts, &m->lredis, err, sizeof err) != 0 || dg_db_connect(deps->db, &m->conn) != 0) {
    dg_redis_destroy(m->redis);
    dg_redis_destroy(m->predis);
    dg_redis_destroy(m->lredis);
    dg_free(m);
    return DG_EIO;
  }
  char host[64] = "host";
  gethostname(host, sizeof host - 1);
  snprintf(m->lease_base, sizeof m->lease_base, "%.40s:%d:%lld", host, (int)getpid(), (long long)now_ms());
  snprintf(m->lease_value, sizeof m->lease_value, "e0:%s", m->lease_base);
  snprintf(m->fpos, sizeof m->fpos, "0-0");
  snprintf(m->rtop, sizeof m->rtop, "0-0");
  m->lease_ms = deps->lease_ms > 0 ? deps->lease_ms : LEASE_MS_DEFAULT;
  m->role_follower = deps->role_follower;
  snprintf(m->consumer, sizeof m->consumer, CONSUMER);
  snprintf(m->last_applied, sizeof m->last_applied, "0-0");
  m->persist_interval_us = env_long("DUCKGRID_PERSIST_INTERVAL_MS", PERSIST_INTERVAL_MS_DEFAULT, 1, 60000) * 1000;
  m->persist_max = (size_t)env_long("DUCKGRID_PERSIST_MAX", PERSIST_MAX_DEFAULT, 1, 10000000);
  m->tail_max = (size_t)env_long("DUCKGRID_TAIL_MAX", TAIL_MAX_DEFAULT, 1, 100000000);
  dg__mgr_apply_settings(m);
  m->request_maxlen = env_long("DUCKGRID_REQUEST_MAXLEN", 1000000, 1, 1000000000);
  m->poison_attempts = env_long("DUCKGRID_POISON_ATTEMPTS", 3, 1, 1000);
  snprintf(m->poison_key, sizeof m->poison_key, "%spoison", deps->streams->req);
  snprintf(m->poisoned_key, sizeof m->poisoned_key, "%s" DG_POISONED_SUFFIX, deps->streams->req);
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
  pthread_cond_init(&m->rd_cond, NULL);
  pthread_mutex_init(&m->conn_lock, NULL);
  pthread_mutex_init(&m->idem_lock, NULL);
  pthread_mutex_init(&m->plock, NULL);
  pthread_mutex_init(&m->lease_lock, NULL);
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_cond_init(&m->pcond, &attr);
  pthread_cond_init(&m->dcond, &attr);
  pthread_condattr_destroy(&attr);
  deps->links->idem_lookup = idem_lookup;
  deps->links->idem_arg = m;
  deps->links->row_read = dg__mgr_row_read;
  deps->links->rows_read = dg__mgr_rows_read;
  deps->links->row_arg = m;
  dg_progress_set_kick(deps->progress, persister_kick, m);
  if (pthread_create(&m->pthread, NULL, persister_run, m) != 0) {
    dg_changes_destroy(m->changes);
    dg_db_disconnect(&m->conn);
    dg_redis_destroy(m->redis);
    dg_redis_destroy(m->predis);
    dg_free(m);
    return DG_EIO;
  }
  if (pthread_create(&m->lthread, NULL, lease_run, m) != 0) {
    atomic_store(&m->lstop, 1);
    m->lthread = 0;
  }
  if (pthread_create(&m->thread, NULL, run, m) != 0) {
    pthread_mutex_lock(&m->plock);
    m->pstop = 1;
    pthread_cond_signal(&m->pcond);
    pthread_mutex_unlock(&m->plock);
    pthread_join(m->pthread, NULL);
    atomic_store(&m->lstop, 1);
    if (m->lthread) pthread_join(m->lthread, NULL);
    dg_redis_destroy(m->lredis);
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
  atomic_store(&m->lstop, 1);
  if (m->lthread) pthread_join(m->lthread, NULL);
  dg_redis_destroy(m->lredis);
  dg_free(m->vq);
  dg_free(m->lq);
  pthread_mutex_destroy(&m->lease_lock);
  dg_progress_set_kick(m->deps.progress, NULL, NULL);
  m->deps.links->idem_lookup = NULL;
  m->deps.links->row_read = NULL;
  m->deps.links->rows_read = NULL;
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
  dg__mgr_undo_dispose(m);
  dg__mgr_persist_dispose(m);
  dg_db_disconnect(&m->conn);
  pthread_mutex_destroy(&m->plock);
  pthread_mutex_destroy(&m->idem_lock);
  pthread_mutex_destroy(&m->conn_lock);
  pthread_mutex_destroy(&m->state_lock);
  pthread_cond_destroy(&m->rd_cond);
}
