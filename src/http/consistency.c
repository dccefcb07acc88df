/*
 * consistency.c -- reads that reflect every answered write (API v1.1).
 *
 * Writes are answered once their outcome is in Redis; DuckDB, which reads
 * query, is written behind (src/manager/manager.c). So a read first waits
 * until the persisted mark reaches what the published mark was when the
 * read arrived -- asking the persister for an early flush rather than
 * waiting for its timer -- and until the newest request this process
 * queued with ?async=true (answered 202) is persisted (its update id is
 * its stream id), or until ?min_update=<update id> is persisted,
 * whichever is later, and answers with X-Duckgrid-Applied: the newest
 * update it reflects.
 */
#include <stdio.h>
#include <string.h>

#include "dg/common.h"
#include "dg/http.h"
#include "dg/progress.h"
#include "dg/redis.h"

/* How long a read with ?min_update waits by default (API.md v1.1). */
#define MIN_UPDATE_WAIT_DEFAULT_MS 5000
/* The longest wait a client may ask for, as GET /get_updates allows. */
#define WAIT_MAX_MS 30000
/* A read without min_update waits at most this long for DuckDB to catch up
 * with the answered writes; past it (DuckDB is failing) it answers from
 * what DuckDB has, and the header says how far that is. */
#define CATCH_UP_MAX_MS 10000

int dg_read_consistent_or_problem(dg_req_t *r) {
  dg_app_t *app = r->app;
  dg_redis_xid_t want = {0, 0}, min = {0, 0}, reached = {0, 0};
  const char *mu = dg_query(r, "min_update");
  int has_min = mu != NULL && *mu != '\0';
  if (has_min && dg_redis_xid_parse(mu, strlen(mu), &min) != 0) {
    dg_problem(r, 400, NULL, "min_update must be an update id like \"1732870000000-0\"; got '%.60s'", mu);
    return DG_EINVAL;
  }
  int wait_ms = MIN_UPDATE_WAIT_DEFAULT_MS;
  const char *ws = dg_query(r, "wait_ms");
  if (ws && has_min) {
    char *end;
    long v = strtol(ws, &end, 10);
    if (*ws == '\0' || *end != '\0' || v < 0 || v > WAIT_MAX_MS) {
      dg_problem(r, 400, NULL, "wait_ms must be an integer from 0 to %d", WAIT_MAX_MS);
      return DG_EINVAL;
    }
    wait_ms = (int)v;
  }
  if (app->progress == NULL) return 0;
  /* A node that cannot catch up (the log lacks what follows its database,
   * or it diverged) answers from what it has at once; the header says how
   * far that is, and /health why. */
  int stuck = atomic_load(&app->cannot_follow) || atomic_load(&app->diverged);
  want = dg_progress_read_mark(app->progress);
  if (has_min && dg_redis_xid_cmp(min, want) > 0) want = min;
  int rc = dg_progress_wait(app->progress, want, has_min ? wait_ms : stuck ? 0 : CATCH_UP_MAX_MS, &reached);
  char applied[DG_REDIS_XID_BUFSZ];
  dg_redis_xid_format(reached, applied, sizeof applied);
  dg_set_header(r, "X-Duckgrid-Applied", applied);
  if (rc != 0 && has_min && dg_redis_xid_cmp(reached, min) < 0) {
    dg_problem(r, 504, json_pack("{s:s,s:s}", "min_update", mu, "applied", applied),
               "update %s is not applied on this node within %d ms", mu, wait_ms);
    return DG_ETIMEOUT;
  }
  return 0;
}
