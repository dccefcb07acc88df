/*
 * redis_url.c -- parses Redis connection URLs into dg_redis_url_t.
 *
 * The URL is configuration, but it carries a secret and ends up in logs and
 * error messages, so the parser is strict: it checks the length cap before
 * anything else, accepts exactly the grammar documented in dg/redis.h,
 * parses numbers digit by digit with overflow checks (no strtol, which
 * accepts signs, spaces and "0x"), and rejects whatever it does not
 * understand instead of guessing. No error message ever quotes the userinfo.
 *
 * Layout of a TCP URL, with the pieces this file cuts out:
 *
 *   redis://alice:p%40ss@[::1]:6380/2
 *   \___/   \___/ \____/ \___/ \__/ \/
 *   scheme  user  passw. host  port db
 *           \__ userinfo __/
 *           \______ authority _____/
 */
#include "dg/redis.h"
#include "stream/redis_internal.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

/* ---- small parsers ------------------------------------------------------ */

void dg__redis_seterr(char *err, size_t errcap, const char *fmt, ...) {
  if (err == NULL || errcap == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errcap, fmt, ap);
  va_end(ap);
}

int dg__redis_parse_uint(const char *s, size_t len, uint64_t max, uint64_t *out) {
  if (len == 0 || len > 20) return -1;
  if (len > 1 && s[0] == '0') return -1;
  uint64_t v = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    uint64_t d = (uint64_t)(s[i] - '0');
    if (v > (max - d) / 10) return -1; /* v * 10 + d would exceed max */
    v = v * 10 + d;
  }
  *out = v;
  return 0;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/*
 * Percent-decodes s[0..len) into a new string (freed with dg_free). Rejects
 * bad escapes and a decoded NUL (the result is a C string). what names the
 * part in error messages; the bytes themselves are never quoted.
 */
static int pct_decode(const char *s, size_t len, const char *what, char **out, char *err,
                      size_t errcap) {
  char *d = dg_malloc(len + 1);
  size_t j = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] != '%') {
      d[j++] = s[i];
      continue;
    }
    if (len - i < 3) { /* fewer than two characters follow the '%' */
      dg__redis_seterr(err, errcap, "truncated percent-escape in %s", what);
      dg_free(d);
      return DG_EINVAL;
    }
    int h = hexval(s[i + 1]), l = hexval(s[i + 2]);
    if (h < 0 || l < 0) {
      dg__redis_seterr(err, errcap, "bad percent-escape in %s", what);
      dg_free(d);
      return DG_EINVAL;
    }
    char c = (char)(h * 16 + l);
    if (c == '\0') {
      dg__redis_seterr(err, errcap, "%%00 (NUL) not allowed in %s", what);
      dg_free(d);
      return DG_EINVAL;
    }
    d[j++] = c;
    i += 2;
  }
  d[j] = '\0';
  *out = d;
  return 0;
}

static int is_hostchar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '-' || c == '.' || c == '_';
}

/* ---- the parser ---------------------------------------------------------- */

/*
 * Splits "user:password" (raw, still percent-encoded) into decoded parts.
 * An empty user means "no user" (AUTH password); the password must be
 * non-empty.
 */
static int parse_userinfo(const char *s, size_t len, char **user, char **password, char *err,
                          size_t errcap) {
  const char *colon = memchr(s, ':', len);
  if (colon == NULL) {
    dg__redis_seterr(err, errcap,
           "userinfo without ':' is ambiguous; write ':password@' or 'user:password@'");
    return DG_EINVAL;
  }
  size_t ulen = (size_t)(colon - s);
  size_t plen = len - ulen - 1;
  if (plen == 0) {
    dg__redis_seterr(err, errcap, "empty password in URL");
    return DG_EINVAL;
  }
  char *u = NULL, *p = NULL;
  if (ulen > 0) {
    int rc = pct_decode(s, ulen, "user", &u, err, errcap);
    if (rc != 0) return rc;
    for (const char *c = u; *c; c++) {
      /* ACL user names are single tokens, and they appear in logs. */
      if ((unsigned char)*c <= 0x20 || (unsigned char)*c == 0x7f) {
        dg__redis_seterr(err, errcap, "user name contains a space or control character");
        dg_free(u);
        return DG_EINVAL;
      }
    }
  }
  int rc = pct_decode(colon + 1, plen, "password", &p, err, errcap);
  if (rc != 0) {
    dg_free(u);
    return rc;
  }
  *user = u;
  *password = p;
  return 0;
}

/* Parses "host[:port]" or "[v6][:port]" of a TCP URL. */
static int parse_hostport(const char *s, size_t len, char **host, uint16_t *port, char *err,
                          size_t errcap) {
  const char *hs, *rest;
  size_t hlen;
  if (len > 0 && s[0] == '[') {
    const char *close = memchr(s, ']', len);
    if (close == NULL) {
      dg__redis_seterr(err, errcap, "IPv6 literal without ']'");
      return DG_EINVAL;
    }
    hs = s + 1;
    hlen = (size_t)(close - hs);
    rest = close + 1;
    char tmp[INET6_ADDRSTRLEN];
    struct in6_addr a6;
    if (hlen == 0 || hlen >= sizeof tmp) {
      dg__redis_seterr(err, errcap, "bad IPv6 literal");
      return DG_EINVAL;
    }
    memcpy(tmp, hs, hlen);
    tmp[hlen] = '\0';
    if (inet_pton(AF_INET6, tmp, &a6) != 1) {
      dg__redis_seterr(err, errcap, "bad IPv6 literal (zone ids are not supported)");
      return DG_EINVAL;
    }
  } else {
    hs = s;
    const char *colon = memchr(s, ':', len);
    hlen = colon ? (size_t)(colon - s) : len;
    rest = s + hlen;
    if (hlen == 0) {
      dg__redis_seterr(err, errcap, "missing host");
      return DG_EINVAL;
    }
    if (hlen > 253) { /* longest DNS name */
      dg__redis_seterr(err, errcap, "host name longer than 253 characters");
      return DG_EINVAL;
    }
    for (size_t i = 0; i < hlen; i++) {
      if (!is_hostchar(hs[i])) {
        dg__redis_seterr(err, errcap,
                         "bad character in host (allowed: letters, digits, '-', '.', '_')");
        return DG_EINVAL;
      }
    }
  }
  size_t rlen = len - (size_t)(rest - s);
  uint16_t p = DG_REDIS_DEFAULT_PORT;
  if (rlen > 0) {
    if (rest[0] != ':') {
      dg__redis_seterr(err, errcap, "unexpected characters after host");
      return DG_EINVAL;
    }
    uint64_t v;
    if (rlen == 1) {
      dg__redis_seterr(err, errcap, "empty port after ':'");
      return DG_EINVAL;
    }
    if (dg__redis_parse_uint(rest + 1, rlen - 1, 65535, &v) != 0 || v == 0) {
      dg__redis_seterr(err, errcap, "port must be a number from 1 to 65535");
      return DG_EINVAL;
    }
    p = (uint16_t)v;
  }
  *host = dg_strndup(hs, hlen);
  *port = p;
  return 0;
}

static int parse_db(const char *s, size_t len, int *db, char *err, size_t errcap) {
  uint64_t v;
  if (dg__redis_parse_uint(s, len, DG_REDIS_DB_MAX, &v) != 0) {
    dg__redis_seterr(err, errcap, "db must be a number from 0 to %d", DG_REDIS_DB_MAX);
    return DG_EINVAL;
  }
  *db = (int)v;
  return 0;
}

/* Parses the query of a unix URL: empty, or exactly "db=N". */
static int parse_unix_query(const char *s, size_t len, int *db, char *err, size_t errcap) {
  if (len == 0) return 0;
  if (len < 3 || memcmp(s, "db=", 3) != 0 || memchr(s, '&', len) != NULL) {
    dg__redis_seterr(err, errcap, "the only query parameter accepted is db=N");
    return DG_EINVAL;
  }
  return parse_db(s + 3, len - 3, db, err, errcap);
}

int dg_redis_url_parse(const char *url, dg_redis_url_t *out, char *err, size_t errcap) {
  if (url == NULL) {
    dg__redis_seterr(err, errcap, "no URL");
    return DG_EINVAL;
  }
  size_t len = strnlen(url, DG_REDIS_URL_MAX + 1);
  if (len > DG_REDIS_URL_MAX) {
    dg__redis_seterr(err, errcap, "URL longer than %d bytes", DG_REDIS_URL_MAX);
    return DG_ETOOBIG;
  }
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)url[i];
    if (c <= 0x20 || c >= 0x7f) {
      dg__redis_seterr(err, errcap,
                       "URL contains a space, control or non-ASCII byte at offset %zu", i);
      return DG_EINVAL;
    }
  }
  if (memchr(url, '#', len) != NULL) {
    dg__redis_seterr(err, errcap, "URL fragments ('#') are not allowed; encode '#' as %%23");
    return DG_EINVAL;
  }

  dg_redis_url_t u;
  memset(&u, 0, sizeof u);
  const char *p;
  if (strncasecmp(url, "redis://", 8) == 0) {
    p = url + 8;
  } else if (strncasecmp(url, "rediss://", 9) == 0) {
    p = url + 9;
    u.tls = 1;
  } else if (strncasecmp(url, "unix://", 7) == 0) {
    p = url + 7;
    u.is_unix = 1;
  } else {
    dg__redis_seterr(err, errcap, "URL must start with redis://, rediss:// or unix://");
    return DG_EINVAL;
  }
  const char *end = url + len;
  int rc;

  /* The authority runs to the first '/' (or '?'); for unix:// it is only the
     optional userinfo, and the path starts at the first '/'. */
  const char *auth_end = p;
  while (auth_end < end && *auth_end != '/' && *auth_end != '?') auth_end++;
  const char *at = memchr(p, '@', (size_t)(auth_end - p));
  if (at != NULL && memchr(at + 1, '@', (size_t)(auth_end - at - 1)) != NULL) {
    dg__redis_seterr(err, errcap, "more than one '@' in URL; encode '@' in the password as %%40");
    return DG_EINVAL;
  }
  if (at != NULL) {
    rc = parse_userinfo(p, (size_t)(at - p), &u.user, &u.password, err, errcap);
    if (rc != 0) return rc;
    p = at + 1;
  }

  if (u.is_unix) {
    if (p != auth_end) {
      dg__redis_seterr(err, errcap, "unix:// URL takes no host; write unix:///abs/path.sock");
      rc = DG_EINVAL;
      goto fail;
    }
    if (p == end || *p != '/') {
      dg__redis_seterr(err, errcap, "unix:// URL needs an absolute socket path");
      rc = DG_EINVAL;
      goto fail;
    }
    const char *q = memchr(p, '?', (size_t)(end - p));
    const char *path_end = q ? q : end;
    rc = pct_decode(p, (size_t)(path_end - p), "socket path", &u.path, err, errcap);
    if (rc != 0) goto fail;
    if (strlen(u.path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
      dg__redis_seterr(err, errcap, "unix socket path longer than %zu bytes",
             sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
      rc = DG_EINVAL;
      goto fail;
    }
    if (strcmp(u.path, "/") == 0 || u.path[strlen(u.path) - 1] == '/') {
      dg__redis_seterr(err, errcap, "unix socket path names a directory");
      rc = DG_EINVAL;
      goto fail;
    }
    if (q != NULL) {
      rc = parse_unix_query(q + 1, (size_t)(end - q - 1), &u.db, err, errcap);
      if (rc != 0) goto fail;
    }
  } else {
    rc = parse_hostport(p, (size_t)(auth_end - p), &u.host, &u.port, err, errcap);
    if (rc != 0) goto fail;
    const char *s = auth_end;
    if (s < end && *s == '?') {
      dg__redis_seterr(err, errcap, "query parameters are not accepted in redis:// URLs");
      rc = DG_EINVAL;
      goto fail;
    }
    if (s < end) { /* *s == '/' */
      s++;
      if (memchr(s, '?', (size_t)(end - s)) != NULL) {
        dg__redis_seterr(err, errcap, "query parameters are not accepted in redis:// URLs");
        rc = DG_EINVAL;
        goto fail;
      }
      if (s < end) {
        rc = parse_db(s, (size_t)(end - s), &u.db, err, errcap);
        if (rc != 0) goto fail;
      }
    }
  }
  *out = u;
  return 0;

fail:
  dg_redis_url_dispose(&u);
  return rc;
}

void dg_redis_url_dispose(dg_redis_url_t *url) {
  if (url == NULL) return;
  if (url->password != NULL) explicit_bzero(url->password, strlen(url->password));
  dg_free(url->host);
  dg_free(url->path);
  dg_free(url->user);
  dg_free(url->password);
  memset(url, 0, sizeof *url);
}

int dg_redis_url_describe(const dg_redis_url_t *url, char *buf, size_t cap) {
  if (cap == 0) return DG_ETOOBIG;
  int n;
  const char *user = url->user ? url->user : "";
  const char *at = url->user ? "@" : "";
  if (url->is_unix) {
    n = snprintf(buf, cap, "unix://%s%s%s?db=%d", user, at, url->path ? url->path : "",
                 url->db);
  } else {
    int v6 = url->host != NULL && strchr(url->host, ':') != NULL;
    n = snprintf(buf, cap, "%s://%s%s%s%s%s:%u/%d", url->tls ? "rediss" : "redis", user, at,
                 v6 ? "[" : "", url->host ? url->host : "", v6 ? "]" : "", (unsigned)url->port,
                 url->db);
  }
  if (n < 0 || (size_t)n >= cap) return DG_ETOOBIG;
  return 0;
}
