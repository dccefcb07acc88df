/*
 * service_updates.h -- what the update routes (updates.c: GET /get_updates,
 * GET /updates/{id}/changes) need from Redis and DuckDB, without speaking
 * either themselves (issue 13's service seam; service.h is the write side,
 * service_read.h the read side of tables, views and this node).
 *
 *   handler (updates.c, events.c)
 *      │ parse parameters; serve from the hub's ring when it covers the
 *      │ cursor (hub.h: in memory, no Redis); park long polls
 *      ▼
 *   dg_service_stream_state   XINFO STREAM of response_duck
 *   dg_service_stream_gone    the retention rule: is a cursor trimmed away
 *   dg_service_updates_read   XREAD the updates after a cursor, filtered,
 *                             long-polling with XREAD BLOCK
 *   dg_service_replay_gone    /events: is a resume point trimmed away
 *   dg_service_replay_page    /events: one XRANGE page after a resume point
 *   dg_service_stream_newest  /events: the newest retained update id
 *   dg_service_await_update   wait until DuckDB holds an update
 *   dg_service_update_in_scope / dg_service_update_changes
 *                             an update's cell changes from the audit log
 *
 * Implemented in src/service/updates.c, the only place these routes speak
 * Redis or DuckDB.
 */
#ifndef DG_SERVICE_UPDATES_H
#define DG_SERVICE_UPDATES_H

#include <stddef.h>
#include <stdint.h>

#include "dg/app.h"
#include "dg/redis.h" /* dg_redis_xid_t: update ids */

/** Entries one filtered read scans at most (ring or Redis); the client
 *  continues from `next`. Parsing ~20k small updates takes a few ms. */
#define DG_UPDATES_SCAN_MAX 20000

/** The response stream's state, as XINFO STREAM tells it. */
typedef struct dg_stream_state_s {
  long long length;        /* entries retained                          */
  long long entries_added; /* ever added; -1 when Redis does not say    */
  dg_redis_xid_t first;    /* first retained entry (length > 0)          */
  dg_redis_xid_t last;     /* last-generated-id                          */
} dg_stream_state_t;

/**
 * XINFO STREAM of the response stream into *out (a missing stream is an
 * empty one). Fails with the Redis layer's code (DG_EUNAVAIL, DG_EIO, …:
 * the connection failed) or DG_EINTERNAL (the reply has an unexpected
 * shape; logged).
 */
int dg_service_stream_state(dg_app_t *app, dg_stream_state_t *out);

/**
 * 1 when updates after cursor since may have been trimmed away (asked only
 * for a cursor the client named or was given, never for "from the oldest"): something was trimmed (entries-added > length, or unknown)
 * and since is before the first retained entry (before the last-generated
 * id when the stream is empty). Reading the state after the entries can
 * only err towards 1, never hide a gap.
 */
int dg_service_stream_gone(const dg_stream_state_t *x, dg_redis_xid_t since);

/** Receives a matching update's text (len bytes, borrowed, passed through
 *  as published); non-zero ends the page after it. */
typedef int (*dg_update_fn)(void *arg, const char *text, size_t len);

/** A read of the updates after a cursor: parameters and progress. */
typedef struct dg_updates_read_s {
  dg_redis_xid_t cursor; /* in: read after it; out: the last entry consumed */
  const char *table;     /* keep updates that concern this table, or NULL  */
  const char *scope;     /* keep updates within this ",a,b," scope, or NULL */
  int64_t limit;         /* matches per page, >= 1                          */
  int64_t wait_ms;       /* wait this long for a first match (0: none)      */
  int check_gone;        /* 1: read the stream's state with the first batch
                            (one round trip) and fail with DG_EGONE when
                            dg_service_stream_gone(cursor)                   */
  int64_t matched;       /* in/out: matches so far (e.g. from the ring)     */
  int64_t scanned;       /* in/out: entries consumed so far                 */
  dg_stream_state_t state; /* out, with DG_EGONE: the state that condemned it */
} dg_updates_read_t;

/**
 * Reads the response stream after q->cursor, calling fn for each update
 * that passes the filters, in order, until q->limit matches (counting
 * q->matched), fn asks to stop, DUCKGRID_PAGE_BYTES of entries scanned or
 * DG_UPDATES_SCAN_MAX entries consumed, or the stream has nothing more;
 * with nothing matched yet and q->wait_ms > 0 it waits in XREAD BLOCK
 * slices (so a stopping server is not held up) for that long. Entries
 * without a valid MAC or body are skipped (logged). q->cursor moves past
 * everything consumed.
 * 0 (also when Redis failed after something was consumed: the page keeps
 * it); DG_EGONE (check_gone: nothing consumed, q->state set); the Redis
 * layer's code or DG_EINTERNAL (a reply of the wrong shape; logged) when
 * it failed before consuming anything.
 */
int dg_service_updates_read(dg_app_t *app, dg_updates_read_t *q, dg_update_fn fn, void *arg);

/* ---- GET /events: replay and resume ----------------------------------- */

/**
 * Is resume point `after` (> 0-0) older than what the stream retains:
 * something was trimmed (entries-added > length, both known) and after is
 * before the first retained entry? *gone 1 or 0 (0 too when XINFO's reply
 * says neither). 0, or DG_EUNAVAIL when Redis failed (*gone untouched).
 */
int dg_service_replay_gone(dg_app_t *app, dg_redis_xid_t after, int *gone);

/** Receives an entry of a replay page: its id (NUL-terminated), its update
 *  text (len bytes; NULL when the entry has no valid MAC or body) and the
 *  entry's bytes in Redis (for paging). Non-zero stops the page before
 *  this entry (it is not consumed). All borrowed for the call. */
typedef int (*dg_replay_fn)(void *arg, const char *id, const char *text, size_t len, size_t entry_bytes);

/**
 * XRANGE of at most count entries after `after` (exclusive), each handed to
 * fn in order. 0, or DG_EUNAVAIL when Redis failed (fn not called).
 */
int dg_service_replay_page(dg_app_t *app, dg_redis_xid_t after, size_t count, dg_replay_fn fn, void *arg);

/**
 * The id of the newest entry the stream retains into *last (untouched when
 * it is empty). 0, or DG_EUNAVAIL when Redis failed.
 */
int dg_service_stream_newest(dg_app_t *app, dg_redis_xid_t *last);

/* ---- the audit log (GET /updates/{id}/changes) -------------------------- */

/**
 * Waits up to wait_ms for this node's DuckDB to hold update id (it is
 * written behind), before its changes are read; no wait when the process
 * keeps no progress marks. 0 when it does, DG_ETIMEOUT when not yet.
 */
int dg_service_await_update(dg_app_t *app, dg_redis_xid_t id, int wait_ms);

/**
 * 1 when every cell change of update id lies within scope (",a,b,"), 0 when
 * one does not; DG_EUNAVAIL (no DuckDB connection) or DG_EIO (the audit log
 * could not be read).
 */
int dg_service_update_in_scope(dg_app_t *app, dg_redis_xid_t id, const char *scope);

/** One cell change from the audit log, borrowed for the callback. */
typedef struct dg_audit_change_s {
  const char *table;   /* "" when the log has none                        */
  int64_t row_id;
  const char *column;  /* "" when the log has none                        */
  int numeric;         /* 1: old_num/new_num, 0: old_text/new_text        */
  int scale;           /* numeric: decimals                               */
  int old_null, new_null;
  int64_t old_num, new_num;      /* numeric: raw scaled integers          */
  const char *old_text, *new_text; /* text: "" when DuckDB gives none     */
} dg_audit_change_t;

typedef void (*dg_audit_change_fn)(void *arg, const dg_audit_change_t *c);

/**
 * The cell changes of update id (row records and holds left out, as in
 * outcomes) in (table, row_id, column) order: the total into *total, then
 * fn for rows offset .. offset+limit-1. DG_EUNAVAIL (no DuckDB connection) or DG_EIO (the audit log could not be
 * read), fn not called.
 */
int dg_service_update_changes(dg_app_t *app, dg_redis_xid_t id, int64_t offset, int64_t limit,
                              dg_audit_change_fn fn, void *arg, int64_t *total);

#endif
