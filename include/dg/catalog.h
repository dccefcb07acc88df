/*
 * catalog.h -- what tables, columns, rows and views exist, as this process
 * knows it, for validating requests without a round trip.
 *
 * Table definitions are immutable once made (columns never change), shared
 * by reference count, so a handler can keep one while another thread drops
 * the table. Row ids live in the catalog under its lock.
 *
 * The API's catalog is loaded from DuckDB at start and then kept current by
 * the response reader from the outcomes on response_duck; the manager is
 * authoritative and checks everything again, so a lagging catalog can only
 * delay an error, never let a bad write through.
 */
#ifndef DG_CATALOG_H
#define DG_CATALOG_H

#include <duckdb.h>
#include <stdatomic.h>
#include <stdint.h>

#include "dg/redis.h" /* dg_redis_xid_t */

/** Longest name of a table, column or view (the whitelist allows 63). */
#define DG_NAME_MAX 63
/** Columns a table may have; a planning grid rarely has more than a few dozen. */
#define DG_MAX_COLUMNS 256

typedef enum { DG_COL_TEXT = 0, DG_COL_NUMBER = 1 } dg_coltype_t;

typedef struct dg_coldef_s {
  char name[DG_NAME_MAX + 1];
  dg_coltype_t type;
  int scale;   /* decimals, 0..6 (numbers only)                        */
  int slot;    /* index among the table's number (or text) columns      */
} dg_coldef_t;

typedef struct dg_tabledef_s {
  char name[DG_NAME_MAX + 1];
  int ncols;
  int nnum;               /* number columns                              */
  int ntext;              /* text columns                                */
  dg_coldef_t *cols;      /* in declared order                           */
  atomic_int _refs;       /* private: reference count                    */
} dg_tabledef_t;

/** Checks a table/column/view name against ^[a-z_][a-z0-9_]{0,62}$ and the
 *  reserved names (id, parent_id). 1 when valid. */
int dg_name_valid(const char *s);

/** A new definition with ncols columns to fill in; refcount 1. */
dg_tabledef_t *dg_tabledef_new(const char *name, int ncols);
/** Sets slots and counts after the columns are filled in. */
void dg_tabledef_finish(dg_tabledef_t *t);
dg_tabledef_t *dg_tabledef_ref(dg_tabledef_t *t);
void dg_tabledef_unref(dg_tabledef_t *t);
/** The column named name, or NULL. */
const dg_coldef_t *dg_tabledef_col(const dg_tabledef_t *t, const char *name);
/** Builds a table definition from a json_t {"name","columns":[{"name","type",
 *  "scale"}]} (a create_table's request or outcome, from a stream): every name
 *  passes dg_name_valid, nothing is repaired. NULL when the JSON is not one. */
dg_tabledef_t *dg_tabledef_from_json(const void *json_obj);

typedef struct dg_catalog_s dg_catalog_t;

dg_catalog_t *dg_catalog_create(void);
void dg_catalog_destroy(dg_catalog_t *c);

/**
 * Loads every table (with its row ids) and view from DuckDB. DG_EIO with a
 * reason in err.
 */
int dg_catalog_load(dg_catalog_t *c, duckdb_connection conn, char *err, size_t errcap);

/** A counted reference to the table's definition, or NULL. */
dg_tabledef_t *dg_catalog_table(dg_catalog_t *c, const char *name);
/** Names of all tables in name order; free with dg_catalog_names_free. */
char **dg_catalog_table_names(dg_catalog_t *c, size_t *n);
void dg_catalog_names_free(char **names, size_t n);
/** Adds or replaces a table (steals def). Its row set starts empty. */
void dg_catalog_put_table(dg_catalog_t *c, dg_tabledef_t *def);
void dg_catalog_drop_table(dg_catalog_t *c, const char *name);

/** 1 when the row may exist: it is in the table's row set, or the set is
 *  stale (dg_catalog_rows_stale) and only the manager can tell. For
 *  "no such row" checks. */
int dg_catalog_has_row(dg_catalog_t *c, const char *table, int64_t id);
/** 1 only when the row is known to exist (a stale set knows none). For
 *  "exists already" checks. */
int dg_catalog_row_known(dg_catalog_t *c, const char *table, int64_t id);
size_t dg_catalog_row_count(dg_catalog_t *c, const char *table);
/** The rows an outcome (update id `at`) added or removed. */
void dg_catalog_rows_add(dg_catalog_t *c, const char *table, const int64_t *ids, size_t n, dg_redis_xid_t at);
void dg_catalog_rows_remove(dg_catalog_t *c, const char *table, const int64_t *ids, size_t n, dg_redis_xid_t at);
/**
 * The outcome `at` added or removed rows of table without listing them (too
 * many scattered ids: apply.c write_id_map). The row set is stale until
 * dg_catalog_refresh reloads it from a DuckDB that holds `at`; meanwhile
 * existence is left to the manager and later changes are logged.
 */
void dg_catalog_rows_stale(dg_catalog_t *c, const char *table, dg_redis_xid_t at);
/**
 * Reloads every stale row set whose outcome is at or below persisted (this
 * process's DuckDB holds it), replaying the changes logged since. The
 * number of sets reloaded, or DG_EIO when a read failed (tried again on
 * the next call).
 */
int dg_catalog_refresh(dg_catalog_t *c, duckdb_connection conn, dg_redis_xid_t persisted);

int dg_catalog_has_view(dg_catalog_t *c, const char *name);
void dg_catalog_put_view(dg_catalog_t *c, const char *name);
void dg_catalog_drop_view(dg_catalog_t *c, const char *name);

/** Reads a table's definition from DuckDB's dg.columns (for loaders). */
int dg_catalog_read_def(duckdb_connection conn, const char *name, dg_tabledef_t **out);

#endif
