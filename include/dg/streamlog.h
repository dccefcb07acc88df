/*
 * streamlog.h -- whether request_duck still holds the log after a point:
 * what a node needs before it applies the log from its database's update
 * id (a follower, a leader's recovery, restore, a new node's bootstrap).
 */
#ifndef DG_STREAMLOG_H
#define DG_STREAMLOG_H

#include <stddef.h>

#include "dg/redis.h"

/**
 * 0 when every entry of `stream` after `from` is still in it: nothing was
 * ever removed from it; or the entry `from` itself is still there
 * (trimming takes the oldest first) and nothing after it was deleted; or a
 * leader that found Redis had lost its data marked `from` as the point up
 * to which entries are gone (max-deleted-entry-id == from, see manager.c).
 * A stream that does not exist holds everything (nothing was written).
 * Conservative: a stream trimmed to exactly `from` counts as a gap.
 * DG_EGONE with the reason in err when entries after `from` are gone,
 * DG_EUNAVAIL when Redis does not answer. (Redis 7.0 moves
 * max-deleted-entry-id on XDEL only, never on trimming, so it cannot tell
 * alone.)
 */
int dg_streamlog_covers(dg_redis_t *r, const char *stream, dg_redis_xid_t from, char *err, size_t errcap);

#endif
