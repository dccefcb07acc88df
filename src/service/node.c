/*
 * node.c (service) -- this node's state as a handler sees it
 * (service_read.h): health of its dependencies and the wait that makes a
 * read reflect every answered write. The only place GET /health and the
 * read-your-writes check touch Redis, DuckDB or the progress marks.
 *
 * Health comes from state the threads that own Redis and DuckDB keep fresh,
 * so a check costs no round trip: Redis is up while the response reader's
 * blocking XREAD (every 500 ms at most) keeps getting answers; DuckDB is up
 * unless the manager stood down after failing to persist. A deep check
 * pings both live as well.
 *
 * Writes are answered once their outcome is in Redis; DuckDB, which reads
 * query, is written behind (src/manager/manager.c). So a read first waits
 * until the persisted mark reaches what the published mark was when the
 * read arrived -- asking the persister for an early flush rather than
 * waiting for its timer -- and until the newest request this process
 * queued asynchronously is persisted, or until the caller's minimum is,
 * whichever is later.
 */
#include "dg/service_read.h"

#include <stdatomic.h>

#include "dg/common.h"
#include "dg/db.h"
#include "dg/progress.h"
#include "dg/redis.h"
#include "dg/redis_pool.h"

/* Redis counts as down once the response reader has heard nothing for this
 * long: its blocking XREAD returns every 500 ms at most, so 3.5 s is seven
 * answers missed. */
#define REDIS_SILENT_MS 3500

/* A read without a minimum waits at most this long for DuckDB to catch up
 * with the answered writes; past it (DuckDB is failing) it answers from
 * what DuckDB has, and the applied id says how far that is. */
#define CATCH_UP_MAX_MS 10000

void dg_service_health(dg_app_t *app, int deep, dg_health_t *h) {
  int64_t seen = atomic_load(&app->status.redis_seen_ms);
  h->redis_ok = seen > 0 && !atomic_load(&app->status.redis_failing) && dg_mono_us() / 1000 - seen < REDIS_SILENT_MS;
  h->duck_ok = 1;
  if (deep) {
    dg_redis_t *c = dg_redis_pool_get(app->redis);
    h->redis_ok = h->redis_ok && dg_redis_ping(c) == 0;
    dg_redis_pool_put(app->redis, c);
    h->duck_ok = dg_db_ping(app->db) == 0;
  }
  /* DuckDB answers but keeps failing to persist: the manager stood down. */
  if (atomic_load(&app->status.manager_broken)) h->duck_ok = 0;
  h->diverged = atomic_load(&app->status.diverged);
  h->stopping = atomic_load(&app->status.stopping);
  h->manager_state = atomic_load(&app->status.manager_state);
  h->lag = atomic_load(&app->status.lag);
  h->lag_ms = atomic_load(&app->status.lag_ms);
  h->has_progress = app->progress != NULL;
  if (h->has_progress) {
    dg_redis_xid_t pub, per;
    dg_progress_get(app->progress, &pub, &per);
    dg_redis_xid_format(per, h->applied, sizeof h->applied);
    dg_redis_xid_format(pub, h->published, sizeof h->published);
  }
}

int dg_service_await_applied(dg_app_t *app, const dg_redis_xid_t *min, int wait_ms, char *applied, size_t cap) {
  if (app->progress == NULL) {
    if (cap > 0) applied[0] = '\0';
    return 0;
  }
  /* A node that cannot catch up (the log lacks what follows its database,
   * or it diverged) answers from what it has at once. */
  int stuck = atomic_load(&app->status.cannot_follow) || atomic_load(&app->status.diverged);
  dg_redis_xid_t want = dg_progress_read_mark(app->progress), reached = {0, 0};
  if (min && dg_redis_xid_cmp(*min, want) > 0) want = *min;
  int rc = dg_progress_wait(app->progress, want, min ? wait_ms : stuck ? 0 : CATCH_UP_MAX_MS, &reached);
  dg_redis_xid_format(reached, applied, cap);
  if (rc != 0 && min && dg_redis_xid_cmp(reached, *min) < 0) return DG_ETIMEOUT;
  return 0;
}
