/*
 * iofile.h -- scratch files for DuckDB's own file readers and writers
 * (import and export: src/http/export.c, src/http/import.c).
 *
 * External access is off in our DuckDB (src/store/db.c): SQL may read or
 * write files only under the snapshot directory. Import and export files
 * therefore live in its "io" subdirectory (mode 0700), under random names
 * the server makes itself; no client text ever reaches a path. Each file is
 * removed as soon as its request is done with it; files an earlier process
 * left behind (a crash mid-request) are removed the first time this process
 * makes one.
 */
#ifndef DG_IOFILE_H
#define DG_IOFILE_H

#include <stddef.h>

#define DG_IOFILE_PATH_MAX 4200

/**
 * A fresh path "<snapshot dir>/io/<kind>-<random>.<ext>" for the database
 * at db_path, with the directory made. The file itself is not created.
 * 0, or DG_EIO with errno set.
 */
int dg_iofile_path(const char *db_path, const char *kind, const char *ext, char *out, size_t cap);

/**
 * Appends path as a SQL string literal ('…', quotes doubled) to sql (a
 * dg_buf_t). The path is the server's own, never a client's.
 */
struct dg_buf_s;
void dg_iofile_sql_literal(struct dg_buf_s *sql, const char *path);

#endif
