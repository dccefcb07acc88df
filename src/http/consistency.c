/*
 * consistency.c -- reads that reflect every answered write (API v1.1).
 *
 * Writes are answered once their outcome is in Redis; DuckDB, which reads
 * query, is written behind. So a read first waits, through the node service
 * (dg_service_await_applied, service_read.h), until DuckDB reflects every
 * write answered when the read arrived and the newest request this process
 * queued with ?async=true (answered 202), or until ?min_update=<update id>
 * is persisted, whichever is later, and answers with X-Duckgrid-Applied:
 * the newest update it reflects. This file parses the parameters and
 * answers the problems.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dg/common.h"
#include "dg/http.h"
#include "dg/redis.h" /* dg_redis_xid_parse: the update-id format, no connection */
#include "dg/service_read.h"

/* How long a read with ?min_update waits by default (API.md v1.1). */
#define MIN_UPDATE_WAIT_DEFAULT_MS 5000
/* The longest wait a client may ask for, as GET /get_updates allows. */
#define WAIT_MAX_MS 30000

int dg_read_params_or_problem(dg_req_t *r, dg_redis_xid_t *min, int *has_min, int *wait_ms_out) {
  const char *mu = dg_query(r, "min_update");
  *has_min = mu != NULL && *mu != '\0';
  *min = (dg_redis_xid_t){0, 0};
  if (*has_min && dg_redis_xid_parse(mu, strlen(mu), min) != 0) {
    dg_problem(r, 400, NULL, "min_update must be an update id like \"1732870000000-0\"; got '%.60s'", mu);
    return DG_EINVAL;
  }
  int wait_ms = MIN_UPDATE_WAIT_DEFAULT_MS;
  const char *ws = dg_query(r, "wait_ms");
  if (ws && *has_min) {
    char *end;
    long v = strtol(ws, &end, 10);
    if (*ws == '\0' || *end != '\0' || v < 0 || v > WAIT_MAX_MS) {
      dg_problem(r, 400, NULL, "wait_ms must be an integer from 0 to %d", WAIT_MAX_MS);
      return DG_EINVAL;
    }
    wait_ms = (int)v;
  }
  if (wait_ms_out) *wait_ms_out = wait_ms;
  return 0;
}

int dg_read_consistent_or_problem(dg_req_t *r) {
  dg_redis_xid_t min;
  int has_min, wait_ms;
  if (dg_read_params_or_problem(r, &min, &has_min, &wait_ms) != 0) return DG_EINVAL;
  const char *mu = dg_query(r, "min_update");
  char applied[DG_REDIS_XID_BUFSZ];
  int rc = dg_service_await_applied(r->app, has_min ? &min : NULL, wait_ms, applied, sizeof applied);
  if (applied[0] == '\0') return 0; /* no progress marks kept: nothing to say */
  dg_set_header(r, "X-Duckgrid-Applied", applied);
  if (rc == DG_ETIMEOUT) {
    dg_problem(r, 504, json_pack("{s:s,s:s}", "min_update", mu, "applied", applied),
               "update %s is not applied on this node within %d ms", mu, wait_ms);
    return DG_ETIMEOUT;
  }
  return 0;
}
