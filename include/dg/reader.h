/*
 * reader.h -- the one reader of response_duck in each process.
 *
 * It follows the stream with XREAD BLOCK, keeps the process's catalog current
 * (tables made or dropped, rows inserted or deleted, views), appends every
 * entry to the hub's ring of recent outcomes (which GET /get_updates serves
 * from), wakes the synchronous requests waiting for each outcome and hands
 * it to the live clients. Catalog and ring first, then the waiter: a client
 * that got its answer can rely on the catalog having it and on
 * GET /get_updates returning it.
 */
#ifndef DG_READER_H
#define DG_READER_H

#include "dg/app.h"
#include "dg/redis.h"

typedef struct dg_reader_s dg_reader_t;

/** Starts the reader thread (url and opts deep-copied). */
int dg_reader_start(dg_app_t *app, const dg_redis_url_t *url, const dg_redis_opts_t *opts,
                    dg_reader_t **out);
/** Stops and joins the thread (within about a second). */
void dg_reader_stop(dg_reader_t *r);

#endif
