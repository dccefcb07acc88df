/*
 * config.c -- configuration from DUCKGRID_* environment variables and flags.
 *
 * Every value is checked here, so a bad setting stops the process at start
 * with one clear line instead of failing later in a module.
 */
#include "dg/config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "dg/buf.h"
#include "dg/common.h"
#include "dg/log.h"
#include "dg/redis.h"

/* Every setting has an id; set_value() switches on it. */
enum {
  OPT_LISTEN, OPT_DB, OPT_REDIS_URL, OPT_ADMIN_KEY, OPT_ADMIN_KEY_FILE, OPT_STREAM_PREFIX,
  OPT_DEMO, OPT_BODY_LIMIT, OPT_SYNC_TIMEOUT, OPT_REDIS_TIMEOUT, OPT_RESPONSE_MAXLEN,
  OPT_BATCH_MAX, OPT_LOG_FORMAT, OPT_LOG_LEVEL,
  OPT_JWT_SECRET, OPT_JWT_PUBLIC_KEY, OPT_JWT_JWKS, OPT_JWT_ISSUER, OPT_JWT_AUDIENCE,
  OPT_JWT_ROLE_CLAIM, OPT_TLS_CERT, OPT_TLS_KEY, OPT_RATE_LIMIT, OPT_RATE_BURST,
  OPT_HTTP_TIMEOUT,
  OPT_HTTP_THREADS,
  OPT_HTTP_WORKERS,
  OPT_REDIS_CA, OPT_REDIS_CERT, OPT_REDIS_KEY,
  OPT_HEARTBEAT, OPT_CLIENT_BUFFER, OPT_PEPPER_FILE,
  OPT_PAGE_BYTES, OPT_REPLAY_MAX, OPT_REPLAY_BYTES,
  OPT_VIEW_TIMEOUT, OPT_VIEW_CONCURRENCY, OPT_VIEW_MAX_BYTES, OPT_DB_MEMORY_LIMIT,
  OPT_IP_CONNECTIONS, OPT_JWT_MAX_LIFETIME,
  OPT_IP_RATE, OPT_IP_BURST,
  OPT_JWT_SECRET_FROM, OPT_REDIS_URL_FROM, OPT_ADMIN_KEY_FROM,
  OPT_REDIS_CLUSTER, OPT_REDIS_WAIT_REPLICAS, OPT_REDIS_WAIT_MS,
  OPT_ROLE, OPT_LEASE_MS,
};

/* One row per setting: its id, the flag, the environment variable, its help. */
typedef struct {
  int id;
  const char *flag;
  const char *env;
  const char *help;
} option_t;

static const option_t options[] = {
    {OPT_LISTEN, "--listen", "DUCKGRID_LISTEN", "HOST:PORT to serve HTTP on (default 127.0.0.1:8080)"},
    {OPT_DB, "--db", "DUCKGRID_DB", "DuckDB database file (default data/duckgrid.duckdb)"},
    {OPT_REDIS_URL, "--redis-url", "DUCKGRID_REDIS_URL",
     "redis://[user:pass@]host:port/db, rediss://..., or unix:///path (default "
     "redis://127.0.0.1:6379/0)"},
    {OPT_ADMIN_KEY, "--admin-key", "DUCKGRID_ADMIN_KEY", "bootstrap admin key (prefer the environment variable)"},
    {OPT_ADMIN_KEY_FILE, "--admin-key-file", "DUCKGRID_ADMIN_KEY_FILE",
     "where a generated admin key is written, mode 0600 (default <db>.admin-key)"},
    {OPT_STREAM_PREFIX, "--stream-prefix", "DUCKGRID_STREAM_PREFIX", "prefix for Redis keys, e.g. {dg}: (default none)"},
    {OPT_DEMO, "--demo", "DUCKGRID_DEMO", "1: load the demo data into an empty database"},
    {OPT_BODY_LIMIT, "--body-limit", "DUCKGRID_BODY_LIMIT", "largest request body in bytes (default 1048576)"},
    {OPT_SYNC_TIMEOUT, "--sync-timeout-ms", "DUCKGRID_SYNC_TIMEOUT_MS",
     "how long a synchronous write waits for its outcome (default 10000)"},
    {OPT_REDIS_TIMEOUT, "--redis-timeout-ms", "DUCKGRID_REDIS_TIMEOUT_MS", "Redis connect/command timeout (default 2000)"},
    {OPT_RESPONSE_MAXLEN, "--response-maxlen", "DUCKGRID_RESPONSE_MAXLEN", "entries kept in response_duck (default 1000000)"},
    {OPT_BATCH_MAX, "--batch-max", "DUCKGRID_BATCH_MAX", "requests per manager transaction (default 1024)"},
    {OPT_LOG_FORMAT, "--log-format", "DUCKGRID_LOG_FORMAT", "text or json (default text)"},
    {OPT_LOG_LEVEL, "--log-level", "DUCKGRID_LOG_LEVEL", "debug, info, warn or error (default info)"},
    {OPT_JWT_SECRET, "--jwt-secret", "DUCKGRID_JWT_SECRET", "HS256 secret for bearer JWTs (32+ bytes)"},
    {OPT_JWT_PUBLIC_KEY, "--jwt-public-key", "DUCKGRID_JWT_PUBLIC_KEY", "PEM public key for RS256/ES256 JWTs"},
    {OPT_JWT_JWKS, "--jwt-jwks", "DUCKGRID_JWT_JWKS", "JSON Web Key Set file for JWTs"},
    {OPT_JWT_ISSUER, "--jwt-issuer", "DUCKGRID_JWT_ISSUER", "required JWT iss (needed with any JWT key)"},
    {OPT_JWT_AUDIENCE, "--jwt-audience", "DUCKGRID_JWT_AUDIENCE", "required JWT aud (needed with any JWT key)"},
    {OPT_JWT_ROLE_CLAIM, "--jwt-role-claim", "DUCKGRID_JWT_ROLE_CLAIM", "JWT claim holding the role (default role)"},
    {OPT_TLS_CERT, "--tls-cert", "DUCKGRID_TLS_CERT", "PEM certificate (chain) to serve HTTPS"},
    {OPT_TLS_KEY, "--tls-key", "DUCKGRID_TLS_KEY", "PEM private key to serve HTTPS"},
    {OPT_RATE_LIMIT, "--rate-limit", "DUCKGRID_RATE_LIMIT", "requests/s per key or token, 0 = off (default 0)"},
    {OPT_RATE_BURST, "--rate-burst", "DUCKGRID_RATE_BURST", "burst size per key (default: the rate)"},
    {OPT_HTTP_TIMEOUT, "--http-timeout", "DUCKGRID_HTTP_TIMEOUT", "seconds an idle or slow client may hold a connection (default 60)"},
    {OPT_HTTP_THREADS, "--http-threads", "DUCKGRID_HTTP_THREADS", "HTTP event-loop threads (default: the number of cores)"},
    {OPT_HTTP_WORKERS, "--http-workers", "DUCKGRID_HTTP_WORKERS", "most worker threads running handlers at once (default 4096)"},
    {OPT_PEPPER_FILE, "--key-pepper-file", "DUCKGRID_KEY_PEPPER_FILE", "secret for hashing API keys at rest, made on first start, 0600 (default <db>.pepper)"},
    {OPT_HEARTBEAT, "--heartbeat-ms", "DUCKGRID_HEARTBEAT_MS", "keep-alive comment period of /events streams (default 15000)"},
    {OPT_CLIENT_BUFFER, "--client-buffer", "DUCKGRID_CLIENT_BUFFER", "bytes a live client may fall behind before it is dropped (default 8388608)"},
    {OPT_REDIS_CA, "--redis-ca", "DUCKGRID_REDIS_CA",
     "CA bundle (PEM) for the rediss:// server's certificate (default: the system store)"},
    {OPT_REDIS_CERT, "--redis-cert", "DUCKGRID_REDIS_CERT",
     "client certificate (PEM) for rediss:// servers that require one"},
    {OPT_REDIS_KEY, "--redis-key", "DUCKGRID_REDIS_KEY", "unencrypted PEM key of --redis-cert"},
    {OPT_PAGE_BYTES, "--page-bytes", "DUCKGRID_PAGE_BYTES", "update text per get_updates page at most (default 8388608)"},
    {OPT_REPLAY_MAX, "--replay-max", "DUCKGRID_REPLAY_MAX", "entries one /events replay sends at most (default 100000)"},
    {OPT_REPLAY_BYTES, "--replay-bytes", "DUCKGRID_REPLAY_BYTES", "bytes one /events replay sends (or reads and passes over) at most (default 67108864)"},
    {OPT_VIEW_TIMEOUT, "--view-timeout-ms", "DUCKGRID_VIEW_TIMEOUT_MS", "a view query is interrupted after this long, 504 (default 10000)"},
    {OPT_VIEW_CONCURRENCY, "--view-concurrency", "DUCKGRID_VIEW_CONCURRENCY", "view queries one key runs at once, 429 above (default 2)"},
    {OPT_VIEW_MAX_BYTES, "--view-max-bytes", "DUCKGRID_VIEW_MAX_BYTES", "largest view answer in bytes, 413 above (default 16777216)"},
    {OPT_JWT_SECRET_FROM, "--jwt-secret-file", "DUCKGRID_JWT_SECRET_FILE", "read the JWT secret from this file (keeps it out of ps and the environment)"},
    {OPT_REDIS_URL_FROM, "--redis-url-file", "DUCKGRID_REDIS_URL_FILE", "read the Redis URL (with its password) from this file"},
    {OPT_ADMIN_KEY_FROM, "--admin-key-from-file", "DUCKGRID_ADMIN_KEY_FROM_FILE", "read the bootstrap admin key from this file"},
    {OPT_JWT_MAX_LIFETIME, "--jwt-max-lifetime-s", "DUCKGRID_JWT_MAX_LIFETIME_S", "longest accepted JWT lifetime, exp - iat, in seconds (default 86400)"},
    {OPT_IP_CONNECTIONS, "--ip-connections", "DUCKGRID_IP_CONNECTIONS", "open connections per client IP, refused at accept before any auth; 0 = off (default 256)"},
    {OPT_IP_RATE, "--ip-rate", "DUCKGRID_IP_RATE", "requests/s per client IP, checked before any auth, 429 above; 0 = off (default 2000)"},
    {OPT_IP_BURST, "--ip-burst", "DUCKGRID_IP_BURST", "burst size per client IP (default: twice the rate)"},
    {OPT_DB_MEMORY_LIMIT, "--db-memory-limit", "DUCKGRID_DB_MEMORY_LIMIT", "DuckDB memory_limit, e.g. 2GB (default 2GB)"},
    {OPT_REDIS_CLUSTER, "--redis-cluster", "DUCKGRID_REDIS_CLUSTER",
     "auto, on or off: Redis Cluster mode (default auto: asked of the server at start)"},
    {OPT_REDIS_WAIT_REPLICAS, "--redis-wait-replicas", "DUCKGRID_REDIS_WAIT_REPLICAS",
     "replicas an outcome must reach before a write is answered (default 1 on a cluster, else 0)"},
    {OPT_REDIS_WAIT_MS, "--redis-wait-ms", "DUCKGRID_REDIS_WAIT_MS",
     "how long a write waits for its replicas before answering with X-Duckgrid-Replicated: "
     "timeout (default 1000)"},
    {OPT_ROLE, "--role", "DUCKGRID_ROLE",
     "auto (lead when the manager lease is free, else follow) or follower (a read replica that never leads)"},
    {OPT_LEASE_MS, "--lease-ms", "DUCKGRID_LEASE_MS", "the manager lease, ms: a follower takes over about this long "
     "after the leader died (default 1500)"},
};

void dg_config_usage(void *file) {
  FILE *f = file;
  fprintf(f, "Settings (flag, or environment variable):\n");
  for (size_t i = 0; i < DG_ARRAY_SIZE(options); i++)
    fprintf(f, "  %-20s %-26s %s\n", options[i].flag, options[i].env, options[i].help);
}

/* Parses a whole decimal number in [lo, hi]; rejects signs, junk and overflow. */
static int parse_long(const char *s, long lo, long hi, long *out) {
  if (s == NULL || *s == '\0') return DG_EINVAL;
  long v = 0;
  for (const char *p = s; *p; p++) {
    if (*p < '0' || *p > '9') return DG_EINVAL;
    if (v > (hi - (*p - '0')) / 10) return DG_EINVAL;
    v = v * 10 + (*p - '0');
  }
  if (v < lo) return DG_EINVAL;
  *out = v;
  return 0;
}

/* "host:port" or "[v6]:port". */
static int parse_listen(const char *s, char **host, int *port) {
  const char *colon;
  const char *h = s;
  size_t hlen;
  if (s[0] == '[') {
    const char *end = strchr(s, ']');
    if (end == NULL || end[1] != ':') return DG_EINVAL;
    h = s + 1;
    hlen = (size_t)(end - h);
    colon = end + 1;
  } else {
    colon = strrchr(s, ':');
    if (colon == NULL) return DG_EINVAL;
    hlen = (size_t)(colon - s);
  }
  long p;
  if (hlen == 0 || hlen > 255 || parse_long(colon + 1, 1, 65535, &p) != 0) return DG_EINVAL;
  *host = dg_strndup(h, hlen);
  *port = (int)p;
  return 0;
}

static int set_str(char **field, const char *v) {
  dg_free(*field);
  *field = dg_strdup(v);
  return 0;
}

/* A file that must be readable at start, so a typo fails now, not later. */
static int set_file(char **field, const char *v, const char *name, char *err, size_t errcap) {
  FILE *f = fopen(v, "rb");
  if (f == NULL) {
    snprintf(err, errcap, "%s: cannot read '%.200s'", name, v);
    return DG_EINVAL;
  }
  fclose(f);
  return set_str(field, v);
}

static int set_value(dg_config_t *c, size_t opt, const char *v, char *err, size_t errcap);

/* A secret read from a file (one line; a trailing newline is dropped) and
 * set as the option `target`, so it never shows in ps or the environment. */
static int set_from_file(dg_config_t *c, int target, const char *path, const char *name, char *err,
                         size_t errcap) {
  size_t len = 0;
  char *text = *path ? dg_read_small_file(path, &len) : NULL;
  if (text == NULL) {
    snprintf(err, errcap, "%s: cannot read '%s'", name, path);
    return DG_EINVAL;
  }
  while (len && (text[len - 1] == '\n' || text[len - 1] == '\r')) text[--len] = '\0';
  int rc = DG_EINVAL;
  for (size_t i = 0; i < DG_ARRAY_SIZE(options); i++)
    if (options[i].id == target) rc = set_value(c, i, text, err, errcap);
  memset(text, 0, len);
  dg_free(text);
  return rc;
}

static int set_value(dg_config_t *c, size_t opt, const char *v, char *err, size_t errcap) {
  long n;
  const char *name = options[opt].flag;
  switch (options[opt].id) {
    case OPT_JWT_SECRET_FROM: return set_from_file(c, OPT_JWT_SECRET, v, name, err, errcap);
    case OPT_REDIS_URL_FROM: return set_from_file(c, OPT_REDIS_URL, v, name, err, errcap);
    case OPT_ADMIN_KEY_FROM: return set_from_file(c, OPT_ADMIN_KEY, v, name, err, errcap);
    case OPT_JWT_SECRET:
      if (strlen(v) < 32) {
        snprintf(err, errcap, "%s: an HS256 secret needs at least 32 bytes", name);
        return DG_EINVAL;
      }
      return set_str(&c->jwt_secret, v);
    case OPT_JWT_PUBLIC_KEY: return set_file(&c->jwt_public_key, v, name, err, errcap);
    case OPT_JWT_JWKS: return set_file(&c->jwt_jwks, v, name, err, errcap);
    case OPT_JWT_ISSUER: return set_str(&c->jwt_issuer, v);
    case OPT_JWT_AUDIENCE: return set_str(&c->jwt_audience, v);
    case OPT_JWT_ROLE_CLAIM:
      if (*v == '\0' || strlen(v) > 64) break;
      return set_str(&c->jwt_role_claim, v);
    case OPT_TLS_CERT: return set_file(&c->tls_cert, v, name, err, errcap);
    case OPT_TLS_KEY: return set_file(&c->tls_key, v, name, err, errcap);
    case OPT_RATE_LIMIT:
      if (parse_long(v, 0, 1000000, &n) != 0) break;
      c->rate_limit = (double)n;
      return 0;
    case OPT_RATE_BURST:
      if (parse_long(v, 1, 10000000, &n) != 0) break;
      c->rate_burst = (double)n;
      return 0;
    case OPT_PEPPER_FILE:
      if (*v == '\0') break;
      return set_str(&c->pepper_file, v);
    case OPT_HEARTBEAT:
      if (parse_long(v, 100, 600000, &n) != 0) break;
      c->heartbeat_ms = (int)n;
      return 0;
    case OPT_CLIENT_BUFFER:
      if (parse_long(v, 1024, 1L << 30, &n) != 0) break;
      c->client_buffer = (size_t)n;
      return 0;
    case OPT_PAGE_BYTES:
      if (parse_long(v, 1024, 1L << 30, &n) != 0) break;
      c->page_bytes = (size_t)n;
      return 0;
    case OPT_REPLAY_MAX:
      if (parse_long(v, 1, 100000000, &n) != 0) break;
      c->replay_max = (size_t)n;
      return 0;
    case OPT_REPLAY_BYTES:
      if (parse_long(v, 1024, 1L << 34, &n) != 0) break;
      c->replay_bytes = (size_t)n;
      return 0;
    case OPT_JWT_MAX_LIFETIME:
      if (parse_long(v, 60, 31536000, &n) != 0) break;
      c->jwt_max_lifetime_s = n;
      return 0;
    case OPT_IP_RATE:
      if (parse_long(v, 0, 10000000, &n) != 0) break;
      c->ip_rate = (double)n;
      return 0;
    case OPT_IP_BURST:
      if (parse_long(v, 1, 100000000, &n) != 0) break;
      c->ip_burst = (double)n;
      return 0;
    case OPT_IP_CONNECTIONS:
      if (parse_long(v, 0, 100000, &n) != 0) break;
      c->ip_connections = (int)n;
      return 0;
    case OPT_VIEW_TIMEOUT:
      if (parse_long(v, 10, 3600000, &n) != 0) break;
      c->view_timeout_ms = (int)n;
      return 0;
    case OPT_VIEW_CONCURRENCY:
      if (parse_long(v, 1, 1000, &n) != 0) break;
      c->view_concurrency = (int)n;
      return 0;
    case OPT_VIEW_MAX_BYTES:
      if (parse_long(v, 1024, 1L << 32, &n) != 0) break;
      c->view_max_bytes = (size_t)n;
      return 0;
    case OPT_DB_MEMORY_LIMIT: {
      /* digits then a unit: it goes into a SET statement */
      size_t d = strspn(v, "0123456789");
      if (d == 0 || d > 6 || (strcmp(v + d, "MB") != 0 && strcmp(v + d, "GB") != 0)) break;
      return set_str(&c->db_memory_limit, v);
    }
    case OPT_HTTP_TIMEOUT:
      if (parse_long(v, 1, 3600, &n) != 0) break;
      c->http_timeout_s = (int)n;
      return 0;
    case OPT_HTTP_THREADS:
      if (parse_long(v, 1, 256, &n) != 0) break;
      c->http_threads = (int)n;
      return 0;
    case OPT_HTTP_WORKERS:
      if (parse_long(v, 8, 65536, &n) != 0) break;
      c->http_workers = (int)n;
      return 0;
    case OPT_REDIS_CA: return set_file(&c->redis_ca, v, name, err, errcap);
    case OPT_REDIS_CERT: return set_file(&c->redis_cert, v, name, err, errcap);
    case OPT_REDIS_KEY: return set_file(&c->redis_key, v, name, err, errcap);
    case OPT_LISTEN:
      dg_free(c->listen_host);
      c->listen_host = NULL;
      if (parse_listen(v, &c->listen_host, &c->listen_port) != 0) {
        snprintf(err, errcap, "%s: '%s' is not HOST:PORT with a port in 1..65535", name, v);
        return DG_EINVAL;
      }
      return 0;
    case OPT_DB:
      if (*v == '\0') break;
      dg_free(c->db_path);
      c->db_path = dg_strdup(v);
      return 0;
    case OPT_REDIS_URL: {
      dg_redis_url_t url;
      char why[160] = "";
      if (dg_redis_url_parse(v, &url, why, sizeof why) != 0) {
        /* Never echo the URL: it may carry a password. */
        snprintf(err, errcap, "%s: malformed Redis URL (%s)", name, why);
        return DG_EINVAL;
      }
      dg_redis_url_dispose(&url);
      dg_free(c->redis_url);
      c->redis_url = dg_strdup(v);
      return 0;
    }
    case OPT_ADMIN_KEY:
      if (strlen(v) < 16) {
        snprintf(err, errcap, "%s: an admin key needs at least 16 characters", name);
        return DG_EINVAL;
      }
      dg_free(c->admin_key);
      c->admin_key = dg_strdup(v);
      return 0;
    case OPT_ADMIN_KEY_FILE:
      if (*v == '\0') break;
      dg_free(c->admin_key_file);
      c->admin_key_file = dg_strdup(v);
      return 0;
    case OPT_STREAM_PREFIX:
      if (strlen(v) > 64) break;
      dg_free(c->stream_prefix);
      c->stream_prefix = dg_strdup(v);
      return 0;
    case OPT_DEMO:
      if (strcmp(v, "1") == 0 || strcmp(v, "true") == 0) c->demo = 1;
      else if (strcmp(v, "0") == 0 || strcmp(v, "false") == 0 || *v == '\0') c->demo = 0;
      else break;
      return 0;
    case OPT_BODY_LIMIT:
      if (parse_long(v, 1024, 1L << 30, &n) != 0) break;
      c->body_limit = (size_t)n;
      return 0;
    case OPT_SYNC_TIMEOUT:
      if (parse_long(v, 1, 600000, &n) != 0) break;
      c->sync_timeout_ms = (int)n;
      return 0;
    case OPT_REDIS_TIMEOUT:
      if (parse_long(v, 10, 600000, &n) != 0) break;
      c->redis_timeout_ms = (int)n;
      return 0;
    case OPT_RESPONSE_MAXLEN:
      if (parse_long(v, 1000, 1000000000L, &n) != 0) break;
      c->response_maxlen = n;
      return 0;
    case OPT_BATCH_MAX:
      if (parse_long(v, 1, 100000, &n) != 0) break;
      c->batch_max = (int)n;
      return 0;
    case OPT_REDIS_CLUSTER:
      if (strcmp(v, "auto") == 0) c->redis_cluster = -1;
      else if (strcmp(v, "on") == 0 || strcmp(v, "1") == 0) c->redis_cluster = 1;
      else if (strcmp(v, "off") == 0 || strcmp(v, "0") == 0) c->redis_cluster = 0;
      else break;
      return 0;
    case OPT_REDIS_WAIT_REPLICAS:
      if (parse_long(v, 0, 64, &n) != 0) break;
      c->redis_wait_replicas = (int)n;
      return 0;
    case OPT_REDIS_WAIT_MS:
      if (parse_long(v, 1, 600000, &n) != 0) break;
      c->redis_wait_ms = (int)n;
      return 0;
    case OPT_ROLE:
      if (strcmp(v, "auto") == 0) c->role_follower = 0;
      else if (strcmp(v, "follower") == 0) c->role_follower = 1;
      else break;
      return 0;
    case OPT_LEASE_MS:
      if (parse_long(v, 300, 600000, &n) != 0) break;
      c->lease_ms = (int)n;
      return 0;
    case OPT_LOG_FORMAT:
      if (strcmp(v, "json") == 0) c->log_json = 1;
      else if (strcmp(v, "text") == 0) c->log_json = 0;
      else break;
      return 0;
    case OPT_LOG_LEVEL:
      if (strcmp(v, "debug") == 0) c->log_level = DG_LOG_DEBUG;
      else if (strcmp(v, "info") == 0) c->log_level = DG_LOG_INFO;
      else if (strcmp(v, "warn") == 0) c->log_level = DG_LOG_WARN;
      else if (strcmp(v, "error") == 0) c->log_level = DG_LOG_ERROR;
      else break;
      return 0;
  }
  /* Secrets are never echoed back. */
  if (options[opt].id == OPT_ADMIN_KEY || options[opt].id == OPT_REDIS_URL ||
      options[opt].id == OPT_JWT_SECRET)
    snprintf(err, errcap, "%s / %s: invalid value", name, options[opt].env);
  else
    snprintf(err, errcap, "%s / %s: invalid value '%.100s'", name, options[opt].env, v);
  return DG_EINVAL;
}

void dg_config_dispose(dg_config_t *c) {
  dg_free(c->listen_host);
  dg_free(c->db_path);
  dg_free(c->redis_url);
  dg_free(c->admin_key);
  dg_free(c->admin_key_file);
  dg_free(c->stream_prefix);
  dg_free(c->jwt_secret);
  dg_free(c->jwt_public_key);
  dg_free(c->jwt_jwks);
  dg_free(c->jwt_issuer);
  dg_free(c->jwt_audience);
  dg_free(c->jwt_role_claim);
  dg_free(c->db_memory_limit);
  dg_free(c->tls_cert);
  dg_free(c->tls_key);
  dg_free(c->redis_ca);
  dg_free(c->redis_cert);
  dg_free(c->redis_key);
  dg_free(c->pepper_file);
  memset(c, 0, sizeof *c);
}

int dg_config_load(dg_config_t *c, int argc, char **argv, char *err, size_t errcap) {
  memset(c, 0, sizeof *c);
  c->listen_host = dg_strdup("127.0.0.1");
  c->listen_port = 8080;
  c->db_path = dg_strdup("data/duckgrid.duckdb");
  c->redis_url = dg_strdup("redis://127.0.0.1:6379/0");
  c->stream_prefix = dg_strdup("");
  c->body_limit = 1 << 20;
  c->sync_timeout_ms = 10000;
  c->redis_timeout_ms = 2000;
  c->response_maxlen = 1000000;
  c->batch_max = 1024;
  c->log_level = DG_LOG_INFO;
  c->http_timeout_s = 60;
  c->heartbeat_ms = 15000;
  c->client_buffer = 8u << 20;
  c->page_bytes = 8u << 20;
  c->replay_max = 100000;
  c->replay_bytes = (size_t)64 << 20;
  c->view_timeout_ms = 10000;
  c->ip_connections = 256;
  c->ip_rate = 2000;
  c->jwt_max_lifetime_s = 86400;
  c->view_concurrency = 2;
  c->view_max_bytes = 16u << 20;
  c->db_memory_limit = dg_strdup("2GB");
  c->redis_cluster = -1;
  c->redis_wait_replicas = -1;
  c->redis_wait_ms = 1000;
  c->lease_ms = 1500;

  for (size_t i = 0; i < DG_ARRAY_SIZE(options); i++) {
    const char *v = getenv(options[i].env);
    if (v != NULL && set_value(c, i, v, err, errcap) != 0) goto fail;
  }
  for (int a = 0; a < argc; a++) {
    const char *arg = argv[a];
    size_t i;
    const char *v = NULL;
    for (i = 0; i < DG_ARRAY_SIZE(options); i++) {
      size_t fl = strlen(options[i].flag);
      if (strncmp(arg, options[i].flag, fl) != 0) continue;
      if (arg[fl] == '=') v = arg + fl + 1;
      else if (arg[fl] == '\0') {
        if (options[i].id == OPT_DEMO) v = "1"; /* --demo takes no value */
        else if (a + 1 < argc) v = argv[++a];
        else {
          snprintf(err, errcap, "%s needs a value", options[i].flag);
          goto fail;
        }
      } else continue;
      break;
    }
    if (i == DG_ARRAY_SIZE(options)) {
      snprintf(err, errcap, "unknown option '%.60s' (see duckgrid --help)", arg);
      goto fail;
    }
    if (set_value(c, i, v, err, errcap) != 0) goto fail;
  }
  if ((c->tls_cert == NULL) != (c->tls_key == NULL)) {
    snprintf(err, errcap, "HTTPS needs both DUCKGRID_TLS_CERT and DUCKGRID_TLS_KEY");
    goto fail;
  }
  /* Redis TLS files: only with rediss:// (so a typo in the scheme cannot
     silently turn TLS off), and a client certificate needs its key. */
  if ((c->redis_ca || c->redis_cert || c->redis_key) &&
      strncasecmp(c->redis_url, "rediss://", 9) != 0) {
    snprintf(err, errcap, "%s is set but the Redis URL is not rediss:// (TLS)",
             c->redis_ca ? "DUCKGRID_REDIS_CA" : c->redis_cert ? "DUCKGRID_REDIS_CERT"
                                                             : "DUCKGRID_REDIS_KEY");
    goto fail;
  }
  if ((c->redis_cert == NULL) != (c->redis_key == NULL)) {
    snprintf(err, errcap, "a Redis client certificate needs both DUCKGRID_REDIS_CERT and "
             "DUCKGRID_REDIS_KEY");
    goto fail;
  }
  if (c->pepper_file == NULL) {
    size_t n = strlen(c->db_path) + sizeof ".pepper";
    c->pepper_file = dg_malloc(n);
    snprintf(c->pepper_file, n, "%s.pepper", c->db_path);
  }
  if (c->admin_key_file == NULL) {
    size_t n = strlen(c->db_path) + sizeof ".admin-key";
    c->admin_key_file = dg_malloc(n);
    snprintf(c->admin_key_file, n, "%s.admin-key", c->db_path);
  }
  return 0;
fail:
  dg_config_dispose(c);
  return DG_EINVAL;
}
