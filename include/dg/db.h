/*
 * db.h -- the DuckDB layer: opening the database file, ordered schema
 * migrations, one connection per thread, and a transaction helper that always
 * rolls back on error.
 *
 * duckgrid's own tables live in the schema `dg`, so they never collide with a
 * user's table names (which live in `main`).
 */
#ifndef DG_DB_H
#define DG_DB_H

#include <duckdb.h>
#include <stddef.h>
#include <stdint.h>

typedef struct dg_db_s dg_db_t;

/**
 * Opens (creating if needed) the database at path and brings its schema to
 * the newest version. threads: DuckDB worker threads (0 = DuckDB's default).
 * Fails with DG_EINVAL (unwritable or bad path) or DG_EIO (DuckDB refused),
 * writing a one-line reason into err.
 */
int dg_db_open(const char *path, int threads, dg_db_t **out, char *err, size_t errcap);
/** Closes every connection and the database. No thread may use it after. */
void dg_db_close(dg_db_t *db);

/**
 * The calling thread's connection, created on first use and closed when the
 * thread exits or the database closes. Returns NULL if DuckDB refuses.
 */
duckdb_connection dg_db_conn(dg_db_t *db);
/** A new connection owned by the caller (dg_db_disconnect), e.g. for the manager. */
int dg_db_connect(dg_db_t *db, duckdb_connection *out);
void dg_db_disconnect(duckdb_connection *c);

/** Runs SQL with no parameters. DG_EIO with DuckDB's message in err on failure. */
int dg_db_exec(duckdb_connection c, const char *sql, char *err, size_t errcap);

/** A unit of work run inside BEGIN ... COMMIT by dg_db_transaction. */
typedef int (*dg_db_tx_fn)(duckdb_connection c, void *arg, char *err, size_t errcap);
/**
 * BEGIN; fn; COMMIT. If fn returns non-zero or COMMIT fails, ROLLBACK and
 * return fn's code (or DG_EIO). fn must not begin or end transactions itself.
 */
int dg_db_transaction(duckdb_connection c, dg_db_tx_fn fn, void *arg, char *err, size_t errcap);

/** SELECT 1 on the calling thread's connection: 0 when DuckDB answers. */
int dg_db_ping(dg_db_t *db);

/**
 * Runs one statement prepared (never duckdb_query with text built from
 * names: that runs every statement the text holds). DuckDBSuccess, or
 * DuckDBError with *res zeroed when it did not run (destroying it is a
 * no-op) and the reason in err.
 */
duckdb_state dg_db_query_one(duckdb_connection c, const char *sql, duckdb_result *res, char *err, size_t errcap);
/** The schema version the database is at after dg_db_open. */
int dg_db_schema_version(dg_db_t *db);
/** How long the open spent rebuilding a snapshot file's keys
 *  (dg_snapshot_rebuild), or -1 when it was none. */
int64_t dg_db_rebuild_ms(const dg_db_t *db);
/** The path it was opened with (borrowed). */
const char *dg_db_path(const dg_db_t *db);

#endif
