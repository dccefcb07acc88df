/*
 * main.c -- the duckgrid command: `serve`, `--help`, `--version`.
 *
 * serve wires the process together in dependency order -- configuration,
 * DuckDB (migrated), API keys (bootstrapped), the Redis pool, the HTTP
 * server -- then waits for SIGINT/SIGTERM and takes it apart in reverse:
 * stop accepting and finish requests in flight, then close DuckDB cleanly.
 * Signals are blocked in every thread and taken synchronously here with
 * sigwait, so no handler runs in the middle of library code.
 *
 * Threads, what each owns, and the lock order:
 *
 *   main          start-up, sigwait, shutdown (this file)
 *   http loops    DUCKGRID_HTTP_THREADS h2o event loops (src/http/front.c):
 *                 sockets, parsing, sending, SSE streams, WebSockets; they
 *                 never block and own nothing shared but their queues.
 *                 What needs no wait they answer themselves (a route's
 *                 on_loop: /health, a row read from the manager's memory
 *                 with the key in the cache), trying the manager's
 *                 state lock, never waiting for it
 *   http workers  run handlers (DuckDB reads, Redis writes, long polls whose
 *                 cursor the ring lacks); a sync write waits for its outcome
 *                 parked on its loop, not here; 8 kept, more on demand
 *   manager       the lease, claiming request_duck, apply, publishing; with
 *   persister       its persister writing DuckDB behind it (src/manager/)
 *   lease         renews the lease every lease/4
 *   reader        the one XREAD of response_duck: waiters, hub, ring, the
 *                 published mark, Redis health (src/api/reader.c)
 *   alive         re-reads live key ids and revoked token ids for the
 *                 streams' revocation checks (src/auth/alive.c), so a loop
 *                 never reads DuckDB
 *   archive, snapshots, webhooks, view guard: their own threads, each in
 *                 its module
 *
 * The manager, the reader, the webhooks and the archive are given what
 * they use and nothing more (dg_manager_deps_t in manager.h,
 * dg_reader_deps_t in reader.h, dg_webhook_deps_t in webhook.h, the stream
 * names for the archive), with the status fields each writes. The HTTP
 * side (front, handlers, the service layer) is given the app.
 *
 * Locks are leaves: no module calls out while holding its lock, except the
 * hub, which calls a subscriber's notify (front.c: a message post, which
 * takes h2o's queue mutex) under its lock, and the manager's row read
 * (src/manager/rows.c), which hands the row to the reader's callback under
 * its state lock (the callback only copies it into a buffer). So the order
 * is hub -> h2o queue, and nothing takes the hub's lock under another.
 */
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dg/alive.h"
#include "dg/app.h"
#include "dg/qguard.h"
#include "dg/entry_mac.h"
#include "dg/auth.h"
#include "dg/catalog.h"
#include "dg/common.h"
#include "dg/config.h"
#include "dg/db.h"
#include "dg/http.h"
#include "dg/hub.h"
#include "dg/jwt.h"
#include "dg/ratelimit.h"
#include "dg/log.h"
#include "dg/manager.h"
#include "dg/metrics.h"
#include "dg/bootstrap.h"
#include "dg/progress.h"
#include "dg/reader.h"
#include "dg/redis.h"
#include "dg/redis_pool.h"
#include "dg/service.h"
#include "dg/waiters.h"
#include "dg/archive.h"
#include "dg/webhook.h"
#include "dg/cli.h"
#include "dg/snapshot.h"

/* Exit codes: 0 clean stop, 1 runtime failure, 2 bad usage or configuration. */
enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

static void usage(FILE *f) {
  fprintf(f,
          "duckgrid %s -- real-time shared planning spreadsheet backend\n\n"
          "Usage:\n"
          "  duckgrid serve [options]   run the HTTP API and the manager\n"
          "  duckgrid snapshot [options]  copy the database at its update id (server stopped;\n"
          "                             a running one: POST /admin/snapshots)\n"
          "  duckgrid restore --snapshot <id|latest> [--until <update id> | --until-time <ISO time>]\n"
          "                   --db NEW.duckdb [options]   rebuild the state at a point in time\n"
          "  duckgrid import FILE --table T [--format csv|parquet] [--url URL] [--key-file F]\n"
          "                             rows from a file through a running server (key: DUCKGRID_KEY)\n"
          "  duckgrid export T [--format csv|parquet|json] [--output F] [--url URL] [--key-file F]\n"
          "                             a table's rows from a running server, to stdout or F\n"
          "  duckgrid --version         print the versions of duckgrid, DuckDB and Redis\n"
          "  duckgrid --help            this text\n\n",
          DG_VERSION);
  dg_config_usage(f);
}

static int redis_opts_from(const dg_config_t *cfg, dg_redis_url_t *url, dg_redis_opts_t *opts,
                           char *err, size_t errcap) {
  memset(opts, 0, sizeof *opts);
  opts->connect_timeout_ms = cfg->redis_timeout_ms;
  opts->command_timeout_ms = cfg->redis_timeout_ms;
  /* Borrowed from cfg, which outlives every user of opts (the pool keeps them). */
  opts->tls_ca_file = cfg->redis_ca;
  opts->tls_cert_file = cfg->redis_cert;
  opts->tls_key_file = cfg->redis_key;
  return dg_redis_url_parse(cfg->redis_url, url, err, errcap);
}

/* 1 when the prefix starts with a non-empty {hash tag}, so that every key made
   from it lands in one cluster slot. */
static int prefix_has_tag(const char *p) {
  const char *open = strchr(p, '{');
  const char *close = open ? strchr(open + 1, '}') : NULL;
  return close != NULL && close > open + 1;
}

/*
 * DUCKGRID_REDIS_CLUSTER: auto asks the server once (INFO cluster). On a
 * cluster every key gets the "{dg}:" prefix unless one with a hash tag is
 * set (streams, lease and scripts must share one slot), and a synchronous
 * write is answered once its outcome is on a replica.
 */
static int resolve_cluster(dg_config_t *cfg, const dg_redis_url_t *url, dg_redis_opts_t *opts,
                           char *err, size_t errcap) {
  if (cfg->redis_cluster < 0) {
    dg_redis_t *r = NULL;
    char why[512] = "";
    int on = 0;
    if (dg_redis_connect(url, opts, &r, why, sizeof why) == 0 && dg_redis_cluster_detect(r, &on) != 0)
      snprintf(why, sizeof why, "%s", dg_redis_last_error(r));
    else if (r != NULL)
      why[0] = '\0';
    if (why[0] != '\0')
      dg_log_warn("redis: cannot tell whether it is a cluster (%s); assuming not "
                  "(DUCKGRID_REDIS_CLUSTER=on says it is)", why);
    dg_redis_destroy(r);
    cfg->redis_cluster = on;
  }
  opts->cluster = cfg->redis_cluster;
  if (cfg->redis_wait_replicas < 0) cfg->redis_wait_replicas = cfg->redis_cluster ? 1 : 0;
  if (!cfg->redis_cluster) return 0;
  if (cfg->stream_prefix[0] == '\0') {
    dg_free(cfg->stream_prefix);
    cfg->stream_prefix = dg_strdup("{dg}:");
  } else if (!prefix_has_tag(cfg->stream_prefix)) {
    snprintf(err, errcap, "on a Redis Cluster DUCKGRID_STREAM_PREFIX needs a hash tag, e.g. "
             "{dg}:, so that the streams, the lease and the scripts share one slot");
    return DG_EINVAL;
  }
  dg_log_info("redis: cluster mode, keys prefixed '%s', writes wait for %d replica(s) (%d ms)",
              cfg->stream_prefix, cfg->redis_wait_replicas, cfg->redis_wait_ms);
  return 0;
}

static int cmd_version(int argc, char **argv) {
  dg_config_t cfg;
  char err[512];
  printf("duckgrid %s\nduckdb %s\n", DG_VERSION, duckdb_library_version());
  if (dg_config_load(&cfg, argc, argv, err, sizeof err) != 0) {
    printf("redis: not checked (%s)\n", err);
    return EXIT_OK;
  }
  dg_redis_url_t url;
  dg_redis_opts_t opts;
  if (redis_opts_from(&cfg, &url, &opts, err, sizeof err) == 0) {
    char where[256];
    dg_redis_url_describe(&url, where, sizeof where);
    dg_redis_t *r;
    char ver[64];
    if (dg_redis_connect(&url, &opts, &r, err, sizeof err) == 0 &&
        dg_redis_server_version(r, ver, sizeof ver) == 0) {
      printf("redis %s (%s)\n", ver, where);
      dg_redis_destroy(r);
    } else {
      printf("redis: unreachable at %s (%s)\n", where, err);
    }
    dg_redis_url_dispose(&url);
  }
  dg_config_dispose(&cfg);
  return EXIT_OK;
}

static int cmd_serve(int argc, char **argv) {
  dg_config_t cfg;
  char err[512];
  /* Everything duckgrid creates (data directory, database, WAL, pepper,
   * admin key file) is the owner's alone: 0700 directories, 0600 files. */
  umask(077);
  if (dg_config_load(&cfg, argc, argv, err, sizeof err) != 0) {
    fprintf(stderr, "duckgrid: %s\n", err);
    return EXIT_USAGE;
  }
  dg_log_setup((dg_log_level_t)cfg.log_level, cfg.log_json);

  /* Block the stop signals before any thread starts, so all inherit it. */
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, NULL);
  signal(SIGPIPE, SIG_IGN);
  /* A file-size limit (RLIMIT_FSIZE) makes writes fail with EFBIG, like a
   * full disk, instead of killing the process. */
  signal(SIGXFSZ, SIG_IGN);
  /* Each live client holds a socket (and a long poll a Redis connection):
   * allow as many descriptors as the system lets this process have. */
  struct rlimit nofile;
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }

  int code = EXIT_FAIL;
  dg_app_t app;
  memset(&app, 0, sizeof app);
  app.cfg = &cfg;
  dg_http_t *http = NULL;
  dg_redis_url_t url;
  dg_redis_opts_t opts;
  int have_url = 0;

  dg_reader_t *reader = NULL;
  dg_webhook_t *webhooks = NULL;
  dg_manager_t *manager = NULL;
  {
    /* A node without a database file: from the log, or the newest snapshot
     * the log still follows, or not at all (bootstrap.h). A bad Redis URL
     * is reported below, once. */
    dg_redis_url_t burl;
    dg_redis_opts_t bopts;
    char berr[256], bstream[sizeof app.streams.req];
    if (redis_opts_from(&cfg, &burl, &bopts, berr, sizeof berr) == 0) {
      snprintf(bstream, sizeof bstream, "%srequest_duck", cfg.stream_prefix);
      int brc = dg_bootstrap(cfg.db_path, &burl, &bopts, bstream, err, sizeof err);
      dg_redis_url_dispose(&burl);
      if (brc != 0) {
        fprintf(stderr, "duckgrid: %s\n", err);
        goto done;
      }
    }
  }
  /* One DuckDB thread: see DESIGN.md on the double-applied point update. */
  if (dg_db_open(cfg.db_path, 1, &app.db, err, sizeof err) != 0) {
    fprintf(stderr, "duckgrid: %s\n", err);
    code = EXIT_USAGE;
    goto done;
  }
  if (dg_auth_create(app.db, cfg.pepper_file, &app.auth, err, sizeof err) != 0) {
    fprintf(stderr, "duckgrid: %s\n", err);
    goto done;
  }
  dg_auth_derive(app.auth, DG_ENTRY_KEY_LABEL, app.streams.mac_key);
  app.alive = dg_alive_create(app.db);
  if (dg_alive_start(app.alive) != 0) {
    fprintf(stderr, "duckgrid: cannot start a thread\n");
    goto done;
  }
  app.snapshots = dg_snapshots_create(app.db);
  app.qguard = dg_qguard_create(cfg.view_timeout_ms, cfg.view_concurrency);
  {
    /* DuckDB has no per-query memory cap: this bounds the instance, views
     * included (a view over it fails with 413, see views.c). */
    char set[64];
    snprintf(set, sizeof set, "SET memory_limit = '%s'", cfg.db_memory_limit);
    if (dg_db_exec(dg_db_conn(app.db), set, err, sizeof err) != 0) {
      fprintf(stderr, "duckgrid: DUCKGRID_DB_MEMORY_LIMIT: %s\n", err);
      code = EXIT_USAGE;
      goto done;
    }
  }
  char *generated = NULL;
  if (dg_auth_bootstrap(app.auth, cfg.admin_key, cfg.admin_key_file, &generated, err,
                        sizeof err) != 0) {
    fprintf(stderr, "duckgrid: %s\n", err);
    goto done;
  }
  if (generated) {
    printf("duckgrid: generated the admin key (shown once; also in %s, mode 0600):\n%s\n",
           cfg.admin_key_file, generated);
    fflush(stdout);
    dg_free(generated);
  }
  if (redis_opts_from(&cfg, &url, &opts, err, sizeof err) != 0) {
    fprintf(stderr, "duckgrid: %s\n", err);
    code = EXIT_USAGE;
    goto done;
  }
  have_url = 1;
  if (resolve_cluster(&cfg, &url, &opts, err, sizeof err) != 0) {
    fprintf(stderr, "duckgrid: %s\n", err);
    code = EXIT_USAGE;
    goto done;
  }
  if (dg_webhook_allow_valid(err, sizeof err) != 0) {
    fprintf(stderr, "duckgrid: %s\n", err);
    code = EXIT_USAGE;
    goto done;
  }
  snprintf(app.streams.req, sizeof app.streams.req, "%srequest_duck", cfg.stream_prefix);
  snprintf(app.streams.res, sizeof app.streams.res, "%sresponse_duck", cfg.stream_prefix);
  snprintf(app.streams.lease, sizeof app.streams.lease, "%sduckgrid:manager", cfg.stream_prefix);
  snprintf(app.streams.fence, sizeof app.streams.fence, "%sduckgrid:fence", cfg.stream_prefix);
  if (dg_redis_pool_create(&url, &opts, 64, &app.redis, err, sizeof err) != 0) {
    fprintf(stderr, "duckgrid: %s\n", err);
    code = EXIT_USAGE;
    goto done;
  }
  dg_jwt_config_t jc = {cfg.jwt_secret, cfg.jwt_public_key, cfg.jwt_jwks,
                        cfg.jwt_issuer, cfg.jwt_audience, cfg.jwt_role_claim, cfg.jwt_max_lifetime_s};
  if (dg_jwt_create(&jc, &app.jwt, err, sizeof err) != 0) {
    fprintf(stderr, "duckgrid: %s\n", err);
    code = EXIT_USAGE;
    goto done;
  }
  app.ratelimit = dg_ratelimit_create(cfg.rate_limit, cfg.rate_burst);
  app.ip_ratelimit = dg_ratelimit_create(cfg.ip_rate, cfg.ip_burst > 0 ? cfg.ip_burst : 2 * cfg.ip_rate);
  app.hub = dg_hub_create();
  {
    static const dg_route_t *routes[256];
    size_t n = dg_http_routes_flat(routes, DG_ARRAY_SIZE(routes));
    app.metrics = dg_metrics_create(routes, n < DG_ARRAY_SIZE(routes) ? n : DG_ARRAY_SIZE(routes));
  }
  app.catalog = dg_catalog_create();
  app.waiters = dg_waiters_create();
  app.progress = dg_progress_create();
  if (dg_catalog_load(app.catalog, dg_db_conn(app.db), err, sizeof err) != 0) {
    fprintf(stderr, "duckgrid: %s\n", err);
    goto done;
  }
  app.archive = dg_archive_start(&app.streams, &url, &opts); /* before the manager: it trims up to it */
  dg_reader_deps_t rdeps = {
      .db = app.db,
      .streams = &app.streams,
      .status = &app.status,
      .links = &app.links,
      .catalog = app.catalog,
      .waiters = app.waiters,
      .hub = app.hub,
      .progress = app.progress,
  };
  dg_manager_deps_t mdeps = {
      .db = app.db,
      .streams = &app.streams,
      .status = &app.status,
      .links = &app.links,
      .progress = app.progress,
      .metrics = app.metrics,
      .archive = app.archive,
      .batch_max = cfg.batch_max,
      .response_maxlen = cfg.response_maxlen,
      .lease_ms = cfg.lease_ms,
      .role_follower = cfg.role_follower,
  };
  if (dg_reader_start(&rdeps, &url, &opts, &reader) != 0 ||
      dg_manager_start(&mdeps, &url, &opts, &manager) != 0) {
    fprintf(stderr, "duckgrid: cannot start the response reader or the manager\n");
    goto done;
  }
  {
    /* Not fatal: requests answer 503 and /health says degraded until it is up. */
    dg_redis_t *r = dg_redis_pool_get(app.redis);
    char where[256];
    dg_redis_url_describe(&url, where, sizeof where);
    if (dg_redis_ping(r) != 0)
      dg_log_warn("redis at %s is unreachable (%s); retrying with backoff", where,
                  dg_redis_last_error(r));
    else
      dg_log_info("connected to redis at %s", where);
    dg_redis_pool_put(app.redis, r);
  }
  dg_webhook_deps_t wdeps = {
      .prefix = cfg.stream_prefix,
      .redis = app.redis,
      .streams = &app.streams,
      .status = &app.status,
  };
  webhooks = dg_webhook_start(&wdeps); /* delivers while this process leads */
  /* Writes queued from the HTTP loops (service.h); without it they go to
   * a worker each. */
  app.submitter = dg_submitter_start(&app);
  int hrc = dg_http_start(&app, &http, err, sizeof err);
  if (hrc != 0) {
    fprintf(stderr, "duckgrid: %s\n", err);
    if (hrc == DG_EINVAL) code = EXIT_USAGE;
    goto done;
  }
  dg_log_info("duckgrid %s serving http://%s:%d (database %s, duckdb %s)", DG_VERSION,
              cfg.listen_host, cfg.listen_port, cfg.db_path, duckdb_library_version());

  if (cfg.demo) dg_demo_enqueue(&app);

  int sig = 0;
  sigwait(&stop, &sig);
  dg_log_info("received %s: stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
  atomic_store(&app.status.stopping, 1);
  code = EXIT_OK;

done:
  /* Stop accepting and finish requests in flight (they may wait for
   * outcomes, so the reader and the manager still run), then the writer. */
  dg_hub_close(app.hub); /* live streams end, so the server can stop */
  if (app.progress) dg_progress_close(app.progress); /* reads waiting for a flush answer now */
  dg_qguard_stop(app.qguard); /* running view queries are interrupted */
  dg_http_stop(http);
  dg_submitter_stop(app.submitter); /* what it holds is sent, and its news dropped */
  dg_snapshots_destroy(app.snapshots); /* waits for one under way */
  dg_webhook_stop(webhooks);
  dg_manager_stop(manager);
  dg_reader_stop(reader);
  dg_archive_stop(app.archive);
  dg_waiters_destroy(app.waiters);
  dg_progress_destroy(app.progress);
  dg_catalog_destroy(app.catalog);
  dg_ratelimit_destroy(app.ratelimit);
  dg_ratelimit_destroy(app.ip_ratelimit);
  dg_hub_destroy(app.hub);
  dg_metrics_destroy(app.metrics);
  dg_jwt_destroy(app.jwt);
  dg_redis_pool_destroy(app.redis);
  if (have_url) dg_redis_url_dispose(&url);
  dg_auth_destroy(app.auth);
  dg_alive_destroy(app.alive);
  dg_qguard_destroy(app.qguard);
  dg_db_close(app.db);
  if (code == EXIT_OK) dg_log_info("stopped cleanly");
  dg_config_dispose(&cfg);
  return code;
}

/*
 * Transparent huge pages for glibc's malloc (its tunable
 * glibc.malloc.hugetlb=1, read only at process start, hence the re-exec of
 * this same binary, same pid, before any thread exists). On a virtual
 * machine a 4 KiB page fault is dear, and a big write fills fresh memory:
 * a spread over a million leaves took 632 ms then 413 ms without, 363 ms
 * then 143 ms with (bench/revert.py --spread's table on this project's
 * 2-core VM), its persist 1.26 s -> 0.87 s. DUCKGRID_HUGEPAGES=0 turns it
 * off; nothing happens where THP is "never" or under a sanitizer (its own
 * allocator).
 */
static void hugepages_reexec(char **argv) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  (void)argv;
#else
  const char *opt = getenv("DUCKGRID_HUGEPAGES");
  if (opt != NULL && strcmp(opt, "0") == 0) return;
  const char *t = getenv("GLIBC_TUNABLES");
  if (t != NULL && strstr(t, "glibc.malloc.hugetlb") != NULL) return; /* set, by us or by hand */
  FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
  char mode[128] = "";
  if (f != NULL) {
    if (fgets(mode, sizeof mode, f) == NULL) mode[0] = '\0';
    fclose(f);
  }
  if (strstr(mode, "[always]") == NULL && strstr(mode, "[madvise]") == NULL) return;
  char val[1024];
  int n = snprintf(val, sizeof val, "%s%sglibc.malloc.hugetlb=1", t ? t : "", t && *t ? ":" : "");
  if (n < 0 || (size_t)n >= sizeof val) return;
  if (setenv("GLIBC_TUNABLES", val, 1) != 0) return;
  execv("/proc/self/exe", argv);
  /* not re-executed (no /proc?): go on as we are, with the variable set
   * so that nothing tries again */
#endif
}

int main(int argc, char **argv) {
  if (argc >= 2 && (strcmp(argv[1], "serve") == 0 || strcmp(argv[1], "restore") == 0)) hugepages_reexec(argv);
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
      strcmp(argv[1], "help") == 0) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? EXIT_USAGE : EXIT_OK;
  }
  if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0)
    return cmd_version(argc - 2, argv + 2);
  if (strcmp(argv[1], "serve") == 0) return cmd_serve(argc - 2, argv + 2);
  if (strcmp(argv[1], "snapshot") == 0) return dg_cli_snapshot(argc - 2, argv + 2);
  if (strcmp(argv[1], "restore") == 0) return dg_cli_restore(argc - 2, argv + 2);
  if (strcmp(argv[1], "import") == 0) return dg_cli_import(argc - 2, argv + 2);
  if (strcmp(argv[1], "export") == 0) return dg_cli_export(argc - 2, argv + 2);
  fprintf(stderr, "duckgrid: unknown command '%s' (see duckgrid --help)\n", argv[1]);
  return EXIT_USAGE;
}
