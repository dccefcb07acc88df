/*
 * redis_pool.c -- a mutex-guarded stack of idle connections.
 */
#include "dg/redis_pool.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "dg/common.h"
#include "dg/log.h"

struct dg_redis_pool_s {
  dg_redis_url_t url;      /* deep copy, owns the password         */
  dg_redis_opts_t opts;    /* copy (client_name not kept)           */
  pthread_mutex_t lock;    /* guards idle and nidle                 */
  dg_redis_t **idle;       /* stack of idle connections             */
  int nidle;
  int max_idle;
};

static char *dup_or_null(const char *s) { return s ? dg_strdup(s) : NULL; }

int dg_redis_pool_create(const dg_redis_url_t *url, const dg_redis_opts_t *opts, int max_idle,
                         dg_redis_pool_t **out, char *err, size_t errcap) {
  /* Validate once with a throw-away connection object (no I/O). */
  dg_redis_t *probe;
  int rc = dg_redis_create(url, opts, &probe, err, errcap);
  if (rc != 0) return rc;
  dg_redis_destroy(probe);
  dg_redis_pool_t *p = dg_calloc(1, sizeof *p);
  p->url = *url;
  p->url.host = dup_or_null(url->host);
  p->url.path = dup_or_null(url->path);
  p->url.user = dup_or_null(url->user);
  p->url.password = dup_or_null(url->password);
  if (opts) p->opts = *opts;
  p->opts.client_name = NULL;
  p->max_idle = max_idle > 0 ? max_idle : 1;
  p->idle = dg_calloc((size_t)p->max_idle, sizeof *p->idle);
  pthread_mutex_init(&p->lock, NULL);
  *out = p;
  return 0;
}

void dg_redis_pool_destroy(dg_redis_pool_t *p) {
  if (p == NULL) return;
  for (int i = 0; i < p->nidle; i++) dg_redis_destroy(p->idle[i]);
  dg_free(p->idle);
  pthread_mutex_destroy(&p->lock);
  dg_redis_url_dispose(&p->url);
  dg_free(p);
}

dg_redis_t *dg_redis_pool_get(dg_redis_pool_t *p) {
  dg_redis_t *r = NULL;
  pthread_mutex_lock(&p->lock);
  if (p->nidle > 0) r = p->idle[--p->nidle];
  pthread_mutex_unlock(&p->lock);
  if (r) return r;
  char err[200];
  /* The options were validated by dg_redis_pool_create, so this succeeds. */
  int rc = dg_redis_create(&p->url, &p->opts, &r, err, sizeof err);
  DG_ASSERT(rc == 0);
  return r;
}

void dg_redis_pool_put(dg_redis_pool_t *p, dg_redis_t *r) {
  if (r == NULL) return;
  if (dg_redis_pending(r) != 0) {
    dg_redis_destroy(r);
    return;
  }
  pthread_mutex_lock(&p->lock);
  if (p->nidle < p->max_idle) {
    p->idle[p->nidle++] = r;
    r = NULL;
  }
  pthread_mutex_unlock(&p->lock);
  dg_redis_destroy(r);
}
