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

#include "dg/common.h"
#include "dg/log.h"
#include "dg/redis.h"

/* One row per setting: the flag, the environment variable and its help. */
typedef struct {
  const char *flag;
  const char *env;
  const char *help;
} option_t;

static const option_t options[] = {
    {"--listen", "DUCKGRID_LISTEN", "HOST:PORT to serve HTTP on (default 127.0.0.1:8080)"},
    {"--db", "DUCKGRID_DB", "DuckDB database file (default data/duckgrid.duckdb)"},
    {"--redis-url", "DUCKGRID_REDIS_URL",
     "redis://[user:pass@]host:port/db, rediss://..., or unix:///path (default "
     "redis://127.0.0.1:6379/0)"},
    {"--admin-key", "DUCKGRID_ADMIN_KEY", "bootstrap admin key (prefer the environment variable)"},
    {"--admin-key-file", "DUCKGRID_ADMIN_KEY_FILE",
     "where a generated admin key is written, mode 0600 (default <db>.admin-key)"},
    {"--stream-prefix", "DUCKGRID_STREAM_PREFIX", "prefix for Redis keys, e.g. {dg}: (default none)"},
    {"--demo", "DUCKGRID_DEMO", "1: load the demo data into an empty database"},
    {"--body-limit", "DUCKGRID_BODY_LIMIT", "largest request body in bytes (default 1048576)"},
    {"--sync-timeout-ms", "DUCKGRID_SYNC_TIMEOUT_MS",
     "how long a synchronous write waits for its outcome (default 10000)"},
    {"--redis-timeout-ms", "DUCKGRID_REDIS_TIMEOUT_MS", "Redis connect/command timeout (default 2000)"},
    {"--response-maxlen", "DUCKGRID_RESPONSE_MAXLEN", "entries kept in response_duck (default 1000000)"},
    {"--batch-max", "DUCKGRID_BATCH_MAX", "requests per manager transaction (default 1024)"},
    {"--log-format", "DUCKGRID_LOG_FORMAT", "text or json (default text)"},
    {"--log-level", "DUCKGRID_LOG_LEVEL", "debug, info, warn or error (default info)"},
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

static int set_value(dg_config_t *c, size_t opt, const char *v, char *err, size_t errcap) {
  long n;
  const char *name = options[opt].flag;
  switch (opt) {
    case 0:
      dg_free(c->listen_host);
      c->listen_host = NULL;
      if (parse_listen(v, &c->listen_host, &c->listen_port) != 0) {
        snprintf(err, errcap, "%s: '%s' is not HOST:PORT with a port in 1..65535", name, v);
        return DG_EINVAL;
      }
      return 0;
    case 1:
      if (*v == '\0') break;
      dg_free(c->db_path);
      c->db_path = dg_strdup(v);
      return 0;
    case 2: {
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
    case 3:
      if (strlen(v) < 16) {
        snprintf(err, errcap, "%s: an admin key needs at least 16 characters", name);
        return DG_EINVAL;
      }
      dg_free(c->admin_key);
      c->admin_key = dg_strdup(v);
      return 0;
    case 4:
      if (*v == '\0') break;
      dg_free(c->admin_key_file);
      c->admin_key_file = dg_strdup(v);
      return 0;
    case 5:
      if (strlen(v) > 64) break;
      dg_free(c->stream_prefix);
      c->stream_prefix = dg_strdup(v);
      return 0;
    case 6:
      if (strcmp(v, "1") == 0 || strcmp(v, "true") == 0) c->demo = 1;
      else if (strcmp(v, "0") == 0 || strcmp(v, "false") == 0 || *v == '\0') c->demo = 0;
      else break;
      return 0;
    case 7:
      if (parse_long(v, 1024, 1L << 30, &n) != 0) break;
      c->body_limit = (size_t)n;
      return 0;
    case 8:
      if (parse_long(v, 1, 600000, &n) != 0) break;
      c->sync_timeout_ms = (int)n;
      return 0;
    case 9:
      if (parse_long(v, 10, 600000, &n) != 0) break;
      c->redis_timeout_ms = (int)n;
      return 0;
    case 10:
      if (parse_long(v, 1000, 1000000000L, &n) != 0) break;
      c->response_maxlen = n;
      return 0;
    case 11:
      if (parse_long(v, 1, 100000, &n) != 0) break;
      c->batch_max = (int)n;
      return 0;
    case 12:
      if (strcmp(v, "json") == 0) c->log_json = 1;
      else if (strcmp(v, "text") == 0) c->log_json = 0;
      else break;
      return 0;
    case 13:
      if (strcmp(v, "debug") == 0) c->log_level = DG_LOG_DEBUG;
      else if (strcmp(v, "info") == 0) c->log_level = DG_LOG_INFO;
      else if (strcmp(v, "warn") == 0) c->log_level = DG_LOG_WARN;
      else if (strcmp(v, "error") == 0) c->log_level = DG_LOG_ERROR;
      else break;
      return 0;
  }
  /* Secrets are never echoed back. */
  if (opt == 3 || opt == 2)
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
        if (i == 6) v = "1"; /* --demo takes no value */
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
