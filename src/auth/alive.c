/*
 * alive.c -- revocation for open streams (see alive.h).
 *
 * The snapshot is a sorted array of the ids in dg.api_keys. A check looks
 * the caller's key id up by binary search. Two kinds of callers:
 *  - dg_alive_check (a worker thread, which may block): when the snapshot
 *    is older than SNAPSHOT_MS the first checker re-reads it (outside the
 *    lock) while the others keep using the old one;
 *  - dg_alive_peek (an event loop, which must never wait for DuckDB): reads
 *    the snapshot only; the refresher thread re-reads it when peeks asked
 *    for it in the last two seconds (so an idle server runs no query) or at
 *    once after dg_alive_invalidate.
 * A key missing from a snapshot is "deleted" only if that snapshot's read
 * began after the caller was authenticated (who->seen_us); a key created
 * after the read is simply not in it yet.
 */
#include "dg/alive.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "dg/common.h"
#include "dg/dgsql.h"

/* How stale the snapshot may get: the "at least once a second". */
#define SNAPSHOT_MS 1000

struct dg_alive_s {
  dg_db_t *db;             /* borrowed                                   */
  pthread_mutex_t lock;    /* guards everything below                    */
  int64_t *ids;            /* live key ids, ascending                    */
  size_t nids;
  int64_t read_ms;         /* monotonic time of the last read, 0: never  */
  int reading;             /* a thread is re-reading                     */
  int valid;               /* at least one read succeeded                */
  char **jtis;             /* revoked JWT ids, ascending (strcmp)        */
  size_t njtis;
  int64_t read_us;         /* monotonic time the last good read began    */
  int64_t wanted_ms;       /* monotonic ms of the last peek               */
  int kick;                /* re-read now (invalidated)                   */
  int stop;                /* the refresher ends                          */
  int started;
  pthread_cond_t cond;     /* wakes the refresher (CLOCK_MONOTONIC)       */
  pthread_t thread;
};

static int read_install(dg_alive_t *a);

static void free_jtis(char **j, size_t n) {
  for (size_t i = 0; i < n; i++) dg_free(j[i]);
  dg_free(j);
}

/* Reads the revoked token ids: 0 and *out or DG_EUNAVAIL. */
static int read_jtis(dg_alive_t *a, char ***out, size_t *n) {
  duckdb_connection c = dg_db_conn(a->db);
  if (c == NULL) return DG_EUNAVAIL;
  duckdb_result res;
  if (duckdb_query(c, dg_sql_revoked_jtis, &res) == DuckDBError) {
    duckdb_destroy_result(&res);
    return DG_EUNAVAIL;
  }
  idx_t rows = duckdb_row_count(&res);
  char **j = dg_malloc((rows ? rows : 1) * sizeof *j);
  for (idx_t i = 0; i < rows; i++) {
    char *v = duckdb_value_varchar(&res, 0, i);
    j[i] = dg_strdup(v ? v : "");
    duckdb_free(v);
  }
  duckdb_destroy_result(&res);
  *out = j;
  *n = rows;
  return 0;
}

static int has_jti(const dg_alive_t *a, const char *jti) {
  size_t lo = 0, hi = a->njtis;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (strcmp(a->jtis[mid], jti) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo < a->njtis && strcmp(a->jtis[lo], jti) == 0;
}

dg_alive_t *dg_alive_create(dg_db_t *db) {
  dg_alive_t *a = dg_calloc(1, sizeof *a);
  a->db = db;
  pthread_mutex_init(&a->lock, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&a->cond, &ca);
  pthread_condattr_destroy(&ca);
  return a;
}

void dg_alive_destroy(dg_alive_t *a) {
  if (a == NULL) return;
  if (a->started) {
    pthread_mutex_lock(&a->lock);
    a->stop = 1;
    pthread_cond_signal(&a->cond);
    pthread_mutex_unlock(&a->lock);
    pthread_join(a->thread, NULL);
  }
  pthread_cond_destroy(&a->cond);
  pthread_mutex_destroy(&a->lock);
  free_jtis(a->jtis, a->njtis);
  dg_free(a->ids);
  dg_free(a);
}

void dg_alive_invalidate(dg_alive_t *a) {
  /* Read at once, here (a worker, after the key's delete committed): the
   * next message on an open WebSocket, a loop's peek, must see it. */
  if (read_install(a) == 0) return;
  pthread_mutex_lock(&a->lock);
  a->read_ms = 0; /* could not read: the next check and the refresher try */
  a->kick = 1;
  pthread_cond_signal(&a->cond);
  pthread_mutex_unlock(&a->lock);
}

/* Reads the live ids: 0 and *out (dg_free) or DG_EUNAVAIL. */
static int read_ids(dg_alive_t *a, int64_t **out, size_t *n) {
  duckdb_connection c = dg_db_conn(a->db);
  if (c == NULL) return DG_EUNAVAIL;
  duckdb_result res;
  if (duckdb_query(c, dg_sql_key_ids, &res) == DuckDBError) {
    duckdb_destroy_result(&res);
    return DG_EUNAVAIL;
  }
  idx_t rows = duckdb_row_count(&res);
  int64_t *ids = dg_malloc((rows ? rows : 1) * sizeof *ids);
  for (idx_t i = 0; i < rows; i++) ids[i] = duckdb_value_int64(&res, 0, i);
  duckdb_destroy_result(&res);
  *out = ids;
  *n = rows;
  return 0;
}

/* Reads the snapshot and installs it, unless one read from a later start
 * is in place already: 0, or DG_EUNAVAIL (the old one stays). */
static int read_install(dg_alive_t *a) {
  int64_t start = dg_mono_us();
  int64_t *ids = NULL;
  size_t n = 0, nj = 0;
  char **jtis = NULL;
  int rc = read_ids(a, &ids, &n);
  if (rc == 0 && read_jtis(a, &jtis, &nj) != 0) {
    dg_free(ids);
    rc = DG_EUNAVAIL;
  }
  if (rc != 0) return rc;
  pthread_mutex_lock(&a->lock);
  if (start > a->read_us) {
    dg_free(a->ids);
    a->ids = ids;
    a->nids = n;
    free_jtis(a->jtis, a->njtis);
    a->jtis = jtis;
    a->njtis = nj;
    a->valid = 1;
    a->read_ms = start / 1000;
    a->read_us = start;
    ids = NULL;
    jtis = NULL;
  }
  pthread_mutex_unlock(&a->lock);
  dg_free(ids);
  if (jtis != NULL) free_jtis(jtis, nj); /* not installed: a later read was */
  return 0;
}

/* The periodic re-read: one reader at a time, when the snapshot is stale. */
static void refresh(dg_alive_t *a) {
  int64_t now = dg_mono_us() / 1000;
  pthread_mutex_lock(&a->lock);
  int mine = !a->reading && (a->read_ms == 0 || now - a->read_ms >= SNAPSHOT_MS);
  if (mine) a->reading = 1;
  pthread_mutex_unlock(&a->lock);
  if (!mine) return;
  read_install(a);
  pthread_mutex_lock(&a->lock);
  a->reading = 0;
  pthread_mutex_unlock(&a->lock);
}

/* The refresher: re-reads the snapshot when peeks want it. */
static void *refresher(void *arg) {
  dg_alive_t *a = arg;
  pthread_setname_np(pthread_self(), "dg-alive");
  pthread_mutex_lock(&a->lock);
  while (!a->stop) {
    int64_t now = dg_mono_us() / 1000;
    int due = a->kick || (now - a->wanted_ms < 2 * SNAPSHOT_MS && now - a->read_ms >= SNAPSHOT_MS);
    if (due) {
      a->kick = 0;
      pthread_mutex_unlock(&a->lock);
      refresh(a);
      pthread_mutex_lock(&a->lock);
      continue;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_nsec += (SNAPSHOT_MS / 4) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&a->cond, &a->lock, &ts);
  }
  pthread_mutex_unlock(&a->lock);
  return NULL;
}

int dg_alive_start(dg_alive_t *a) {
  if (pthread_create(&a->thread, NULL, refresher, a) != 0) return DG_EUNAVAIL;
  a->started = 1;
  return 0;
}

static int has_id(const dg_alive_t *a, int64_t id) {
  size_t lo = 0, hi = a->nids;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (a->ids[mid] < id) lo = mid + 1;
    else hi = mid;
  }
  return lo < a->nids && a->ids[lo] == id;
}

int dg_alive_check(dg_alive_t *a, const dg_principal_t *who, char *why, size_t cap) {
  if (who->expires_s > 0 && (int64_t)time(NULL) >= who->expires_s) {
    snprintf(why, cap, "%s has expired", who->key_id > 0 ? "the API key" : "the token");
    return DG_EAUTH;
  }
  if (who->key_id <= 0) {
    if (who->jti[0] == '\0') return 0;
    refresh(a);
    pthread_mutex_lock(&a->lock);
    int revoked = has_jti(a, who->jti);
    pthread_mutex_unlock(&a->lock);
    if (revoked) {
      snprintf(why, cap, "the token was revoked");
      return DG_EAUTH;
    }
    return 0;
  }
  refresh(a);
  pthread_mutex_lock(&a->lock);
  int gone = a->valid && !has_id(a, who->key_id);
  pthread_mutex_unlock(&a->lock);
  if (gone) {
    /* Deleted, or created after the snapshot was read: a read of our own
     * decides (this happens once per stream that is about to end). */
    if (read_install(a) == 0) {
      pthread_mutex_lock(&a->lock);
      gone = !has_id(a, who->key_id);
      pthread_mutex_unlock(&a->lock);
    }
  }
  if (gone) {
    snprintf(why, cap, "the API key was deleted");
    return DG_EAUTH;
  }
  return 0;
}

int dg_alive_peek(dg_alive_t *a, const dg_principal_t *who, char *why, size_t cap) {
  if (who->expires_s > 0 && (int64_t)time(NULL) >= who->expires_s) {
    snprintf(why, cap, "%s has expired", who->key_id > 0 ? "the API key" : "the token");
    return DG_EAUTH;
  }
  if (who->key_id <= 0 && who->jti[0] == '\0') return 0;
  int64_t now = dg_mono_us() / 1000;
  pthread_mutex_lock(&a->lock);
  a->wanted_ms = now;
  if (now - a->read_ms >= SNAPSHOT_MS) pthread_cond_signal(&a->cond);
  int out;
  if (who->key_id <= 0) out = has_jti(a, who->jti);
  else out = a->valid && a->read_us > who->seen_us && !has_id(a, who->key_id);
  pthread_mutex_unlock(&a->lock);
  if (out) {
    snprintf(why, cap, who->key_id <= 0 ? "the token was revoked" : "the API key was deleted");
    return DG_EAUTH;
  }
  return 0;
}
