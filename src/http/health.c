/*
 * health.c -- GET /health: real checks of every dependency.
 *
 * From state the threads that own Redis and DuckDB keep fresh, so a
 * health check costs no round trip: Redis is up while the response
 * reader's blocking XREAD (every 500 ms at most) keeps getting answers;
 * DuckDB is up unless the manager stood down after failing to persist.
 * ?deep=1 checks live as well: PING, SELECT 1. The manager reports its
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
  int64_t seen = atomic_load(&app->redis_seen_ms);
  int redis_ok = seen > 0 && !atomic_load(&app->redis_failing) && dg_mono_us() / 1000 - seen < 3500;
  int duck_ok = 1;
  const char *deep = dg_query(r, "deep");
  if (deep && strcmp(deep, "1") == 0) {
    dg_redis_t *c = dg_redis_pool_get(app->redis);
    redis_ok = redis_ok && dg_redis_ping(c) == 0;
    dg_redis_pool_put(app->redis, c);
    duck_ok = dg_db_ping(app->db) == 0;
  }
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
