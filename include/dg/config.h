/*
 * config.h -- duckgrid's configuration: read once at start-up from the
 * environment (DUCKGRID_*), overridden by command-line flags, then immutable
 * and passed explicitly to every module that needs it.
 */
#ifndef DG_CONFIG_H
#define DG_CONFIG_H

#include <stddef.h>
#include <stdint.h>

typedef struct dg_config_s {
  char *listen_host;         /* address to bind, e.g. "127.0.0.1"                */
  int listen_port;           /* TCP port, 1..65535                               */
  char *db_path;             /* DuckDB file                                      */
  char *redis_url;           /* redis://, rediss:// or unix:// URL (has secrets)   */
  char *admin_key;           /* bootstrap admin key, or NULL                     */
  char *admin_key_file;      /* where a generated admin key is written (0600)    */
  char *pepper_file;         /* HMAC key for API key hashes at rest (0600)       */
  char *stream_prefix;       /* prefix for stream keys, e.g. "{dg}" for Cluster  */
  int demo;                  /* load the demo data into an empty database        */
  size_t body_limit;         /* bytes; larger request bodies get 413             */
  int sync_timeout_ms;       /* how long a synchronous write waits for its outcome */
  int redis_timeout_ms;      /* connect and command timeout for Redis            */
  long response_maxlen;      /* entries kept in response_duck                    */
  int batch_max;             /* requests the manager applies per transaction     */
  int log_json;              /* 1: one JSON object per log line                  */
  int log_level;             /* dg_log_level_t                                   */
  char *jwt_secret;          /* HS256 secret for bearer JWTs, or NULL (secret)   */
  char *jwt_public_key;      /* PEM file for RS256/ES256, or NULL               */
  char *jwt_jwks;            /* JWKS file, or NULL                              */
  char *jwt_issuer;          /* required iss, or NULL                           */
  char *jwt_audience;        /* required aud, or NULL                           */
  char *jwt_role_claim;      /* claim with the role, NULL = "role"              */
  char *tls_cert;            /* HTTPS certificate file, or NULL (plain HTTP)     */
  char *tls_key;             /* HTTPS key file                                  */
  double rate_limit;         /* requests/s per caller, 0 = no limit             */
  double rate_burst;         /* bucket size, 0 = the rate                       */
  int http_timeout_s;        /* idle/slow client connection timeout, seconds    */
  int http_threads;          /* event-loop threads, 0: the number of cores      */
  int http_workers;          /* most handler threads, 0: 4096                   */
  int heartbeat_ms;          /* keep-alive comment period of /events            */
  size_t client_buffer;      /* bytes a live client may lag before it is dropped */
  size_t page_bytes;         /* update text per get_updates page, bytes     */
  size_t replay_max;         /* entries per /events replay                   */
  size_t replay_bytes;       /* bytes per /events replay                     */
  int view_timeout_ms;       /* a view query's deadline                      */
  int view_concurrency;      /* view queries per caller at once              */
  size_t view_max_bytes;     /* largest view answer, bytes                   */
  char *db_memory_limit;     /* DuckDB memory_limit ("2GB")                  */
  int ip_connections;        /* open connections per client IP, 0: no cap    */
  double ip_rate;            /* requests/s per client IP before auth, 0: off */
  double ip_burst;           /* its bucket size, 0 = twice the rate          */
  long jwt_max_lifetime_s;   /* longest accepted JWT lifetime, s             */
  char *redis_ca;            /* rediss://: CA bundle (PEM) to trust; NULL = system store */
  char *redis_cert;          /* rediss://: client certificate (PEM), or NULL    */
  char *redis_key;           /* rediss://: its unencrypted PEM key, or NULL     */
  int redis_cluster;         /* -1 auto (detected at start), 0 off, 1 Redis Cluster */
  int redis_wait_replicas;   /* -1: 1 on a cluster, else 0; N: a sync answer waits
                                until its outcome is on N replicas (WAIT)        */
  int redis_wait_ms;         /* WAIT timeout, ms                                */
  int role_follower;         /* DUCKGRID_ROLE=follower: never lead              */
  int lease_ms;              /* the manager lease, ms                           */
} dg_config_t;

/**
 * Fills cfg from the environment, then from argv (flags after the
 * subcommand). On failure writes a one-line reason into err and returns
 * DG_EINVAL; cfg is then disposed already.
 */
int dg_config_load(dg_config_t *cfg, int argc, char **argv, char *err, size_t errcap);
void dg_config_dispose(dg_config_t *cfg);
/** Prints the flags and environment variables (for --help). */
void dg_config_usage(void *file);

#endif
