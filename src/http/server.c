/*
 * server.c -- the HTTP front door.
 *
 * The event loops (front.c) read a whole request into a dg_req_t and hand
 * it to a worker thread, which runs dg_http_dispatch(), in order:
 *
 *   body size   ──▶ 413 (over the limit, whatever the route)
 *   route match ──▶ 404 (no pattern matches) / 405 (pattern, not method)
 *   auth        ──▶ 401 (no or unknown key) / 403 (role too low)
 *   body        ──▶ 400 (not a JSON object)
 *   handler     ──▶ its answer
 *   access log  ──▶ method, path, status, duration (never a key)
 *
 * Owning the router keeps 404 and 405 apart and puts the middleware steps
 * in one readable place. The answer is left in the dg_req_t (status,
 * headers, body or a stream) for front.c to send.
 */
#include "dg/http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "dg/alive.h"
#include "dg/buf.h"
#include "dg/common.h"
#include "dg/jwt.h"
#include "dg/log.h"
#include "dg/metrics.h"
#include "dg/ratelimit.h"

/* Every route table the server serves, in matching order. */
static const dg_route_t *const route_tables[] = {
    dg_routes_health, dg_routes_read, dg_routes_views, dg_routes_updates, dg_routes_write, dg_routes_import,
    dg_routes_keys, dg_routes_events, dg_routes_metrics,
    dg_routes_ws,
    dg_routes_snapshots,
    dg_routes_webhooks,
    dg_routes_docs,
};

size_t dg_http_routes_flat(const dg_route_t **out, size_t cap) {
  size_t n = 0;
  for (size_t t = 0; t < DG_ARRAY_SIZE(route_tables); t++)
    for (const dg_route_t *rt = route_tables[t]; rt->method; rt++) {
      if (n < cap) out[n] = rt;
      n++;
    }
  return n;
}

const dg_route_t *const *dg_http_route_tables(size_t *n) {
  *n = DG_ARRAY_SIZE(route_tables);
  return route_tables;
}

/* A path with more segments than this matches no route (longest is 5). */
#define MAX_SEGMENTS 8
/* Longest path we try to route (a name is ≤ 63 bytes, an id ≤ 20): longer
 * ones are refused with 400 before any work. */
#define MAX_PATH 1024
/* JSON nesting accepted in a body: our deepest shape is 4 levels
 * ({"updates":[{"value":…}]}); jansson's own cap (2048) is far too deep to
 * be a useful bound on work. */
#define MAX_JSON_DEPTH 32

/* ---- replies --------------------------------------------------------------- */

static void drop_shared(dg_req_t *r) {
  if (r->out_shared) dg_shared_body_unref(r->out_shared);
  r->out_shared = NULL;
}

static void set_body_n(dg_req_t *r, int status, const char *type, const char *data, size_t len) {
  drop_shared(r);
  dg_buf_reset(&r->out_body);
  dg_buf_append(&r->out_body, data, len);
  r->out_type = type;
  r->status = status;
}

static void set_body(dg_req_t *r, int status, const char *type, const char *text) {
  set_body_n(r, status, type, text, strlen(text));
}

void dg_set_header(dg_req_t *r, const char *name, const char *value) {
  dg_buf_append(&r->out_headers, name, strlen(name) + 1);
  dg_buf_append(&r->out_headers, value, strlen(value) + 1);
}

void dg_reply_json(dg_req_t *r, int status, json_t *body) {
  char *text = json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(17));
  json_decref(body);
  set_body(r, status, "application/json", text ? text : "null");
  free(text); /* json_dumps uses jansson's allocator: plain malloc */
}

void dg_reply_bytes(dg_req_t *r, int status, const char *type, const char *data, size_t len) {
  set_body_n(r, status, type, data ? data : "", len);
}

void dg_reply_buf(dg_req_t *r, int status, const dg_buf_t *body) {
  set_body_n(r, status, "application/json", body->data ? body->data : "", body->len);
}

dg_shared_body_t *dg_shared_body_new(size_t len) {
  dg_shared_body_t *b = dg_malloc(sizeof *b + len + 1);
  atomic_init(&b->refs, 1);
  b->len = len;
  b->data[len] = '\0';
  return b;
}

void dg_shared_body_ref(dg_shared_body_t *b) { atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed); }

void dg_shared_body_unref(dg_shared_body_t *b) {
  if (b && atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1) dg_free(b);
}

void dg_reply_shared(dg_req_t *r, int status, dg_shared_body_t *b) {
  dg_buf_reset(&r->out_body);
  dg_shared_body_ref(b);
  drop_shared(r);
  r->out_shared = b;
  r->out_type = "application/json";
  r->status = status;
}

char *dg_reply_body_alloc(dg_req_t *r, int status, size_t len) {
  drop_shared(r);
  dg_buf_reset(&r->out_body);
  dg_buf_reserve(&r->out_body, len + 1);
  r->out_body.len = len;
  r->out_body.data[len] = '\0';
  r->out_type = "application/json";
  r->status = status;
  return r->out_body.data;
}

void dg_reply_empty(dg_req_t *r, int status) {
  drop_shared(r);
  dg_buf_reset(&r->out_body);
  r->out_type = NULL;
  r->status = status;
}

void dg_reply_stream(dg_req_t *r, int status, const char *type, const dg_stream_t *st) {
  dg_buf_reset(&r->out_body);
  r->stream = dg_malloc(sizeof *r->stream);
  *r->stream = *st;
  if (r->stream->tick_ms <= 0) r->stream->tick_ms = 1000;
  r->out_type = type;
  r->status = status;
}

void dg_reply_websocket(dg_req_t *r, const dg_ws_t *ws) {
  dg_buf_reset(&r->out_body);
  r->ws = dg_malloc(sizeof *r->ws);
  *r->ws = *ws;
  r->out_type = NULL;
  r->status = 101;
}

/* Replaces every byte that is not part of valid UTF-8 (including a
 * character cut by %.Ns) with '?', in place, so the text can go into JSON. */
static void utf8_clean(char *s) {
  unsigned char *p = (unsigned char *)s;
  while (*p) {
    int n = *p < 0x80 ? 1 : (*p & 0xe0) == 0xc0 ? 2 : (*p & 0xf0) == 0xe0 ? 3 : (*p & 0xf8) == 0xf0 ? 4 : 0;
    int ok = n > 0 && !(n == 2 && *p < 0xc2);
    for (int i = 1; ok && i < n; i++) ok = (p[i] & 0xc0) == 0x80;
    if (ok && n == 3) ok = !(p[0] == 0xe0 && p[1] < 0xa0) && !(p[0] == 0xed && p[1] >= 0xa0);
    if (ok && n == 4) ok = p[0] <= 0xf4 && !(p[0] == 0xf0 && p[1] < 0x90) && !(p[0] == 0xf4 && p[1] >= 0x90);
    if (!ok) {
      *p++ = '?';
      continue;
    }
    p += n;
  }
}

void dg_problem(dg_req_t *r, int status, json_t *extra, const char *fmt, ...) {
  char detail[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof detail, fmt, ap);
  va_end(ap);
  utf8_clean(detail);
  json_t *p = json_pack("{s:i,s:s,s:s,s:s}", "status", status, "code", dg_status_code(status), "title",
                        dg_status_reason(status), "detail", detail);
  if (extra) {
    json_object_update_missing(p, extra);
    json_decref(extra);
  }
  char *text = p ? json_dumps(p, JSON_COMPACT) : NULL;
  json_decref(p);
  char fallback[160];
  if (text == NULL) {
    /* Never an empty 200: the status and code always go out. */
    snprintf(fallback, sizeof fallback,
             "{\"status\":%d,\"code\":\"%s\",\"title\":\"%s\",\"detail\":\"\"}", status,
             dg_status_code(status), dg_status_reason(status));
    set_body(r, status, "application/problem+json", fallback);
    return;
  }
  set_body(r, status, "application/problem+json", text);
  free(text);
}

const char *dg_query(const dg_req_t *r, const char *name) {
  for (size_t i = 0; i < r->nquery; i++)
    if (strcmp(r->query[i].name, name) == 0) return r->query[i].value;
  return NULL;
}

const char *dg_header(const dg_req_t *r, const char *name) {
  for (size_t i = 0; i < r->nheaders; i++)
    if (strcasecmp(r->headers[i].name, name) == 0) return r->headers[i].value;
  return NULL;
}

/* ---- routing ------------------------------------------------------------- */

typedef struct {
  const char *seg[MAX_SEGMENTS];
  size_t len[MAX_SEGMENTS];
  size_t n;
} path_t;

/* Splits "/a/b/c" into segments; a trailing slash is ignored. */
static int split_path(const char *p, path_t *out) {
  out->n = 0;
  if (p == NULL || p[0] != '/') return -1;
  while (*p == '/') {
    p++;
    const char *end = strchr(p, '/');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (len == 0 && end == NULL) break; /* trailing slash */
    if (len == 0 || out->n == MAX_SEGMENTS) return -1;
    out->seg[out->n] = p;
    out->len[out->n] = len;
    out->n++;
    p += len;
  }
  return 0;
}

/* Matches a pattern; on success fills the parameter slots (as copies). */
static int match(const char *pattern, const path_t *path, char params[][MAX_PATH + 1], size_t *nparams) {
  path_t pat;
  if (split_path(pattern, &pat) != 0 || pat.n != path->n) return 0;
  size_t np = 0;
  for (size_t i = 0; i < pat.n; i++) {
    if (pat.seg[0 + i][0] == ':') {
      if (np == DG_HTTP_MAX_PARAMS || path->len[i] > MAX_PATH) return 0;
      if (params) {
        memcpy(params[np], path->seg[i], path->len[i]);
        params[np][path->len[i]] = '\0';
      }
      np++;
    } else if (pat.len[i] != path->len[i] || memcmp(pat.seg[i], path->seg[i], pat.len[i]) != 0) {
      return 0;
    }
  }
  *nparams = np;
  return 1;
}

/* "Bearer <key>" or X-API-Key; NULL when neither is present. */
static const char *presented_key(const dg_req_t *r) {
  const char *h = dg_header(r, "Authorization");
  if (h && strncasecmp(h, "Bearer ", 7) == 0) {
    h += 7;
    while (*h == ' ') h++;
    return h;
  }
  return dg_header(r, "X-API-Key");
}

/* Deepest nesting of [ and { outside strings; stops counting past limit. */
static int json_depth_over(const char *p, size_t n, int limit) {
  int depth = 0, in_str = 0;
  for (size_t i = 0; i < n; i++) {
    char c = p[i];
    if (in_str) {
      if (c == '\\') i++;
      else if (c == '"') in_str = 0;
    } else if (c == '"') {
      in_str = 1;
    } else if (c == '{' || c == '[') {
      if (++depth > limit) return 1;
    } else if (c == '}' || c == ']') {
      depth--;
    }
  }
  return 0;
}

/* Who is calling: a JWT when one is configured and the token has its shape,
 * else an API key. 0, or a problem has been answered. */
static int authenticate(dg_req_t *r) {
  const char *key = presented_key(r);
  if (key == NULL || *key == '\0') {
    dg_set_header(r, "WWW-Authenticate", "Bearer");
    dg_problem(r, 401, NULL, "an API key or token is required (Authorization: Bearer <key> or X-API-Key)");
    return -1;
  }
  if (r->app->jwt && dg_jwt_looks_like(key)) {
    char why[160];
    if (dg_jwt_check(r->app->jwt, key, &r->who, why, sizeof why) != 0) {
      dg_set_header(r, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
      dg_problem(r, 401, NULL, "the bearer token is not valid: %s", why);
      return -1;
    }
    if (dg_alive_check(r->app->alive, &r->who, why, sizeof why) != 0) { /* a revoked jti */
      dg_set_header(r, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
      dg_problem(r, 401, NULL, "the bearer token is not valid: %s", why);
      return -1;
    }
    return 0;
  }
  int rc = dg_auth_check(r->app->auth, key, strlen(key), &r->who);
  if (rc == DG_EUNAVAIL) {
    dg_problem(r, 503, NULL, "the key store is unavailable");
    return -1;
  }
  if (rc != 0) {
    dg_set_header(r, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
    dg_problem(r, 401, NULL, "the API key is not valid");
    return -1;
  }
  return 0;
}


/* A route's JSON object body into r->body: 0, or -1 and a 400 answered. */
static int body_or_problem(dg_req_t *r) {
  json_error_t jerr;
  if (r->raw_body_len == 0) {
    dg_problem(r, 400, NULL, "a JSON object body is required");
    return -1;
  }
  if (json_depth_over(r->raw_body, r->raw_body_len, MAX_JSON_DEPTH)) {
    dg_problem(r, 400, NULL, "the JSON body nests deeper than %d levels", MAX_JSON_DEPTH);
    return -1;
  }
  r->body = json_loadb(r->raw_body, r->raw_body_len, JSON_REJECT_DUPLICATES, &jerr);
  if (r->body == NULL) {
    dg_problem(r, 400, NULL, "malformed JSON at line %d column %d: %s", jerr.line, jerr.column, jerr.text);
    return -1;
  }
  if (!json_is_object(r->body)) {
    dg_problem(r, 400, NULL, "the body must be a JSON object");
    return -1;
  }
  return 0;
}

static void run_route(dg_req_t *r, const dg_route_t *route) {
  dg_app_t *app = r->app;
  if (route->role != DG_ROLE_NONE) {
    if (authenticate(r) != 0) return;
    r->who.seen_us = dg_mono_us();
    if (r->who.role < route->role) {
      if (route->role == DG_ROLE_ADMIN) dg_audit(r, "admin.denied", "%s %s", route->method, route->pattern);
      dg_problem(r, 403, NULL, "this needs the '%s' role; the caller has '%s'",
                 dg_role_name(route->role), dg_role_name(r->who.role));
      return;
    }
    char caller[80];
    dg_principal_id(&r->who, caller, sizeof caller);
    int wait = r->limits_taken ? 0 : dg_ratelimit_take(app->ratelimit, caller);
    if (wait > 0) {
      char ra[16];
      snprintf(ra, sizeof ra, "%d", wait);
      dg_set_header(r, "Retry-After", ra);
      dg_problem(r, 429, NULL, "rate limit of %.0f requests/s exceeded; retry in %d s",
                 app->cfg->rate_limit, wait);
      return;
    }
  }
  if (route->json_body && body_or_problem(r) != 0) return;
  route->fn(r);
}

/* The raw request target must decode to valid UTF-8 without NUL bytes:
 * handlers take C strings, so "%00" (or a raw NUL) would silently cut a
 * path or a parameter short. Refusing them keeps "what was asked" and "what runs" the
 * same. */
static int target_ok(const char *url) {
  if (url == NULL) return 0;
  unsigned char buf[8];
  int need = 0, have = 0;
  for (const char *p = url; *p; p++) {
    unsigned char c = (unsigned char)*p;
    if (c == '%') {
      int b = dg_pct_byte(p);
      if (b < 0) return 0;
      c = (unsigned char)b;
      p += 2;
    }
    if (c == 0) return 0;
    if (need == 0) {
      if (c < 0x80) continue;
      need = (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
      if (need == 0 || c < 0xc2 || c > 0xf4) return 0;
      buf[0] = c;
      have = 1;
    } else {
      if ((c & 0xc0) != 0x80) return 0;
      buf[have++] = c;
      if (have == 2 && ((buf[0] == 0xe0 && c < 0xa0) || (buf[0] == 0xed && c >= 0xa0) ||
                        (buf[0] == 0xf0 && c < 0x90) || (buf[0] == 0xf4 && c >= 0x90)))
        return 0;
      if (have == need) need = 0;
    }
  }
  return need == 0;
}

/* The per-IP request rate (DUCKGRID_IP_RATE), taken before authentication
 * so a flood of requests with made-up keys is cut off without an HMAC or
 * a lookup each. 1 when over it (429 answered). */
static int ip_limited(dg_req_t *r) {
  const struct sockaddr *sa = (const struct sockaddr *)&r->peer;
  char ip[INET6_ADDRSTRLEN + 4] = "ip:?";
  if (sa->sa_family == AF_INET)
    inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, ip + 3, sizeof ip - 3);
  else if (sa->sa_family == AF_INET6)
    inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, ip + 3, sizeof ip - 3);
  int wait = dg_ratelimit_take(r->app->ip_ratelimit, ip);
  if (wait <= 0) return 0;
  char ra[16];
  snprintf(ra, sizeof ra, "%d", wait);
  dg_set_header(r, "Retry-After", ra);
  dg_problem(r, 429, NULL, "more than %.0f requests/s from this address; retry in %d s", r->app->cfg->ip_rate, wait);
  return 1;
}

static void access_log(dg_req_t *r, int hit_index) {
  int64_t us = dg_mono_us() - r->t0_us;
  dg_metrics_http(r->app->metrics, hit_index, r->status, us);
  /* The query string is left out: it is where a careless client puts a key. */
  dg_log_info("%s %.200s %d %.3fms", r->method, r->path, r->status, (double)us / 1000.0);
}

/* The route's index in dispatch order (the metrics' label). */
static int route_index(const dg_route_t *route) {
  int index = 0;
  for (size_t t = 0; t < DG_ARRAY_SIZE(route_tables); t++)
    for (const dg_route_t *rt = route_tables[t]; rt->method; rt++, index++)
      if (rt == route) return index;
  return -1;
}

void dg_http_tried(dg_req_t *r) {
  r->deferred = 0;
  r->defer_try = NULL;
  r->defer_runs++;
  access_log(r, route_index(r->route));
}

void dg_http_rerun(dg_req_t *r) {
  r->deferred = 0;
  r->defer_try = NULL;
  r->defer_runs++;
  r->route->fn(r);
  if (!r->deferred) access_log(r, route_index(r->route));
}

void dg_http_resume(dg_req_t *r) {
  void (*fn)(dg_req_t *) = r->await_fn;
  r->deferred = 0;
  r->await_fn = NULL;
  r->defer_runs++;
  fn(r);
  access_log(r, route_index(r->route));
}

/* The route of r's method and path, or NULL (then the worker answers the
 * 404/405/400 as ever); its index into *index. */
static const dg_route_t *route_of(dg_req_t *r, char params[][MAX_PATH + 1], int *index) {
  path_t path;
  if (strlen(r->path) > MAX_PATH || split_path(r->path, &path) != 0) return NULL;
  int i = 0;
  for (size_t t = 0; t < DG_ARRAY_SIZE(route_tables); t++)
    for (const dg_route_t *rt = route_tables[t]; rt->method; rt++, i++) {
      size_t np = 0;
      if (strcmp(rt->method, r->method) != 0 || !match(rt->pattern, &path, NULL, &np)) continue;
      match(rt->pattern, &path, params, &r->nparams);
      *index = i;
      return rt;
    }
  return NULL;
}

/* Largest request body parsed on a loop (dg_http_dispatch_loop). */
#define LOOP_BODY_MAX (64 * 1024)

int dg_http_dispatch_loop(dg_req_t *r) {
  dg_app_t *app = r->app;
  /* A body parsed here is small (a cell, a few rows): a big one would hold
   * the loop's other clients for the time of its parse. */
  if (r->raw_body_len > LOOP_BODY_MAX) return 0;
  char params[DG_HTTP_MAX_PARAMS][MAX_PATH + 1];
  int index = -1;
  const dg_route_t *hit = route_of(r, params, &index);
  /* Only a request dg_http_dispatch would hand its handler: anything it
   * answers with a problem on the way is left to it. */
  if (hit == NULL || hit->on_loop == NULL || !target_ok(r->target) || (r->raw_body_len != 0 && !hit->json_body)) {
    r->nparams = 0;
    return 0;
  }
  if (hit->role != DG_ROLE_NONE) {
    const char *key = presented_key(r);
    if (key == NULL || (app->jwt && dg_jwt_looks_like(key)) ||
        dg_auth_peek(app->auth, key, strlen(key), &r->who) != 0 || r->who.role < hit->role) {
      r->nparams = 0;
      return 0;
    }
  }
  r->t0_us = dg_mono_us();
  for (size_t i = 0; i < r->nparams; i++) r->params[i] = dg_strdup(params[i]);
  r->route = hit;
  r->limits_taken = 1;
  if (ip_limited(r)) {
    access_log(r, index);
    return 1;
  }
  if (hit->role != DG_ROLE_NONE) {
    r->who.seen_us = dg_mono_us();
    char caller[80];
    dg_principal_id(&r->who, caller, sizeof caller);
    int wait = dg_ratelimit_take(app->ratelimit, caller);
    if (wait > 0) {
      char ra[16];
      snprintf(ra, sizeof ra, "%d", wait);
      dg_set_header(r, "Retry-After", ra);
      dg_problem(r, 429, NULL, "rate limit of %.0f requests/s exceeded; retry in %d s", app->cfg->rate_limit, wait);
      access_log(r, index);
      return 1;
    }
  }
  if (hit->json_body && body_or_problem(r) != 0) {
    access_log(r, index);
    return 1;
  }
  r->on_loop = 1;
  int answered = hit->on_loop(r);
  r->on_loop = 0;
  if (answered) {
    if (!r->deferred) access_log(r, index); /* else when it is answered */
    return 1;
  }
  /* To a worker, which routes (and parses) it again. */
  json_decref(r->body);
  r->body = NULL;
  for (size_t i = 0; i < r->nparams; i++) {
    dg_free((char *)r->params[i]);
    r->params[i] = NULL;
  }
  r->nparams = 0;
  r->route = NULL;
  return 0;
}

void dg_http_dispatch(dg_req_t *r) {
  dg_app_t *app = r->app;
  r->t0_us = dg_mono_us();
  /* Parameters are copied whole, however long: a name that is too long is
   * the handler's 400, not the router's 404. */
  char params[DG_HTTP_MAX_PARAMS][MAX_PATH + 1];
  path_t path;
  const dg_route_t *hit = NULL;
  int hit_index = -1, index = 0;
  int path_known = 0;
  dg_buf_t allow;
  dg_buf_init(&allow);
  int path_ok = strlen(r->path) <= MAX_PATH;
  if (path_ok && split_path(r->path, &path) == 0) {
    for (size_t t = 0; t < DG_ARRAY_SIZE(route_tables) && hit == NULL; t++) {
      for (const dg_route_t *rt = route_tables[t]; rt->method; rt++, index++) {
        size_t np = 0;
        if (!match(rt->pattern, &path, NULL, &np)) continue;
        path_known = 1;
        if (strcmp(rt->method, r->method) == 0) {
          match(rt->pattern, &path, params, &r->nparams);
          hit = rt;
          hit_index = index;
          break;
        }
        if (allow.len) dg_buf_puts(&allow, ", ");
        dg_buf_puts(&allow, rt->method);
      }
    }
  }
  /* Copies the request keeps: a parked request runs its handler again. */
  for (size_t i = 0; i < r->nparams; i++) r->params[i] = dg_strdup(params[i]);
  r->route = hit;
  if (!target_ok(r->target)) {
    dg_problem(r, 400, NULL, "the request target has a NUL byte or is not valid UTF-8 once decoded");
  } else if (!r->limits_taken && ip_limited(r)) {
    /* answered: 429, before any key is looked at */
  } else if (r->raw_body_len > app->cfg->body_limit) {
    /* Checked first, for every route: the limit protects the whole server. */
    dg_problem(r, 413, NULL, "the request body is larger than %zu bytes", app->cfg->body_limit);
  } else if (hit) {
    run_route(r, hit);
  } else if (!path_ok) {
    dg_problem(r, 400, NULL, "the path is longer than %d bytes", MAX_PATH);
  } else if (path_known) {
    dg_set_header(r, "Allow", allow.data);
    dg_problem(r, 405, NULL, "%s is not allowed here; allowed: %s", r->method, allow.data);
  } else {
    dg_problem(r, 404, NULL, "no such route");
  }
  dg_buf_dispose(&allow);
  json_decref(r->body);
  r->body = NULL;
  if (!r->deferred) access_log(r, hit_index);
}
