/*
 * service.h -- what a write handler needs from the write path, without
 * speaking Redis or DuckDB itself (issue 13's service seam).
 *
 *   handler (write.c, import.c, ws.c via write.c)
 *      │ validate, normalise the request (JSON), register its waiter
 *      ▼
 *   dg_service_queue          sign (entry_mac.h) and XADD to request_duck
 *   dg_service_replicate      wait until replicas hold what was acknowledged
 *   dg_service_first_update   a (caller, request_id) seen before: its update id
 *   dg_service_outcome        a published outcome, from the ring or Redis
 *
 * The outcome itself reaches the handler through the waiters (waiters.h),
 * fed by the response reader; nothing here blocks longer than one Redis or
 * DuckDB round trip (and DUCKGRID_REDIS_WAIT_MS for a replica wait).
 */
#ifndef DG_SERVICE_H
#define DG_SERVICE_H

#include <stddef.h>

#include "dg/app.h"

/**
 * Queues one request (text: a complete JSON object, len bytes) on
 * request_duck, signed. Its stream id (the update id its outcome will
 * carry) goes to sid. With `replicas` set and DUCKGRID_REDIS_WAIT_REPLICAS
 * configured, waits on the same connection until that many replicas hold
 * it (*replicated: 1 reached, 0 timed out; untouched otherwise).
 * 0, or DG_EUNAVAIL: nothing was queued (Redis down or refused; logged).
 */
int dg_service_queue(dg_app_t *app, const char *text, size_t len, int replicas, char *sid, size_t sidcap,
                     int *replicated);

/**
 * After a sync write's outcome: waits until DUCKGRID_REDIS_WAIT_REPLICAS
 * replicas hold it (a fence write, then WAIT). 1 reached, 0 timed out or
 * failed; -1 when no replicas are configured.
 */
int dg_service_replicate(dg_app_t *app);

/**
 * The update id of the first request of (caller, request_id) within the
 * idempotency window: from this process's manager (persisted or not), else
 * from DuckDB's dg.idem (persisted). 1 found (id in out; *from_manager 1
 * when the manager knew it), 0 not.
 */
int dg_service_first_update(dg_app_t *app, const char *caller, const char *request_id, char *out, size_t cap,
                            int *from_manager);

/**
 * The outcome published under update id uid (owned, *len set): from the
 * hub's ring, else from response_duck (its MAC checked). NULL when neither
 * has it.
 */
char *dg_service_outcome(dg_app_t *app, const char *uid, size_t *len);

#endif
