/*
 * health.c -- GET /health: real checks of every dependency.
 *
 * Redis answers PING, DuckDB answers SELECT 1, and the manager reports its
 * role. Any dependency down: 503 with "status":"degraded" and the same shape,
 * so load balancers and people read one format.
 */
#include <string.h>

#include "dg/http.h"
#include "dg/progress.h"
#include "dg/redis_pool.h"

static const char *manager_name(int s) {
  switch (s) {
    case DG_MANAGER_LEADER: return "leader";
    case DG_MANAGER_STANDBY: return "standby";
    case DG_MANAGER_FOLLOWER: return "follower";
    default: return "off";
  }
}

static int health_get(dg_req_t *r) {
  dg_app_t *app = r->app;
  dg_redis_t *c = dg_redis_pool_get(app->redis);
  int redis_ok = dg_redis_ping(c) == 0;
  dg_redis_pool_put(app->redis, c);
  int duck_ok = dg_db_ping(app->db) == 0;
  /* DuckDB answers but keeps failing to persist: the manager stood down. */
  if (atomic_load(&app->manager_broken)) duck_ok = 0;
  int diverged = atomic_load(&app->diverged);
  int ok = redis_ok && duck_ok && !diverged && !atomic_load(&app->stopping);
  json_t *body = json_pack("{s:s,s:s,s:s,s:s,s:I,s:I}", "status", ok ? "ok" : "degraded", "redis",
                           redis_ok ? "ok" : "down", "duckdb", duck_ok ? "ok" : "down", "manager",
                           diverged ? "diverged" : manager_name(atomic_load(&app->manager_state)), "lag",
                           (json_int_t)atomic_load(&app->lag), "lag_ms", (json_int_t)atomic_load(&app->lag_ms));
  if (app->progress) {
    /* What reads on this node reflect (persisted) and what it has seen
     * published: the applied id of API v1.1's X-Duckgrid-Applied. */
    dg_redis_xid_t pub, per;
    char a[DG_REDIS_XID_BUFSZ], b[DG_REDIS_XID_BUFSZ];
    dg_progress_get(app->progress, &pub, &per);
    dg_redis_xid_format(per, a, sizeof a);
    dg_redis_xid_format(pub, b, sizeof b);
    json_object_set_new(body, "applied", json_string(a));
    json_object_set_new(body, "published", json_string(b));
  }
  dg_reply_json(r, ok ? 200 : 503, body);
  return 0;
}

const dg_route_t dg_routes_health[] = {
    {"GET", "/health", DG_ROLE_NONE, health_get, 0},
    {NULL, NULL, DG_ROLE_NONE, NULL, 0},
};
