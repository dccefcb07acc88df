/*
 * replay.h -- applies stream entries to a DuckDB file with the manager's
 * own apply and persist code, without Redis, a lease or publishing: what
 * `duckgrid restore` runs after the snapshot's update id. The state it
 * writes is the one the manager would have written for the same entries.
 */
#ifndef DG_REPLAY_H
#define DG_REPLAY_H

#include <stddef.h>

#include "dg/db.h"

typedef struct dg_replay_s dg_replay_t;

/** Loads the state in db (its dg.applied, tables, idempotency map). */
int dg_replay_open(dg_db_t *db, dg_replay_t **out, char *err, size_t errcap);
/** The update id the state is at (the last entry applied, persisted or not). */
const char *dg_replay_at(const dg_replay_t *r);
/**
 * Applies one entry (req NULL: an entry without a usable request, which the
 * manager answers with a rejection). DDL runs as the manager runs it: the
 * tail persisted first, then the DDL in a transaction of its own. Persists
 * every 20,000 requests. Entries at or below dg_replay_at() are refused
 * (DG_EINVAL): the log is applied in order, once.
 */
int dg_replay_apply(dg_replay_t *r, const char *id, size_t idlen, const char *req, size_t reqlen, char *err,
                    size_t errcap);
/**
 * The hash, `<request stream>` DG_POISONED_SUFFIX, where the leader records
 * each request it rejected as poison (stream id -> how many times applying
 * it stopped the manager). Followers and restore reject those entries the
 * same way instead of applying them (which would crash them too).
 */
#define DG_POISONED_SUFFIX "poisoned"
/** Registers a request the leader rejected as poison: dg_replay_apply
 *  rejects it with the same 500 outcome. */
void dg_replay_poisoned(dg_replay_t *r, const char *id, int times);
/** Persists what was applied. */
int dg_replay_flush(dg_replay_t *r, char *err, size_t errcap);
/** Requests applied so far. */
size_t dg_replay_count(const dg_replay_t *r);
/** Seconds spent so far applying requests, ending batches (the hand-over
 *  to the unpersisted tail) and persisting. */
void dg_replay_times(const dg_replay_t *r, double *apply_s, double *batch_s, double *persist_s);
/** Seconds the persister thread spent persisting (alongside the applying). */
double dg_replay_persist_thread_s(const dg_replay_t *r);
void dg_replay_close(dg_replay_t *r);

#endif
