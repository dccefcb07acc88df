/*
 * internal.h -- the manager's private state, shared by manager.c (the loop,
 * the lease, recovery, publishing), apply.c (requests -> engine -> outcomes)
 * and persist.c (DuckDB: loading at start, writing each batch).
 *
 * Two threads share it: the manager thread (apply, publish) and the
 * persister thread (DuckDB, XACK). Who may touch what:
 *
 *   field group                                   guarded by
 *   ─────────────────────────────────────────     ─────────────────────────
 *   tables (engine rows, touched/fresh sets),     state_lock
 *   views, pend, hist, ddl, next_row_id,
 *   last_applied, rd_ok, rd_at
 *   conn (the DuckDB connection), staging         conn_lock
 *   tables, audit_cols, applied_st
 *   reqs, json, changes, redis, idem writes       the manager thread alone
 *   predis                                        the persister thread alone
 *   flush_req, pstop, pwork                       plock (+ pcond, dcond)
 *   idem (the idempotency map)                    idem_lock (API lookups)
 *
 * Lock order: conn_lock, then state_lock, then idem_lock; plock is never
 * held while taking another lock (the progress lock may be held when plock
 * is taken: dg_progress_wait kicks the persister).
 */
#ifndef DG_MANAGER_INTERNAL_H
#define DG_MANAGER_INTERNAL_H

#include <duckdb.h>
#include <jansson.h>
#include "dg/jsonw.h"
#include <pthread.h>
#include <stdatomic.h>
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

/* A request applied and published, not yet persisted: the unpersisted
 * tail, in stream order. Its audit rows (mhist_t.req) index this list. */
typedef struct mpend_s {
  char stream_id[DG_REDIS_XID_BUFSZ];
  char request_id[160];
  char user[64];           /* who asked (the key's name)                      */
  char table_name[64];     /* the request's table, for audit rows of dropped tables */
  char caller[96];         /* idempotency scope ("key:<id>", "jwt:<sub>"), "" if none */
  uint8_t idem;            /* 1: record (caller, request_id) in dg.idem        */
} mpend_t;

/* The idempotency map: hash of (caller, request_id) -> stream id of the
 * first request with it. Open addressing, linear probing, no removal (a
 * rebuild drops entries older than the window). */
typedef struct midem_s {
  uint64_t *keys;          /* 0: empty slot                                   */
  dg_redis_xid_t *ids;
  size_t cap, count;       /* cap a power of two                              */
} midem_t;

/* A follower's outcome waiting to be compared with the leader's. */
typedef struct mverify_s {
  dg_redis_xid_t id;
  uint64_t hash;           /* FNV-1a of the outcome bytes                     */
  uint8_t duplicate;       /* no outcome (a repeated request_id)              */
} mverify_t;

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
  char caller[96];         /* idempotency scope, "" when the request has none  */
  uint8_t idem;            /* the client gave the request_id                   */
  int published;           /* 1 XADD taken, 2 there already (manager.c)         */
  dg_redis_xid_t first;    /* duplicate: the first request's update id         */
  int poison;              /* >0: apply crashed this often; reject it with 500 */
} mreq_t;

/* What an audit row records. */
/* MHIST_IMAGE: a row a delete removed, as it was (dg.row_images, not
 * dg.cell_log): old_text is its cells as a JSON object, old_num its parent
 * (has_old 0: a root). */
enum { MHIST_CELL = 0, MHIST_ROW = 1, MHIST_HOLD = 2, MHIST_IMAGE = 3 };

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
  uint8_t has_new;         /* MHIST_ROW of an insert: new_num is the parent
                              (DG_ROW_NONE: a root), for its revert          */
} mhist_t;

/* A cell change kept for a revert (undo.c): an audit record of a cell. */
enum { MUNDO_NUM = 1, MUNDO_TEXT = 2, MUNDO_OTHER = 3 /* a row record or a hold */, MUNDO_GONE = 4 /* its column is gone */ };
typedef struct mundo_cell_s {
  int64_t row;
  int64_t old_num, new_num; /* MUNDO_NUM: scaled values                       */
  char *old_text, *new_text;/* MUNDO_TEXT: NULL for null (owned)               */
  uint32_t tag;             /* table (NUM, TEXT)                              */
  int32_t col;              /* column index in the table definition (NUM, TEXT) */
  uint8_t kind;             /* MUNDO_*                                        */
  uint8_t has_old;          /* MUNDO_NUM: the old value is not null           */
} mundo_cell_t;

/* One update's cell changes, in the order they were applied. */
typedef struct mundo_s {
  dg_redis_xid_t id;
  mundo_cell_t *cells;
  size_t n;
  size_t bytes;             /* counted against DUCKGRID_REVERT_CACHE_MB       */
  int loaded;               /* undo_loaded: read from DuckDB                  */
} mundo_t;

struct dg_manager_s {
  dg_manager_deps_t deps;        /* what it was given (manager.h)             */
  pthread_t thread;
  atomic_int stop;

  /* ---- threads and locks (see the table at the top) ---- */
  pthread_mutex_t state_lock;
  pthread_mutex_t conn_lock;
  pthread_mutex_t idem_lock;
  pthread_mutex_t plock;
  pthread_cond_t pcond;          /* wakes the persister: work, flush, stop    */
  pthread_cond_t dcond;          /* a persist finished (or failed for good)   */
  pthread_t pthread;             /* the persister                             */
  int pstop;                     /* plock: the persister ends                 */
  int flush_req;                 /* plock: persist now, do not wait the interval */
  int pwork;                     /* plock: a persist cycle is running         */
  uint64_t pdone;                /* plock: persist cycles finished, ok or not */
  atomic_int broken;             /* DuckDB kept failing: stop leading         */
  atomic_size_t npend_atomic;    /* npend, readable without state_lock        */
  atomic_int_least64_t pend_since_us; /* when the oldest unpersisted request arrived, 0: none */
  dg_redis_t *predis;            /* the persister's Redis connection (XACK)   */
  int64_t persist_interval_us;   /* persist at least this often under load    */
  size_t persist_max;            /* or once this many requests wait           */
  size_t tail_max;               /* stop reading request_duck above this tail */
  int64_t idem_window_ms;        /* a request_id repeats within this stream time */
  size_t outcome_changes_max;    /* an outcome lists at most this many changes */
  size_t outcome_ids_max;        /* and this many inserted / deleted ids (0: all) */
  size_t request_changes_max;    /* a request changing more cells is 400       */
  long request_maxlen;           /* persisted entries kept in request_duck     */
  long poison_attempts;          /* careful applies before a 500 rejection     */
  char poison_key[160];          /* hash: stream id -> careful apply attempts  */
  char poisoned_key[160];        /* hash: stream id -> times it stopped the
                                    manager, for each request rejected as
                                    poison (replay.h DG_POISONED_SUFFIX)      */
  char *test_crash_on;           /* test hook: abort applying this request_id  */
  dg_redis_xid_t res_top;        /* newest entry of response_duck we know of  */
  int res_top_known;
  mpend_t *pend;                 /* the unpersisted tail                      */
  size_t npend, pend_cap;
  midem_t idem;
  int64_t idem_pruned_ms;        /* stream time of the last idem prune        */

  dg_redis_t *redis;             /* the manager's own connection              */
  duckdb_connection conn;        /* the manager's own DuckDB connection       */
  char consumer[64];             /* consumer name in the group                */
  /* ---- followers and failover (see "Followers" in manager.c) ---- */
  int role_follower;             /* DUCKGRID_ROLE=follower: never lead         */
  atomic_int following;          /* state loaded, applying behind the leader   */
  char fpos[DG_REDIS_XID_BUFSZ]; /* newest request applied in memory (either role) */
  int64_t lease_ms;              /* lease length (DUCKGRID_LEASE_MS)           */
  dg_redis_t *lredis;            /* the lease thread's connection              */
  pthread_t lthread;             /* renews the lease while we hold it          */
  atomic_int holding;            /* the lease thread renews while 1            */
  atomic_int lease_lost;         /* the lease thread found it gone             */
  atomic_int lstop;
  struct mverify_s *vq;          /* follower: our outcomes, to compare ...     */
  size_t vq_head, vq_n, vq_cap;  /* (a ring)                                   */
  struct mverify_s *lq;          /* ... with the leader's, read from response_duck */
  size_t lq_head, lq_n, lq_cap;
  char rtop[DG_REDIS_XID_BUFSZ]; /* follower: newest leader outcome read        */
  uint64_t verified, unverified; /* follower: outcomes compared / not comparable */
  int64_t gap_logged_ms;
  int claim_misses;              /* waits that saw requests the claim did not get */
  char lease_base[80];           /* host:pid:start, after the epoch in the value */
  pthread_mutex_t lease_lock;    /* lease_value, between the manager and the lease thread */
  char lease_value[96];          /* what we store in the lease key            */
  int leader;                    /* we hold the lease and state is loaded     */
  int64_t lag_checked_ms;
  int64_t trimmed_ms;
  uint64_t connects_seen;        /* Redis connects already counted in metrics  */
  int dirty;                     /* batches committed since the last checkpoint */
  maudcol_t *audit_cols;         /* every dg.audit_cols row, and new ones    */
  size_t naudit_cols, audit_cols_cap;
  size_t naudit_saved;           /* the first ones, already in dg.audit_cols  */
  duckdb_prepared_statement applied_st; /* UPDATE dg.applied, prepared once */
  double persist_ms[5];          /* last persist: user rows, audit, outcomes, commit; the
                                    time state_lock was held */
  uint64_t or_threshold;         /* dynamic_or_filter_threshold set on conn, 0: DuckDB's default */
  int64_t checkpointed_ms;       /* when the manager last checkpointed          */
  char last_applied[DG_REDIS_XID_BUFSZ]; /* newest request applied in DuckDB */

  /* Reads from memory (rows.c, any thread, state_lock): rd_ok is 1 while
   * the engine holds exactly the log up to rd_at and every outcome in it is
   * published -- set after a batch's hand-over and after a load, 0 from a
   * DDL request's apply to its commit and once the state is dropped. */
  int rd_ok;
  dg_redis_xid_t rd_at;
  pthread_cond_t rd_cond;        /* state_lock: rd_at moved, or rd_ok fell    */
  mtable_t **tables;             /* by tag; NULL where a table was dropped    */
  uint32_t ntables;
  char **views;                  /* view names                                */
  size_t nviews;
  int64_t next_row_id;           /* id for a row inserted without one: above every id in use */

  /* The batch in hand. */
  mreq_t *reqs;
  size_t nreqs, reqs_cap;
  mhist_t *hist;
  size_t nhist, hist_cap;
  /* The arrays of the last persisted tail, kept (state_lock) for the next
   * tail instead of growing a new one from nothing: no copies, no fresh
   * pages per persist (persist.c work_take / recycle). Small ones only. */
  mhist_t *hist_spare;
  size_t hist_spare_cap;
  mpend_t *pend_spare;
  size_t pend_spare_cap;
  char **ddl;                    /* DDL statements to run first in the batch   */
  size_t nddl, ddl_cap;
  char **dropped;                /* tables dropped in the batch (staging cleanup) */
  size_t ndropped;
  dg_changes_t *changes;         /* the engine's change buffer, reused         */
  dg_buf_t json;                 /* outcome being written                      */

  /* What a compact revert reads (undo.c): a ring of recent cell writes,
   * in stream order, and the one update last read from the audit log. */
  mundo_t *undo;
  size_t undo_cap, undo_head, nundo;
  size_t undo_bytes, undo_max;
  mundo_t undo_loaded;
};

/* ---- apply.c ----------------------------------------------------------------- */

/** Applies one request and fills req->res with its outcome. Never fails:
 *  a bad request becomes a rejected outcome. Its audit rows refer to the
 *  request as pend index `pend_index` (where the hand-over will put it).
 *  A pure function of (state, request): the time in the outcome and the
 *  audit log is the stream id's, ids and the idempotency window come from
 *  the state. Caller holds state_lock. */
void dg__mgr_apply(dg_manager_t *m, mreq_t *req, const char *json, size_t len);
/** ISO-8601 UTC text of a stream id's milliseconds. */
void dg__mgr_time_iso(uint64_t ms, char *out, size_t cap);
/** The idempotency map (apply.c): first id of key within the window ending
 *  at `now`, 1 found / 0 not; add records key at id. */
int dg__mgr_idem_find(const midem_t *d, uint64_t key, uint64_t now_ms, int64_t window_ms, dg_redis_xid_t *id);
void dg__mgr_idem_add(midem_t *d, uint64_t key, dg_redis_xid_t id);
void dg__mgr_idem_prune(midem_t *d, uint64_t keep_from_ms);
void dg__mgr_idem_dispose(midem_t *d);
uint64_t dg__mgr_idem_key(const char *caller, const char *request_id);
/** 1 if the request text is a DDL op (create/delete table or view). */
int dg__mgr_is_ddl(const char *json, size_t len);
/** Forgets the batch in hand (outcomes, audit records, DDL, touched rows). */
void dg__mgr_batch_clear(dg_manager_t *m);
/** Ends the batch in the engine: releases (keep) or rolls back every table. */
void dg__mgr_batch_end(dg_manager_t *m, int keep);
mtable_t *dg__mgr_table(dg_manager_t *m, const char *name);
uint64_t dg__mgr_hash(const char *s);
void dg__mgr_table_free(mtable_t *t);

/* ---- undo.c: what a compact revert reads --------------------------------------- */

/** Keeps hist[from, to) -- the audit records of the update `id`, applied
 *  -- when they are all cell records (else nothing), evicting the oldest
 *  beyond DUCKGRID_REVERT_CACHE_MB. Manager thread. */
void dg__mgr_undo_keep(dg_manager_t *m, dg_redis_xid_t id, size_t from, size_t to);
/** U's records: from the cache or from the last dg__mgr_undo_load; NULL. */
const mundo_t *dg__mgr_undo_find(const dg_manager_t *m, dg_redis_xid_t id);
/** Reads U's audit records from DuckDB (every request before the revert
 *  persisted, m->conn free to use) into m->undo_loaded. 0 or DG_EIO. */
int dg__mgr_undo_load(dg_manager_t *m, dg_redis_xid_t id, char *err, size_t errcap);
/** Forgets every kept update (DDL, a reload of the state). */
void dg__mgr_undo_clear(dg_manager_t *m);
void dg__mgr_undo_dispose(dg_manager_t *m);
void dg__mgr_undo_free(mundo_t *u);
void dg__mgr_undo_settings(dg_manager_t *m);
/** 1 when the request text is a compact revert; *u is the update it reverts. */
int dg__mgr_revert_target(const char *json, size_t len, dg_redis_xid_t *u);

/* ---- manager.c (also used by replay.c) ----------------------------------------- */

/** A new request at the end of the batch in hand, for stream id sid. */
mreq_t *dg__mgr_req_add(dg_manager_t *m, const char *sid, size_t len);
/** The batch joins the unpersisted tail (state_lock held). */
void dg__mgr_hand_over(dg_manager_t *m);
/* rows.c: dg_links_t.row_read and rows_read (app.h). */
struct dg_row_s;
int dg__mgr_row_read(void *arg, const struct dg_tabledef_s *def, int64_t id, const struct dg_redis_xid_s *want,
                     int mode, void (*fn)(void *fnarg, const struct dg_row_s *row), void *fnarg,
                     struct dg_redis_xid_s *at);
int dg__mgr_rows_read(void *arg, const struct dg_tabledef_s *def, int64_t parent, int64_t after, size_t limit,
                      const struct dg_redis_xid_s *want, int mode,
                      void (*fn)(void *fnarg, const struct dg_row_s *row), void *fnarg, int *more,
                      struct dg_redis_xid_s *at);
/** Frees the state, batch, tail, DuckDB connection and locks. */
void dg__mgr_release(dg_manager_t *m);
/** Reads the settings apply depends on (idempotency window, change caps). */
void dg__mgr_apply_settings(dg_manager_t *m);

/* ---- persist.c ------------------------------------------------------------------ */

/** Loads tables, rows, holds, views, the idempotency map, next_row_id and
 *  last_applied. Caller holds conn_lock and state_lock. */
int dg__mgr_load(dg_manager_t *m, char *err, size_t errcap);

/** Called between the statements and COMMIT of a persist (DDL publishes
 *  there); nonzero aborts the transaction. */
typedef int (*dg__mgr_precommit_fn)(dg_manager_t *m, void *arg);
/**
 * Persists the unpersisted tail (pend) in one transaction: DDL, rows from
 * the engine, holds, audit, idempotency records, dg.applied (last id and
 * next_row_id). Takes state_lock for the part that reads the engine; the
 * caller holds conn_lock. On success pend is emptied into *acked (stream
 * ids to XACK, owned, *nacked of them) and last_applied moves.
 *   0         committed
 *   DG_EIO    a statement failed (err says which); nothing committed; the
 *             work is back in pend
 *   DG_EUNAVAIL COMMIT failed or precommit refused; nothing committed;
 *             the work is back in pend
 */
int dg__mgr_persist(dg_manager_t *m, dg__mgr_precommit_fn pre, void *pre_arg, char (**acked)[DG_REDIS_XID_BUFSZ],
                    size_t *nacked, char *err, size_t errcap);
/** Frees what persisting keeps between batches (audit names, statements). */
void dg__mgr_persist_dispose(dg_manager_t *m);
/** Forgets the unpersisted tail (pend, audit rows, touched rows); caller
 *  holds state_lock. Used when leadership ends: the tail is replayed. */
void dg__mgr_pend_drop(dg_manager_t *m);

#endif
