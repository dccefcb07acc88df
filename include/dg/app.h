/*
 * app.h -- the process: its modules (configuration, the database, the key
 * checker, the Redis connection pool, the catalog, the hub ...), the names
 * and key of its streams, what its threads report, and the calls between
 * the manager and the reader; created at start-up by main.c.
 */
#ifndef DG_APP_H
#define DG_APP_H

#include <stdatomic.h>

#include "dg/auth.h"
#include "dg/config.h"
#include "dg/db.h"

struct dg_redis_pool_s;
struct dg_redis_xid_s; /* redis.h: an update id */
struct dg_row_s;       /* row.h */
struct dg_tabledef_s;  /* catalog.h */
struct dg_catalog_s;
struct dg_waiters_s;
struct dg_jwt_s;
struct dg_ratelimit_s;
struct dg_hub_s;
struct dg_metrics_s;
struct dg_progress_s;
struct dg_alive_s;
struct dg_qguard_s;
struct dg_snapshots_s;
struct dg_archive_s;

typedef enum {
  DG_MANAGER_OFF = 0,     /* no manager runs in this process    */
  DG_MANAGER_STANDBY = 1, /* waiting for the lease               */
  DG_MANAGER_LEADER = 2,  /* holds the lease and applies writes  */
  DG_MANAGER_FOLLOWER = 3,/* applies the log behind the leader: a read
                             replica and hot standby (DUCKGRID_ROLE)    */
} dg_manager_state_t;

/*
 * The names this node shares through Redis and the key that signs its
 * stream entries. Set by main.c (or the restore command) before any thread
 * starts; read-only after, by every thread.
 */
typedef struct dg_streams_s {
  char req[128];                    /* "<prefix>request_duck"            */
  char res[128];                    /* "<prefix>response_duck"           */
  char lease[128];                  /* "<prefix>duckgrid:manager"        */
  char fence[128];                  /* "<prefix>duckgrid:fence" (WAIT)   */
  unsigned char mac_key[32];        /* HMAC key of stream entries, derived
                                       from the pepper (entry_mac.h); secret */
} dg_streams_t;

/*
 * What the node's threads say about themselves, for GET /health and
 * /metrics. Each field has one writer, named beside it; any thread reads
 * (atomics, no lock).
 */
typedef struct dg_node_status_s {
  atomic_int manager_state;         /* manager: dg_manager_state_t        */
  atomic_long lag;                  /* manager: requests waiting for it   */
  atomic_long lag_ms;               /* manager, following: stream time behind the log's top */
  atomic_int diverged;              /* manager, following: its outcome differed from the leader's */
  atomic_long log_losses;           /* manager: times it found Redis had lost the log */
  atomic_int cannot_follow;         /* manager, standby: the log lacks what follows this database */
  atomic_int manager_broken;        /* manager: DuckDB kept failing, not leading */
  atomic_long redis_seen_ms;        /* reader: monotonic ms of Redis's last answer */
  atomic_int redis_failing;         /* reader: its last command failed    */
  atomic_long redis_reconnects;     /* manager and reader: reconnects     */
  atomic_long stream_rejected[2];   /* entries refused (no valid MAC): [0]
                                       request_duck (manager), [1]
                                       response_duck (reader)              */
  atomic_long repl_ok;              /* write handlers: answered after WAIT reached its replicas */
  atomic_long repl_timeout;         /* ... answered when WAIT timed out or failed */
  atomic_int stopping;              /* main: 1 once SIGTERM/SIGINT arrived */
} dg_node_status_t;

/*
 * Calls between the manager and the response reader of one process, each
 * set by the side that answers before the other side starts.
 */
typedef struct {
  /* Set by the response reader: the manager hands each outcome it has just
   * published (prev: the entry before it in response_duck) to the reader's
   * pipeline -- catalog, ring, waiters, live clients -- without the round
   * trip through Redis; feed_done ends a batch. Called from the manager
   * thread only. */
  void (*feed)(void *arg, const char *prev, const char *id, const char *res, size_t len);
  void (*feed_done)(void *arg);
  void *feed_arg;
  /* Set by the manager: the update id of the first request of (caller,
   * request_id) within the idempotency window, applied in this process
   * (persisted or not). 1 found (id in out), 0 not. Any thread. */
  int (*idem_lookup)(void *arg, const char *caller, const char *request_id, char *out, size_t cap);
  void *idem_arg;
  /* Set by the manager: row id of table t (the catalog's definition) from
   * the state in memory, when that state reflects every update up to
   * *want and holds t with the same columns (src/manager/rows.c). fn is
   * called under the manager's state lock, with cells borrowed from it:
   * it must only copy them out. 1: fn was called; 0: there is no such row;
   * *at (either way) is the newest update the state reflects. DG_EUNAVAIL:
   * the state in memory cannot answer (not loaded, behind *want, a DDL
   * request under way, t unknown to it; with DG_ROWREAD_TRY, the lock
   * taken): ask DuckDB. mode: dg_rowread_mode_t (row.h). Any thread; but
   * for DG_ROWREAD_TRY it may wait for the manager to finish a batch
   * (milliseconds), DG_ROWREAD_CATCH up to a second more. */
  int (*row_read)(void *arg, const struct dg_tabledef_s *t, int64_t id, const struct dg_redis_xid_s *want,
                  int mode, void (*fn)(void *fnarg, const struct dg_row_s *row), void *fnarg,
                  struct dg_redis_xid_s *at);
  /* Set by the manager, as row_read: at most limit children of parent
   * (INT64_MIN: the roots) with ids above after (INT64_MIN: from the
   * first), in id order; *more is 1 when another follows. 0, or
   * DG_EUNAVAIL as row_read. Uses row_arg. */
  int (*rows_read)(void *arg, const struct dg_tabledef_s *t, int64_t parent, int64_t after, size_t limit,
                   const struct dg_redis_xid_s *want, int mode,
                   void (*fn)(void *fnarg, const struct dg_row_s *row), void *fnarg, int *more,
                   struct dg_redis_xid_s *at);
  void *row_arg;
} dg_links_t;

/*
 * The process: the modules main.c created, each owning its own state and
 * locks (the threads and the lock order: the comment atop src/main.c), plus
 * the three groups above. A handler reaches the modules through the
 * service layer (service.h); the manager, the reader, the webhooks and
 * the archive are given only the parts they use at start (their deps in
 * manager.h, reader.h, webhook.h, archive.h).
 */
typedef struct dg_app_s {
  const dg_config_t *cfg;           /* immutable after start-up          */
  dg_db_t *db;                      /* DuckDB                           */
  dg_auth_t *auth;                  /* API key checker                  */
  struct dg_redis_pool_s *redis;    /* connections for API threads       */
  struct dg_submitter_s *submitter; /* XADDs queued from the loops, or NULL */
  struct dg_catalog_s *catalog;     /* tables/rows/views, for validation */
  struct dg_waiters_s *waiters;     /* synchronous writes awaiting outcomes */
  struct dg_jwt_s *jwt;             /* bearer JWT verifier, or NULL      */
  struct dg_ratelimit_s *ratelimit; /* per-caller token buckets          */
  struct dg_ratelimit_s *ip_ratelimit; /* per-IP buckets, before auth     */
  struct dg_hub_s *hub;             /* live clients (SSE, WebSocket)     */
  struct dg_metrics_s *metrics;     /* counters for GET /metrics         */
  struct dg_alive_s *alive;         /* revocation checks for open streams */
  struct dg_qguard_s *qguard;       /* view query deadlines and caps      */
  struct dg_progress_s *progress;   /* published / persisted update ids  */
  struct dg_snapshots_s *snapshots; /* POST /admin/snapshots (snapshot.h) */
  struct dg_archive_s *archive;     /* request_duck archive, or NULL (archive.h) */
  dg_streams_t streams;             /* names and signing key, read-only  */
  dg_node_status_t status;          /* what the threads report           */
  dg_links_t links;                 /* manager <-> reader calls          */
} dg_app_t;

/**
 * Queues the demo data (table `sales`, a Brand X hierarchy, and the view
 * `sales_summary_by_product_family`) as ordinary requests on request_duck,
 * when the database has no table yet. Fixed request ids make a repeat a
 * no-op. Logs and gives up when Redis is unreachable.
 */
void dg_demo_enqueue(dg_app_t *app);

#endif
