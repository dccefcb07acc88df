/*
 * server.c -- the HTTP front door.
 *
 * ulfius (on libmicrohttpd, one thread per connection) hands every request
 * to one default endpoint, dispatch(), which does in order:
 *
 *   body size   ──▶ 413 (over the limit, whatever the route)
 *   route match ──▶ 404 (no pattern matches) / 405 (pattern, not method)
 *   auth        ──▶ 401 (no or unknown key) / 403 (role too low)
 *   body        ──▶ 400 (not a JSON object)
 *   handler     ──▶ its answer
 *   access log  ──▶ method, path, status, duration (never a key)
 *
 * Owning the router keeps 404 and 405 apart, which ulfius's own routing
 * cannot, and puts the middleware steps in one readable place.
 */
#include "dg/http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <ulfius.h>

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
/* Bytes of headers + URL a connection may use (libmicrohttpd's memory pool):
 * larger requests get 431/414 from libmicrohttpd itself. */
#define CONNECTION_MEMORY 65536

struct dg_http_s {
  struct _u_instance inst;
  dg_app_t *app;
};

/* ---- replies --------------------------------------------------------------- */

static const char *reason(int status) {
  switch (status) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 413: return "Payload Too Large";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Internal Server Error";
  }
}

static const char *code_of(int status) {
  switch (status) {
    case 400: return "bad_request";
    case 401: return "unauthorized";
    case 403: return "forbidden";
    case 404: return "not_found";
    case 405: return "method_not_allowed";
    case 409: return "conflict";
    case 410: return "gone";
    case 413: return "payload_too_large";
    case 429: return "too_many_requests";
    case 503: return "unavailable";
    case 504: return "timeout";
    default: return "internal";
  }
}

int dg_http_status_of(int err) {
  switch (err) {
    case DG_EINVAL: return 400;
    case DG_EAUTH: return 401;
    case DG_ENOTFOUND: return 404;
    case DG_ECONFLICT:
    case DG_EEXIST: return 409;
    case DG_EOVERFLOW: return 400;
    case DG_EGONE: return 410;
    case DG_ETOOBIG:
    case DG_ENOMEM: return 413;
    case DG_EUNAVAIL: return 503;
    case DG_ETIMEOUT: return 504;
    default: return 500;
  }
}

static void set_body(dg_req_t *r, int status, const char *type, char *text) {
  ulfius_set_string_body_response(r->resp, (unsigned)status, text);
  u_map_put(r->resp->map_header, "Content-Type", type);
  r->status = status;
}

void dg_reply_json(dg_req_t *r, int status, json_t *body) {
  char *text = json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(17));
  json_decref(body);
  set_body(r, status, "application/json", text ? text : "null");
  free(text); /* json_dumps uses jansson's allocator: plain malloc */
}

void dg_reply_buf(dg_req_t *r, int status, const dg_buf_t *body) {
  ulfius_set_binary_body_response(r->resp, (unsigned)status, body->data ? body->data : "",
                                  body->len);
  u_map_put(r->resp->map_header, "Content-Type", "application/json");
  r->status = status;
}

char *dg_reply_body_alloc(dg_req_t *r, int status, size_t len) {
  /* ulfius frees binary_body with o_free when it cleans the response, so the
   * bytes come from orcania's allocator, not dg_malloc. (ulfius 2.7 still
   * copies the body once into the buffer it hands libmicrohttpd; only a
   * stream callback would avoid that.) */
  char *p = o_malloc(len ? len : 1);
  if (p == NULL) return NULL;
  o_free(r->resp->binary_body);
  r->resp->binary_body = p;
  r->resp->binary_body_length = len;
  r->resp->status = status;
  u_map_put(r->resp->map_header, "Content-Type", "application/json");
  r->status = status;
  return p;
}

void dg_reply_empty(dg_req_t *r, int status) {
  ulfius_set_empty_body_response(r->resp, (unsigned)status);
  r->status = status;
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
  json_t *p = json_pack("{s:i,s:s,s:s,s:s}", "status", status, "code", code_of(status), "title",
                        reason(status), "detail", detail);
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
             code_of(status), reason(status));
    set_body(r, status, "application/problem+json", fallback);
    return;
  }
  set_body(r, status, "application/problem+json", text);
  free(text);
}

const char *dg_query(const dg_req_t *r, const char *name) {
  return u_map_get(r->u->map_url, name);
}

const char *dg_header(const dg_req_t *r, const char *name) {
  return u_map_get_case(r->u->map_header, name);
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
    u_map_put(r->resp->map_header, "WWW-Authenticate", "Bearer");
    dg_problem(r, 401, NULL, "an API key or token is required (Authorization: Bearer <key> or X-API-Key)");
    return -1;
  }
  if (r->app->jwt && dg_jwt_looks_like(key)) {
    char why[160];
    if (dg_jwt_check(r->app->jwt, key, &r->who, why, sizeof why) != 0) {
      u_map_put(r->resp->map_header, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
      dg_problem(r, 401, NULL, "the bearer token is not valid: %s", why);
      return -1;
    }
    if (dg_alive_check(r->app->alive, &r->who, why, sizeof why) != 0) { /* a revoked jti */
      u_map_put(r->resp->map_header, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
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
    u_map_put(r->resp->map_header, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
    dg_problem(r, 401, NULL, "the API key is not valid");
    return -1;
  }
  return 0;
}


static void run_route(dg_req_t *r, const dg_route_t *route) {
  dg_app_t *app = r->app;
  if (route->role != DG_ROLE_NONE) {
    if (authenticate(r) != 0) return;
    if (r->who.role < route->role) {
      if (route->role == DG_ROLE_ADMIN) dg_audit(r, "admin.denied", "%s %s", route->method, route->pattern);
      dg_problem(r, 403, NULL, "this needs the '%s' role; the caller has '%s'",
                 dg_role_name(route->role), dg_role_name(r->who.role));
      return;
    }
    char caller[80];
    dg_principal_id(&r->who, caller, sizeof caller);
    int wait = dg_ratelimit_take(app->ratelimit, caller);
    if (wait > 0) {
      char ra[16];
      snprintf(ra, sizeof ra, "%d", wait);
      u_map_put(r->resp->map_header, "Retry-After", ra);
      dg_problem(r, 429, NULL, "rate limit of %.0f requests/s exceeded; retry in %d s",
                 app->cfg->rate_limit, wait);
      return;
    }
  }
  if (route->json_body) {
    json_error_t jerr;
    if (r->u->binary_body_length == 0) {
      dg_problem(r, 400, NULL, "a JSON object body is required");
      return;
    }
    if (json_depth_over(r->u->binary_body, r->u->binary_body_length, MAX_JSON_DEPTH)) {
      dg_problem(r, 400, NULL, "the JSON body nests deeper than %d levels", MAX_JSON_DEPTH);
      return;
    }
    r->body = json_loadb(r->u->binary_body, r->u->binary_body_length,
                         JSON_REJECT_DUPLICATES, &jerr);
    if (r->body == NULL) {
      dg_problem(r, 400, NULL, "malformed JSON at line %d column %d: %s", jerr.line, jerr.column,
                 jerr.text);
      return;
    }
    if (!json_is_object(r->body)) {
      dg_problem(r, 400, NULL, "the body must be a JSON object");
      return;
    }
  }
  route->fn(r);
}

/* The raw request target must decode to valid UTF-8 without NUL bytes:
 * libmicrohttpd hands on C strings, so "%00" (or a raw NUL) would silently
 * cut a path or a parameter short, and ulfius drops parameters that are
 * not valid UTF-8. Refusing them keeps "what was asked" and "what runs" the
 * same. */
static int target_ok(const char *url) {
  if (url == NULL) return 0;
  unsigned char buf[8];
  int need = 0, have = 0;
  for (const char *p = url; *p; p++) {
    unsigned char c = (unsigned char)*p;
    if (c == '%') {
      int hi = p[1], lo = hi ? p[2] : 0;
      int h = hi >= '0' && hi <= '9' ? hi - '0' : (hi | 32) >= 'a' && (hi | 32) <= 'f' ? (hi | 32) - 'a' + 10 : -1;
      int l = lo >= '0' && lo <= '9' ? lo - '0' : (lo | 32) >= 'a' && (lo | 32) <= 'f' ? (lo | 32) - 'a' + 10 : -1;
      if (h < 0 || l < 0) return 0;
      c = (unsigned char)(h * 16 + l);
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
  const struct sockaddr *sa = r->u->client_address;
  char ip[INET6_ADDRSTRLEN + 4] = "ip:?";
  if (sa && sa->sa_family == AF_INET)
    inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, ip + 3, sizeof ip - 3);
  else if (sa && sa->sa_family == AF_INET6)
    inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, ip + 3, sizeof ip - 3);
  int wait = dg_ratelimit_take(r->app->ip_ratelimit, ip);
  if (wait <= 0) return 0;
  char ra[16];
  snprintf(ra, sizeof ra, "%d", wait);
  u_map_put(r->resp->map_header, "Retry-After", ra);
  dg_problem(r, 429, NULL, "more than %.0f requests/s from this address; retry in %d s", r->app->cfg->ip_rate, wait);
  return 1;
}

static int dispatch(const struct _u_request *u, struct _u_response *resp, void *user) {
  dg_app_t *app = user;
  int64_t t0 = dg_mono_us();
  dg_req_t r;
  memset(&r, 0, sizeof r);
  r.u = u;
  r.resp = resp;
  r.app = app;

  /* Parameters are copied whole, however long: a name that is too long is
   * the handler's 400, not the router's 404. */
  char params[DG_HTTP_MAX_PARAMS][MAX_PATH + 1];
  path_t path;
  const dg_route_t *hit = NULL;
  int hit_index = -1, index = 0;
  int path_known = 0;
  dg_buf_t allow;
  dg_buf_init(&allow);
  int path_ok = strlen(u->url_path) <= MAX_PATH;
  if (path_ok && split_path(u->url_path, &path) == 0) {
    for (size_t t = 0; t < DG_ARRAY_SIZE(route_tables) && hit == NULL; t++) {
      for (const dg_route_t *rt = route_tables[t]; rt->method; rt++, index++) {
        size_t np = 0;
        if (!match(rt->pattern, &path, NULL, &np)) continue;
        path_known = 1;
        if (strcmp(rt->method, u->http_verb) == 0) {
          match(rt->pattern, &path, params, &r.nparams);
          hit = rt;
          hit_index = index;
          break;
        }
        if (allow.len) dg_buf_puts(&allow, ", ");
        dg_buf_puts(&allow, rt->method);
      }
    }
  }
  for (size_t i = 0; i < r.nparams; i++) r.params[i] = params[i];
  if (!target_ok(u->http_url)) {
    dg_problem(&r, 400, NULL, "the request target has a NUL byte or is not valid UTF-8 once decoded");
  } else if (ip_limited(&r)) {
    /* answered: 429, before any key is looked at */
  } else if (u->binary_body_length > app->cfg->body_limit) {
    /* Checked first, for every route: the limit protects the whole server. */
    dg_problem(&r, 413, NULL, "the request body is larger than %zu bytes", app->cfg->body_limit);
  } else if (hit) {
    run_route(&r, hit);
  } else if (!path_ok) {
    dg_problem(&r, 400, NULL, "the path is longer than %d bytes", MAX_PATH);
  } else if (path_known) {
    u_map_put(resp->map_header, "Allow", allow.data);
    dg_problem(&r, 405, NULL, "%s is not allowed here; allowed: %s", u->http_verb, allow.data);
  } else {
    dg_problem(&r, 404, NULL, "no such route");
  }
  dg_buf_dispose(&allow);
  json_decref(r.body);
  int64_t us = dg_mono_us() - t0;
  dg_metrics_http(app->metrics, hit_index, r.status, us);
  /* The query string is left out: it is where a careless client puts a key. */
  dg_log_info("%s %.200s %d %.3fms", u->http_verb, u->url_path, r.status, (double)us / 1000.0);
  return U_CALLBACK_COMPLETE;
}

/* ---- life cycle ---------------------------------------------------------- */

/* Checks that the certificate and key parse and belong together, so a bad
 * pair is one clear line at start rather than libmicrohttpd's messages. */
static const char *tls_pair_problem(const char *cert, size_t cl, const char *key, size_t kl) {
  BIO *cb = BIO_new_mem_buf(cert, (int)cl), *kb = BIO_new_mem_buf(key, (int)kl);
  X509 *x = PEM_read_bio_X509(cb, NULL, NULL, NULL);
  EVP_PKEY *pk = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL);
  const char *why = x == NULL    ? "DUCKGRID_TLS_CERT is not a PEM certificate"
                    : pk == NULL ? "DUCKGRID_TLS_KEY is not an unencrypted PEM private key"
                    : X509_check_private_key(x, pk) != 1 ? "the certificate and the key do not belong together"
                                                         : NULL;
  X509_free(x);
  EVP_PKEY_free(pk);
  BIO_free(cb);
  BIO_free(kb);
  return why;
}

int dg_http_start(dg_app_t *app, dg_http_t **out, char *err, size_t errcap) {
  const dg_config_t *cfg = app->cfg;
  dg_http_t *h = dg_calloc(1, sizeof *h);
  h->app = app;
  dg_docs_load(); /* read /openapi.json and /docs files now, not per request */
  int rc;
  struct sockaddr_in a4;
  struct sockaddr_in6 a6;
  memset(&a4, 0, sizeof a4);
  memset(&a6, 0, sizeof a6);
  if (inet_pton(AF_INET, cfg->listen_host, &a4.sin_addr) == 1) {
    a4.sin_family = AF_INET;
    a4.sin_port = htons((uint16_t)cfg->listen_port);
    rc = ulfius_init_instance(&h->inst, (unsigned)cfg->listen_port, &a4, NULL);
  } else if (inet_pton(AF_INET6, cfg->listen_host, &a6.sin6_addr) == 1) {
    a6.sin6_family = AF_INET6;
    a6.sin6_port = htons((uint16_t)cfg->listen_port);
    rc = ulfius_init_instance_ipv6(&h->inst, (unsigned)cfg->listen_port, &a6, U_USE_IPV6, NULL);
  } else {
    snprintf(err, errcap, "listen address '%s' is not an IPv4 or IPv6 address", cfg->listen_host);
    dg_free(h);
    return DG_EINVAL;
  }
  if (rc != U_OK) {
    snprintf(err, errcap, "cannot set up the HTTP server");
    dg_free(h);
    return DG_EIO;
  }
  /* One byte over the limit lets dispatch() tell "at the limit" from "over". */
  h->inst.max_post_body_size = cfg->body_limit + 1;
  ulfius_set_default_endpoint(&h->inst, dispatch, app);
  /* ulfius refuses to start with an empty endpoint list, and every request
   * must reach dispatch(): register one under a method no client sends. */
  ulfius_add_endpoint_by_val(&h->inst, "X-DUCKGRID-NONE", "/", NULL, 0, dispatch, app);
  h->inst.timeout = (unsigned)cfg->http_timeout_s;
  /* Our own libmicrohttpd options (ulfius's defaults plus limits): poll()
   * instead of select() so more than 1024 connections work, a memory cap
   * per connection (headers + URL), an idle timeout for slow clients, and
   * smaller thread stacks for thousands of long polls. */
  unsigned int flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                       MHD_USE_POLL | MHD_USE_ERROR_LOG | MHD_ALLOW_UPGRADE;
  struct MHD_OptionItem ops[20];
  int k = 0;
  ops[k++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)mhd_request_completed, NULL};
  ops[k++] = (struct MHD_OptionItem){MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)ulfius_uri_logger, NULL};
  if (a4.sin_family == AF_INET) {
    ops[k++] = (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, &a4};
  } else {
    flags |= MHD_USE_IPv6;
    ops[k++] = (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, &a6};
  }
  ops[k++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT, (intptr_t)cfg->http_timeout_s, NULL};
  ops[k++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_MEMORY_LIMIT, CONNECTION_MEMORY, NULL};
  /* DuckDB plans queries recursively (a view with hundreds of joins goes
   * deep), so connection threads keep a full 8 MiB stack; it is virtual
   * memory until touched. */
  ops[k++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_STACK_SIZE, 8u << 20, NULL};
  ops[k++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT, 8192, NULL};
  /* Per client IP, refused at accept: before a thread, a byte of the
   * request or any key check is spent on it. */
  if (cfg->ip_connections > 0)
    ops[k++] = (struct MHD_OptionItem){MHD_OPTION_PER_IP_CONNECTION_LIMIT, (intptr_t)cfg->ip_connections, NULL};
  /* Refuse requests that are not well-formed HTTP/1.1 (stray bytes in the
   * request line, bad header syntax) instead of guessing. */
  ops[k++] = (struct MHD_OptionItem){MHD_OPTION_STRICT_FOR_CLIENT, 1, NULL};
  char *key = NULL, *cert = NULL;
  size_t kl = 0, cl = 0;
  if (cfg->tls_cert) {
    key = dg_read_small_file(cfg->tls_key, &kl);
    cert = dg_read_small_file(cfg->tls_cert, &cl);
    if (key == NULL || cert == NULL) {
      snprintf(err, errcap, "cannot read the HTTPS certificate or key");
      dg_free(key);
      dg_free(cert);
      ulfius_clean_instance(&h->inst);
      dg_free(h);
      return DG_EINVAL;
    }
    const char *why = tls_pair_problem(cert, cl, key, kl);
    if (why) {
      snprintf(err, errcap, "HTTPS: %s", why);
      memset(key, 0, kl);
      dg_free(key);
      dg_free(cert);
      ulfius_clean_instance(&h->inst);
      dg_free(h);
      return DG_EINVAL;
    }
    flags |= MHD_USE_TLS;
    ops[k++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, key};
    ops[k++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, cert};
  }
  ops[k++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
  int started = ulfius_start_framework_with_mhd_options(&h->inst, flags, ops) == U_OK;
  if (key) memset(key, 0, kl);
  dg_free(key);
  dg_free(cert);
  if (!started) {
    snprintf(err, errcap, "cannot listen on %s:%d (in use, not an address of this machine%s)",
             cfg->listen_host, cfg->listen_port, cfg->tls_cert ? ", or the certificate and key do not match" : "");
    ulfius_clean_instance(&h->inst);
    dg_free(h);
    return DG_EIO;
  }
  *out = h;
  return 0;
}

/* Kept, reachable, until the process ends (see dg_http_stop). */
static dg_http_t *volatile kept_at_exit; /* volatile: the store stays, so LeakSanitizer sees it */

void dg_http_stop(dg_http_t *h) {
  if (h == NULL) return;
  ulfius_stop_framework(&h->inst);
  if (atomic_load(&dg_ws_opened)) {
    /* libulfius 2.7: ulfius_stop_framework returns once the last WebSocket
     * thread has taken itself off the instance's list, but that thread
     * still unlocks the list's mutex afterwards; cleaning the instance now
     * frees that mutex under it (an ASan run caught the SEGV in
     * ulfius_instance_remove_websocket_active at a stop right after an
     * upgrade). The process is ending: the instance stays as it is. */
    kept_at_exit = h;
    return;
  }
  ulfius_clean_instance(&h->inst);
  dg_free(h);
}
