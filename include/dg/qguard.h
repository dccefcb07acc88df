/*
 * qguard.h -- limits on the DuckDB queries of views: a deadline enforced by
 * a watchdog thread with duckdb_interrupt, a cap on the queries one caller
 * runs at once, and a stop that interrupts every running query (so SIGTERM
 * is not held up by a runaway view).
 */
#ifndef DG_QGUARD_H
#define DG_QGUARD_H

#include <duckdb.h>

typedef struct dg_qguard_s dg_qguard_t;

/** Slots for queries running at once, all callers together: more than the
 *  HTTP server's threads ever run. */
#define DG_QGUARD_SLOTS 256

/** timeout_ms: a query's deadline; per_caller: queries one caller may run
 *  at once. Starts the watchdog thread. */
dg_qguard_t *dg_qguard_create(int timeout_ms, int per_caller);
/** Interrupts every running query and refuses new ones (at shutdown). */
void dg_qguard_stop(dg_qguard_t *g);
/** Stops the watchdog and frees. */
void dg_qguard_destroy(dg_qguard_t *g);

/**
 * Registers a query about to run on conn for caller. 0 and *slot; DG_ECONFLICT
 * when the caller already runs per_caller queries (429), DG_EUNAVAIL when
 * stopping or every slot is taken (503).
 */
int dg_qguard_enter(dg_qguard_t *g, duckdb_connection conn, const char *caller, int *slot);
/** Unregisters; returns 1 when the watchdog interrupted the query (its
 *  deadline passed), 2 when a stop did, else 0. */
int dg_qguard_leave(dg_qguard_t *g, int slot);

#endif
