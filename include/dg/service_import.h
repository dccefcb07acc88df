/*
 * service_import.h -- what POST /tables/{table}/import (import.c) needs
 * from DuckDB, without speaking it itself (issue 13's service seam): a
 * request body read as CSV or Parquet, every field VARCHAR, kept as DuckDB
 * returned it until the handler has checked and copied every value.
 *
 *   handler (import.c)
 *      │ count records and fields (its own CSV scan), check the header
 *      │ and every value, build the insert_rows request
 *      ▼
 *   dg_service_import_csv /   body -> scratch file (iofile.h) -> read_csv /
 *   dg_service_import_parquet read_parquet -> a dg_sheet_t; file removed
 *   dg_sheet_*                its columns, rows and fields
 *
 * Implemented in src/service/import.c, the only place the import speaks
 * DuckDB.
 */
#ifndef DG_SERVICE_IMPORT_H
#define DG_SERVICE_IMPORT_H

#include <stddef.h>

#include "dg/app.h"

/** A file as DuckDB read it: rows of VARCHAR fields (opaque). */
typedef struct dg_sheet_s dg_sheet_t;

/**
 * Reads body (len bytes) as a CSV of `fields` fields a record, exactly as
 * GET /tables/{t}/export writes one: RFC 4180, no header handling (the
 * header is row 0), nothing sniffed. *out: the sheet, freed with
 * dg_sheet_destroy. Fails, *out untouched, with
 *   DG_EINVAL     DuckDB refused the file: why holds its message, cut to
 *                 what concerns the client (no scratch path, no settings);
 *   DG_EUNAVAIL   the database is unavailable;
 *   DG_EIO        the scratch file could not be written (logged);
 *   DG_EINTERNAL  the reader could not be prepared (logged).
 */
int dg_service_import_csv(dg_app_t *app, const char *body, size_t len, size_t fields, dg_sheet_t **out, char *why,
                          size_t whycap);

/** Reads body as a Parquet file, every column cast to VARCHAR (a DECIMAL
 *  keeps its exact digits); the column names are the sheet's names. Fails
 *  as dg_service_import_csv. */
int dg_service_import_parquet(dg_app_t *app, const char *body, size_t len, dg_sheet_t **out, char *why,
                              size_t whycap);

/** Columns of the sheet. */
size_t dg_sheet_ncols(const dg_sheet_t *s);
/** Rows of the sheet (a CSV's header included). */
size_t dg_sheet_nrows(const dg_sheet_t *s);
/** Column k's name (Parquet; NULL for a CSV or a column without one). */
const char *dg_sheet_name(const dg_sheet_t *s, size_t k);
/** Field k of row `row`: its bytes (not NUL-terminated, borrowed until
 *  dg_sheet_destroy) and *len, or NULL for a null field. */
const char *dg_sheet_cell(const dg_sheet_t *s, size_t row, size_t k, size_t *len);
/** Frees a sheet. NULL: no-op. */
void dg_sheet_destroy(dg_sheet_t *s);

#endif
