/*
 * metrics_route.c -- GET /metrics (read role): Prometheus text format.
 */

#include "dg/auth.h"
#include "dg/buf.h"
#include "dg/http.h"
#include "dg/metrics.h"

static int metrics_get(dg_req_t *r) {
  /* The figures span every table (row counts, per-table series): a key
   * limited to some tables gets none of them. */
  if (r->who.tables[0] != '\0') {
    dg_problem(r, 403, NULL, "/metrics covers every table; this key is limited to some");
    return 0;
  }
  dg_buf_t out;
  dg_buf_init(&out);
  dg_metrics_render(r->app->metrics, r->app, &out);
  dg_reply_bytes(r, 200, "text/plain; version=0.0.4; charset=utf-8", out.data, out.len);
  dg_buf_dispose(&out);
  return 0;
}

const dg_route_t dg_routes_metrics[] = {
    {"GET", "/metrics", DG_ROLE_READ, metrics_get, 0, NULL},
    {NULL, NULL, DG_ROLE_NONE, NULL, 0, NULL},
};
