/*
 * bootstrap.h -- where a node without a database file starts from.
 */
#ifndef DG_BOOTSTRAP_H
#define DG_BOOTSTRAP_H

#include <stddef.h>

#include "dg/redis.h"

/**
 * Called before the database is opened. When db_path exists, nothing to
 * do. Otherwise the node would start from an empty database and apply
 * request_duck from its start, which is right only while the stream still
 * holds it all (streamlog.h); if Redis trimmed it, the newest snapshot in
 * the snapshot directory (snapshot.h: DUCKGRID_SNAPSHOT_DIR, which nodes
 * may share) whose update id the stream still follows is copied to
 * db_path, its SHA-256 checked against its manifest, and the node follows
 * (or leads) from there. With neither: DG_EGONE and a message saying what
 * to do -- the node refuses to start rather than build a state that lacks
 * the trimmed requests. Redis not answering: 0, silently (the start reports
 * it; the manager's own checks stand by later).
 */
int dg_bootstrap(const char *db_path, const dg_redis_url_t *url, const dg_redis_opts_t *opts, const char *req_stream,
                 char *err, size_t errcap);

#endif
