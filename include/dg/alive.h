/*
 * alive.h -- is a caller authenticated earlier still allowed now? For the
 * long-lived requests (SSE, WebSocket), which authenticate once at the
 * start: they ask at least once a second (and a WebSocket before every
 * message), and end with a clear event when the answer is no.
 *
 * The answer comes from a snapshot of the live key ids (and revoked token
 * ids), re-read from DuckDB at most once a second for all callers
 * together, so a thousand open streams cost one small query a second.
 */
#ifndef DG_ALIVE_H
#define DG_ALIVE_H

#include <stddef.h>

#include "dg/auth.h"
#include "dg/db.h"

typedef struct dg_alive_s dg_alive_t;

/** Creates the checker on db (borrowed). Free with dg_alive_destroy. */
dg_alive_t *dg_alive_create(dg_db_t *db);
void dg_alive_destroy(dg_alive_t *a);
/** Starts the refresher thread that keeps the snapshot fresh for
 *  dg_alive_peek (0, or DG_EUNAVAIL). dg_alive_destroy stops it. */
int dg_alive_start(dg_alive_t *a);
/** A key was deleted or a token revoked here: re-reads the snapshot at
 *  once (a DuckDB read: a worker's call, never a loop's), so the next check
 *  or peek sees it. */
void dg_alive_invalidate(dg_alive_t *a);
/**
 * 0 when who may go on; DG_EAUTH with the reason in why when its key was
 * deleted or has expired, or its token has expired or was revoked. A key
 * store that cannot be read keeps the last snapshot (streams are not cut
 * for a hiccup).
 */
int dg_alive_check(dg_alive_t *a, const dg_principal_t *who, char *why, size_t cap);
/**
 * The same answer for an event loop, which must not wait for DuckDB: from
 * the snapshot as it is (the refresher thread re-reads it at most a second
 * after it was asked to). A key is reported deleted only by a snapshot read
 * after who->seen_us.
 */
int dg_alive_peek(dg_alive_t *a, const dg_principal_t *who, char *why, size_t cap);

#endif
