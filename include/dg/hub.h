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
/** The same for a key limited to some tables: only the updates within
 *  scope (",a,b,", dg_event_within) are queued; NULL or "": no limit. */
dg_sub_t *dg_hub_subscribe_scoped(dg_hub_t *h, const char *const *tables, size_t ntables, size_t max_bytes,
                                  const char *scope);
/** Replaces the table filter (WebSocket subscribe/unsubscribe): all != 0,
 *  every table; otherwise the ntables listed (none when 0). */
void dg_sub_set_tables(dg_hub_t *h, dg_sub_t *s, const char *const *tables, size_t ntables, int all);
/**
 * Calls fn(arg) under the hub's lock whenever an event is queued for s, s
 * is dropped or the hub closes (and at once if one of these is already
 * so), for a reader that does not wait in dg_sub_next (the event loop:
 * fn only posts a wake-up, then the loop takes events with timeout 0).
 * No call is made or running once dg_hub_unsubscribe has returned.
 */
void dg_sub_set_notify(dg_hub_t *h, dg_sub_t *s, void (*fn)(void *), void *arg);
/** Unsubscribes and frees s and its queue. */
void dg_hub_unsubscribe(dg_hub_t *h, dg_sub_t *s);

/** Publishes one outcome (copied) to every matching subscriber. */
void dg_hub_publish(dg_hub_t *h, const char *id, const char *res, size_t len,
                    const char *const *tables, size_t ntables);

enum { DG_HUB_EVENT = 1, DG_HUB_TIMEOUT = 0, DG_HUB_DROPPED = -1, DG_HUB_CLOSED = -2 };
/**
 * Waits up to timeout_ms for the next event (0: takes one if queued, never
 * waits). DG_HUB_EVENT with *ev (release it with dg_event_release),
 * DG_HUB_TIMEOUT, DG_HUB_DROPPED (the queue overflowed: the client was too
 * slow) or DG_HUB_CLOSED (shutdown).
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
 *
 * Entries are immutable and reference-counted: a request takes pointers and
 * references under the lock and reads the texts after releasing it, so a
 * thousand long polls woken by one batch hold the lock for a few pointer
 * moves each. An evicted entry lives on until its last reader lets go.
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
/** 1 when every table ev concerns is in scope (",a,b,"; NULL or "": any);
 *  an update that concerns no table is outside every scope. */
int dg_event_within(const dg_event_t *ev, const char *scope);
/** The same for an update's JSON text (its "table" and its changes'). */
int dg_update_within(const char *res, size_t len, const char *scope);

/** Wakes every request waiting in dg_ring_read, to look at what was appended. */
void dg_ring_notify(dg_hub_t *h);
/** fn(arg) runs after every dg_ring_notify and when the hub closes (the HTTP
 *  front end re-runs the long polls it parked). Set before the reader starts. */
void dg_ring_set_hook(dg_hub_t *h, void (*fn)(void *), void *arg);

/** One read of the ring (dg_ring_read); in/out fields say which. */
typedef struct dg_ring_read_s {
  dg_redis_xid_t cursor;  /* in: read after this; out: last entry scanned */
  const char *table;      /* in: filter, or NULL                          */
  const char *scope;      /* in: a scoped key's ",a,b," (dg_event_within),
                           * or NULL                                       */
  size_t limit;           /* in: stop once this many matched in total     */
  size_t scan_max;        /* in: stop once this many scanned in total     */
  int any_entry;          /* in: a wait ends once any entry is scanned,
                           * matching or not (else at the first match or
                           * at scan_max)                                 */
  size_t max_bytes;       /* in: stop once the matched texts reach this
                           * many bytes (0: no cap); the entry that crosses
                           * it is included, so a read always progresses */
  size_t bytes;           /* in/out: bytes of the matched texts           */
  size_t matched;         /* in/out: entries in out                       */
  size_t scanned;         /* in/out: entries scanned so far               */
  /* in: room for limit pointers; out: the matching entries, in stream
   * order, each holding a reference the caller drops with dg_ring_release.
   * Read-only; valid until released, whatever the ring evicts meanwhile. */
  const dg_event_t **out;
} dg_ring_read_t;

enum { DG_RING_COVERED = 0, DG_RING_NOT_COVERED = -1, DG_RING_CLOSED = -2 };
/**
 * Scans the held entries after rd->cursor, advancing it past each one and
 * collecting the matching ones into rd->out, until the totals reach limit or
 * scan_max or the newest entry. Only pointers are taken under the ring's
 * lock: the caller reads the texts after the call, without it.
 *
 * until NULL: one scan. Otherwise (CLOCK_MONOTONIC, dg_deadline_after_ms),
 * while the read is not complete (nothing matched and, with any_entry,
 * nothing scanned, and scan_max not reached) it waits, without polling, for
 * the reader's next batch and scans again, in the same lock hold as the
 * wake-up, until the read is complete or the deadline passes.
 *
 *   DG_RING_COVERED      the scan(s) ran; complete, or the time is up
 *   DG_RING_NOT_COVERED  the cursor is not covered (entries after it may be
 *                        missing here): on entry nothing was done; after a
 *                        wait, the ring's eviction overtook the cursor and
 *                        the progress so far stays in rd
 *   DG_RING_CLOSED       the hub closed while waiting; rd holds the progress
 *
 * Whatever it returns, rd->out[0 .. rd->matched) must be released.
 */
int dg_ring_read(dg_hub_t *h, dg_ring_read_t *rd, const struct timespec *until);
/** 1 when the ring holds every entry after cursor (dg_ring_read would
 * answer DG_RING_COVERED), else 0. */
int dg_ring_covers(dg_hub_t *h, dg_redis_xid_t cursor);
/** Drops the references dg_ring_read took on evs[0 .. n). */
void dg_ring_release(const dg_event_t *const *evs, size_t n);

/**
 * Single flight: runs fn(arg, result) for the caller, or lets it share the
 * run of another caller, such that the run whose result the caller gets
 * began after the call began. Concurrent callers thus cost one run per round
 * trip of fn instead of one each. The result (at most 256 bytes) and fn's
 * return value are copied to every sharer. fn runs without any lock held.
 */
int dg_hub_shared_run(dg_hub_t *h, int (*fn)(void *arg, void *result), void *arg, void *result,
                      size_t size);

/**
 * The same single flight without waiting, for a caller that must not block
 * (an HTTP loop). dg_hub_shared_ask returns the ticket of a run that begins
 * after the call; *serve is set to 1 when no one is serving the asks yet,
 * and the caller must then have dg_hub_shared_serve run on a thread that
 * may block (once). dg_hub_shared_serve runs fn until every ticket asked is
 * done, and calls the ring's hook after each run, so the parked requests
 * look again. dg_hub_shared_result: 1 and the result (as dg_hub_shared_run
 * gives it) once the ticket's run is done, else 0.
 */
uint64_t dg_hub_shared_ask(dg_hub_t *h, int *serve);
void dg_hub_shared_serve(dg_hub_t *h, int (*fn)(void *arg, void *result), void *arg, size_t size);
int dg_hub_shared_result(dg_hub_t *h, uint64_t ticket, int *rc, void *result, size_t size);

#endif
