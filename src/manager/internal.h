/*
 * internal.h -- the manager's private state, shared by manager.c (the loop,
 * the lease, recovery, publishing), apply.c (requests -> engine -> outcomes)
 * and persist.c (DuckDB: loading at start, writing each batch).
 *
 * Everything here belongs to the manager thread alone.
 */
#ifndef DG_MANAGER_INTERNAL_H
#define DG_MANAGER_INTERNAL_H

#include <duckdb.h>
#include <jansson.h>
#include <pthread.h>
#include <stdint.h>

#include "dg/app.h"
#include "dg/buf.h"
#include "dg/catalog.h"
#include "dg/engine.h"
#include "dg/idset.h"
#include "dg/manager.h"
#include "dg/redis.h"

/* One user table as the manager holds it. */
typedef struct mtable_s {
  dg_tabledef_t *def;      /* columns (counted reference)                    */
  dg_etable_t *et;         /* the engine's copy of every row                 */
  uint32_t tag;            /* index in manager.tables, carried by changes    */
  dg_emark_t batch_mark;   /* savepoint of the batch in hand, 0 when untouched */
  dg_idset_t touched;      /* rows changed in this batch                     */
  dg_idset_t fresh;        /* rows whose first change in the batch was an insert */
  int staged;              /* temp staging tables exist on the connection    */
  int32_t *audit_ids;      /* dg.audit_cols id by column index, [ncols]: row
                              records; 0 not looked up yet; NULL: none yet   */
} mtable_t;

/* A (table, column, scale) named by the audit log's integer rows. */
typedef struct maudcol_s {
  int32_t id;
  int scale;
  char *table;
  char *column;            /* NULL for row records (insert, delete, move)     */
} maudcol_t;

/* One request of a batch, from stream entry to outcome. */
typedef struct mreq_s {
  char stream_id[DG_REDIS_XID_BUFSZ];
  char request_id[160];
  char user[64];           /* who asked (the key's name)                      */
  char table_name[64];     /* the request's table, for audit rows of dropped tables */
  char *res;               /* the outcome JSON (owned), NULL for a duplicate */
  size_t res_len;
  int duplicate;           /* a repeated request_id: no outcome, nothing applied */
  int rejected;            /* the outcome is "rejected"                        */
} mreq_t;

/* What an audit row records. */
enum { MHIST_CELL = 0, MHIST_ROW = 1, MHIST_HOLD = 2 };

/* A change kept for the audit log (and, for holds, for dg.holds). */
typedef struct mhist_s {
  uint32_t req;            /* index into the batch's requests                 */
  uint32_t tag;            /* table                                           */
  int64_t row;
  int32_t col;             /* column index in the table definition, -1: row   */
  uint8_t kind;            /* MHIST_*                                         */
  uint8_t numeric;         /* a number cell: old_num/new_num, no text         */
  uint8_t has_old;         /* numeric: old is not null                        */
  int64_t old_num, new_num;/* numeric: scaled values (the column's scale)     */
  char *old_text;          /* not numeric: text, NULL for null (owned)        */
  char *new_text;
} mhist_t;

struct dg_manager_s {
  dg_app_t *app;
  pthread_t thread;
  atomic_int stop;
  dg_redis_t *redis;             /* the manager's own connection              */
  duckdb_connection conn;        /* the manager's own DuckDB connection       */
  char consumer[64];             /* consumer name in the group                */
  char lease_value[96];          /* what we store in the lease key            */
  int leader;                    /* we hold the lease and state is loaded     */
  int64_t lease_renewed_ms;      /* when the lease was last set or renewed    */
  int64_t lag_checked_ms;
  int64_t trimmed_ms;
  uint64_t connects_seen;        /* Redis connects already counted in metrics  */
  uint64_t connects_recovered;   /* Redis connects after which recovery ran    */
  int64_t outcomes_trimmed_ms;   /* when dg.outcomes was last trimmed          */
  int dirty;                     /* batches committed since the last checkpoint */
  maudcol_t *audit_cols;         /* every dg.audit_cols row, and new ones    */
  size_t naudit_cols, audit_cols_cap;
  size_t naudit_saved;           /* the first ones, already in dg.audit_cols  */
  duckdb_prepared_statement applied_st; /* UPDATE dg.applied, prepared once */
  double persist_ms[4];          /* last persist: user rows, audit, outcomes, commit */
  uint64_t or_threshold;         /* dynamic_or_filter_threshold set on conn, 0: DuckDB's default */
  int64_t checkpointed_ms;       /* when the manager last checkpointed          */
  char last_applied[DG_REDIS_XID_BUFSZ]; /* newest request applied in DuckDB */

  mtable_t **tables;             /* by tag; NULL where a table was dropped    */
  uint32_t ntables;
  char **views;                  /* view names                                */
  size_t nviews;
  dg_idset_t seen_requests;      /* 64-bit hashes of request_ids applied      */
  dg_idset_t batch_seen;         /* hashes added during the batch in hand     */
  int64_t next_row_id;           /* id for a row inserted without one: above every id in use */

  /* The batch in hand. */
  mreq_t *reqs;
  size_t nreqs, reqs_cap;
  mhist_t *hist;
  size_t nhist, hist_cap;
  char **ddl;                    /* DDL statements to run first in the batch   */
  size_t nddl, ddl_cap;
  char **dropped;                /* tables dropped in the batch (staging cleanup) */
  size_t ndropped;
  dg_changes_t *changes;         /* the engine's change buffer, reused         */
  dg_buf_t json;                 /* outcome being written                      */
};

/* ---- apply.c ----------------------------------------------------------------- */

/** Applies one request and fills req->res with its outcome. Never fails:
 *  a bad request becomes a rejected outcome. Returns 1 if the request is
 *  DDL (the caller runs it alone in its batch). */
void dg__mgr_apply(dg_manager_t *m, mreq_t *req, const char *json, size_t len);
/** 1 if the request text is a DDL op (create/delete table or view). */
int dg__mgr_is_ddl(const char *json, size_t len);
/** Forgets the batch in hand (outcomes, audit records, DDL, touched rows). */
void dg__mgr_batch_clear(dg_manager_t *m);
/** Ends the batch in the engine: releases (keep) or rolls back every table. */
void dg__mgr_batch_end(dg_manager_t *m, int keep);
mtable_t *dg__mgr_table(dg_manager_t *m, const char *name);
uint64_t dg__mgr_hash(const char *s);
void dg__mgr_table_free(mtable_t *t);

/* ---- persist.c ------------------------------------------------------------------ */

/** Loads tables, rows, holds, views, seen request ids and last_applied. */
int dg__mgr_load(dg_manager_t *m, char *err, size_t errcap);
/** Writes the batch in hand (effects, audit, outcomes, last id) in one
 *  transaction. 0 or DG_EIO with the reason in err. */
int dg__mgr_persist(dg_manager_t *m, char *err, size_t errcap);
/** Frees what persisting keeps between batches (audit names, statements). */
void dg__mgr_persist_dispose(dg_manager_t *m);
/** (Re)builds the set of applied request ids from dg.outcomes. */
int dg__mgr_load_seen(dg_manager_t *m);
/** The stored outcome of an applied request (owned) or NULL. */
char *dg__mgr_stored_outcome(dg_manager_t *m, const char *stream_id);

#endif
