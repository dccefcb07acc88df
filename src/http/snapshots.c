/*
 * snapshots.c -- POST /admin/snapshots and GET /admin/snapshots (admin).
 *
 * POST first waits, like a read, until DuckDB holds every write answered
 * before it arrived (consistency.c; ?min_update= too), so the snapshot
 * holds them. It then starts a snapshot (snapshot.h) in the background and waits for it
 * up to ?wait_ms= (default 10000, 0..60000): 201 with the manifest when it
 * finished in time, 202 {"id","status":"running"} otherwise -- it goes on,
 * and GET /admin/snapshots shows it ("running", then "done" with its
 * manifest, or "failed" with the error). One at a time: 409 while one runs.
 */
#include <stdlib.h>
#include <string.h>

#include "dg/common.h"
#include "dg/http.h"
#include "dg/snapshot.h"

static int snapshots_post(dg_req_t *r) {
  dg_snapshots_t *s = r->app->snapshots;
  const char *ws = dg_query(r, "wait_ms");
  char *end = NULL;
  long wait_ms = ws ? strtol(ws, &end, 10) : 10000;
  if (ws && (*ws == '\0' || *end != '\0' || wait_ms < 0 || wait_ms > 60000)) {
    dg_problem(r, 400, NULL, "wait_ms must be an integer from 0 to 60000");
    return 0;
  }
  if (s == NULL) {
    dg_problem(r, 503, NULL, "snapshots are not available in this process");
    return 0;
  }
  /* Like a read: the snapshot holds every write answered before this
   * request arrived (and ?min_update=). */
  if (dg_read_consistent_or_problem(r) != 0) return 0;
  char id[DG_SNAPSHOT_ID_MAX];
  int rc = dg_snapshots_start(s, id);
  if (rc == DG_ECONFLICT) {
    dg_problem(r, 409, json_pack("{s:s}", "id", id), "snapshot %s is being taken; see GET /admin/snapshots", id);
    return 0;
  }
  if (rc != 0) {
    dg_problem(r, 503, NULL, "cannot start a snapshot");
    return 0;
  }
  dg_audit(r, "snapshot.create", "snapshot %s", id);
  json_t *st = dg_snapshots_wait(s, id, (int)wait_ms);
  const char *status = json_string_value(json_object_get(st, "status"));
  if (status && strcmp(status, "done") == 0) {
    dg_reply_json(r, 201, st);
  } else if (status && strcmp(status, "failed") == 0) {
    dg_problem(r, 500, json_pack("{s:s}", "id", id), "snapshot %s failed: %s", id,
               json_string_value(json_object_get(st, "error")));
    json_decref(st);
  } else {
    if (st == NULL) st = json_pack("{s:s,s:s}", "id", id, "status", "running");
    json_object_set_new(st, "progress", json_string("/admin/snapshots"));
    dg_reply_json(r, 202, st);
  }
  return 0;
}

static int snapshots_get(dg_req_t *r) {
  if (r->app->snapshots == NULL) {
    dg_problem(r, 503, NULL, "snapshots are not available in this process");
    return 0;
  }
  dg_reply_json(r, 200, json_pack("{s:o}", "snapshots", dg_snapshots_list(r->app->snapshots)));
  return 0;
}

const dg_route_t dg_routes_snapshots[] = {
    {"POST", "/admin/snapshots", DG_ROLE_ADMIN, snapshots_post, 0, NULL},
    {"GET", "/admin/snapshots", DG_ROLE_ADMIN, snapshots_get, 0, NULL},
    {NULL, NULL, DG_ROLE_NONE, NULL, 0, NULL},
};
