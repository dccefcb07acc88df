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

/*
 * What the reader is given, and all of the process it touches. Borrowed:
 * each must outlive dg_reader_stop.
 */
typedef struct {
  dg_db_t *db;                      /* dg.applied and the catalog at start,
                                       row sets to reload                   */
  const dg_streams_t *streams;      /* response_duck, the signing key       */
  dg_node_status_t *status;         /* it writes redis_seen_ms, redis_failing,
                                       redis_reconnects and stream_rejected
                                       (entry_mac.h); reads manager_state   */
  dg_links_t *links;                /* it sets feed, feed_done, feed_arg    */
  struct dg_catalog_s *catalog;     /* kept current from the outcomes       */
  struct dg_waiters_s *waiters;     /* woken by their outcome               */
  struct dg_hub_s *hub;             /* the ring and the live clients        */
  struct dg_progress_s *progress;   /* the published mark; NULL: none       */
} dg_reader_deps_t;

/** Starts the reader thread (deps copied, url and opts deep-copied). */
int dg_reader_start(const dg_reader_deps_t *deps, const dg_redis_url_t *url, const dg_redis_opts_t *opts,
                    dg_reader_t **out);
/** Stops and joins the thread (within about a second). */
void dg_reader_stop(dg_reader_t *r);

#endif
