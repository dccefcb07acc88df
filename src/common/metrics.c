/*
 * metrics.c -- the Prometheus registry (see metrics.h).
 *
 * Fixed shapes, so updates are an index computation and an atomic add:
 * MAX_ROUTES x STATUSES request counters, one latency histogram per route,
 * and two manager histograms. Rendering skips series that never moved.
 */
#include "dg/metrics.h"
#include "dg/archive.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "dg/app.h"
#include "dg/buf.h"
#include "dg/common.h"
#include "dg/http.h"
#include "dg/hub.h"

/* Routes we keep series for; the router has about 30. */
#define MAX_ROUTES 96
/* Latency buckets, seconds: 0.5 ms (a health check) to 10 s (the sync timeout). */
static const double lat_le[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                0.1,    0.25,  0.5,    1,     2.5,  5,     10};
#define NLAT (sizeof lat_le / sizeof lat_le[0])
/* Batch sizes: powers of two up to the default cap (1024). */
static const double batch_le[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
#define NBATCH (sizeof batch_le / sizeof batch_le[0])
/* Statuses we count individually; anything else is "other". */
static const int statuses[] = {200, 201, 202, 204, 304, 400, 401, 403, 404, 405, 409,
                               410, 413, 429, 431, 500, 503, 504};
#define NSTATUS (sizeof statuses / sizeof statuses[0] + 1)

typedef struct {
  atomic_ullong bucket[NLAT + 1]; /* the last is +Inf */
  atomic_ullong sum_us;
  atomic_ullong count;
} hist_t;

struct dg_metrics_s {
  const dg_route_t *const *routes;
  size_t nroutes;
  atomic_ullong requests[MAX_ROUTES + 1][NSTATUS]; /* last row: unmatched */
  hist_t latency[MAX_ROUTES + 1];
  atomic_ullong batch_bucket[NBATCH + 1];
  atomic_ullong batch_sum, batch_count;
  hist_t tx;
  atomic_ullong applied, rejected;
  atomic_ullong row_reads[2][2]; /* [0] one-row reads, [1] pages; [.][0] DuckDB, [.][1] memory */
  atomic_ullong long_polls[2];   /* [0] begun on a worker, [1] on a loop */
  atomic_ullong writes_queued[2]; /* [0] XADD on a worker, [1] queued from a loop */
};

dg_metrics_t *dg_metrics_create(const dg_route_t *const *routes, size_t nroutes) {
  dg_metrics_t *m = dg_calloc(1, sizeof *m);
  m->routes = routes;
  m->nroutes = nroutes < MAX_ROUTES ? nroutes : MAX_ROUTES;
  return m;
}

void dg_metrics_destroy(dg_metrics_t *m) { dg_free(m); }

static void observe(hist_t *h, const double *le, size_t n, double v, int64_t raw) {
  size_t i = 0;
  while (i < n && v > le[i]) i++;
  atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&h->sum_us, (unsigned long long)raw, memory_order_relaxed);
  atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
}

void dg_metrics_http(dg_metrics_t *m, int route, int status, int64_t us) {
  if (m == NULL) return;
  size_t r = route >= 0 && (size_t)route < m->nroutes ? (size_t)route : MAX_ROUTES;
  size_t s = NSTATUS - 1;
  for (size_t i = 0; i + 1 < NSTATUS; i++)
    if (statuses[i] == status) s = i;
  atomic_fetch_add_explicit(&m->requests[r][s], 1, memory_order_relaxed);
  observe(&m->latency[r], lat_le, NLAT, (double)us / 1e6, us);
}

void dg_metrics_batch(dg_metrics_t *m, size_t nreqs, int64_t tx_us) {
  if (m == NULL) return;
  size_t i = 0;
  while (i < NBATCH && (double)nreqs > batch_le[i]) i++;
  atomic_fetch_add_explicit(&m->batch_bucket[i], 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&m->batch_sum, nreqs, memory_order_relaxed);
  atomic_fetch_add_explicit(&m->batch_count, 1, memory_order_relaxed);
  observe(&m->tx, lat_le, NLAT, (double)tx_us / 1e6, tx_us);
}

void dg_metrics_outcomes(dg_metrics_t *m, size_t applied, size_t rejected) {
  if (m == NULL) return;
  atomic_fetch_add_explicit(&m->applied, applied, memory_order_relaxed);
  atomic_fetch_add_explicit(&m->rejected, rejected, memory_order_relaxed);
}

void dg_metrics_write_queued(dg_metrics_t *m, int on_loop) {
  if (m == NULL) return;
  atomic_fetch_add_explicit(&m->writes_queued[on_loop != 0], 1, memory_order_relaxed);
}

void dg_metrics_long_poll(dg_metrics_t *m, int on_loop) {
  if (m == NULL) return;
  atomic_fetch_add_explicit(&m->long_polls[on_loop != 0], 1, memory_order_relaxed);
}

void dg_metrics_row_read(dg_metrics_t *m, int page, int from_memory) {
  if (m == NULL) return;
  atomic_fetch_add_explicit(&m->row_reads[page != 0][from_memory != 0], 1, memory_order_relaxed);
}

static void route_labels(dg_metrics_t *m, size_t r, dg_buf_t *out) {
  if (r == MAX_ROUTES) dg_buf_puts(out, "method=\"\",route=\"unmatched\"");
  else dg_buf_printf(out, "method=\"%s\",route=\"%s\"", m->routes[r]->method, m->routes[r]->pattern);
}

static void render_hist(dg_buf_t *out, const char *name, const char *labels, hist_t *h,
                        const double *le, size_t n) {
  unsigned long long cum = 0;
  const char *sep = labels[0] ? "," : "";
  for (size_t i = 0; i <= n; i++) {
    cum += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
    if (i < n) dg_buf_printf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, le[i], cum);
    else dg_buf_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, cum);
  }
  const char *open = labels[0] ? "{" : "", *close = labels[0] ? "}" : "";
  dg_buf_printf(out, "%s_sum%s%s%s %.6f\n", name, open, labels, close,
                (double)atomic_load_explicit(&h->sum_us, memory_order_relaxed) / 1e6);
  dg_buf_printf(out, "%s_count%s%s%s %llu\n", name, open, labels, close,
                (unsigned long long)atomic_load_explicit(&h->count, memory_order_relaxed));
}

void dg_metrics_render(dg_metrics_t *m, dg_app_t *app, dg_buf_t *out) {
  dg_buf_puts(out, "# HELP duckgrid_http_requests_total HTTP requests by route and status.\n"
                   "# TYPE duckgrid_http_requests_total counter\n");
  for (size_t r = 0; r <= MAX_ROUTES; r++) {
    if (r >= m->nroutes && r != MAX_ROUTES) continue;
    for (size_t s = 0; s < NSTATUS; s++) {
      unsigned long long v = atomic_load_explicit(&m->requests[r][s], memory_order_relaxed);
      if (v == 0) continue;
      dg_buf_puts(out, "duckgrid_http_requests_total{");
      route_labels(m, r, out);
      if (s + 1 < NSTATUS) dg_buf_printf(out, ",status=\"%d\"} %llu\n", statuses[s], v);
      else dg_buf_printf(out, ",status=\"other\"} %llu\n", v);
    }
  }
  dg_buf_puts(out, "# HELP duckgrid_http_request_duration_seconds HTTP request latency by route.\n"
                   "# TYPE duckgrid_http_request_duration_seconds histogram\n");
  for (size_t r = 0; r <= MAX_ROUTES; r++) {
    if ((r >= m->nroutes && r != MAX_ROUTES) || atomic_load(&m->latency[r].count) == 0) continue;
    dg_buf_t labels;
    dg_buf_init(&labels);
    route_labels(m, r, &labels);
    render_hist(out, "duckgrid_http_request_duration_seconds", labels.data, &m->latency[r], lat_le, NLAT);
    dg_buf_dispose(&labels);
  }
  dg_buf_printf(out,
                "# HELP duckgrid_request_duck_lag Requests in request_duck not yet applied "
                "(read or waiting).\n# TYPE duckgrid_request_duck_lag gauge\nduckgrid_request_duck_lag %ld\n",
                atomic_load(&app->status.lag));
  dg_buf_printf(out,
                "# HELP duckgrid_manager_leader 1 when this process's manager holds the lease.\n"
                "# TYPE duckgrid_manager_leader gauge\nduckgrid_manager_leader %d\n",
                atomic_load(&app->status.manager_state) == DG_MANAGER_LEADER);
  dg_buf_printf(out,
                "# HELP duckgrid_manager_follower 1 when this process follows the leader (a read replica).\n"
                "# TYPE duckgrid_manager_follower gauge\nduckgrid_manager_follower %d\n"
                "# HELP duckgrid_follower_lag_ms Stream time between the newest request and the newest one "
                "this node applied.\n"
                "# TYPE duckgrid_follower_lag_ms gauge\nduckgrid_follower_lag_ms %ld\n"
                "# HELP duckgrid_follower_diverged 1 when this follower's outcome differed from the leader's.\n"
                "# TYPE duckgrid_follower_diverged gauge\nduckgrid_follower_diverged %d\n"
                "# HELP duckgrid_redis_log_losses_total Times this node, leading, found that Redis had lost "
                "the request log (and went on from its database and the archive).\n"
                "# TYPE duckgrid_redis_log_losses_total counter\nduckgrid_redis_log_losses_total %ld\n",
                atomic_load(&app->status.manager_state) == DG_MANAGER_FOLLOWER, atomic_load(&app->status.lag_ms),
                atomic_load(&app->status.diverged), atomic_load(&app->status.log_losses));
  dg_buf_puts(out, "# HELP duckgrid_batch_size Requests applied per DuckDB transaction.\n"
                   "# TYPE duckgrid_batch_size histogram\n");
  unsigned long long cum = 0;
  for (size_t i = 0; i <= NBATCH; i++) {
    cum += atomic_load(&m->batch_bucket[i]);
    if (i < NBATCH) dg_buf_printf(out, "duckgrid_batch_size_bucket{le=\"%g\"} %llu\n", batch_le[i], cum);
    else dg_buf_printf(out, "duckgrid_batch_size_bucket{le=\"+Inf\"} %llu\n", cum);
  }
  dg_buf_printf(out, "duckgrid_batch_size_sum %llu\nduckgrid_batch_size_count %llu\n",
                (unsigned long long)atomic_load(&m->batch_sum), (unsigned long long)atomic_load(&m->batch_count));
  dg_buf_puts(out, "# HELP duckgrid_duckdb_transaction_seconds Time to write and commit one batch.\n"
                   "# TYPE duckgrid_duckdb_transaction_seconds histogram\n");
  render_hist(out, "duckgrid_duckdb_transaction_seconds", "", &m->tx, lat_le, NLAT);
  dg_buf_printf(out,
                "# HELP duckgrid_outcomes_total Outcomes published on response_duck by status.\n"
                "# TYPE duckgrid_outcomes_total counter\n"
                "duckgrid_outcomes_total{status=\"applied\"} %llu\n"
                "duckgrid_outcomes_total{status=\"rejected\"} %llu\n",
                (unsigned long long)atomic_load(&m->applied), (unsigned long long)atomic_load(&m->rejected));
  dg_buf_printf(out,
                "# HELP duckgrid_row_reads_total One-row reads (GET /tables/{table}/rows/{id}) by where "
                "they were answered from: the manager's state in memory, or DuckDB.\n"
                "# TYPE duckgrid_row_reads_total counter\n"
                "duckgrid_row_reads_total{source=\"memory\"} %llu\n"
                "duckgrid_row_reads_total{source=\"duckdb\"} %llu\n"
                "# HELP duckgrid_row_pages_total Pages of rows (GET /tables/{table}/rows) by where they were "
                "answered from: a parent's children or the roots from memory, any page from DuckDB.\n"
                "# TYPE duckgrid_row_pages_total counter\n"
                "duckgrid_row_pages_total{source=\"memory\"} %llu\n"
                "duckgrid_row_pages_total{source=\"duckdb\"} %llu\n",
                (unsigned long long)atomic_load(&m->row_reads[0][1]), (unsigned long long)atomic_load(&m->row_reads[0][0]),
                (unsigned long long)atomic_load(&m->row_reads[1][1]), (unsigned long long)atomic_load(&m->row_reads[1][0]));
  dg_buf_printf(out,
                "# HELP duckgrid_long_polls_total Long polls (GET /get_updates with wait_ms) by where they "
                "began: parked by an HTTP loop (a cursor the ring covers, one shared retention check), or "
                "run on a worker.\n"
                "# TYPE duckgrid_long_polls_total counter\n"
                "duckgrid_long_polls_total{started=\"loop\"} %llu\n"
                "duckgrid_long_polls_total{started=\"worker\"} %llu\n",
                (unsigned long long)atomic_load(&m->long_polls[1]), (unsigned long long)atomic_load(&m->long_polls[0]));
  dg_buf_printf(out,
                "# HELP duckgrid_writes_queued_total Write requests put on request_duck by where: queued "
                "from an HTTP loop and sent by the submitter's pipeline, or an XADD of their own on a "
                "worker.\n"
                "# TYPE duckgrid_writes_queued_total counter\n"
                "duckgrid_writes_queued_total{from=\"loop\"} %llu\n"
                "duckgrid_writes_queued_total{from=\"worker\"} %llu\n",
                (unsigned long long)atomic_load(&m->writes_queued[1]),
                (unsigned long long)atomic_load(&m->writes_queued[0]));
  dg_buf_printf(out,
                "# HELP duckgrid_live_clients Connected live clients (SSE streams and WebSockets).\n"
                "# TYPE duckgrid_live_clients gauge\nduckgrid_live_clients %zu\n",
                app->hub ? dg_hub_count(app->hub) : 0);
  dg_buf_printf(out,
                "# HELP duckgrid_redis_reconnects_total Reconnects of the manager's and the reader's "
                "Redis connections.\n# TYPE duckgrid_redis_reconnects_total counter\n"
                "duckgrid_redis_reconnects_total %ld\n",
                atomic_load(&app->status.redis_reconnects));
  dg_buf_printf(out,
                "# HELP duckgrid_stream_entries_rejected_total Stream entries refused for want of a valid "
                "MAC (forged, damaged or replayed).\n"
                "# TYPE duckgrid_stream_entries_rejected_total counter\n"
                "duckgrid_stream_entries_rejected_total{stream=\"request_duck\"} %ld\n"
                "duckgrid_stream_entries_rejected_total{stream=\"response_duck\"} %ld\n",
                atomic_load(&app->status.stream_rejected[0]), atomic_load(&app->status.stream_rejected[1]));
  if (app->auth)
    dg_buf_printf(out,
                  "# HELP duckgrid_auth_unknown_key_cache_hits_total Requests with an unknown key refused "
                  "without a database lookup.\n# TYPE duckgrid_auth_unknown_key_cache_hits_total counter\n"
                  "duckgrid_auth_unknown_key_cache_hits_total %llu\n",
                  dg_auth_negative_hits(app->auth));
  dg_buf_printf(out,
                "# HELP duckgrid_redis_replication_total Writes answered after waiting for Redis "
                "replicas (DUCKGRID_REDIS_WAIT_REPLICAS), by result.\n"
                "# TYPE duckgrid_redis_replication_total counter\n"
                "duckgrid_redis_replication_total{result=\"ok\"} %ld\n"
                "duckgrid_redis_replication_total{result=\"timeout\"} %ld\n",
                atomic_load(&app->status.repl_ok), atomic_load(&app->status.repl_timeout));
  dg_archive_metrics(app->archive, out);
}
