/*
 * webhook.c -- delivers update objects to the registered webhooks.
 *
 * Where hooks live. In Redis, so every node of a deployment sees the same
 * ones and whichever leads delivers them:
 *
 *   <prefix>webhooks                  hash  id -> {"id","url","tables","secret","created"}
 *   <prefix>webhook:<id>:cursor       string: the last update id handled (delivered,
 *                                     filtered out, or given up on)
 *   <prefix>webhook:<id>:deliveries   list, newest first, capped at DG_WEBHOOK_KEEP:
 *                                     {"update_id","attempt","status","error","outcome","ts"}
 *
 * The thread. One per process, idle unless this process's manager leads
 * (status->manager_state), so one node delivers at a time. Each pass reads
 * the hooks and, for each, response_duck after its cursor (XRANGE with an
 * exclusive start, MAC-checked like every reader of the stream), and POSTs
 * the matching updates one at a time, in stream order. The cursor moves
 * only after a 2xx (or for an update the hook's tables filter excludes), so
 * a crash or a change of leader re-sends at most the update in flight:
 * at-least-once, order kept. SET ... XX moves it, so a hook deleted
 * meanwhile is not brought back.
 *
 * Failure. A non-2xx answer, a timeout (DUCKGRID_WEBHOOK_TIMEOUT_S, default
 * 10 s) or a refused address is one failed attempt, recorded; the hook then
 * waits DUCKGRID_WEBHOOK_BACKOFF_MS (default 1000) doubled per attempt, at
 * most 5 min, and tries the same update again. After 24 h of failures
 * (DUCKGRID_WEBHOOK_GIVEUP_MS) that update is recorded as "dropped" and the
 * hook goes on with the next. The backoff state is in memory: a new leader
 * retries at once, which at-least-once allows, and counts the 24 h anew.
 *
 * Retention. response_duck is capped; a cursor before its oldest entry,
 * when something was trimmed, has lost updates: recorded once as a "gap"
 * and delivery goes on from the oldest retained entry.
 *
 * SSRF. A URL must match DUCKGRID_WEBHOOK_ALLOW when it is created
 * (dg_webhook_url_check), and before each attempt its host is resolved and
 * every address must be allowed (dg_webhook_url_resolve_check): an IP
 * literal of the list; a loopback address when "localhost" is listed; or,
 * for a host the list names, a public address (never loopback, private,
 * link-local, CGNAT, multicast or unspecified), so a listed name that comes
 * to point inside the network is refused. The addresses checked are the
 * ones connected to: libcurl gets them pinned (CURLOPT_RESOLVE, so it does
 * not ask DNS again) and checks each address it opens a socket for
 * (CURLOPT_OPENSOCKETFUNCTION) against the same rule, so a DNS answer that
 * changes after the check (rebinding) reaches no other address. Redirects
 * are not followed, proxies from the environment are not used, and only
 * http and https are spoken.
 */
#include "dg/webhook.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <jansson.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>

#include "dg/common.h"
#include "dg/entry_mac.h"
#include "dg/log.h"
#include "dg/redis.h"
#include "dg/redis_pool.h"
#include "dg/wire.h"

/* Longest wait between attempts for one update. */
#define BACKOFF_CAP_MS (5 * 60 * 1000)
/* How long one update is retried before it is dropped for the hook. */
#define GIVEUP_DEFAULT_MS (24LL * 3600 * 1000)
/* Longest pause between passes when there is nothing to do (a new entry
 * ends it at once): bounds how late a retry after its backoff starts. */
#define POLL_MS 200
/* Entries per XRANGE: bounds the reply held in memory. */
#define BATCH 50
/* Allow-list entries kept. */
#define ALLOW_MAX 32

/* ======================================================================= */
/* URLs and the allow-list                                                   */
/* ======================================================================= */

typedef struct {
  int https;
  char host[256]; /* lowercase, without brackets */
  int port;       /* explicit or the scheme's default */
} url_t;

typedef struct {
  char host[256]; /* lowercase, without brackets */
  int port;       /* 0: any */
} pattern_t;

static void lower(char *s) {
  for (; *s; s++) *s = (char)tolower((unsigned char)*s);
}

static int parse_port(const char *s, size_t n, int *out) {
  if (n == 0 || n > 5) return DG_EINVAL;
  int v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return DG_EINVAL;
    v = v * 10 + (s[i] - '0');
  }
  if (v < 1 || v > 65535) return DG_EINVAL;
  *out = v;
  return 0;
}

static int host_chars_ok(const char *h, size_t n, int v6) {
  if (n == 0 || n >= 256) return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)h[i];
    if (isalnum(c) || c == '.' || c == '-' || (v6 && c == ':')) continue;
    return 0;
  }
  return 1;
}

/* "host", "host:port", "[v6]", "[v6]:port" or a bare "v6" into host and
 * port (0 when absent). 0 or DG_EINVAL. */
static int parse_hostport(const char *s, size_t n, char host[256], int *port, int bare_v6_ok) {
  *port = 0;
  if (n > 0 && s[0] == '[') {
    const char *e = memchr(s, ']', n);
    if (e == NULL) return DG_EINVAL;
    size_t hl = (size_t)(e - s - 1);
    if (!host_chars_ok(s + 1, hl, 1)) return DG_EINVAL;
    memcpy(host, s + 1, hl);
    host[hl] = '\0';
    size_t rest = n - (size_t)(e - s) - 1;
    if (rest > 0 && (e[1] != ':' || parse_port(e + 2, rest - 1, port) != 0)) return DG_EINVAL;
    struct in6_addr a6;
    return inet_pton(AF_INET6, host, &a6) == 1 ? 0 : DG_EINVAL;
  }
  const char *c = memchr(s, ':', n);
  if (c != NULL && memchr(c + 1, ':', n - (size_t)(c - s) - 1) != NULL) {
    if (!bare_v6_ok || !host_chars_ok(s, n, 1)) return DG_EINVAL;
    memcpy(host, s, n);
    host[n] = '\0';
    struct in6_addr a6;
    return inet_pton(AF_INET6, host, &a6) == 1 ? 0 : DG_EINVAL;
  }
  size_t hl = c ? (size_t)(c - s) : n;
  if (!host_chars_ok(s, hl, 0)) return DG_EINVAL;
  if (c != NULL && parse_port(c + 1, n - hl - 1, port) != 0) return DG_EINVAL;
  memcpy(host, s, hl);
  host[hl] = '\0';
  return 0;
}

static int url_parse(const char *u, url_t *out, char *err, size_t errcap) {
  size_t n = strlen(u);
  if (n == 0 || n > DG_WEBHOOK_URL_MAX) {
    snprintf(err, errcap, "url must be 1 to %d characters", DG_WEBHOOK_URL_MAX);
    return DG_EINVAL;
  }
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)u[i] <= ' ' || (unsigned char)u[i] >= 0x7f) {
      snprintf(err, errcap, "url must be printable ASCII without spaces");
      return DG_EINVAL;
    }
  url_t x = {0};
  const char *p;
  if (strncasecmp(u, "http://", 7) == 0) {
    p = u + 7;
  } else if (strncasecmp(u, "https://", 8) == 0) {
    p = u + 8;
    x.https = 1;
  } else {
    snprintf(err, errcap, "url must start with http:// or https://");
    return DG_EINVAL;
  }
  size_t an = strcspn(p, "/?#");
  if (memchr(p, '@', an) != NULL) {
    snprintf(err, errcap, "url must not carry user information");
    return DG_EINVAL;
  }
  if (parse_hostport(p, an, x.host, &x.port, 0) != 0) {
    snprintf(err, errcap, "url has no valid host and port");
    return DG_EINVAL;
  }
  lower(x.host);
  if (x.port == 0) x.port = x.https ? 443 : 80;
  *out = x;
  return 0;
}

/* DUCKGRID_WEBHOOK_ALLOW, parsed into out[0..cap) (the count is returned).
 * A malformed item is skipped; with err, the first one is described there
 * and the result is -1 (dg_webhook_allow_valid, at start). */
static ssize_t allow_parse(pattern_t *out, size_t cap, char *err, size_t errcap) {
  const char *env = getenv("DUCKGRID_WEBHOOK_ALLOW");
  if (env == NULL || *env == '\0') env = "127.0.0.1,::1,localhost";
  size_t k = 0;
  const char *p = env;
  while (*p && k < cap) {
    size_t n = strcspn(p, ",");
    const char *s = p;
    size_t m = n;
    while (m > 0 && isspace((unsigned char)*s)) s++, m--;
    while (m > 0 && isspace((unsigned char)s[m - 1])) m--;
    if (m > 0) {
      if (parse_hostport(s, m, out[k].host, &out[k].port, 1) == 0) {
        lower(out[k].host);
        k++;
      } else if (err != NULL) {
        snprintf(err, errcap, "DUCKGRID_WEBHOOK_ALLOW: '%.*s' is not host or host:port", (int)(m > 100 ? 100 : m), s);
        return -1;
      }
    }
    p += n;
    if (*p == ',') p++;
  }
  if (*p && err != NULL) {
    snprintf(err, errcap, "DUCKGRID_WEBHOOK_ALLOW: more than %d items", ALLOW_MAX);
    return -1;
  }
  return (ssize_t)k;
}

static size_t allow_list(pattern_t *out, size_t cap) {
  ssize_t n = allow_parse(out, cap, NULL, 0);
  return n < 0 ? 0 : (size_t)n;
}

int dg_webhook_allow_valid(char *err, size_t errcap) {
  pattern_t pats[ALLOW_MAX];
  return allow_parse(pats, ALLOW_MAX, err, errcap) < 0 ? DG_EINVAL : 0;
}

/* Both hosts as addresses when both are IP literals, else as names. */
static int same_host(const char *a, const char *b) {
  unsigned char x[16], y[16];
  if (inet_pton(AF_INET, a, x) == 1) return inet_pton(AF_INET, b, y) == 1 && memcmp(x, y, 4) == 0;
  if (inet_pton(AF_INET6, a, x) == 1) return inet_pton(AF_INET6, b, y) == 1 && memcmp(x, y, 16) == 0;
  return strcmp(a, b) == 0;
}

static int is_ip_literal(const char *h) {
  unsigned char x[16];
  return inet_pton(AF_INET, h, x) == 1 || inet_pton(AF_INET6, h, x) == 1;
}

int dg_webhook_url_check(const char *url, char *err, size_t errcap) {
  url_t u;
  if (url_parse(url, &u, err, errcap) != 0) return DG_EINVAL;
  pattern_t pats[ALLOW_MAX];
  size_t n = allow_list(pats, ALLOW_MAX);
  for (size_t i = 0; i < n; i++)
    if (same_host(pats[i].host, u.host) && (pats[i].port == 0 || pats[i].port == u.port)) return 0;
  snprintf(err, errcap, "url host %s port %d is not in DUCKGRID_WEBHOOK_ALLOW", u.host, u.port);
  return DG_EINVAL;
}

/* 1 for an IPv4 address (host order) no public name should point to:
 * 0/8, 10/8, 127/8, 169.254/16, 172.16/12, 192.168/16, 100.64/10 (CGNAT),
 * 224/4 and above (multicast, reserved, broadcast). */
static int internal_v4(uint32_t a) {
  return (a >> 24) == 0 || (a >> 24) == 10 || (a >> 24) == 127 || (a >> 16) == 0xa9fe || (a >> 20) == 0xac1 ||
         (a >> 16) == 0xc0a8 || (a >> 22) == (100u << 2 | 1) || (a >> 28) >= 0xe;
}

/* 1 for an address no public name should point to. An IPv4-mapped IPv6
 * address is judged by its IPv4 address. (It used to be, through a struct
 * sockaddr_in read back as a struct sockaddr, which the optimiser was free
 * to break under strict aliasing, and did: ::ffff:10.0.0.1 passed.) */
static int internal_addr(const struct sockaddr *sa) {
  if (sa->sa_family == AF_INET) return internal_v4(ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr));
  const unsigned char *b = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
  static const unsigned char zero[16];
  if (memcmp(b, zero, 15) == 0) return 1;                       /* :: and ::1 */
  if (b[0] == 0xff || (b[0] & 0xfe) == 0xfc || (b[0] == 0xfe && (b[1] & 0xc0) == 0x80)) return 1;
  static const unsigned char v4map[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (memcmp(b, v4map, 12) == 0) {
    uint32_t a;
    memcpy(&a, b + 12, 4);
    return internal_v4(ntohl(a));
  }
  return 0;
}

static int loopback_addr(const struct sockaddr *sa) {
  if (sa->sa_family == AF_INET) return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
  return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
}

/* What the allow-list says about one URL: the patterns that apply to its
 * port, and whether its host is listed by name or "localhost" is. */
typedef struct {
  url_t url;
  pattern_t pats[ALLOW_MAX];
  size_t np;
  int name_listed;      /* the list names this host (not an IP literal)   */
  int localhost_listed; /* "localhost" is listed (for this port)          */
} dest_t;

static int dest_init(const char *url, dest_t *d, char *err, size_t errcap) {
  memset(d, 0, sizeof *d);
  if (url_parse(url, &d->url, err, errcap) != 0) return DG_EINVAL;
  d->np = allow_list(d->pats, ALLOW_MAX);
  for (size_t i = 0; i < d->np; i++) {
    if (d->pats[i].port != 0 && d->pats[i].port != d->url.port) continue;
    if (strcmp(d->pats[i].host, "localhost") == 0) d->localhost_listed = 1;
    else if (!is_ip_literal(d->pats[i].host) && strcmp(d->pats[i].host, d->url.host) == 0) d->name_listed = 1;
  }
  return 0;
}

/* The address of sa as text ("" for another family). */
static void addr_text(const struct sockaddr *sa, char txt[INET6_ADDRSTRLEN]) {
  txt[0] = '\0';
  if (sa->sa_family == AF_INET) inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, txt, INET6_ADDRSTRLEN);
  else if (sa->sa_family == AF_INET6)
    inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, txt, INET6_ADDRSTRLEN);
}

/* The rule for one address: an IP literal of the list; a loopback address
 * when "localhost" is listed; a public address for a host the list names.
 * 0, or DG_EINVAL with the reason in err. */
static int dest_addr_check(const dest_t *d, const struct sockaddr *sa, char *err, size_t errcap) {
  char txt[INET6_ADDRSTRLEN];
  addr_text(sa, txt);
  int ok = 0;
  if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6) {
    for (size_t i = 0; i < d->np && !ok; i++)
      if ((d->pats[i].port == 0 || d->pats[i].port == d->url.port) && is_ip_literal(d->pats[i].host) &&
          same_host(d->pats[i].host, txt))
        ok = 1;
    if (!ok && d->localhost_listed && loopback_addr(sa)) ok = 1;
    if (!ok && d->name_listed && !internal_addr(sa)) ok = 1;
  }
  if (ok) return 0;
  snprintf(err, errcap, "%s resolves to %s, which DUCKGRID_WEBHOOK_ALLOW does not allow", d->url.host,
           txt[0] ? txt : "an address of another family");
  return DG_EINVAL;
}

/* Resolves the destination's host and checks every address (IPv4 and
 * IPv6 only). 0 with *out set (freeaddrinfo frees it), or DG_EINVAL with
 * the reason in err. */
static int dest_resolve(const dest_t *d, struct addrinfo **out, char *err, size_t errcap) {
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
  int gr = getaddrinfo(d->url.host, NULL, &hints, &res);
  if (gr != 0 || res == NULL) {
    snprintf(err, errcap, "cannot resolve %s: %s", d->url.host, gr ? gai_strerror(gr) : "no address");
    if (res) freeaddrinfo(res);
    return DG_EINVAL;
  }
  for (struct addrinfo *a = res; a; a = a->ai_next) {
    if (a->ai_family != AF_INET && a->ai_family != AF_INET6) continue;
    if (dest_addr_check(d, a->ai_addr, err, errcap) != 0) {
      freeaddrinfo(res);
      return DG_EINVAL;
    }
  }
  *out = res;
  return 0;
}

int dg_webhook_url_resolve_check(const char *url, char *err, size_t errcap) {
  dest_t d;
  if (dest_init(url, &d, err, errcap) != 0) return DG_EINVAL;
  struct addrinfo *res = NULL;
  if (dest_resolve(&d, &res, err, errcap) != 0) return DG_EINVAL;
  freeaddrinfo(res);
  return 0;
}

int dg_webhook_addr_check(const char *url, const struct sockaddr *sa, char *err, size_t errcap) {
  dest_t d;
  if (dest_init(url, &d, err, errcap) != 0) return DG_EINVAL;
  return dest_addr_check(&d, sa, err, errcap);
}

/* dg_webhook_key under a given prefix (NULL: none). */
static void key_of(const char *prefix, const char *id, const char *what, char *out, size_t cap) {
  if (prefix == NULL) prefix = "";
  if (id == NULL) snprintf(out, cap, "%swebhooks", prefix);
  else snprintf(out, cap, "%swebhook:%s:%s", prefix, id, what);
}

void dg_webhook_key(const dg_app_t *app, const char *id, const char *what, char *out, size_t cap) {
  key_of(app->cfg ? app->cfg->stream_prefix : NULL, id, what, out, cap);
}

/* ======================================================================= */
/* The delivery thread                                                       */
/* ======================================================================= */

/* Backoff state of one hook, in memory only. */
typedef struct {
  char id[DG_WEBHOOK_ID_LEN + 1];
  char update[DG_REDIS_XID_BUFSZ]; /* the update being retried, "" none */
  int attempt;                     /* attempts made for it             */
  int64_t first_fail_ms;           /* wall time of its first failure   */
  int64_t next_at_us;              /* monotonic: not before then       */
  char gap_at[DG_REDIS_XID_BUFSZ]; /* cursor a gap was recorded for    */
  int seen;                        /* listed in this pass              */
} hookstate_t;

struct dg_webhook_s {
  dg_webhook_deps_t deps; /* what it was given (webhook.h) */
  pthread_t thread;
  atomic_int stop;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  hookstate_t hooks[DG_WEBHOOK_MAX];
  size_t nhooks;
  int64_t backoff_ms;   /* first retry delay                  */
  int64_t giveup_ms;    /* how long one update is retried     */
  unsigned long timeout_s; /* per attempt                     */
  char top[DG_REDIS_XID_BUFSZ]; /* newest entry when the last pass began */
};

static int64_t env_ms(const char *name, int64_t dflt, int64_t lo, int64_t hi) {
  const char *s = getenv(name);
  if (s == NULL || *s == '\0') return dflt;
  char *end = NULL;
  long long v = strtoll(s, &end, 10);
  if (*end != '\0' || v < lo || v > hi) {
    dg_log_warn("webhooks: %s=%s is not an integer from %lld to %lld; using %lld", name, s, (long long)lo,
                (long long)hi, (long long)dflt);
    return dflt;
  }
  return v;
}

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void iso_now(char out[64]) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  snprintf(out, 64, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
           tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
}

static hookstate_t *state_of(dg_webhook_t *w, const char *id) {
  for (size_t i = 0; i < w->nhooks; i++)
    if (strcmp(w->hooks[i].id, id) == 0) return &w->hooks[i];
  if (w->nhooks == DG_WEBHOOK_MAX) return NULL;
  hookstate_t *h = &w->hooks[w->nhooks++];
  memset(h, 0, sizeof *h);
  snprintf(h->id, sizeof h->id, "%s", id);
  return h;
}

/* One command, its reply or NULL (logged). */
static redisReply *cmd(dg_redis_t *r, int argc, const char **argv, const size_t *lens) {
  redisReply *rep = NULL;
  if (dg_redis_command(r, argc, argv, lens, &rep) != 0) return NULL;
  if (rep->type == REDIS_REPLY_ERROR) {
    dg_log_warn("webhooks: redis %s: %s", argv[0], rep->str);
    freeReplyObject(rep);
    return NULL;
  }
  return rep;
}

/* Appends one attempt to the hook's capped list. */
static void record(dg_webhook_t *w, dg_redis_t *r, const char *id, const char *update, int attempt, int status,
                   const char *error, const char *outcome) {
  char key[256], ts[64];
  key_of(w->deps.prefix, id, "deliveries", key, sizeof key);
  iso_now(ts);
  json_t *j = json_pack("{s:s?,s:i,s:o,s:s?,s:s,s:s}", "update_id", update, "attempt", attempt, "status",
                        status > 0 ? json_integer(status) : json_null(), "error", error, "outcome", outcome, "ts", ts);
  char *txt = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  if (txt == NULL) return;
  const char *a1[] = {"LPUSH", key, txt};
  redisReply *rep = cmd(r, 3, a1, NULL);
  if (rep) freeReplyObject(rep);
  char keep[16];
  snprintf(keep, sizeof keep, "%d", DG_WEBHOOK_KEEP - 1);
  const char *a2[] = {"LTRIM", key, "0", keep};
  rep = cmd(r, 4, a2, NULL);
  if (rep) freeReplyObject(rep);
  free(txt);
}

/* Moves the cursor unless the hook was deleted meanwhile. */
static void cursor_set(dg_webhook_t *w, dg_redis_t *r, const char *id, const char *update) {
  char key[256];
  key_of(w->deps.prefix, id, "cursor", key, sizeof key);
  const char *a[] = {"SET", key, update, "XX"};
  redisReply *rep = cmd(r, 4, a, NULL);
  if (rep) freeReplyObject(rep);
}

static int hook_exists(dg_webhook_t *w, dg_redis_t *r, const char *id) {
  char key[256];
  key_of(w->deps.prefix, NULL, NULL, key, sizeof key);
  const char *a[] = {"HEXISTS", key, id};
  redisReply *rep = cmd(r, 3, a, NULL);
  int yes = rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 1;
  if (rep) freeReplyObject(rep);
  return yes;
}

typedef struct {
  const json_t *tables; /* an array of names */
  int yes;
} want_t;

/* dg_wire_out_tables's callback: stops (1) at a table among the names. */
static int want_each(const char *table, void *arg) {
  want_t *w = arg;
  size_t i;
  json_t *t;
  json_array_foreach(w->tables, i, t) {
    const char *name = json_string_value(t);
    if (name && strcmp(name, table) == 0) return w->yes = 1;
  }
  return 0;
}

/* 1 when the update concerns one of tables (an array of names), by its
 * "table" or a change's "table" (the wire module reads them); NULL
 * tables: every update. */
static int wanted(const json_t *tables, const char *res, size_t len) {
  if (!json_is_array(tables)) return 1;
  want_t w = {tables, 0};
  if (dg_wire_out_tables(res, len, want_each, &w) != 0) return 0;
  return w.yes;
}

/* ----------------------------------------------------------------------- */
/* One delivery, through libcurl                                             */
/* ----------------------------------------------------------------------- */

/* Addresses pinned per attempt: a DNS answer rarely has more, and every
 * address is checked whether pinned or not. */
#define PIN_MAX 16

/* What the socket callback needs. */
typedef struct {
  const dest_t *dest;
  char refused[300]; /* why an address was refused at connect; "" none */
} conn_t;

/* CURLOPT_OPENSOCKETFUNCTION: every address libcurl is about to connect to
 * passes the allow-list here, so the address checked is the address
 * connected, whatever libcurl resolved (the pinned addresses, or its own
 * answer should a pin not match the name it looks up). */
static curl_socket_t open_checked(void *arg, curlsocktype purpose, struct curl_sockaddr *a) {
  conn_t *c = arg;
  if (purpose != CURLSOCKTYPE_IPCXN) return CURL_SOCKET_BAD;
  /* Copied out: a.addr is declared as a struct sockaddr, which an IPv6
   * address outgrows. */
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  memcpy(&ss, &a->addr, a->addrlen < sizeof ss ? a->addrlen : sizeof ss);
  if (dest_addr_check(c->dest, (const struct sockaddr *)&ss, c->refused, sizeof c->refused) != 0)
    return CURL_SOCKET_BAD;
  return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

/* "host:port:addr,[v6addr],..." for CURLOPT_RESOLVE: libcurl connects to
 * the addresses just checked instead of asking DNS again (which could
 * answer otherwise). NULL for an IP literal (nothing to resolve). Freed
 * with curl_slist_free_all. */
static struct curl_slist *pin_list(const dest_t *d, const struct addrinfo *res) {
  if (is_ip_literal(d->url.host)) return NULL;
  char line[256 + 8 + PIN_MAX * (INET6_ADDRSTRLEN + 3)];
  int n = snprintf(line, sizeof line, "%s:%d:", d->url.host, d->url.port);
  int k = 0;
  for (const struct addrinfo *a = res; a && k < PIN_MAX; a = a->ai_next) {
    char txt[INET6_ADDRSTRLEN];
    addr_text(a->ai_addr, txt);
    if (txt[0] == '\0') continue;
    const char *open = a->ai_family == AF_INET6 ? "[" : "", *close = a->ai_family == AF_INET6 ? "]" : "";
    n += snprintf(line + n, sizeof line - (size_t)n, "%s%s%s%s", k ? "," : "", open, txt, close);
    k++;
  }
  return k ? curl_slist_append(NULL, line) : NULL;
}

static size_t discard(char *data, size_t size, size_t nmemb, void *arg) {
  (void)data;
  (void)arg;
  return size * nmemb;
}

/* POSTs one update. The HTTP status (2xx success), or 0 with err set. The
 * host is resolved and every address checked (a refusal is a failed
 * attempt); libcurl is then held to those addresses (CURLOPT_RESOLVE) and
 * each one it connects to is checked again (open_checked). No redirect is
 * followed, no proxy used, and the whole attempt is bounded by
 * DUCKGRID_WEBHOOK_TIMEOUT_S. */
static int post(dg_webhook_t *w, const char *url, const char *secret, const char *update, const char *body,
                size_t len, char *err, size_t errcap) {
  dest_t d;
  struct addrinfo *res = NULL;
  if (dest_init(url, &d, err, errcap) != 0 || dest_resolve(&d, &res, err, errcap) != 0) return 0;
  struct curl_slist *pins = pin_list(&d, res);
  freeaddrinfo(res);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int maclen = 0;
  HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)body, len, mac, &maclen);
  char sig[64 + 2 * EVP_MAX_MD_SIZE] = "X-Duckgrid-Signature: sha256=";
  size_t at = strlen(sig);
  for (unsigned i = 0; i < maclen; i++) snprintf(sig + at + 2 * i, 3, "%02x", mac[i]);
  char delivery[64 + DG_REDIS_XID_BUFSZ];
  snprintf(delivery, sizeof delivery, "X-Duckgrid-Delivery: %s", update);
  struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
  hdrs = curl_slist_append(hdrs, sig);
  hdrs = curl_slist_append(hdrs, delivery);
  /* No "Expect: 100-continue" (libcurl adds it to larger bodies): a receiver that
   * does not answer 100 would cost every delivery a second. */
  hdrs = curl_slist_append(hdrs, "Expect:");
  conn_t conn = {.dest = &d};
  char cerr[CURL_ERROR_SIZE] = "";
  int status = 0;
  CURL *c = curl_easy_init();
  if (c == NULL || hdrs == NULL) {
    snprintf(err, errcap, "no answer (libcurl could not start a transfer)");
    goto out;
  }
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM */
  curl_easy_setopt(c, CURLOPT_PROXY, "");    /* never a proxy from the environment */
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)w->timeout_s);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "duckgrid-webhook");
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt(c, CURLOPT_POST, 1L);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
  if (pins) curl_easy_setopt(c, CURLOPT_RESOLVE, pins);
  curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_checked);
  curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, &conn);
  CURLcode rc = curl_easy_perform(c);
  long code = 0;
  if (rc == CURLE_OK && curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK && code > 0 && code < 1000)
    status = (int)code;
  else if (conn.refused[0] != '\0')
    snprintf(err, errcap, "%s", conn.refused);
  else
    snprintf(err, errcap, "no answer (%s; timeout %lu s)", cerr[0] ? cerr : curl_easy_strerror(rc), w->timeout_s);
out:
  if (c) curl_easy_cleanup(c);
  curl_slist_free_all(hdrs);
  curl_slist_free_all(pins);
  return status;
}

/* From an XINFO STREAM reply: last-generated-id, entries-added (-1 when
 * unknown) and length. */
static void xinfo_fields(const redisReply *rep, char *last, size_t cap, long long *added, long long *length) {
  *added = -1;
  *length = 0;
  if (last) snprintf(last, cap, "0-0");
  if (rep == NULL || rep->type != REDIS_REPLY_ARRAY) return;
  for (size_t i = 0; i + 1 < rep->elements; i += 2) {
    const redisReply *k = rep->element[i], *v = rep->element[i + 1];
    if (k->type != REDIS_REPLY_STRING && k->type != REDIS_REPLY_STATUS) continue;
    if (strcmp(k->str, "last-generated-id") == 0 && v->type == REDIS_REPLY_STRING && last)
      snprintf(last, cap, "%s", v->str);
    else if (strcmp(k->str, "entries-added") == 0 && v->type == REDIS_REPLY_INTEGER) *added = v->integer;
    else if (strcmp(k->str, "length") == 0 && v->type == REDIS_REPLY_INTEGER) *length = v->integer;
  }
}

/* Records, once per cursor, that updates after it were trimmed unseen. */
static void check_gap(dg_webhook_t *w, dg_redis_t *r, hookstate_t *h, const char *cursor) {
  if (strcmp(cursor, "0-0") == 0 || strcmp(h->gap_at, cursor) == 0) return;
  dg_redis_xid_t c, f;
  if (dg_redis_xid_parse(cursor, strlen(cursor), &c) != 0) return;
  const char *a[] = {"XRANGE", w->deps.streams->res, "-", "+", "COUNT", "1"};
  redisReply *rep = cmd(r, 6, a, NULL);
  if (rep == NULL) return;
  dg_redis_xiter_t it;
  dg_redis_xentry_t e;
  int before = 0;
  if (dg_redis_xiter_init_xrange(&it, rep) == 0 && dg_redis_xiter_next(&it, &e) &&
      dg_redis_xid_parse(e.id.ptr, e.id.len, &f) == 0 && dg_redis_xid_cmp(c, f) < 0)
    before = 1;
  freeReplyObject(rep);
  if (!before) return;
  const char *b[] = {"XINFO", "STREAM", w->deps.streams->res};
  rep = cmd(r, 3, b, NULL);
  long long added, length;
  xinfo_fields(rep, NULL, 0, &added, &length);
  if (rep) freeReplyObject(rep);
  if (added >= 0 && added <= length) return; /* nothing was ever trimmed */
  snprintf(h->gap_at, sizeof h->gap_at, "%s", cursor);
  record(w, r, h->id, cursor, 0, 0, "response_duck no longer holds the updates after this one; "
         "continuing from the oldest retained", "gap");
  dg_log_warn("webhooks: hook %s: updates after %s were trimmed before delivery", h->id, cursor);
}

/* Delivers what one hook is due. 1 when it stopped at a full batch (more to do). */
static int run_hook(dg_webhook_t *w, dg_redis_t *r, const char *id, const char *conf, size_t conflen) {
  hookstate_t *h = state_of(w, id);
  if (h == NULL) return 0;
  h->seen = 1;
  if (dg_mono_us() < h->next_at_us) return 0;
  json_t *cfg = json_loadb(conf, conflen, 0, NULL);
  const char *url = json_string_value(json_object_get(cfg, "url"));
  const char *secret = json_string_value(json_object_get(cfg, "secret"));
  json_t *tables = json_object_get(cfg, "tables");
  int more = 0;
  redisReply *rep = NULL;
  if (url == NULL || secret == NULL) goto out;
  char key[256], cursor[DG_REDIS_XID_BUFSZ];
  key_of(w->deps.prefix, id, "cursor", key, sizeof key);
  const char *g[] = {"GET", key};
  rep = cmd(r, 2, g, NULL);
  if (rep == NULL || rep->type != REDIS_REPLY_STRING || rep->len >= sizeof cursor) goto out;
  snprintf(cursor, sizeof cursor, "%s", rep->str);
  freeReplyObject(rep);
  rep = NULL;
  check_gap(w, r, h, cursor);
  char from[DG_REDIS_XID_BUFSZ + 1];
  snprintf(from, sizeof from, "(%s", cursor);
  char count[16];
  snprintf(count, sizeof count, "%d", BATCH);
  const char *x[] = {"XRANGE", w->deps.streams->res, strcmp(cursor, "0-0") == 0 ? "-" : from, "+", "COUNT", count};
  rep = cmd(r, 6, x, NULL);
  dg_redis_xiter_t it;
  dg_redis_xentry_t e;
  if (rep == NULL || dg_redis_xiter_init_xrange(&it, rep) != 0) goto out;
  size_t seen = 0;
  while (!atomic_load(&w->stop) && dg_redis_xiter_next(&it, &e)) {
    seen++;
    char uid[DG_REDIS_XID_BUFSZ];
    if (e.id.len >= sizeof uid) break;
    memcpy(uid, e.id.ptr, e.id.len);
    uid[e.id.len] = '\0';
    dg_redis_str_t res;
    if (dg_entry_open_res_with(w->deps.streams, w->deps.status, &e, &res) != 0 || !wanted(tables, res.ptr, res.len)) {
      cursor_set(w, r, id, uid);
      continue;
    }
    if (!hook_exists(w, r, id)) break; /* deleted: no more deliveries */
    if (strcmp(h->update, uid) != 0) {
      snprintf(h->update, sizeof h->update, "%s", uid);
      h->attempt = 0;
      h->first_fail_ms = 0;
    }
    h->attempt++;
    char err[300] = "";
    int status = post(w, url, secret, uid, res.ptr, res.len, err, sizeof err);
    if (status >= 200 && status < 300) {
      record(w, r, id, uid, h->attempt, status, NULL, "delivered");
      cursor_set(w, r, id, uid);
      h->update[0] = '\0';
      h->attempt = 0;
      continue;
    }
    if (status > 0) snprintf(err, sizeof err, "HTTP %d", status);
    int64_t now = wall_ms();
    if (h->first_fail_ms == 0) h->first_fail_ms = now;
    if (now - h->first_fail_ms >= w->giveup_ms) {
      record(w, r, id, uid, h->attempt, status, err, "dropped");
      dg_log_warn("webhooks: hook %s: update %s dropped after %d attempts (%s)", id, uid, h->attempt, err);
      cursor_set(w, r, id, uid);
      h->update[0] = '\0';
      h->attempt = 0;
      continue;
    }
    record(w, r, id, uid, h->attempt, status, err, "failed");
    int64_t delay = w->backoff_ms;
    for (int i = 1; i < h->attempt && delay < BACKOFF_CAP_MS; i++) delay *= 2;
    if (delay > BACKOFF_CAP_MS) delay = BACKOFF_CAP_MS;
    h->next_at_us = dg_mono_us() + delay * 1000;
    goto out;
  }
  more = seen == BATCH;
out:
  if (rep) freeReplyObject(rep);
  json_decref(cfg);
  return more;
}

/* One pass over every hook. 1 when some hook has more to deliver at once. */
static int pass(dg_webhook_t *w) {
  dg_redis_t *r = dg_redis_pool_get(w->deps.redis);
  char key[256];
  key_of(w->deps.prefix, NULL, NULL, key, sizeof key);
  /* The newest entry before anything is read: the idle wait then ends at
   * once for an entry published during the pass. */
  const char *t[] = {"XREVRANGE", w->deps.streams->res, "+", "-", "COUNT", "1"};
  redisReply *rep = cmd(r, 6, t, NULL);
  dg_redis_xiter_t it;
  dg_redis_xentry_t e;
  snprintf(w->top, sizeof w->top, "0-0");
  if (rep && dg_redis_xiter_init_xrange(&it, rep) == 0 && dg_redis_xiter_next(&it, &e) && e.id.len < sizeof w->top) {
    memcpy(w->top, e.id.ptr, e.id.len);
    w->top[e.id.len] = '\0';
  }
  if (rep) freeReplyObject(rep);
  const char *a[] = {"HGETALL", key};
  rep = cmd(r, 2, a, NULL);
  int more = 0;
  for (size_t i = 0; i < w->nhooks; i++) w->hooks[i].seen = 0;
  if (rep && rep->type == REDIS_REPLY_ARRAY) {
    for (size_t i = 0; i + 1 < rep->elements && !atomic_load(&w->stop); i += 2) {
      const redisReply *k = rep->element[i], *v = rep->element[i + 1];
      if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING || k->len != DG_WEBHOOK_ID_LEN) continue;
      more |= run_hook(w, r, k->str, v->str, v->len);
    }
    /* Forget the state of deleted hooks. */
    size_t j = 0;
    for (size_t i = 0; i < w->nhooks; i++)
      if (w->hooks[i].seen) w->hooks[j++] = w->hooks[i];
    w->nhooks = j;
  }
  if (rep) freeReplyObject(rep);
  dg_redis_pool_put(w->deps.redis, r);
  return more;
}

/* Waits up to POLL_MS for an entry in response_duck after the one that
 * was newest when the last pass began (XREAD BLOCK, so
 * a caught-up hook gets an update a round trip after it is published
 * instead of up to POLL_MS later). 0 when the wait happened; nonzero
 * when Redis could not be asked (the caller sleeps instead). */
static int wait_for_entry(dg_webhook_t *w) {
  char block[16];
  snprintf(block, sizeof block, "%d", POLL_MS);
  const char *a[] = {"XREAD", "COUNT", "1", "BLOCK", block, "STREAMS", w->deps.streams->res, w->top};
  dg_redis_t *r = dg_redis_pool_get(w->deps.redis);
  redisReply *rep = NULL;
  int rc = dg_redis_command_timeout(r, POLL_MS + 2000, 8, a, NULL, &rep);
  if (rc == 0 && rep->type == REDIS_REPLY_ERROR) rc = DG_EIO;
  if (rep) freeReplyObject(rep);
  dg_redis_pool_put(w->deps.redis, r);
  return rc;
}

static void *loop(void *arg) {
  dg_webhook_t *w = arg;
  while (!atomic_load(&w->stop)) {
    int more = 0;
    if (atomic_load(&w->deps.status->manager_state) == DG_MANAGER_LEADER) more = pass(w);
    else w->nhooks = 0; /* a new term starts without backoff */
    if (more) continue;
    /* With no hook, no wait on response_duck: it would wake at every
     * batch under load and cost Redis two reads each time for nothing. */
    if (atomic_load(&w->deps.status->manager_state) == DG_MANAGER_LEADER && w->nhooks > 0 && wait_for_entry(w) == 0)
      continue;
    pthread_mutex_lock(&w->lock);
    struct timespec until;
    dg_deadline_after_ms(&until, POLL_MS);
    if (!atomic_load(&w->stop)) pthread_cond_timedwait(&w->cond, &w->lock, &until);
    pthread_mutex_unlock(&w->lock);
  }
  return NULL;
}

dg_webhook_t *dg_webhook_start(const dg_webhook_deps_t *deps) {
  /* Before the thread: curl_global_init is reference counted but must not
   * race a first curl_easy_init. */
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    dg_log_error("webhooks: libcurl did not start");
    return NULL;
  }
  dg_webhook_t *w = dg_calloc(1, sizeof *w);
  w->deps = *deps;
  w->backoff_ms = env_ms("DUCKGRID_WEBHOOK_BACKOFF_MS", 1000, 1, BACKOFF_CAP_MS);
  w->giveup_ms = env_ms("DUCKGRID_WEBHOOK_GIVEUP_MS", GIVEUP_DEFAULT_MS, 1, 30LL * 24 * 3600 * 1000);
  w->timeout_s = (unsigned long)env_ms("DUCKGRID_WEBHOOK_TIMEOUT_S", 10, 1, 300);
  pthread_mutex_init(&w->lock, NULL);
  pthread_condattr_t attr; /* dg_deadline_after_ms is on the monotonic clock */
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_cond_init(&w->cond, &attr);
  pthread_condattr_destroy(&attr);
  if (pthread_create(&w->thread, NULL, loop, w) != 0) {
    dg_log_error("webhooks: cannot start the delivery thread");
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
    dg_free(w);
    curl_global_cleanup();
    return NULL;
  }
  return w;
}

void dg_webhook_stop(dg_webhook_t *w) {
  if (w == NULL) return;
  pthread_mutex_lock(&w->lock);
  atomic_store(&w->stop, 1);
  pthread_cond_signal(&w->cond);
  pthread_mutex_unlock(&w->lock);
  pthread_join(w->thread, NULL);
  pthread_mutex_destroy(&w->lock);
  pthread_cond_destroy(&w->cond);
  dg_free(w);
  curl_global_cleanup();
}
