/*
 * hub.h -- fan-out of outcomes to the live clients of this process (SSE
 * streams, WebSockets).
 *
 * The response reader publishes every outcome once; the hub hands the same
 * immutable, reference-counted event to every subscriber whose table filter
 * matches. Each subscriber has a bounded queue: a client that reads too
 * slowly is dropped (its queue marked, its stream closed with a reason)
 * instead of growing memory without bound.
 *
 * The hub also keeps the ring: the most recent outcomes, in stream order, a
 * contiguous stretch of response_duck from the point the reader started
 * reading. GET /get_updates answers long polls from it and waits on it,
 * instead of keeping one blocked XREAD per client on Redis (see updates.c).
 */
#ifndef DG_HUB_H
#define DG_HUB_H

#include <stddef.h>
#include <stdint.h>

#include "dg/redis.h" /* dg_redis_xid_t */

struct timespec;

/** One outcome, shared by every subscriber that receives it. Read-only. */
typedef struct dg_event_s {
  char id[48];          /* the update id (response_duck entry id)      */
  char *res;            /* the update object as JSON text              */
  size_t len;
  char **tables;        /* tables the update concerns                   */
  size_t ntables;
  int _refs;            /* private                                     */
} dg_event_t;

typedef struct dg_hub_s dg_hub_t;
typedef struct dg_sub_s dg_sub_t;

dg_hub_t *dg_hub_create(void);
/** Wakes every subscriber (they see DG_HUB_CLOSED) and frees the hub once
 *  they are gone; call after the HTTP server has stopped. */
void dg_hub_destroy(dg_hub_t *h);
/** Wakes every subscriber with DG_HUB_CLOSED (shutdown), keeps the hub. */
void dg_hub_close(dg_hub_t *h);

/**
 * Subscribes with a queue of at most max_bytes of pending events.
 * tables: names to receive (NULL or ntables 0: every table).
 */
dg_sub_t *dg_hub_subscribe(dg_hub_t *h, const char *const *tables, size_t ntables, size_t max_bytes);
/** Replaces the table filter (WebSocket subscribe/unsubscribe). */
void dg_sub_set_tables(dg_hub_t *h, dg_sub_t *s, const char *const *tables, size_t ntables, int all);
/** Unsubscribes and frees s and its queue. */
void dg_hub_unsubscribe(dg_hub_t *h, dg_sub_t *s);

/** Publishes one outcome (copied) to every matching subscriber. */
void dg_hub_publish(dg_hub_t *h, const char *id, const char *res, size_t len,
                    const char *const *tables, size_t ntables);

enum { DG_HUB_EVENT = 1, DG_HUB_TIMEOUT = 0, DG_HUB_DROPPED = -1, DG_HUB_CLOSED = -2 };
/**
 * Waits up to timeout_ms for the next event. DG_HUB_EVENT with *ev (release
 * it with dg_event_release), DG_HUB_TIMEOUT, DG_HUB_DROPPED (the queue
 * overflowed: the client was too slow) or DG_HUB_CLOSED (shutdown).
 */
int dg_sub_next(dg_hub_t *h, dg_sub_t *s, int timeout_ms, dg_event_t **ev);
void dg_event_release(dg_hub_t *h, dg_event_t *ev);
/** Subscribers now connected. */
size_t dg_hub_count(dg_hub_t *h);
/** 1 when the event concerns table (or table is NULL). */
int dg_event_matches(const dg_event_t *ev, const char *table);

/* ---- the ring of recent outcomes ------------------------------------------
 *
 *   floor         entries held, oldest first                  newest
 *     |  [e1] [e2] [e3] ... [en]                                |
 *     `-- every entry of the stream after floor, up to the newest the
 *         reader has read, is held: nothing in between is missing.
 *
 * floor starts as the id the reader started reading after and moves to the
 * id of each entry evicted (the ring is bounded by entries and bytes). A
 * cursor c is covered when c >= floor: the entries after c that this process
 * has seen are exactly the held entries after c. Its own lock, separate from
 * the subscribers' one; the two are never held together.
 */

/** Forgets every entry; the ring now covers the stream after `start` (the
 *  id the reader reads after). Until the first call nothing is covered. */
void dg_ring_reset(dg_hub_t *h, dg_redis_xid_t start);
/**
 * Appends the stream's next entry (copied). res NULL: an entry without a
 * usable update object, kept so the cursor can move past it. tables: what
 * the update concerns (see dg_event_matches). Evicts the oldest entries
 * beyond the bounds. Waiters are woken by dg_ring_notify, once per batch.
 */
void dg_ring_append(dg_hub_t *h, dg_redis_xid_t id, const char *res, size_t len,
                    const char *const *tables, size_t ntables);
/** Wakes every request waiting in dg_ring_wait. */
void dg_ring_notify(dg_hub_t *h);

/** One read of the ring (dg_ring_read); in/out fields say which. */
typedef struct dg_ring_read_s {
  dg_redis_xid_t cursor;  /* in: read after this; out: last entry scanned */
  const char *table;      /* in: filter, or NULL                          */
  size_t limit;           /* in: stop once this many matched in total     */
  size_t scan_max;        /* in: stop once this many scanned in total     */
  size_t matched;         /* in/out: updates emitted so far               */
  size_t scanned;         /* in/out: entries scanned so far               */
  /* Called under the ring's lock for each match, in stream order: copy the
   * bytes, do not block. */
  void (*emit)(void *arg, const char *res, size_t len);
  void *arg;
} dg_ring_read_t;

enum { DG_RING_COVERED = 0, DG_RING_NOT_COVERED = -1 };
/**
 * Scans the held entries after rd->cursor, advancing it past each one and
 * emitting the matching ones, until the totals reach limit or scan_max or
 * the newest entry. DG_RING_NOT_COVERED (nothing done) when the cursor is
 * not covered: entries after it may be missing here.
 */
int dg_ring_read(dg_hub_t *h, dg_ring_read_t *rd);

enum { DG_RING_NEWER = 1, DG_RING_TIMEOUT = 0, DG_RING_CLOSED = -2 };
/**
 * Waits, without polling, until an entry newer than cursor is held
 * (DG_RING_NEWER), the deadline passes (DG_RING_TIMEOUT), the hub is closed
 * (DG_RING_CLOSED) or the cursor stops being covered (DG_RING_NOT_COVERED).
 * until: CLOCK_MONOTONIC (dg_deadline_after_ms).
 */
int dg_ring_wait(dg_hub_t *h, dg_redis_xid_t cursor, const struct timespec *until);

/**
 * Single flight: runs fn(arg, result) for the caller, or lets it share the
 * run of another caller, such that the run whose result the caller gets
 * began after the call began. Concurrent callers thus cost one run per round
 * trip of fn instead of one each. The result (at most 256 bytes) and fn's
 * return value are copied to every sharer. fn runs without any lock held.
 */
int dg_hub_shared_run(dg_hub_t *h, int (*fn)(void *arg, void *result), void *arg, void *result,
                      size_t size);

#endif
