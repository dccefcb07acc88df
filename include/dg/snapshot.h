/*
 * snapshot.h -- consistent copies of a node's DuckDB state at an update id,
 * their manifests, retention, and the background service behind
 * POST /admin/snapshots. The design note is at the top of
 * src/snapshot/snapshot.c.
 */
#ifndef DG_SNAPSHOT_H
#define DG_SNAPSHOT_H

#include <duckdb.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "dg/db.h"

/* The snapshot format this duckgrid writes (manifest "format"; absent: 1).
 * 1: a full COPY FROM DATABASE. 2: tables with a PRIMARY KEY or UNIQUE
 * constraint copied as data alone and explicit indexes left out, listed in
 * the file's dg.snapshot_rebuild for dg_snapshot_rebuild (snapshot.c). */
#define DG_SNAPSHOT_FORMAT 2
/* Added to dg.schema_version in a format-2 file until it is rebuilt. */
#define DG_SNAPSHOT_SCHEMA_GUARD 1000000

/* Longest snapshot id (letters, digits, '-'), with its NUL. */
#define DG_SNAPSHOT_ID_MAX 64

/** The snapshot directory: DUCKGRID_SNAPSHOT_DIR, or "snapshots" next to
 *  the database file. */
void dg_snapshot_dir(const char *db_path, char *out, size_t cap);

/** 1 if id is a well-formed snapshot id (it names files: no paths). */
int dg_snapshot_id_ok(const char *id);

/**
 * Takes a snapshot on conn (a connection of its own, no transaction open):
 * in one read transaction, the update id in dg.applied and a copy of every
 * schema and row (format DG_SNAPSHOT_FORMAT: keys and indexes to be rebuilt
 * by dg_snapshot_rebuild), then the file's
 * SHA-256 and the manifest `<id>.json` beside `<id>.duckdb`. Writers on
 * other connections go on meanwhile (MVCC). id: the id to use, or NULL for
 * a new one. *manifest (owned) on success.
 */
int dg_snapshot_take(duckdb_connection conn, const char *dir, int schema_version, const char *id,
                     json_t **manifest, char *err, size_t errcap);

/**
 * Makes a snapshot file whole before it is used (dg_db_open calls it on
 * every open, before migrating): when the database on c has
 * dg.snapshot_rebuild (format 2), creates its keyed tables again with their
 * keys, refilled, and its indexes, restores dg.schema_version and drops
 * dg.snapshot_rebuild, in one transaction, then checkpoints. *rebuilt: 1 if
 * it did. 0, or nonzero with the reason (a duplicate key among them, ...).
 */
int dg_snapshot_rebuild(duckdb_connection c, int *rebuilt, char *err, size_t errcap);

/** Every manifest in dir, oldest first (a JSON array, owned). */
json_t *dg_snapshot_list(const char *dir);

/** The manifest of snapshot id ("latest": the newest); NULL if none. */
json_t *dg_snapshot_find(const char *dir, const char *id);

/**
 * Retention: keeps the newest `keep` snapshots (0: no count limit) and
 * removes those older than max_age_s (0: no age limit), never the newest
 * one. Returns how many were removed.
 */
int dg_snapshot_prune(const char *dir, long keep, long max_age_s);

/** The retention settings: DUCKGRID_SNAPSHOT_KEEP (default 7) and
 *  DUCKGRID_SNAPSHOT_MAX_AGE (seconds, or 30m, 12h, 7d; default none). */
void dg_snapshot_retention(long *keep, long *max_age_s);

/** SHA-256 of a file as 64 hex digits, and its size. */
int dg_sha256_file(const char *path, char hex[65], uint64_t *size);

/** mkdir -p with mode 0700; 0 or DG_EIO (errno set). */
int dg_fs_mkdir_p(const char *dir);
/** fsync of a file (dir 0) or a directory (dir 1); 0 or DG_EIO. */
int dg_fs_sync(const char *path, int dir);

/* ---- the service behind POST /admin/snapshots --------------------------------- */

typedef struct dg_snapshots_s dg_snapshots_t;

/** A service taking snapshots of db in a thread of its own, one at a time. */
dg_snapshots_t *dg_snapshots_create(dg_db_t *db);
/** Waits for a snapshot under way, frees everything. */
void dg_snapshots_destroy(dg_snapshots_t *s);
/** Starts a snapshot: 0 with its id, or DG_ECONFLICT (one runs: its id). */
int dg_snapshots_start(dg_snapshots_t *s, char id[DG_SNAPSHOT_ID_MAX]);
/**
 * Waits up to wait_ms for snapshot id: its manifest (owned; status "done"),
 * a status object {"id","status":"running"|"failed","error"}, or NULL when
 * the service knows nothing of it.
 */
json_t *dg_snapshots_wait(dg_snapshots_t *s, const char *id, int wait_ms);
/** Every snapshot (manifests, oldest first) and the one under way, if any. */
json_t *dg_snapshots_list(dg_snapshots_t *s);

#endif
