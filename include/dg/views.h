/*
 * views.h -- what a view's SQL may be.
 *
 * A view is a real DuckDB view in `main`, made from SQL a client sends. That
 * SQL runs later on every GET /views/{name}, on the API's connections, so it
 * must not be able to change anything or read what is not a user's grid:
 * duckgrid's own schema `dg` (API key hashes, outcomes), other attached
 * databases, files, the network, or DuckDB's catalog functions.
 */
#ifndef DG_VIEWS_H
#define DG_VIEWS_H

#include <duckdb.h>
#include <stddef.h>

/** Longest view SQL accepted; a hand-written report query fits well within. */
#define DG_VIEW_SQL_MAX (64 * 1024)

/**
 * Checks that sql is exactly one read-only SELECT over existing user tables
 * and views (those listed in dg.tables and dg.views), decided on DuckDB's own
 * parse tree (duckdb_extract_statements, json_serialize_sql) and binder
 * (duckdb_prepare_extracted_statement), never by matching keywords:
 *
 *   - one statement, and it is a SELECT (DUCKDB_STATEMENT_TYPE_SELECT), with
 *     no parameters;
 *   - every table reference is a plain table/view name with no catalog and a
 *     schema of "" or "main", naming a user table or view, or a CTE in
 *     scope; joins, subqueries, VALUES and (UN)PIVOT over those are fine;
 *   - no table functions (read_csv, duckdb_tables(), glob, range ...), no
 *     SHOW/DESCRIBE/SUMMARIZE, no time travel (AT), no functions qualified with
 *     a catalog or a schema other than main, no functions with side effects or that read the
 *     session (nextval, setseed, current_setting ...);
 *   - anything in the parse tree this check does not know is rejected.
 *
 * The parse tree is checked before the statement is bound, so a rejected
 * query never makes DuckDB open a file or reach the network.
 *
 * Returns 0 when the SQL is acceptable. Fails with
 *   DG_EINVAL  the SQL is not acceptable; err receives a one-line reason
 *              (no newline) fit for a 400 detail;
 *   DG_EIO     DuckDB failed in a way that is not the SQL's fault (err says).
 * err may be NULL when errcap is 0. Runs a few statements on c; c must not be
 * inside a failed transaction.
 */
int dg_view_sql_check(duckdb_connection c, const char *sql, char *err, size_t errcap);

/**
 * The tables and views a view's SQL reads (not its CTEs), lower case, as
 * ",a,b," in reads. 0, or DG_EINVAL when the SQL cannot be walked (then
 * reads is "": a key scope must treat the view as out of reach).
 */
int dg_view_sql_reads(duckdb_connection c, const char *sql, char *reads, size_t cap);

#endif
