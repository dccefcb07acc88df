/*
 * service.h -- what a write handler needs from the write path, without
 * speaking Redis or DuckDB itself (issue 13's service seam).
 *
 *   handler (write.c, import.c, ws.c via write.c)
 *      │ validate, normalise the request (JSON), register its waiter
 *      ▼
 *   dg_service_queue          sign (entry_mac.h) and XADD to request_duck
 *   dg_service_queue_async    the same on the submitter's thread, pipelined
 *   dg_service_replicate      wait until replicas hold what was acknowledged
 *   dg_service_first_update   a (caller, request_id) seen before: its update id
 *   dg_service_outcome        a published outcome, from the ring or Redis
 *   dg_service_view_check     is a view's SQL one DuckDB accepts (POST /views)
 *   dg_service_revert_read /  what an update changed, from the audit log, and
 *   dg_service_revert_images  the rows it deleted (POST /updates/{id}/revert;
 *                             src/service/revert.c)
 *
 * The outcome itself reaches the handler through the waiters (waiters.h),
 * fed by the response reader; nothing here blocks longer than one Redis or
 * DuckDB round trip (and DUCKGRID_REDIS_WAIT_MS for a replica wait).
 */
#ifndef DG_SERVICE_H
#define DG_SERVICE_H

#include <stddef.h>
#include <stdint.h>

#include "dg/app.h"
#include "dg/redis.h" /* dg_redis_xid_t: update ids */

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
 * The same without blocking: queued on the submitter, a thread that sends
 * what has queued since its last batch as one pipeline of signed XADDs
 * (one write, one read, a connection of the pool), then calls q->done on
 * its own thread with 0 and the stream id, or DG_EUNAVAIL (nothing was
 * queued, or no reply came: as dg_service_queue). The caller fills text,
 * len and done; q is the caller's until done runs, and done frees it.
 * For callers that must not block (an HTTP loop); not with
 * DUCKGRID_REDIS_WAIT_REPLICAS (the WAIT is per connection).
 */
typedef struct dg_queued_s {
  char *text;                 /* the request, freed by the submitter after done */
  size_t len;
  void (*done)(struct dg_queued_s *q, int rc, const char *sid);
  struct dg_queued_s *next;   /* private */
} dg_queued_t;
typedef struct dg_submitter_s dg_submitter_t;
/** The submitter's thread, for app (NULL when it cannot start). */
dg_submitter_t *dg_submitter_start(dg_app_t *app);
/** Sends what is queued, calls every done, and ends the thread. */
void dg_submitter_stop(dg_submitter_t *s);
/** Queues q (never blocks but for a short lock). */
void dg_service_queue_async(dg_submitter_t *s, dg_queued_t *q);

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

/**
 * 1 when this process has not seen update x's outcome yet: the hub's ring
 * covers the stream up to just before x and holds nothing after it. The
 * manager moves the published mark before its XADDs, so an outcome this
 * process applied can be at or below the mark and still on its way to the
 * ring and to Redis for a moment; its waiters are then woken by it.
 */
int dg_service_outcome_unseen(dg_app_t *app, dg_redis_xid_t x);

/**
 * Checks a view's SQL on this thread's DuckDB connection (views.h,
 * dg_view_sql_check): 0 accepted; DG_EINVAL not a view a client may create
 * (why in err); DG_EUNAVAIL the database is unavailable (err untouched);
 * another code: DuckDB could not check it (why in err).
 */
int dg_service_view_check(dg_app_t *app, const char *sql, char *err, size_t errcap);

/* ---- revert (issue 19) ----------------------------------------------------- */

/** One record of what an update changed (dg.cell_log, dg_sql_revert_cells),
 *  in the log's order: table, row, column (row records first). The strings
 *  belong to the list; NULL where the log holds NULL. */
typedef struct dg_revert_rec_s {
  char *table;     /* the table; NULL when its audit column is unknown       */
  int64_t row;     /* the row id                                             */
  char *column;    /* the column; NULL for a row record (insert, move, delete) */
  char *old_text;  /* the value before, as text (a row record: its state)    */
  char *new_text;  /* the value after, as text                               */
  char *type;      /* the column's type now; NULL when it no longer exists   */
  int has_new_num; /* 1: new_num holds the record's numeric new value         */
  int64_t new_num; /* an inserted row's parent (INT64_MIN: the root)         */
} dg_revert_rec_t;

/**
 * Reads the records of update x from the audit log into *out (n records,
 * freed with dg_service_revert_free; *out NULL when n is 0). More than max
 * records: DG_ETOOBIG with their count in *n and nothing read. Fails with
 * DG_EUNAVAIL (the database is unavailable) or DG_EIO (DuckDB failed the
 * read; logged), *out and *n untouched.
 */
int dg_service_revert_read(dg_app_t *app, dg_redis_xid_t x, size_t max, dg_revert_rec_t **out, size_t *n);

/** Frees what dg_service_revert_read returned. */
void dg_service_revert_free(dg_revert_rec_t *recs, size_t n);

/** One row update x deleted, as recorded just before (dg.row_images,
 *  migration 9). The strings belong to the list. */
typedef struct dg_revert_image_s {
  char *table;     /* the table; NULL when its audit column is unknown */
  int64_t row;     /* the row id                                       */
  int has_parent;  /* 0: the row was a root                            */
  int64_t parent;  /* its parent's row id                              */
  char *cells;     /* its cells, a JSON object's text (or NULL)        */
} dg_revert_image_t;

/**
 * Reads the rows update x deleted into *out (n images, freed with
 * dg_service_revert_images_free), every parent before its children (depth
 * within the deleted set, then the order they were recorded in). Fails with
 * DG_EUNAVAIL or DG_EIO (logged), *out and *n untouched.
 */
int dg_service_revert_images(dg_app_t *app, dg_redis_xid_t x, dg_revert_image_t **out, size_t *n);

/** Frees what dg_service_revert_images returned. */
void dg_service_revert_images_free(dg_revert_image_t *imgs, size_t n);

#endif
