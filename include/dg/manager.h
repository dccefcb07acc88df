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

/*
 * What the manager is given, and all of the process it touches. Borrowed:
 * each must outlive dg_manager_stop.
 */
typedef struct {
  dg_db_t *db;                      /* its own connections (dg_db_connect)  */
  const dg_streams_t *streams;      /* request_duck, response_duck, the lease,
                                       the signing key                      */
  dg_node_status_t *status;         /* it writes manager_state, lag, lag_ms,
                                       diverged, log_losses, cannot_follow,
                                       manager_broken, redis_reconnects and
                                       stream_rejected (entry_mac.h)        */
  dg_links_t *links;                /* it calls feed / feed_done (set by the
                                       reader) and sets idem_lookup         */
  struct dg_progress_s *progress;   /* it marks published and persisted ids;
                                       its kick wakes the persister         */
  struct dg_metrics_s *metrics;     /* batch and outcome counters           */
  struct dg_archive_s *archive;     /* request_duck is trimmed only up to what
                                       it holds; NULL: no archive           */
  int batch_max;                    /* requests claimed per batch           */
  long response_maxlen;             /* entries kept in response_duck        */
  int lease_ms;                     /* the lease; 0 or less: the default    */
  int role_follower;                /* never lead (DUCKGRID_ROLE=follower)  */
} dg_manager_deps_t;

/** Starts the manager thread. deps is copied, url/opts are deep-copied. */
int dg_manager_start(const dg_manager_deps_t *deps, const dg_redis_url_t *url, const dg_redis_opts_t *opts,
                     dg_manager_t **out);
/** Finishes the batch in hand, releases the lease, joins the thread. */
void dg_manager_stop(dg_manager_t *m);

#endif
