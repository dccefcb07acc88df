/*
 * metrics.h -- counters and histograms for GET /metrics (Prometheus text).
 *
 * Everything is a relaxed atomic, updated on the hot paths without locks:
 * HTTP requests by route and status with a latency histogram, the manager's
 * batch sizes and DuckDB transaction times, outcomes by status. Gauges (lag,
 * live clients, Redis reconnects) are read when rendering.
 */
#ifndef DG_METRICS_H
#define DG_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct dg_route_s;
struct dg_app_s;
struct dg_buf_s;

typedef struct dg_metrics_s dg_metrics_t;

/** Creates the registry for the given routes (borrowed, in dispatch order). */
dg_metrics_t *dg_metrics_create(const struct dg_route_s *const *routes, size_t nroutes);
void dg_metrics_destroy(dg_metrics_t *m);
/** One HTTP request: route index (-1: no route matched), status, duration. */
void dg_metrics_http(dg_metrics_t *m, int route, int status, int64_t us);
/** One manager batch: requests in it and its DuckDB transaction time. */
void dg_metrics_batch(dg_metrics_t *m, size_t nreqs, int64_t tx_us);
/** Outcomes published: applied and rejected counts. */
void dg_metrics_outcomes(dg_metrics_t *m, size_t applied, size_t rejected);
/** One read of a row (page 0) or a page of rows (page 1), answered from
 *  the manager's memory (1) or DuckDB (0). */
void dg_metrics_row_read(dg_metrics_t *m, int page, int from_memory);
/** A long poll began: parked by its loop (on_loop 1) or on a worker (0). */
void dg_metrics_long_poll(dg_metrics_t *m, int on_loop);
/** A write request was queued (its XADD sent or tried): from a loop (1) or a worker (0). */
void dg_metrics_write_queued(dg_metrics_t *m, int on_loop);
/** Renders every metric in Prometheus text format 0.0.4. */
void dg_metrics_render(dg_metrics_t *m, struct dg_app_s *app, struct dg_buf_s *out);

#endif
