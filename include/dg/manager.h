/*
 * manager.h -- the one writer (the seed's "singleton manager").
 *
 * It owns the in-memory engine tables, reads request_duck in stream order
 * through a consumer group, applies each request, writes each batch to
 * DuckDB in one transaction and publishes one outcome per request on
 * response_duck. The design essay is at the top of src/manager/manager.c.
 */
#ifndef DG_MANAGER_H
#define DG_MANAGER_H

#include "dg/app.h"
#include "dg/redis.h"

typedef struct dg_manager_s dg_manager_t;

/** Starts the manager thread. url/opts are deep-copied. */
int dg_manager_start(dg_app_t *app, const dg_redis_url_t *url, const dg_redis_opts_t *opts,
                     dg_manager_t **out);
/** Finishes the batch in hand, releases the lease, joins the thread. */
void dg_manager_stop(dg_manager_t *m);

#endif
