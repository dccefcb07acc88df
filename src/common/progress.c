/*
 * progress.c -- the published and persisted marks (see progress.h).
 */
#include "dg/progress.h"

#include <errno.h>
#include <pthread.h>
#include <time.h>

#include "dg/common.h"

struct dg_progress_s {
  pthread_mutex_t lock;      /* guards everything below                  */
  pthread_cond_t cond;       /* broadcast when persisted rises, on close */
  dg_redis_xid_t published;  /* newest outcome in response_duck          */
  dg_redis_xid_t persisted;  /* newest update committed in DuckDB        */
  dg_redis_xid_t submitted;  /* newest async request this process queued */
  void (*kick)(void *);      /* asks the persister to flush now          */
  void *kick_arg;
  int closed;
};

dg_progress_t *dg_progress_create(void) {
  dg_progress_t *p = dg_calloc(1, sizeof *p);
  pthread_mutex_init(&p->lock, NULL);
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_cond_init(&p->cond, &attr);
  pthread_condattr_destroy(&attr);
  return p;
}

void dg_progress_destroy(dg_progress_t *p) {
  if (p == NULL) return;
  pthread_cond_destroy(&p->cond);
  pthread_mutex_destroy(&p->lock);
  dg_free(p);
}

void dg_progress_set_kick(dg_progress_t *p, void (*kick)(void *arg), void *arg) {
  pthread_mutex_lock(&p->lock);
  p->kick = kick;
  p->kick_arg = arg;
  pthread_mutex_unlock(&p->lock);
}

void dg_progress_published(dg_progress_t *p, dg_redis_xid_t id) {
  pthread_mutex_lock(&p->lock);
  if (dg_redis_xid_cmp(id, p->published) > 0) p->published = id;
  pthread_mutex_unlock(&p->lock);
}

void dg_progress_persisted(dg_progress_t *p, dg_redis_xid_t id) {
  pthread_mutex_lock(&p->lock);
  if (dg_redis_xid_cmp(id, p->persisted) > 0) p->persisted = id;
  /* A recovered leader persists what an earlier one published. */
  if (dg_redis_xid_cmp(id, p->published) > 0) p->published = id;
  pthread_cond_broadcast(&p->cond);
  pthread_mutex_unlock(&p->lock);
}

void dg_progress_submitted(dg_progress_t *p, dg_redis_xid_t id) {
  pthread_mutex_lock(&p->lock);
  if (dg_redis_xid_cmp(id, p->submitted) > 0) p->submitted = id;
  pthread_mutex_unlock(&p->lock);
}

dg_redis_xid_t dg_progress_read_mark(dg_progress_t *p) {
  pthread_mutex_lock(&p->lock);
  dg_redis_xid_t m = dg_redis_xid_cmp(p->submitted, p->published) > 0 ? p->submitted : p->published;
  pthread_mutex_unlock(&p->lock);
  return m;
}

void dg_progress_get(dg_progress_t *p, dg_redis_xid_t *published, dg_redis_xid_t *persisted) {
  pthread_mutex_lock(&p->lock);
  if (published) *published = p->published;
  if (persisted) *persisted = p->persisted;
  pthread_mutex_unlock(&p->lock);
}

/* The persister is asked again every KICK_EVERY_MS while a read waits: a
 * kick that found nothing handed over yet (the manager was still
 * publishing the batch the read waits for) is not lost. */
#define KICK_EVERY_MS 5

static int before(const struct timespec *a, const struct timespec *b) {
  return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

int dg_progress_wait(dg_progress_t *p, dg_redis_xid_t want, int timeout_ms, dg_redis_xid_t *reached) {
  struct timespec until;
  dg_deadline_after_ms(&until, timeout_ms);
  pthread_mutex_lock(&p->lock);
  for (;;) {
    if (dg_redis_xid_cmp(p->persisted, want) >= 0 || p->closed) break;
    /* The kick only sets a flag and signals the persister's own condition
     * variable: safe under this lock (lock order: progress before the
     * persister's). */
    if (p->kick) p->kick(p->kick_arg);
    struct timespec slice;
    dg_deadline_after_ms(&slice, KICK_EVERY_MS);
    int last = !before(&slice, &until);
    if (pthread_cond_timedwait(&p->cond, &p->lock, last ? &until : &slice) == ETIMEDOUT && last) break;
  }
  int ok = dg_redis_xid_cmp(p->persisted, want) >= 0;
  if (reached) *reached = p->persisted;
  pthread_mutex_unlock(&p->lock);
  return ok ? 0 : DG_ETIMEOUT;
}

void dg_progress_close(dg_progress_t *p) {
  pthread_mutex_lock(&p->lock);
  p->closed = 1;
  pthread_cond_broadcast(&p->cond);
  pthread_mutex_unlock(&p->lock);
}
