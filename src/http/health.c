/*
 * health.c -- GET /health: real checks of every dependency.
 *
 * The facts come from the node service (dg_service_health, service_read.h):
 * from state the threads that own Redis and DuckDB keep fresh, so a health
 * check costs no round trip; ?deep=1 checks live as well: PING, SELECT 1.
 * The manager reports its role. Any dependency down: 503 with
 * "status":"degraded" and the same shape, so load balancers and people
 * read one format.
 */
#include <string.h>

#include "dg/http.h"
#include "dg/service_read.h"

static const char *manager_name(int s) {
  switch (s) {
    case DG_MANAGER_LEADER: return "leader";
    case DG_MANAGER_STANDBY: return "standby";
    case DG_MANAGER_FOLLOWER: return "follower";
    default: return "off";
  }
}

static int health_get(dg_req_t *r) {
  const char *deep = dg_query(r, "deep");
  dg_health_t h;
  dg_service_health(r->app, deep && strcmp(deep, "1") == 0, &h);
  int ok = h.redis_ok && h.duck_ok && !h.diverged && !h.stopping;
  json_t *body = json_pack("{s:s,s:s,s:s,s:s,s:I,s:I}", "status", ok ? "ok" : "degraded", "redis",
                           h.redis_ok ? "ok" : "down", "duckdb", h.duck_ok ? "ok" : "down", "manager",
                           h.diverged ? "diverged" : manager_name(h.manager_state), "lag", (json_int_t)h.lag,
                           "lag_ms", (json_int_t)h.lag_ms);
  if (h.has_progress) {
    /* What reads on this node reflect (persisted) and what it has seen
     * published: the applied id of API v1.1's X-Duckgrid-Applied. */
    json_object_set_new(body, "applied", json_string(h.applied));
    json_object_set_new(body, "published", json_string(h.published));
  }
  dg_reply_json(r, ok ? 200 : 503, body);
  return 0;
}

/* On an HTTP loop: everything but ?deep=1 (which pings) reads atomics. */
static int health_loop(dg_req_t *r) {
  const char *deep = dg_query(r, "deep");
  if (deep && strcmp(deep, "1") == 0) return 0;
  health_get(r);
  return 1;
}

const dg_route_t dg_routes_health[] = {
    {"GET", "/health", DG_ROLE_NONE, health_get, 0, health_loop},
    {NULL, NULL, DG_ROLE_NONE, NULL, 0, NULL},
};
