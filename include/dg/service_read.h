/*
 * service_read.h -- what a read handler needs from DuckDB, without speaking
 * DuckDB itself (issue 13's service seam, read side; service.h is the write
 * side).
 *
 *   handler (read.c)
 *      │ parse parameters, look the table up in the catalog
 *      ▼
 *   dg_service_tables         every table the caller may see, with its row count
 *   dg_service_table_count    one table's row count
 *   dg_service_rows           a page of rows (keyset by id)    ─┐
 *   dg_service_row            one row and its child count      ├─ rows decoded
 *   dg_service_row_memory     the same, from the manager's memory│
 *   dg_service_rows_memory    a parent's page, from memory     │
 *   dg_service_export_rows    every row in id order            ─┘  into dg_row_t
 *   dg_service_export_parquet DuckDB's own Parquet file, opened and unlinked
 *   dg_service_holds          a table's held cells
 *   dg_service_history        a row's changes from the audit log
 *   dg_service_views          the views the caller may see, with their SQL
 *   dg_service_view_visible   does a view exist within the caller's scope
 *   dg_service_view_open/     a page of a view: its columns, the query guard,
 *     _enter/_run/_close      its values decoded into dg_value_t
 *   dg_service_health         this node's dependencies: Redis, DuckDB, manager
 *   dg_service_await_applied  wait until DuckDB reflects the answered writes
 *      │
 *      ▼ JSON / CSV written by the handler, problems mapped from the code
 *
 * The SQL and the decoding of DuckDB's result chunks live in
 * src/service/read.c only. Each call is one statement on the calling
 * thread's DuckDB connection, so it reads one consistent snapshot. Health
 * and the read-your-writes wait (src/service/node.c) read the state the
 * Redis and DuckDB threads keep, pinging both only when asked to.
 *
 * Errors (common.h's error space), the same for every row call here:
 *   DG_EUNAVAIL   no DuckDB connection on this thread (nothing ran)
 *   DG_ENOTFOUND  the statement failed because the table was dropped since
 *                 the caller looked it up
 *   DG_EIO        the statement failed otherwise (the cause is logged)
 * plus the ones a call lists. A call that fails never calls its callback.
 */
#ifndef DG_SERVICE_READ_H
#define DG_SERVICE_READ_H

#include <stddef.h>
#include <stdint.h>

#include "dg/app.h"
#include "dg/catalog.h"
#include "dg/redis.h" /* dg_redis_xid_t: update ids */
#include "dg/row.h"

/* ---- rows ---------------------------------------------------------------- */

/* dg_cell_t, dg_row_t and dg_row_fn: dg/row.h. */

/** What a page of rows asks for (GET /tables/{table}/rows). */
typedef struct dg_rows_query_s {
  int64_t limit;    /* rows in the page, >= 1                            */
  int roots;        /* 1: only rows whose parent_id is NULL               */
  int by_parent;    /* 1: only children of parent (ignored with roots)    */
  int64_t parent;   /* the parent's id, with by_parent                    */
  int has_after;    /* 1: only rows with id > after (the paging cursor)   */
  int64_t after;    /* the cursor, with has_after                         */
  int children;     /* 1: each row carries its child count                */
} dg_rows_query_t;

/**
 * Calls fn for at most q->limit rows of t in id order; *more is 1 when
 * another row follows the last one given (the page's "next" is due).
 * Fails as the top comment says (a result whose columns differ from t's is
 * DG_EIO, or DG_ENOTFOUND when t was dropped).
 */
int dg_service_rows(dg_app_t *app, const dg_tabledef_t *t, const dg_rows_query_t *q, dg_row_fn fn, void *arg,
                    int *more);

/**
 * Calls fn once with row id of t and its child count, or not at all when t
 * has no such row (0 either way). Fails as dg_service_rows does.
 */
int dg_service_row(dg_app_t *app, const dg_tabledef_t *t, int64_t id, dg_row_fn fn, void *arg);

/**
 * dg_service_row from the manager's state in memory (this process runs
 * the manager, leading or following): no DuckDB statement and no wait for
 * the persister, when that state already reflects what a consistent read
 * must -- every write answered when the read arrived, this process's async
 * writes, and *min when given (consistency.c). 1: fn was called; 0: no such
 * row; either way applied holds the newest update reflected (the read's
 * X-Duckgrid-Applied). fn runs under the manager's state lock: it only
 * copies the row out. DG_EUNAVAIL: the memory cannot answer (no manager
 * here, not loaded, behind, a DDL request under way; with nowait, the
 * manager's lock taken -- for a thread that must not block): wait and read
 * DuckDB (dg_read_consistent_or_problem, dg_service_row).
 */
int dg_service_row_memory(dg_app_t *app, const dg_tabledef_t *t, int64_t id, const dg_redis_xid_t *min, int nowait,
                          dg_row_fn fn, void *arg, char *applied, size_t cap);

/**
 * dg_service_rows from the manager's state in memory, as
 * dg_service_row_memory, for the pages the engine keeps in order: the
 * roots (q->roots) and one parent's children (q->by_parent), with or
 * without q->after. 0 (rows given, *more set, applied as there), or
 * DG_EUNAVAIL for a page it cannot give (a page of every row) and as
 * dg_service_row_memory.
 */
int dg_service_rows_memory(dg_app_t *app, const dg_tabledef_t *t, const dg_rows_query_t *q,
                           const dg_redis_xid_t *min, int nowait, dg_row_fn fn, void *arg, int *more, char *applied,
                           size_t cap);

/**
 * Calls fn for every row of t in id order (no child counts), from one
 * statement. Besides the common errors: DG_EINTERNAL when the result's
 * columns differ from t's (logged).
 */
int dg_service_export_rows(dg_app_t *app, const dg_tabledef_t *t, dg_row_fn fn, void *arg);

/**
 * Every row of t in id order written by DuckDB's Parquet writer into a
 * scratch file (dg/iofile.h), opened read-only into *fd and already
 * unlinked: nothing stays on disk once the caller closes it (its job).
 * Besides the common errors: DG_EINTERNAL when no scratch file could be
 * named or the written file could not be opened (logged).
 */
int dg_service_export_parquet(dg_app_t *app, const dg_tabledef_t *t, int *fd);

/* ---- tables -------------------------------------------------------------- */

/** Row count of t into *count. */
int dg_service_table_count(dg_app_t *app, const dg_tabledef_t *t, int64_t *count);

/** Picks the tables dg_service_tables reports: 1 to report name. */
typedef int (*dg_table_want_fn)(void *arg, const char *name);
/** Receives a table (borrowed for the call) and its row count. */
typedef void (*dg_table_fn)(void *arg, const dg_tabledef_t *t, int64_t count);

/**
 * Calls fn, in name order, for every catalog table want accepts (want NULL:
 * all) with its row count. A table dropped meanwhile, or whose count fails,
 * is left out. Fails only with DG_EUNAVAIL.
 */
int dg_service_tables(dg_app_t *app, dg_table_want_fn want, dg_table_fn fn, void *arg);

/* ---- holds and history --------------------------------------------------- */

/** Receives a held cell: its row and column (column_len bytes, borrowed). */
typedef void (*dg_hold_fn)(void *arg, int64_t row_id, const char *column, size_t column_len);

/** Calls fn for each held cell of t (dg.holds), by row id then column. */
int dg_service_holds(dg_app_t *app, const dg_tabledef_t *t, dg_hold_fn fn, void *arg);

/** One change from the audit log; every member NUL-terminated or NULL
 *  (a SQL NULL), borrowed for the callback. */
typedef struct dg_change_s {
  const char *update_id;
  const char *request_id;
  const char *user;
  const char *ts;       /* ISO 8601 UTC with milliseconds                    */
  const char *column;   /* NULL for a row change (insert, move, delete)      */
  const char *old;
  const char *new_;
} dg_change_t;

typedef void (*dg_change_fn)(void *arg, const dg_change_t *c);

/** What a page of a row's history asks for. */
typedef struct dg_history_query_s {
  int64_t row_id;
  const char *column;      /* only this column's changes, or NULL for all   */
  dg_redis_xid_t before;   /* only updates before this id                   */
  int64_t limit;           /* updates (not changes) in the page, >= 1       */
} dg_history_query_t;

/**
 * Calls fn for the changes to row q->row_id of t of the newest q->limit
 * updates before q->before, newest update first. *next is the update id to
 * continue from when older updates remain (free with dg_free), else NULL.
 */
int dg_service_history(dg_app_t *app, const dg_tabledef_t *t, const dg_history_query_t *q, dg_change_fn fn,
                       void *arg, char **next);

/* ---- views --------------------------------------------------------------- */
/*
 * Implemented in src/service/views.c. A view is a real DuckDB view in
 * `main`; its columns can be of any type DuckDB produces, and each value
 * comes out as one of these kinds (types with no kind of their own are cast
 * to VARCHAR by DuckDB, positionally, so no column name of the view is ever
 * put into SQL text).
 */

typedef enum {
  DG_VALUE_NULL,   /* NULL of any type                                   */
  DG_VALUE_BOOL,   /* i: 0 or 1                                          */
  DG_VALUE_INT,    /* i: TINYINT … BIGINT, UTINYINT … UINTEGER            */
  DG_VALUE_UINT,   /* u: UBIGINT                                         */
  DG_VALUE_WIDE,   /* (hi << 64 | lo) as a two's complement 128-bit
                      integer, over 10^scale: HUGEINT (scale 0) and every
                      DECIMAL(w,scale)                                   */
  DG_VALUE_UWIDE,  /* (hi << 64 | lo) unsigned: UHUGEINT                  */
  DG_VALUE_FLOAT,  /* d, read from a FLOAT (may be NaN or infinite)       */
  DG_VALUE_DOUBLE, /* d, from a DOUBLE (may be NaN or infinite)           */
  DG_VALUE_TEXT,   /* str, len: VARCHAR, or DuckDB's VARCHAR cast of any
                      other type (DATE as ISO 8601, TIMESTAMP, UUID …)    */
} dg_value_kind_t;

/** One value of a view's row, valid during the callback only. */
typedef struct dg_value_s {
  dg_value_kind_t kind;
  int scale;        /* WIDE: decimals                                    */
  int64_t i;        /* BOOL, INT                                         */
  uint64_t u;       /* UINT                                              */
  uint64_t hi, lo;  /* WIDE, UWIDE                                       */
  double d;         /* FLOAT, DOUBLE                                     */
  const char *str;  /* TEXT: bytes, not NUL-terminated (borrowed)        */
  size_t len;       /* TEXT                                              */
} dg_value_t;

/** Receives a view (name, sql: nlen / slen bytes, borrowed). */
typedef void (*dg_view_fn)(void *arg, const char *name, size_t nlen, const char *sql, size_t slen);

/**
 * Calls fn for each view in dg.views in name order that who may see (a
 * scoped key sees the views whose tables, through nested views too, are all
 * in its scope). DG_EUNAVAIL (no connection), or DG_EIO (listing failed;
 * logged): fn not called.
 */
int dg_service_views(dg_app_t *app, const dg_principal_t *who, dg_view_fn fn, void *arg);

/**
 * 1 when view name exists and lies within who's scope, 0 when it does not
 * (out of scope counts as absent). DG_EUNAVAIL (no connection) or DG_EIO
 * (dg.views could not be read).
 */
int dg_service_view_visible(dg_app_t *app, const dg_principal_t *who, const char *name);

/** A view being read (src/service/views.c); one request's, one thread's. */
typedef struct dg_view_read_s dg_view_read_t;

/**
 * Binds view name (a valid name: dg_name_valid) for reading into *out,
 * freed with dg_service_view_close. Fails, with *out untouched, with
 *   DG_EUNAVAIL   no connection;
 *   DG_EINVAL     name is not a valid name (callers check first);
 *   DG_ENOTFOUND  the view no longer binds: a table or column it reads is
 *                 gone (DuckDB's reason logged, not returned: it names
 *                 tables and columns);
 *   DG_EIO        its columns' VARCHAR cast could not be prepared (logged).
 */
int dg_service_view_open(dg_app_t *app, const char *name, dg_view_read_t **out);
/** Columns of the view (>= 0) and the name of column k (borrowed, "" when
 *  DuckDB has none). */
size_t dg_service_view_ncols(const dg_view_read_t *v);
const char *dg_service_view_colname(const dg_view_read_t *v, size_t k);

/**
 * Registers the query about to run under the query guard (qguard.h) for
 * caller. 0; DG_ECONFLICT when the caller already runs its cap of view
 * queries; DG_EUNAVAIL when the server stops or every slot is taken.
 * After 0, dg_service_view_run must follow (dg_service_view_close leaves
 * the guard if it does not).
 */
int dg_service_view_enter(dg_view_read_t *v, const char *caller);

/** Receives a row's ncols values; non-zero stops the read, and
 *  dg_service_view_run returns it. */
typedef int (*dg_value_row_fn)(void *arg, const dg_value_t *values, size_t ncols);

/**
 * Runs the entered query for rows offset .. offset+limit-1 and leaves the
 * guard, then calls fn for each row. Fails, before any call of fn, with
 *   DG_ETIMEOUT   the guard's deadline stopped it;
 *   DG_EUNAVAIL   the server's stop interrupted it;
 *   DG_ENOMEM     DuckDB ran out of the memory it may use;
 *   DG_EIO        it failed otherwise (DuckDB's first line logged);
 *   DG_ECONFLICT  the view's columns changed since it was opened;
 * or returns fn's non-zero value when fn stopped it.
 */
int dg_service_view_run(dg_view_read_t *v, int64_t limit, int64_t offset, dg_value_row_fn fn, void *arg);

/** Frees v (NULL is fine), leaving the guard if still entered. */
void dg_service_view_close(dg_view_read_t *v);

/* ---- this node: health and consistency ---------------------------------- */

/** What GET /health reports, as facts; the handler decides the status. */
typedef struct dg_health_s {
  int redis_ok;            /* the response reader hears Redis (and PING, deep) */
  int duck_ok;             /* DuckDB answers (deep) and the manager persists */
  int diverged;            /* follower: its outcome differed from the leader's */
  int stopping;            /* SIGTERM/SIGINT arrived                         */
  int manager_state;       /* dg_manager_state_t                             */
  int64_t lag;             /* requests waiting for the manager               */
  int64_t lag_ms;          /* follower: stream time behind the log's top, ms */
  int has_progress;        /* 1: applied and published are set               */
  char applied[DG_REDIS_XID_BUFSZ];   /* update id reads here reflect (persisted) */
  char published[DG_REDIS_XID_BUFSZ]; /* newest update id seen published     */
} dg_health_t;

/**
 * Fills *h from the state the threads owning Redis and DuckDB keep fresh
 * (no round trip); deep: also PING Redis and SELECT 1 on DuckDB. Cannot
 * fail.
 */
void dg_service_health(dg_app_t *app, int deep, dg_health_t *h);

/**
 * Waits until this node's DuckDB reflects every write answered when the
 * call began and the newest this process queued asynchronously, and *min
 * too when min is not NULL: with min for at most wait_ms, without it for a
 * bounded catch-up (none on a node that cannot follow or diverged), after
 * which it answers from what DuckDB has. The update id reached goes to
 * applied (cap >= DG_REDIS_XID_BUFSZ); "" when this process keeps no
 * progress marks (nothing waited).
 * 0, or DG_ETIMEOUT: *min was not reached within wait_ms.
 */
int dg_service_await_applied(dg_app_t *app, const dg_redis_xid_t *min, int wait_ms, char *applied, size_t cap);

#endif
