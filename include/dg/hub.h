/*
 * hub.h -- fan-out of outcomes to the live clients of this process (SSE
 * streams, WebSockets).
 *
 * The response reader publishes every outcome once; the hub hands the same
 * immutable, reference-counted event to every subscriber whose table filter
 * matches. Each subscriber has a bounded queue: a client that reads too
 * slowly is dropped (its queue marked, its stream closed with a reason)
 * instead of growing memory without bound.
 */
#ifndef DG_HUB_H
#define DG_HUB_H

#include <stddef.h>

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

#endif
