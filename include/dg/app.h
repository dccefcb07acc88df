/*
 * app.h -- the process: configuration, the database, the key checker, the
 * Redis connection pool and the manager's state, created at start-up by
 * main.c and passed explicitly to every request handler.
 */
#ifndef DG_APP_H
#define DG_APP_H

#include <stdatomic.h>

#include "dg/auth.h"
#include "dg/config.h"
#include "dg/db.h"

struct dg_redis_pool_s;
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

typedef struct dg_app_s {
  const dg_config_t *cfg;           /* immutable after start-up          */
  dg_db_t *db;                      /* DuckDB                           */
  dg_auth_t *auth;                  /* API key checker                  */
  struct dg_redis_pool_s *redis;    /* connections for API threads       */
  struct dg_catalog_s *catalog;     /* tables/rows/views, for validation */
  struct dg_waiters_s *waiters;     /* synchronous writes awaiting outcomes */
  struct dg_jwt_s *jwt;             /* bearer JWT verifier, or NULL      */
  struct dg_ratelimit_s *ratelimit; /* per-caller token buckets          */
  struct dg_ratelimit_s *ip_ratelimit; /* per-IP buckets, before auth     */
  struct dg_hub_s *hub;             /* live clients (SSE, WebSocket)     */
  struct dg_metrics_s *metrics;     /* counters for GET /metrics         */
  atomic_long redis_reconnects;     /* manager + reader reconnects       */
  struct dg_alive_s *alive;         /* revocation checks for open streams */
  struct dg_qguard_s *qguard;       /* view query deadlines and caps      */
  char req_stream[128];             /* "<prefix>request_duck"            */
  char res_stream[128];             /* "<prefix>response_duck"           */
  char lease_key[128];              /* "<prefix>duckgrid:manager"        */
  atomic_int manager_state;         /* dg_manager_state_t                */
  atomic_long lag;                  /* requests waiting for the manager  */
  atomic_long lag_ms;               /* follower: stream time behind the log's top */
  atomic_int diverged;              /* follower: its outcome differed from the leader's */
  atomic_long log_losses;           /* times the leader found Redis had lost the log */
  atomic_int cannot_follow;         /* standby: the log lacks what follows this node's database */
  atomic_int stopping;              /* 1 once SIGTERM/SIGINT arrived     */
  struct dg_progress_s *progress;   /* published / persisted update ids  */
  atomic_int manager_broken;        /* DuckDB kept failing: not leading  */
  atomic_long redis_seen_ms;        /* reader: monotonic ms of Redis's last answer */
  atomic_int redis_failing;         /* reader: its last command failed    */
  /* Set by the response reader before the manager starts: the manager
   * hands each outcome it has just published (prev: the entry before it
   * in response_duck) to the reader's pipeline -- catalog, ring, waiters,
   * live clients -- without the round trip through Redis; feed_done ends
   * a batch. Called from the manager thread only. */
  void (*feed)(void *arg, const char *prev, const char *id, const char *res, size_t len);
  void (*feed_done)(void *arg);
  void *feed_arg;
  /* Set by the manager: the update id of the first request of (caller,
   * request_id) within the idempotency window, applied in this process
   * (persisted or not). 1 found (id in out), 0 not. Any thread. */
  int (*idem_lookup)(void *arg, const char *caller, const char *request_id, char *out, size_t cap);
  void *idem_arg;
  unsigned char stream_key[32];     /* HMAC key of stream entries, derived
                                       from the pepper (entry_mac.h); secret */
  atomic_long stream_rejected[2];   /* entries refused: [0] request_duck,
                                       [1] response_duck (no valid MAC)     */
  char fence_key[128];              /* "<prefix>duckgrid:fence" (WAIT)   */
  atomic_long repl_ok;              /* writes answered after WAIT reached its replicas */
  atomic_long repl_timeout;         /* ... answered when WAIT timed out or failed */
  struct dg_snapshots_s *snapshots; /* POST /admin/snapshots (snapshot.h) */
  struct dg_archive_s *archive;     /* request_duck archive, or NULL (archive.h) */
} dg_app_t;

/**
 * Queues the demo data (table `sales`, a Brand X hierarchy, and the view
 * `sales_summary_by_product_family`) as ordinary requests on request_duck,
 * when the database has no table yet. Fixed request ids make a repeat a
 * no-op. Logs and gives up when Redis is unreachable.
 */
void dg_demo_enqueue(dg_app_t *app);

#endif
