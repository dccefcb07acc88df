/*
 * redis_pool.h -- a small pool of Redis connections for threads that talk to
 * Redis now and then (API request threads, /health). A thread takes a
 * connection, uses it alone, and gives it back; idle connections keep their
 * backoff state, so while Redis is down callers fail fast instead of each
 * paying a connect timeout.
 */
#ifndef DG_REDIS_POOL_H
#define DG_REDIS_POOL_H

#include "dg/redis.h"

typedef struct dg_redis_pool_s dg_redis_pool_t;

/**
 * Creates a pool for url (deep-copied) keeping at most max_idle idle
 * connections. DG_EINVAL (with err) for bad options or an unsupported URL.
 */
int dg_redis_pool_create(const dg_redis_url_t *url, const dg_redis_opts_t *opts, int max_idle,
                         dg_redis_pool_t **out, char *err, size_t errcap);
/** Closes every idle connection; connections still out must be returned first. */
void dg_redis_pool_destroy(dg_redis_pool_t *p);
/** An idle connection or a new one (not yet connected). Never fails. */
dg_redis_t *dg_redis_pool_get(dg_redis_pool_t *p);
/** Gives a connection back; one with replies pending is closed instead. */
void dg_redis_pool_put(dg_redis_pool_t *p, dg_redis_t *r);

#endif
