/*
 * progress.h -- how far the write path has come, for consistent reads.
 *
 *   published  the newest update id whose outcome is in response_duck
 *              (a write answered to a client is at or below it)
 *   persisted  the newest update id whose effects are committed in DuckDB
 *   submitted  the newest request this process queued with ?async=true
 *              (answered 202; an update id is its request's stream id)
 *
 * persisted <= published always ("persisted => published"). The manager
 * raises both; a read that must reflect every answered write waits until
 * persisted reaches what published was when the read arrived, asking the
 * persister to flush early (the kick) instead of waiting for its timer.
 *
 * One mutex and one condition variable; waiters are few (reads that arrive
 * while a flush is due) and all wake on each commit.
 */
#ifndef DG_PROGRESS_H
#define DG_PROGRESS_H

#include <stdint.h>

#include "dg/redis.h" /* dg_redis_xid_t */

typedef struct dg_progress_s dg_progress_t;

dg_progress_t *dg_progress_create(void);
void dg_progress_destroy(dg_progress_t *p);

/** Sets the persister's early-flush request (called with no lock held;
 *  it must not block). NULL: no persister in this process. */
void dg_progress_set_kick(dg_progress_t *p, void (*kick)(void *arg), void *arg);
/** Raises the published mark (never lowers it). */
void dg_progress_published(dg_progress_t *p, dg_redis_xid_t id);
/** Raises the persisted mark (never lowers it) and wakes waiting reads. */
void dg_progress_persisted(dg_progress_t *p, dg_redis_xid_t id);
/** Raises the submitted mark (an async request this process queued). */
void dg_progress_submitted(dg_progress_t *p, dg_redis_xid_t id);
/** What a read must reflect: the later of published and submitted. */
dg_redis_xid_t dg_progress_read_mark(dg_progress_t *p);
/** Both marks now. */
void dg_progress_get(dg_progress_t *p, dg_redis_xid_t *published, dg_redis_xid_t *persisted);
/**
 * Waits until persisted >= want, kicking the persister, for at most
 * timeout_ms. 0 when reached (*reached = persisted), DG_ETIMEOUT when not.
 */
int dg_progress_wait(dg_progress_t *p, dg_redis_xid_t want, int timeout_ms, dg_redis_xid_t *reached);
/** Wakes every waiter (shutdown): they return at once. */
void dg_progress_close(dg_progress_t *p);

#endif
